//! `magnetar admin ...`: pulsar-admin's command shape over the REST API (`--admin-url`).
//! Human tables by default, `--output json` for scripts.

use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use serde_json::Value;

#[derive(Args, Debug)]
pub struct AdminArgs {
    /// Base URL of the broker's HTTP listener.
    #[arg(
        long,
        global = true,
        default_value = "http://127.0.0.1:8080",
        value_name = "URL"
    )]
    admin_url: String,
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
    PartitionedStats {
        topic: String,
    },
    InternalStats {
        topic: String,
    },
    Subscriptions {
        topic: String,
    },
}

struct Client {
    agent: ureq::Agent,
    base: String,
}

impl Client {
    fn call(&self, method: &str, path: &str, body: Option<String>) -> Result<Value, String> {
        let url = format!("{}{path}", self.base.trim_end_matches('/'));
        let response = match (method, body) {
            ("GET", _) => self.agent.get(&url).call(),
            ("DELETE", _) => self.agent.delete(&url).call(),
            ("PUT", Some(b)) => self
                .agent
                .put(&url)
                .header("content-type", "application/json")
                .send(b),
            ("PUT", None) => self.agent.put(&url).send_empty(),
            (_, Some(b)) => self
                .agent
                .post(&url)
                .header("content-type", "application/json")
                .send(b),
            (_, None) => self.agent.post(&url).send_empty(),
        };
        let mut response = response.map_err(|e| format!("cannot reach {url}: {e}"))?;
        let status = response.status().as_u16();
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
            Ok(value)
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

fn namespace_path(namespace: &str) -> Result<&str, String> {
    match namespace.split_once('/') {
        Some((t, n)) if !t.is_empty() && !n.is_empty() && !n.contains('/') => Ok(namespace),
        _ => Err(format!("namespace '{namespace}' must be tenant/namespace")),
    }
}

pub fn main(args: AdminArgs) -> ExitCode {
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build();
    let client = Client {
        agent: config.into(),
        base: args.admin_url.clone(),
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
            NamespacesCommand::SetMessageTtl { namespace, ttl } => {
                let path = format!(
                    "/admin/v2/namespaces/{}/messageTTL",
                    namespace_path(&namespace)?
                );
                c.call("POST", &path, Some(ttl.to_string()))
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
            TopicsCommand::Subscriptions { topic } => c.call(
                "GET",
                &format!("/admin/v2/persistent/{}/subscriptions", topic_path(&topic)?),
                None,
            ),
        },
    }
}

/// Tables for people: a list prints one item a line; an object prints `key  value` rows
/// (nested values as compact JSON); nothing prints for an empty success.
fn print(value: &Value, output: Output) {
    if output == Output::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        );
        return;
    }
    match value {
        Value::Null => {}
        Value::Array(items) => {
            for item in items {
                println!(
                    "{}",
                    item.as_str()
                        .map_or_else(|| item.to_string(), str::to_string)
                );
            }
        }
        Value::Object(map) => {
            let width = map.keys().map(String::len).max().unwrap_or(0);
            for (key, v) in map {
                let shown = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                println!("{key:width$}  {shown}");
            }
        }
        other => println!("{other}"),
    }
}
