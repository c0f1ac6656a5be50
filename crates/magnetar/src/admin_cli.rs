//! `magnetar admin ...`: pulsar-admin's command shape over the REST API (`--admin-url`).
//! Human tables by default, `--output json` for scripts.

use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use serde_json::Value;

#[derive(Args, Debug)]
pub(crate) struct AdminArgs {
    /// Base URL of the broker's HTTP listener.
    #[arg(
        long,
        global = true,
        default_value = "http://127.0.0.1:8080",
        value_name = "URL"
    )]
    admin_url: String,
    /// A token sent as `Authorization: Bearer` (needed when the broker has authentication on).
    #[arg(
        long,
        global = true,
        env = "MAGNETAR_ADMIN_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value = "table")]
    output: Output,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Output {
    Table,
    Json,
}

#[derive(Subcommand, Debug)]
enum AdminCommand {
    /// Tenants: list, create, delete.
    #[command(subcommand)]
    Tenants(TenantsCommand),
    /// Namespaces: list, create, delete, policies, retention, message TTL.
    #[command(subcommand)]
    Namespaces(NamespacesCommand),
    /// Persistent topics: list, create, update, delete, stats.
    #[command(subcommand)]
    Topics(TopicsCommand),
    /// Kafka consumer groups: list, describe (members, offsets, lag), reset offsets, delete.
    #[command(subcommand)]
    Groups(GroupsCommand),
    /// Kafka transactions: list, describe, abort a hanging one (`kafka-transactions.sh`).
    #[command(subcommand)]
    Transactions(TransactionsCommand),
    /// SCRAM credentials of Kafka clients: list, set a password, delete.
    #[command(subcommand)]
    Scram(ScramCommand),
    /// The cluster's live brokers.
    #[command(subcommand)]
    Brokers(BrokersCommand),
    /// A topic's schema (pulsar-admin schemas): get, upload, delete.
    #[command(subcommand)]
    Schemas(SchemasCommand),
}

#[derive(Subcommand, Debug)]
enum SchemasCommand {
    /// The latest schema of a topic, or one version (Pulsar versions count from 0).
    Get {
        topic: String,
        #[arg(long)]
        version: Option<i64>,
    },
    /// Registers a schema from a file in pulsar-admin's shape:
    /// `{"type": "AVRO", "schema": "<definition>", "properties": {}}`.
    Upload {
        topic: String,
        #[arg(long, short = 'f', value_name = "FILE")]
        filename: std::path::PathBuf,
    },
    /// Deletes a topic's schema (its versions are kept as deleted; `--force` removes them).
    Delete {
        topic: String,
        #[arg(long, short = 'f')]
        force: bool,
    },
}

