//! CONNECT -> CONNECTED: protocol version negotiation and feature flags.

use crate::connection::{Connection, Handled, Reply};
use crate::proto::base_command::Type;
use crate::proto::{BaseCommand, CommandConnected, FeatureFlags, ProtocolVersion};

/// The newest protocol version this broker speaks.
pub(super) const PROTOCOL_VERSION_MAX: i32 = ProtocolVersion::V21 as i32;
/// Clients older than v6 send no checksums and no batches; they are refused.
pub(super) const PROTOCOL_VERSION_MIN: i32 = ProtocolVersion::V6 as i32;

impl Connection {
    pub(crate) fn on_connect(&mut self, command: BaseCommand) -> Handled {
        let Some(connect) = command.connect else {
            return Ok(Reply::Close("CONNECT without its body".into()));
        };
        if self.connected {
            return Ok(Reply::Close("second CONNECT on one connection".into()));
        }
        let client_version = connect.protocol_version();
        if client_version < PROTOCOL_VERSION_MIN {
            return Ok(Reply::Close(format!(
                "client protocol version {client_version} is older than the minimum {PROTOCOL_VERSION_MIN}"
            )));
        }
        self.authenticate_connect(&connect)?;
        self.protocol_version = client_version.min(PROTOCOL_VERSION_MAX);
        self.broker_entry_metadata = self.service.config.broker_entry_metadata
            && connect
                .feature_flags
                .as_ref()
                .is_some_and(|f| f.supports_broker_entry_metadata());
        self.connected = true;
        tracing::debug!(peer = %self.peer, client = %connect.client_version, version = self.protocol_version, "pulsar client connected");
        Ok(Reply::frame(&BaseCommand {
            r#type: Type::Connected as i32,
            connected: Some(CommandConnected {
                server_version: format!("magnetar-{}", env!("CARGO_PKG_VERSION")),
                protocol_version: Some(self.protocol_version),
                max_message_size: Some(self.service.config.message_size_max_bytes as i32),
                feature_flags: Some(FeatureFlags {
                    supports_broker_entry_metadata: Some(self.broker_entry_metadata),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }))
    }
}
