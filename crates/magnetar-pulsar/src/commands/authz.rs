//! Authorization on the Pulsar protocol, as Pulsar's broker decides it: PRODUCER needs `produce`
//! on the topic, SUBSCRIBE `consume` with that subscription (its subscription permission),
//! LOOKUP and PARTITIONED_METADATA lookup (`produce` or `consume`), and GET_TOPICS_OF_NAMESPACE
//! lists only the topics the role may look up. The decision is `magnetar_broker`'s; this
//! connection caches it (`magnetar_broker::permissions::AccessCache`) until a permission changes. Producers and consumers
//! already open are not closed when a permission is revoked (as in Pulsar).

use magnetar_broker::{Access, TopicName};

use crate::connection::Connection;
use crate::error::{Answer, CommandFailure};
use crate::proto::ServerError;
use crate::service::split_partition;

/// The message of a refusal.
fn refusal(role: Option<&str>, access: &Access, topic: &str) -> String {
    let what = match access {
        Access::Produce => "produce to",
        Access::Consume { .. } => "consume from",
        Access::Lookup => "look up",
        Access::Admin => "administer",
    };
    let subscription = match access {
        Access::Consume {
            subscription: Some(s),
        } => format!(" with subscription '{s}'"),
        _ => String::new(),
    };
    format!(
        "Client with role '{}' is not authorized to {what} topic '{topic}'{subscription}",
        role.unwrap_or("<none>")
    )
}

impl Connection {
    /// May this connection's role do `access` on the topic named `name` (a partition's name
    /// stands for its topic)? `log` a refusal when it is decided (not when answered from the
    /// cache). A name that does not parse is allowed here: the command then fails on it with its
    /// own error.
    pub(crate) async fn may(&mut self, name: &str, access: &Access, log: bool) -> bool {
        let broker = self.service.broker.clone();
        if !broker.authorization_enabled() {
            return true;
        }
        let (base, _) = split_partition(name);
        let Ok(topic) = broker.parse_topic(base) else {
            return true;
        };
        self.may_topic(&topic, access, log).await
    }

    pub(crate) async fn may_topic(
        &mut self,
        topic: &TopicName,
        access: &Access,
        log: bool,
    ) -> bool {
        let broker = self.service.broker.clone();
        let role = self.auth.role.clone();
        // Boxed: the decision reads policies from the store, and its state inline would grow
        // every command's future (the connection's reader loop holds the largest of them).
        match Box::pin(self.access.decide(&broker, role.as_deref(), topic, access)).await {
            Ok(decision) => {
                if log && !decision.allowed && !decision.cached {
                    tracing::warn!(
                        peer = %self.peer,
                        role = role.as_deref().unwrap_or("<none>"),
                        topic = %topic,
                        access = ?access,
                        "pulsar request refused: not authorized"
                    );
                }
                decision.allowed
            }
            Err(e) => {
                tracing::warn!(topic = %topic, error = %e, "pulsar authorization failed: refusing");
                false
            }
        }
    }

    /// `Err` (AuthorizationError, answered as `answer` says) when the role may not do `access`
    /// on `name`.
    pub(crate) async fn authorize(
        &mut self,
        answer: Answer,
        name: &str,
        access: &Access,
    ) -> Result<(), CommandFailure> {
        if self.may(name, access, true).await {
            return Ok(());
        }
        let message = refusal(self.auth.role.as_deref(), access, name);
        Err(CommandFailure::new(
            answer,
            ServerError::AuthorizationError,
            message,
        ))
    }
}
