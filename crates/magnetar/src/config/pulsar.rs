//! The `[pulsar]` section: the Pulsar listener's limits and features.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{one_of, range, Config, ConfigError};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PulsarSection {
    pub port: u16,
    /// Pulsar's `maxMessageSize`: the largest SEND (one message or batch); announced to
    /// clients in CONNECTED. Frames may be 10 KiB larger (headers).
    pub message_bytes_max: u32,
    /// Pulsar's `keepAliveIntervalSeconds`: a PING after this much silence, a close after twice.
    pub keepalive_interval_s: u32,
    /// A connection that has not completed CONNECT (with authentication) this long after
    /// accept is closed.
    pub connect_timeout_ms: u64,
    pub connections_max: u32,
    pub producers_per_connection_max: u32,
    pub consumers_per_connection_max: u32,
    /// Encoded frames queued for one connection's socket.
    pub outbound_frames_max: u32,
    /// Pulsar's `maxPendingPublishRequestsPerConnection`: SENDs not yet durable per connection.
    pub pending_sends_max: u32,
    /// Pulsar's `maxUnackedMessagesPerConsumer`; `0` means unlimited, as in Pulsar.
    pub unacked_messages_per_consumer_max: u64,
    /// Send broker entry metadata to clients that announce support for it.
    pub broker_entry_metadata: bool,
    /// Pulsar's `brokerDeduplicationEnabled`.
    pub deduplication_enabled: bool,
    /// Pulsar's `brokerDeduplicationMaxNumberOfProducers`: names tracked per partition.
    pub deduplication_producers_max: u32,
    /// Kafka-format entries kept converted to Pulsar batches for Pulsar consumers, in bytes.
    pub conversion_cache_bytes: u64,
    /// Pulsar's `delayedDeliveryEnabled`: Shared and Key_Shared subscriptions hold messages
    /// back until their `deliver_at_time`.
    pub delayed_delivery_enabled: bool,
    /// Pulsar's `delayedDeliveryTickTimeMillis`: how often a subscription holding delayed
    /// messages looks at the clock.
    pub delayed_delivery_tick_ms: u64,
    /// Delayed entries held per subscription; reading pauses while this many are held.
    pub delayed_delivery_tracked_max: u32,
    /// A subscription's acknowledgements are written to its partition's cursor file at most
    /// once per this interval (`0`: on every acknowledgement); after a crash the last
    /// interval's acknowledgements are lost and those messages are delivered again.
    pub cursor_persist_interval_ms: u64,
    /// Topics auto-created for Pulsar clients: "non-partitioned" (Pulsar's default) or
    /// "partitioned" (`kafka.default_num_partitions` partitions).
    pub auto_topic_creation_type: String,
    /// Pulsar's `advertisedListeners`: named listeners `name:pulsar://host:port` (and/or
    /// `name:pulsar+ssl://host:port`), comma-separated. A client that names one
    /// (`listenerName`) is sent to its URLs; naming one that does not exist is refused.
    pub advertised_listeners: String,
    /// Pulsar's `internalListenerName`: one of `advertised_listeners` (empty: the first).
    /// Accepted for configuration compatibility; brokers here do not talk to each other over
    /// the Pulsar protocol.
    pub internal_listener_name: String,
}

impl Default for PulsarSection {
    fn default() -> Self {
        // The listener's own defaults, so the two cannot drift apart.
        let c = magnetar_pulsar::PulsarConfig::default();
        let u32_of = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
        Self {
            port: 6650,
            message_bytes_max: u32_of(c.message_size_max_bytes),
            keepalive_interval_s: u32::try_from(c.keepalive_interval_s).unwrap_or(u32::MAX),
            connect_timeout_ms: c.connect_timeout_ms,
            connections_max: u32_of(c.connections_max),
            producers_per_connection_max: u32_of(c.producers_per_connection_max),
            consumers_per_connection_max: u32_of(c.consumers_per_connection_max),
            outbound_frames_max: u32_of(c.outbound_frames_max),
            pending_sends_max: u32_of(c.pending_sends_max),
            unacked_messages_per_consumer_max: c.unacked_messages_per_consumer_max,
            broker_entry_metadata: c.broker_entry_metadata,
            deduplication_enabled: c.deduplication_enabled,
            deduplication_producers_max: u32_of(c.deduplication_producers_max),
            conversion_cache_bytes: c.conversion_cache_bytes as u64,
            delayed_delivery_enabled: c.delayed_delivery_enabled,
            delayed_delivery_tick_ms: c.delayed_delivery_tick_ms,
            delayed_delivery_tracked_max: u32_of(c.delayed_delivery_tracked_max),
            cursor_persist_interval_ms: magnetar_broker::LedgerConfig::default()
                .cursor_persist_interval_ms,
            auto_topic_creation_type: "non-partitioned".into(),
            advertised_listeners: String::new(),
            internal_listener_name: String::new(),
        }
    }
}