#[derive(Subcommand, Debug)]
enum BrokersCommand {
    /// The live brokers' HTTP addresses (`pulsar-admin brokers list`).
    List {
        /// The cluster's name [default: the broker's own, from /admin/v2/clusters].
        cluster: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
enum ScramCommand {
    /// Users with their mechanisms and iterations (never salts or keys).
    List,
    /// Sets a user's password for one mechanism (salted by the broker; not stored).
    Set {
        user: String,
        #[arg(long, default_value = "SCRAM-SHA-256")]
        mechanism: String,
        /// The password (or MAGNETAR_SCRAM_PASSWORD, which keeps it out of `ps`).
        #[arg(long, env = "MAGNETAR_SCRAM_PASSWORD", hide_env_values = true)]
        password: String,
        /// PBKDF2 iterations, 4096 to 16384.
        #[arg(long)]
        iterations: Option<u32>,
    },
    /// Deletes a user's credential for one mechanism, or all of them.
    Delete {
        user: String,
        #[arg(long)]
        mechanism: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
enum GroupsCommand {
    List,
    /// Members with their assignment, and committed offset, log end offset and lag per partition.
    Describe {
        group: String,
    },
    /// Moves the committed offsets of a group without members (Kafka's rule).
    ResetOffsets {
        group: String,
        /// Topic as the group's consumers name it.
        #[arg(long)]
        topic: String,
        /// Comma-separated partitions [default: all].
        #[arg(long, value_delimiter = ',')]
        partitions: Vec<i32>,
        #[arg(long, group = "target")]
        to_earliest: bool,
        #[arg(long, group = "target")]
        to_latest: bool,
        /// Milliseconds since the epoch: the first offset at or after it.
        #[arg(long, group = "target", value_name = "MS")]
        to_timestamp: Option<i64>,
        #[arg(long, group = "target", value_name = "OFFSET")]
        to_offset: Option<i64>,
    },
    /// Deletes a group without members and its committed offsets.
    Delete {
        group: String,
    },
}

#[derive(Subcommand, Debug)]
enum TransactionsCommand {
    /// Every transactional id with its producer id, epoch and state.
    List,
    /// One transactional id: state, partitions of the open transaction, start time.
    Describe { transactional_id: String },
    /// Aborts the id's open transaction and fences its producer (Kafka's `--abort`).
    Abort { transactional_id: String },
}

#[derive(Subcommand, Debug)]
enum TenantsCommand {
    List,
    Create {
        tenant: String,
        /// Comma-separated admin roles.
        #[arg(long, value_delimiter = ',')]
        admin_roles: Vec<String>,
    },
    Delete {
        tenant: String,
    },
}

#[derive(Subcommand, Debug)]
enum NamespacesCommand {
    List {
        tenant: String,
    },
    /// The namespace's bundles (hash range boundaries).
    Bundles {
        namespace: String,
    },
    /// Unloads a bundle (`0x00000000_0x40000000`): its topics close and are served again by
    /// the broker the bundle is assigned to.
    Unload {
        namespace: String,
        bundle: String,
    },
    Create {
        namespace: String,
    },
    Delete {
        namespace: String,
    },
    Policies {
        namespace: String,
    },
    SetRetention {
        namespace: String,
        /// Retention time in minutes; -1 is unlimited.
        #[arg(long, allow_hyphen_values = true)]
        time_minutes: i64,
        /// Retention size in MB; -1 is unlimited.
        #[arg(long, allow_hyphen_values = true)]
        size_mb: i64,
    },
    SetMessageTtl {
        namespace: String,
        /// Seconds.
        #[arg(long)]
        ttl: u64,
    },
    /// Defaults of the log compaction topic configs for the namespace's topics, as
    /// `--config key=value` (repeated); replaces the namespace's earlier defaults.
    SetTopicConfigDefaults {
        namespace: String,
        /// `cleanup.policy`, `delete.retention.ms`, `min.compaction.lag.ms`,
        /// `max.compaction.lag.ms` or `min.cleanable.dirty.ratio`, as `key=value`.
        #[arg(long = "config", short = 'c', required = true)]
        configs: Vec<String>,
    },
    GetTopicConfigDefaults {
        namespace: String,
    },
    RemoveTopicConfigDefaults {
        namespace: String,
    },
    /// Overrides the broker's auto topic creation for the namespace.
    SetAutoTopicCreation {
        namespace: String,
        /// Allow (default) or `--disable`.
        #[arg(long)]
        disable: bool,
        /// `partitioned` or `non-partitioned`.
        #[arg(long, default_value = "partitioned")]
        r#type: String,
        #[arg(long, short = 'n')]
        num_partitions: Option<u32>,
    },
    RemoveAutoTopicCreation {
        namespace: String,
    },
    /// Producers per topic partition (0 unlimited).
    SetMaxProducersPerTopic {
        namespace: String,
        #[arg(long = "max-producers-per-topic", short = 'p')]
        max: u32,
    },
    /// Consumers per topic partition (0 unlimited).
    SetMaxConsumersPerTopic {
        namespace: String,
        #[arg(long = "max-consumers-per-topic", short = 'c')]
        max: u32,
    },
    /// Publish rate per topic partition (-1 unlimited), for Kafka and Pulsar producers.
    SetPublishRate {
        namespace: String,
        #[arg(long = "msg-publish-rate", short = 'm', default_value_t = -1, allow_hyphen_values = true)]
        messages: i64,
        #[arg(long = "byte-publish-rate", short = 'b', default_value_t = -1, allow_hyphen_values = true)]
        bytes: i64,
    },
    RemovePublishRate {
        namespace: String,
    },
    /// Grants actions on every topic of the namespace to a role.
    GrantPermission {
        namespace: String,
        #[arg(long)]
        role: String,
        /// Comma-separated: produce, consume (functions, sources, sinks, packages are stored).
        #[arg(long, value_delimiter = ',', required = true)]
        actions: Vec<String>,
    },
    RevokePermission {
        namespace: String,
        #[arg(long)]
        role: String,
    },
    /// Roles and their actions on the namespace.
    Permissions {
        namespace: String,
    },
    /// Restricts a subscription (or Kafka group) of the namespace to roles.
    GrantSubscriptionPermission {
        namespace: String,
        #[arg(long)]
        subscription: String,
        #[arg(long, value_delimiter = ',', required = true)]
        roles: Vec<String>,
    },
    RevokeSubscriptionPermission {
        namespace: String,
        #[arg(long)]
        subscription: String,
        #[arg(long)]
        role: String,
    },
}

#[derive(Subcommand, Debug)]
enum TopicsCommand {
    /// Topics of a namespace (`tenant/namespace`).
    List {
        namespace: String,
    },
    CreatePartitionedTopic {
        topic: String,
        #[arg(long, short)]
        partitions: u32,
    },
    Create {
        topic: String,
    },
    UpdatePartitionedTopic {
        topic: String,
        #[arg(long, short)]
        partitions: u32,
    },
    /// Deletes a topic (partitioned or not).
    Delete {
        topic: String,
        #[arg(long)]
        force: bool,
    },
    Stats {
        topic: String,
    },
    /// The broker serving the topic (or one partition `<topic>-partition-<n>`).
    Lookup {
        topic: String,
    },
    PartitionedStats {
        topic: String,
    },
    InternalStats {
        topic: String,
    },
    /// Offloads the sealed segments before a message id (default: every sealed segment) to
    /// the object store (tiered storage); one partition or a non-partitioned topic.
    Offload {
        topic: String,
        /// `ledger:entry[:partition]`, `earliest` or `latest`.
        #[arg(long, short, default_value = "latest")]
        message_id: String,
    },
    /// The status of the last offload.
    OffloadStatus {
        topic: String,
    },
    /// Compacts the topic now (its cleanup.policy must include compact), whatever its dirty
    /// ratio: every partition it names, in the background.
    Compact {
        topic: String,
    },
    /// The status of the last compaction (NOT_RUN, RUNNING, SUCCESS or ERROR with the error).
    CompactionStatus {
        topic: String,
    },
    Subscriptions {
        topic: String,
    },
    /// Creates a subscription at the latest position, or at `--message-id`.
    CreateSubscription {
        topic: String,
        #[arg(long, short)]
        subscription: String,
        /// `ledger:entry[:partition]`, `earliest` or `latest`.
        #[arg(long, short)]
        message_id: Option<String>,
    },
    /// Deletes a subscription (refused while consumers are connected).
    Unsubscribe {
        topic: String,
        #[arg(long, short)]
        subscription: String,
    },
    /// Moves a subscription to a publish/event time or a message id.
    ResetCursor {
        topic: String,
        #[arg(long, short)]
        subscription: String,
        /// Milliseconds since the epoch.
        #[arg(long, short = 't', group = "position", value_name = "MS")]
        time: Option<i64>,
        /// `ledger:entry[:partition]`, `earliest` or `latest`.
        #[arg(long, short, group = "position")]
        message_id: Option<String>,
    },
    /// Skips N messages of a subscription.
    Skip {
        topic: String,
        #[arg(long, short)]
        subscription: String,
        #[arg(long, short = 'n')]
        count: u64,
    },
    /// Skips every message of a subscription.
    ClearBacklog {
        topic: String,
        #[arg(long, short)]
        subscription: String,
    },
}

/// `ledger:entry[:partition]`, `earliest` or `latest` as Pulsar's message id JSON.
fn message_id_json(raw: &str) -> Result<String, String> {
    let value = match raw {
        "earliest" => serde_json::json!({ "ledgerId": -1, "entryId": -1 }),
        "latest" => serde_json::json!({ "ledgerId": i64::MAX, "entryId": i64::MAX }),
        _ => {
            let parts: Vec<i64> = raw
                .split(':')
                .map(|p| p.parse::<i64>())
                .collect::<Result<_, _>>()
                .map_err(|_| format!("message id '{raw}' must be ledger:entry[:partition]"))?;
            match parts.as_slice() {
                [ledger, entry] => serde_json::json!({ "ledgerId": ledger, "entryId": entry }),
                [ledger, entry, partition] => serde_json::json!({
                    "ledgerId": ledger, "entryId": entry, "partitionIndex": partition
                }),
                _ => {
                    return Err(format!(
                        "message id '{raw}' must be ledger:entry[:partition]"
                    ))
                }
            }
        }
    };
    Ok(value.to_string())
}

/// Redirects followed by one admin call.
const REDIRECTS_MAX: usize = 3;

/// What one HTTP exchange gave.
enum Answer {
    Done(Value),
    Redirect(String),
}

struct Client {
    agent: ureq::Agent,
    base: String,
    authorization: Option<String>,
}

impl Client {
    /// One admin call; a `307 Temporary Redirect` (cluster mode: another broker owns what was
    /// asked) is followed with the same method, body and token, at most [`REDIRECTS_MAX`] times.
    fn call(&self, method: &str, path: &str, body: Option<String>) -> Result<Value, String> {
        let mut url = format!("{}{path}", self.base.trim_end_matches('/'));
        for _ in 0..REDIRECTS_MAX {
            match self.call_once(method, &url, body.clone())? {
                Answer::Redirect(location) => url = location,
                Answer::Done(value) => return Ok(value),
            }
        }
        Err(format!(
            "more than {REDIRECTS_MAX} redirects, last to {url}"
        ))
    }

    fn call_once(&self, method: &str, url: &str, body: Option<String>) -> Result<Answer, String> {
        let url = url.to_string();
        let auth = self.authorization.as_deref().unwrap_or_default();
        let with_auth = |builder: ureq::RequestBuilder<ureq::typestate::WithoutBody>| {
            if auth.is_empty() {
                builder
            } else {
                builder.header("authorization", auth)
            }
        };
        let with_auth_body = |builder: ureq::RequestBuilder<ureq::typestate::WithBody>| {
            if auth.is_empty() {
                builder
            } else {
                builder.header("authorization", auth)
            }
        };
        let response = match (method, body) {
            ("GET", _) => with_auth(self.agent.get(&url)).call(),
            ("DELETE", _) => with_auth(self.agent.delete(&url)).call(),
            ("PUT", Some(b)) => with_auth_body(self.agent.put(&url))
                .header("content-type", "application/json")
                .send(b),
            ("PUT", None) => with_auth_body(self.agent.put(&url)).send_empty(),
            (_, Some(b)) => with_auth_body(self.agent.post(&url))
                .header("content-type", "application/json")
                .send(b),
            (_, None) => with_auth_body(self.agent.post(&url)).send_empty(),
        };
        let mut response = response.map_err(|e| format!("cannot reach {url}: {e}"))?;
        let status = response.status().as_u16();
        if status == 307 {
            if let Some(location) = response
                .headers()
                .get("location")
                .and_then(|l| l.to_str().ok())
            {
                return Ok(Answer::Redirect(location.to_string()));
            }
        }
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|e| format!("reading the response: {e}"))?;
        let value: Value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if (200..300).contains(&status) {
            Ok(Answer::Done(value))
        } else {
            let reason = value
                .get("reason")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| value.to_string());
            Err(format!("{status}: {reason}"))
        }
    }
}

/// `tenant/ns/topic` or `persistent://tenant/ns/topic` -> `tenant/ns/topic`.
fn topic_path(topic: &str) -> Result<String, String> {
    let path = topic.strip_prefix("persistent://").unwrap_or(topic);
    if path.split('/').count() != 3 || path.split('/').any(str::is_empty) {
        return Err(format!(
            "topic '{topic}' must be tenant/namespace/topic or persistent://tenant/namespace/topic"
        ));
    }
    Ok(path.to_string())
}

/// A user-given name (role, subscription, group id) as one URL path segment.
fn segment(name: &str) -> String {
    percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn namespace_path(namespace: &str) -> Result<&str, String> {
    match namespace.split_once('/') {
        Some((t, n)) if !t.is_empty() && !n.is_empty() && !n.contains('/') => Ok(namespace),
        _ => Err(format!("namespace '{namespace}' must be tenant/namespace")),
    }
}

pub(crate) fn main(args: AdminArgs) -> ExitCode {
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        // Redirects are followed by `Client::call` (with the method, body and token).
        .max_redirects(0)
        .build();
    let client = Client {
        agent: config.into(),
        base: args.admin_url.clone(),
        authorization: args.token.as_ref().map(|t| format!("Bearer {}", t.trim())),
    };
    match run(&client, args.command) {
        Ok(value) => {
            print(&value, args.output);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("magnetar admin: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(c: &Client, command: AdminCommand) -> Result<Value, String> {
    match command {
        AdminCommand::Tenants(t) => match t {
            TenantsCommand::List => c.call("GET", "/admin/v2/tenants", None),
            TenantsCommand::Create {
                tenant,
                admin_roles,
            } => {
                let body = serde_json::json!({ "adminRoles": admin_roles }).to_string();
                c.call("PUT", &format!("/admin/v2/tenants/{tenant}"), Some(body))
            }
            TenantsCommand::Delete { tenant } => {
                c.call("DELETE", &format!("/admin/v2/tenants/{tenant}"), None)
            }
        },
        AdminCommand::Namespaces(n) => match n {
            NamespacesCommand::Bundles { namespace } => c.call(
                "GET",
                &format!(
                    "/admin/v2/namespaces/{}/bundles",
                    namespace_path(&namespace)?
                ),
                None,
            ),
            NamespacesCommand::Unload { namespace, bundle } => c.call(
                "PUT",
                &format!(
                    "/admin/v2/namespaces/{}/{}/unload",
                    namespace_path(&namespace)?,
                    segment(&bundle)
                ),
                None,
            ),
            NamespacesCommand::List { tenant } => {
                c.call("GET", &format!("/admin/v2/namespaces/{tenant}"), None)
            }
            NamespacesCommand::Create { namespace } => c.call(
                "PUT",
                &format!("/admin/v2/namespaces/{}", namespace_path(&namespace)?),
                None,
            ),
            NamespacesCommand::Delete { namespace } => c.call(
                "DELETE",
                &format!("/admin/v2/namespaces/{}", namespace_path(&namespace)?),
                None,
            ),
            NamespacesCommand::Policies { namespace } => c.call(
                "GET",
                &format!("/admin/v2/namespaces/{}", namespace_path(&namespace)?),
                None,
            ),
            NamespacesCommand::SetRetention {
                namespace,
                time_minutes,
                size_mb,
            } => {
                let body = serde_json::json!({ "retentionTimeInMinutes": time_minutes, "retentionSizeInMB": size_mb });
                let path = format!(
                    "/admin/v2/namespaces/{}/retention",
                    namespace_path(&namespace)?
                );
                c.call("POST", &path, Some(body.to_string()))
            }
            NamespacesCommand::SetTopicConfigDefaults { namespace, configs } => {
                let mut body = serde_json::Map::new();
                for kv in configs {
                    let Some((k, v)) = kv.split_once('=') else {
                        return Err(format!("--config {kv:?}: expected key=value"));
                    };
                    body.insert(
                        k.trim().to_string(),
                        serde_json::Value::String(v.to_string()),
                    );
                }
                let path = format!(
                    "/admin/v2/namespaces/{}/topicConfigDefaults",
                    namespace_path(&namespace)?
                );
                c.call(
                    "POST",
                    &path,
                    Some(serde_json::Value::Object(body).to_string()),
                )
            }
            NamespacesCommand::GetTopicConfigDefaults { namespace } => c.call(
                "GET",
                &format!(
                    "/admin/v2/namespaces/{}/topicConfigDefaults",
                    namespace_path(&namespace)?
                ),
                None,
            ),
            NamespacesCommand::RemoveTopicConfigDefaults { namespace } => c.call(
                "DELETE",
                &format!(
                    "/admin/v2/namespaces/{}/topicConfigDefaults",
                    namespace_path(&namespace)?
                ),
                None,
            ),
            NamespacesCommand::SetMessageTtl { namespace, ttl } => {
                let path = format!(
                    "/admin/v2/namespaces/{}/messageTTL",
                    namespace_path(&namespace)?
                );
                c.call("POST", &path, Some(ttl.to_string()))
            }
            NamespacesCommand::SetAutoTopicCreation {
                namespace,
                disable,
                r#type,
                num_partitions,
            } => {
                let mut body = serde_json::json!({
                    "allowAutoTopicCreation": !disable,
                    "topicType": r#type,
                });
                if let Some(n) = num_partitions {
                    body["defaultNumPartitions"] = n.into();
                }
                let path = format!(
                    "/admin/v2/namespaces/{}/autoTopicCreation",
                    namespace_path(&namespace)?
                );
                c.call("POST", &path, Some(body.to_string()))
            }
            NamespacesCommand::RemoveAutoTopicCreation { namespace } => c.call(
                "DELETE",
                &format!(
                    "/admin/v2/namespaces/{}/autoTopicCreation",
                    namespace_path(&namespace)?
                ),
                None,
            ),
            NamespacesCommand::SetMaxProducersPerTopic { namespace, max } => c.call(
                "POST",
                &format!(
                    "/admin/v2/namespaces/{}/maxProducersPerTopic",
                    namespace_path(&namespace)?
                ),
                Some(max.to_string()),
            ),
            NamespacesCommand::SetMaxConsumersPerTopic { namespace, max } => c.call(
                "POST",
                &format!(
                    "/admin/v2/namespaces/{}/maxConsumersPerTopic",
                    namespace_path(&namespace)?
                ),
                Some(max.to_string()),
            ),
            NamespacesCommand::SetPublishRate {
                namespace,
                messages,
                bytes,
            } => {
                let body = serde_json::json!({
                    "publishThrottlingRateInMsg": messages,
                    "publishThrottlingRateInByte": bytes,
                });
                let path = format!(
                    "/admin/v2/namespaces/{}/publishRate",
                    namespace_path(&namespace)?
                );
                c.call("POST", &path, Some(body.to_string()))
            }
            NamespacesCommand::RemovePublishRate { namespace } => c.call(
                "DELETE",
                &format!(
                    "/admin/v2/namespaces/{}/publishRate",
                    namespace_path(&namespace)?
                ),
                None,
            ),
            NamespacesCommand::GrantPermission {
                namespace,
                role,
                actions,
            } => {
                let path = format!(
                    "/admin/v2/namespaces/{}/permissions/{}",
                    namespace_path(&namespace)?,
                    segment(&role)
                );
                c.call("POST", &path, Some(Value::from(actions).to_string()))
            }
            NamespacesCommand::RevokePermission { namespace, role } => {
                let path = format!(
                    "/admin/v2/namespaces/{}/permissions/{}",
                    namespace_path(&namespace)?,
                    segment(&role)
                );
                c.call("DELETE", &path, None)
            }
            NamespacesCommand::Permissions { namespace } => {
                let path = format!(
                    "/admin/v2/namespaces/{}/permissions",
                    namespace_path(&namespace)?
                );
                c.call("GET", &path, None)
            }
            NamespacesCommand::GrantSubscriptionPermission {
                namespace,
                subscription,
                roles,
            } => {
                let path = format!(
                    "/admin/v2/namespaces/{}/permissions/subscription/{}",
                    namespace_path(&namespace)?,
                    segment(&subscription)
                );
                c.call("POST", &path, Some(Value::from(roles).to_string()))
            }
            NamespacesCommand::RevokeSubscriptionPermission {
                namespace,
                subscription,
                role,
            } => {
                let path = format!(
                    "/admin/v2/namespaces/{}/permissions/{}/{}",
                    namespace_path(&namespace)?,
                    segment(&subscription),
                    segment(&role)
                );
                c.call("DELETE", &path, None)
            }
        },
        AdminCommand::Topics(t) => match t {
            TopicsCommand::List { namespace } => c.call(
                "GET",
                &format!("/admin/v2/persistent/{}", namespace_path(&namespace)?),
                None,
            ),
            TopicsCommand::CreatePartitionedTopic { topic, partitions } => {
                let path = format!("/admin/v2/persistent/{}/partitions", topic_path(&topic)?);
                c.call("PUT", &path, Some(partitions.to_string()))
            }
            TopicsCommand::Create { topic } => c.call(
                "PUT",
                &format!("/admin/v2/persistent/{}", topic_path(&topic)?),
                None,
            ),
            TopicsCommand::UpdatePartitionedTopic { topic, partitions } => {
                let path = format!("/admin/v2/persistent/{}/partitions", topic_path(&topic)?);
                c.call("POST", &path, Some(partitions.to_string()))
            }
            TopicsCommand::Delete { topic, force } => {
                let path = topic_path(&topic)?;
                let meta = c.call(
                    "GET",
                    &format!("/admin/v2/persistent/{path}/partitions"),
                    None,
                )?;
                let partitioned = meta.get("partitions").and_then(Value::as_u64).unwrap_or(0) > 0;
                let suffix = if partitioned { "/partitions" } else { "" };
                c.call(
                    "DELETE",
                    &format!("/admin/v2/persistent/{path}{suffix}?force={force}"),
                    None,
                )
            }
            TopicsCommand::Stats { topic } => c.call(
                "GET",
                &format!("/admin/v2/persistent/{}/stats", topic_path(&topic)?),
                None,
            ),
            TopicsCommand::Lookup { topic } => c.call(
                "GET",
                &format!("/lookup/v2/topic/persistent/{}", topic_path(&topic)?),
                None,
            ),
            TopicsCommand::PartitionedStats { topic } => c.call(
                "GET",
                &format!(
                    "/admin/v2/persistent/{}/partitioned-stats",
                    topic_path(&topic)?
                ),
                None,
            ),
            TopicsCommand::InternalStats { topic } => c.call(
                "GET",
                &format!(
                    "/admin/v2/persistent/{}/internal-stats",
                    topic_path(&topic)?
                ),
                None,
            ),
            TopicsCommand::Offload { topic, message_id } => c.call(
                "PUT",
                &format!("/admin/v2/persistent/{}/offload", topic_path(&topic)?),
                Some(message_id_json(&message_id)?),
            ),
            TopicsCommand::OffloadStatus { topic } => c.call(
                "GET",
                &format!("/admin/v2/persistent/{}/offload", topic_path(&topic)?),
                None,
            ),
            TopicsCommand::Compact { topic } => c.call(
                "PUT",
                &format!("/admin/v2/persistent/{}/compaction", topic_path(&topic)?),
                None,
            ),
            TopicsCommand::CompactionStatus { topic } => c.call(
                "GET",
                &format!("/admin/v2/persistent/{}/compaction", topic_path(&topic)?),
                None,
            ),
            TopicsCommand::Subscriptions { topic } => c.call(
                "GET",
                &format!("/admin/v2/persistent/{}/subscriptions", topic_path(&topic)?),
                None,
            ),
            other => run_subscriptions(c, other),
        },
        AdminCommand::Groups(g) => run_groups(c, g),
        AdminCommand::Transactions(t) => run_transactions(c, t),
        AdminCommand::Schemas(command) => run_schemas(c, command),
        AdminCommand::Scram(command) => run_scram(c, command),
        AdminCommand::Brokers(BrokersCommand::List { cluster }) => {
            let cluster = match cluster {
                Some(name) => name,
                None => c
                    .call("GET", "/admin/v2/clusters", None)?
                    .get(0)
                    .and_then(Value::as_str)
                    .ok_or("the broker names no cluster")?
                    .to_string(),
            };
            c.call(
                "GET",
                &format!("/admin/v2/brokers/{}", segment(&cluster)),
                None,
            )
        }
    }
}

fn run_schemas(c: &Client, command: SchemasCommand) -> Result<Value, String> {
    match command {
        SchemasCommand::Get { topic, version } => {
            let base = format!("/admin/v2/schemas/{}/schema", topic_path(&topic)?);
            let path = match version {
                Some(v) => format!("{base}/{v}"),
                None => base,
            };
            c.call("GET", &path, None)
        }
        SchemasCommand::Upload { topic, filename } => {
            let text = std::fs::read_to_string(&filename)
                .map_err(|e| format!("cannot read {}: {e}", filename.display()))?;
            let path = format!("/admin/v2/schemas/{}/schema", topic_path(&topic)?);
            c.call("POST", &path, Some(text))
        }
        SchemasCommand::Delete { topic, force } => {
            let path = format!(
                "/admin/v2/schemas/{}/schema?force={force}",
                topic_path(&topic)?
            );
            c.call("DELETE", &path, None)
        }
    }
}

fn run_scram(c: &Client, command: ScramCommand) -> Result<Value, String> {
    const USERS: &str = "/admin/v2/kafka/scram-users";
    match command {
        ScramCommand::List => c.call("GET", USERS, None),
        ScramCommand::Set {
            user,
            mechanism,
            password,
            iterations,
        } => {
            let mut body = serde_json::json!({ "mechanism": mechanism, "password": password });
            if let Some(n) = iterations {
                body["iterations"] = n.into();
            }
            c.call(
                "PUT",
                &format!("{USERS}/{}", segment(&user)),
                Some(body.to_string()),
            )
        }
        ScramCommand::Delete { user, mechanism } => {
            let query = mechanism
                .map(|m| format!("?mechanism={}", segment(&m)))
                .unwrap_or_default();
            c.call(
                "DELETE",
                &format!("{USERS}/{}{query}", segment(&user)),
                None,
            )
        }
    }
}

fn run_subscriptions(c: &Client, command: TopicsCommand) -> Result<Value, String> {
    let at = |topic: &str, sub: &str, rest: &str| -> Result<String, String> {
        Ok(format!(
            "/admin/v2/persistent/{}/subscription/{}{rest}",
            topic_path(topic)?,
            segment(sub)
        ))
    };
    match command {
        TopicsCommand::CreateSubscription {
            topic,
            subscription,
            message_id,
        } => {
            let body = message_id.as_deref().map(message_id_json).transpose()?;
            c.call("PUT", &at(&topic, &subscription, "")?, body)
        }
        TopicsCommand::Unsubscribe {
            topic,
            subscription,
        } => c.call("DELETE", &at(&topic, &subscription, "")?, None),
        TopicsCommand::ResetCursor {
            topic,
            subscription,
            time,
            message_id,
        } => match (time, message_id) {
            (Some(ms), _) => c.call(
                "POST",
                &at(&topic, &subscription, &format!("/resetcursor/{ms}"))?,
                None,
            ),
            (None, Some(id)) => c.call(
                "POST",
                &at(&topic, &subscription, "/resetcursor")?,
                Some(message_id_json(&id)?),
            ),
            (None, None) => Err("one of --time or --message-id is needed".into()),
        },
        TopicsCommand::Skip {
            topic,
            subscription,
            count,
        } => c.call(
            "POST",
            &at(&topic, &subscription, &format!("/skip/{count}"))?,
            None,
        ),
        TopicsCommand::ClearBacklog {
            topic,
            subscription,
        } => c.call("POST", &at(&topic, &subscription, "/skip_all")?, None),
        other => Err(format!("not a subscription command: {other:?}")),
    }
}

fn run_transactions(c: &Client, command: TransactionsCommand) -> Result<Value, String> {
    const TRANSACTIONS: &str = "/admin/v2/kafka/transactions";
    match command {
        TransactionsCommand::List => c.call("GET", TRANSACTIONS, None),
        TransactionsCommand::Describe { transactional_id } => c.call(
            "GET",
            &format!("{TRANSACTIONS}/{}", segment(&transactional_id)),
            None,
        ),
        TransactionsCommand::Abort { transactional_id } => c.call(
            "POST",
            &format!("{TRANSACTIONS}/{}/abort", segment(&transactional_id)),
            None,
        ),
    }
}

fn run_groups(c: &Client, command: GroupsCommand) -> Result<Value, String> {
    const GROUPS: &str = "/admin/v2/kafka/groups";
    match command {
        GroupsCommand::List => c.call("GET", GROUPS, None),
        GroupsCommand::Describe { group } => {
            c.call("GET", &format!("{GROUPS}/{}", segment(&group)), None)
        }
        GroupsCommand::Delete { group } => {
            c.call("DELETE", &format!("{GROUPS}/{}", segment(&group)), None)
        }
        GroupsCommand::ResetOffsets {
            group,
            topic,
            partitions,
            to_earliest,
            to_latest,
            to_timestamp,
            to_offset,
        } => {
            let mut body = serde_json::json!({ "topic": topic });
            body["to"] =
                match (to_earliest, to_latest, to_timestamp, to_offset) {
                    (true, _, _, _) => "earliest".into(),
                    (_, true, _, _) => "latest".into(),
                    (_, _, Some(ms), _) => {
                        body["timestamp"] = ms.into();
                        "timestamp".into()
                    }
                    (_, _, _, Some(offset)) => {
                        body["offset"] = offset.into();
                        "offset".into()
                    }
                    _ => return Err(
                        "one of --to-earliest, --to-latest, --to-timestamp, --to-offset is needed"
                            .into(),
                    ),
                };
            if !partitions.is_empty() {
                body["partitions"] = partitions.into();
            }
            c.call(
                "POST",
                &format!("{GROUPS}/{}/offsets", segment(&group)),
                Some(body.to_string()),
            )
        }
    }
}

/// Tables for people: a list of strings prints one a line, a list of objects a table with a
/// header; an object prints `key  value` rows for its scalar fields, then a table per field that
/// is a list of objects; nothing prints for an empty success.
fn print(value: &Value, output: Output) {
    if output == Output::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        );
        return;
    }
    print!("{}", render(value));
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn is_table(items: &[Value]) -> bool {
    !items.is_empty() && items.iter().all(Value::is_object)
}

fn render_table(items: &[Value]) -> String {
    let mut columns: Vec<String> = Vec::new();
    for item in items {
        for key in item.as_object().into_iter().flat_map(|m| m.keys()) {
            if !columns.contains(key) {
                columns.push(key.clone());
            }
        }
    }
    // The server's objects arrive with sorted keys; put the identifying columns first, in the
    // order kafka-consumer-groups prints them.
    const FIRST: &[&str] = &[
        "groupId",
        "topic",
        "partition",
        "memberId",
        "groupInstanceId",
        "clientId",
        "clientHost",
        "state",
        "committedOffset",
        "offset",
        "logEndOffset",
        "lag",
    ];
    columns.sort_by_key(|c| FIRST.iter().position(|f| f == c).unwrap_or(FIRST.len()));
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|item| columns.iter().map(|c| cell(&item[c.as_str()])).collect())
        .collect();
    let headers: Vec<String> = columns.iter().map(|c| header(c)).collect();
    let widths: Vec<usize> = (0..columns.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].len())
                .chain([headers[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in std::iter::once(&headers).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// `committedOffset` -> `COMMITTED-OFFSET`.
fn header(key: &str) -> String {
    let mut out = String::new();
    for (i, ch) in key.chars().enumerate() {
        if ch.is_uppercase() && i > 0 {
            out.push('-');
        }
        out.extend(ch.to_uppercase());
    }
    out
}

fn render(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Null => {}
        Value::Array(items) if is_table(items) => out.push_str(&render_table(items)),
        Value::Array(items) => {
            for item in items {
                out.push_str(&cell(item));
                out.push('\n');
            }
        }
        Value::Object(map) => {
            let tables: Vec<(&String, &Vec<Value>)> = map
                .iter()
                .filter_map(|(k, v)| v.as_array().filter(|a| is_table(a)).map(|a| (k, a)))
                .collect();
            let width = map.keys().map(String::len).max().unwrap_or(0);
            for (key, v) in map {
                if tables.iter().any(|(k, _)| *k == key) {
                    continue;
                }
                let shown = cell(v);
                out.push_str(format!("{key:width$}  {shown}").trim_end());
                out.push('\n');
            }
            for (key, items) in tables {
                out.push_str(&format!("\n{key}:\n"));
                out.push_str(&render_table(items));
            }
        }
        other => {
            out.push_str(&other.to_string());
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_lists_of_objects_as_tables() {
        let v = json!([
            {"groupId": "billing", "state": "Empty", "protocolType": ""},
            {"groupId": "shipping-app", "state": "Stable", "protocolType": "consumer"},
        ]);
        assert_eq!(
            render(&v),
            "GROUP-ID      STATE   PROTOCOL-TYPE\n\
             billing       Empty\n\
             shipping-app  Stable  consumer\n"
        );
        let v = json!({"groupId": "g", "members": [], "offsets": [{"topic": "t", "lag": null}]});
        assert_eq!(
            render(&v),
            "groupId  g\nmembers  []\n\noffsets:\nTOPIC  LAG\nt      -\n"
        );
        assert_eq!(render(&json!(["a", "b"])), "a\nb\n");
        assert_eq!(segment("a b/c%"), "a%20b%2Fc%25");
    }
}