impl PulsarSection {
    /// The Pulsar listener's limits. Call after [`Config::validate`].
    pub fn listener_config(&self) -> magnetar_pulsar::PulsarConfig {
        let message = self.message_bytes_max as usize;
        magnetar_pulsar::PulsarConfig {
            frame_size_max_bytes: message + magnetar_pulsar::frame::FRAME_PADDING_BYTES,
            message_size_max_bytes: message,
            connections_max: self.connections_max as usize,
            producers_per_connection_max: self.producers_per_connection_max as usize,
            consumers_per_connection_max: self.consumers_per_connection_max as usize,
            outbound_frames_max: self.outbound_frames_max as usize,
            pending_sends_max: self.pending_sends_max as usize,
            unacked_messages_per_consumer_max: match self.unacked_messages_per_consumer_max {
                0 => u64::MAX,
                n => n,
            },
            keepalive_interval_s: self.keepalive_interval_s.into(),
            connect_timeout_ms: self.connect_timeout_ms,
            broker_entry_metadata: self.broker_entry_metadata,
            deduplication_enabled: self.deduplication_enabled,
            deduplication_producers_max: self.deduplication_producers_max as usize,
            conversion_cache_bytes: usize::try_from(self.conversion_cache_bytes)
                .unwrap_or(usize::MAX),
            delayed_delivery_enabled: self.delayed_delivery_enabled,
            delayed_delivery_tick_ms: self.delayed_delivery_tick_ms,
            delayed_delivery_tracked_max: self.delayed_delivery_tracked_max as usize,
            authenticator: None,
            broker_service_url_tls: String::new(),
            // Checked by `validate_pulsar`.
            advertised_listeners: self.named_listeners().unwrap_or_default(),
            // Set by the binary, which owns the metrics registry.
            metrics: None,
            // Set by the binary, which shares one registry between the front ends.
            schemas: None,
        }
    }
}

impl PulsarSection {
    /// `advertised_listeners` by name.
    pub fn named_listeners(
        &self,
    ) -> Result<BTreeMap<String, magnetar_broker::cluster::ListenerUrls>, ConfigError> {
        let mut out: BTreeMap<String, magnetar_broker::cluster::ListenerUrls> = BTreeMap::new();
        let bad = |item: &str, why: &str| {
            super::err(format!(
                "pulsar.advertised_listeners: \"{item}\" {why} (name:pulsar://host:port or name:pulsar+ssl://host:port, comma-separated)"
            ))
        };
        for item in self
            .advertised_listeners
            .split(',')
            .map(str::trim)
            .filter(|i| !i.is_empty())
        {
            let Some((name, url)) = item.split_once(':') else {
                return Err(bad(item, "has no listener name"));
            };
            let name = name.trim();
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                return Err(bad(item, "has an invalid listener name"));
            }
            let (tls, rest) = if let Some(rest) = url.strip_prefix("pulsar+ssl://") {
                (true, rest)
            } else if let Some(rest) = url.strip_prefix("pulsar://") {
                (false, rest)
            } else {
                return Err(bad(item, "is not a pulsar:// or pulsar+ssl:// URL"));
            };
            let port_ok = rest
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !port_ok {
                return Err(bad(item, "needs host:port"));
            }
            let entry = out.entry(name.to_string()).or_default();
            let slot = if tls {
                &mut entry.pulsar_tls
            } else {
                &mut entry.pulsar
            };
            if slot.replace(url.to_string()).is_some() {
                return Err(bad(item, "names a listener and scheme given twice"));
            }
        }
        if !self.internal_listener_name.is_empty()
            && !out.contains_key(&self.internal_listener_name)
        {
            return Err(super::err(format!(
                "pulsar.internal_listener_name = \"{}\" is not one of pulsar.advertised_listeners",
                self.internal_listener_name
            )));
        }
        Ok(out)
    }
}

impl Config {
    /// `[pulsar]` ranges (a message fits in a storage entry).
    pub(super) fn validate_pulsar(&self) -> Result<(), ConfigError> {
        self.pulsar.named_listeners()?;
        one_of(
            "pulsar.auto_topic_creation_type",
            &self.pulsar.auto_topic_creation_type,
            &["partitioned", "non-partitioned"],
        )?;
        let p = &self.pulsar;
        range(
            "pulsar.message_bytes_max",
            p.message_bytes_max.into(),
            1024,
            self.storage.entry_bytes_max.into(),
        )?;
        range(
            "pulsar.keepalive_interval_s",
            p.keepalive_interval_s.into(),
            1,
            3600,
        )?;
        range(
            "pulsar.connect_timeout_ms",
            p.connect_timeout_ms,
            100,
            3_600_000,
        )?;
        range(
            "pulsar.connections_max",
            p.connections_max.into(),
            1,
            1_000_000,
        )?;
        range(
            "pulsar.producers_per_connection_max",
            p.producers_per_connection_max.into(),
            1,
            1_000_000,
        )?;
        range(
            "pulsar.consumers_per_connection_max",
            p.consumers_per_connection_max.into(),
            1,
            1_000_000,
        )?;
        range(
            "pulsar.outbound_frames_max",
            p.outbound_frames_max.into(),
            16,
            1_000_000,
        )?;
        range(
            "pulsar.pending_sends_max",
            p.pending_sends_max.into(),
            1,
            1_000_000,
        )?;
        range(
            "pulsar.unacked_messages_per_consumer_max",
            p.unacked_messages_per_consumer_max,
            0,
            1_000_000_000,
        )?;
        range(
            "pulsar.deduplication_producers_max",
            p.deduplication_producers_max.into(),
            1,
            1_000_000,
        )?;
        range(
            "pulsar.conversion_cache_bytes",
            p.conversion_cache_bytes,
            0,
            1 << 40,
        )?;
        range(
            "pulsar.delayed_delivery_tick_ms",
            p.delayed_delivery_tick_ms,
            1,
            3_600_000,
        )?;
        range(
            "pulsar.delayed_delivery_tracked_max",
            p.delayed_delivery_tracked_max.into(),
            1,
            100_000_000,
        )?;
        range(
            "pulsar.cursor_persist_interval_ms",
            p.cursor_persist_interval_ms,
            0,
            3_600_000,
        )?;
        Ok(())
    }
}
