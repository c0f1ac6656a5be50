//! Permissions in pulsar-admin's paths and shapes: grants of actions (`produce`, `consume`, ...)
//! to roles on a namespace or a topic, and the roles allowed on a subscription (a Kafka group is a
//! subscription of the namespace). Bodies: a JSON array of actions, or of roles.
//! The decisions themselves are `magnetar_broker::permissions`.
//!
//! Listings also show the deny rules (made with Kafka's `DENY` ACLs), under keys marked
//! `deny:` so Pulsar tooling still reads a map of role -> strings: `"deny:<role>": ["produce",
//! "consume", "lookup" | "all"]` beside the grants, and `"deny:<subscription>": ["<role>"]` in the
//! subscription listing. Roles may not start with `deny:`.
//!
//! Kafka ACL rules the grant maps cannot hold (prefixed patterns, one host) are listed too:
//! a rule of one host under `<role>@<host>`; a topic listing shows the rules that apply to the
//! topic (prefixes of its name included); the namespace listing shows the rules on every topic
//! (`<role>[@<host>]`) and on a prefix (`<role>[@<host>] on <prefix>*`); the subscription listing
//! shows group rules under the group or `<prefix>*`, deny rules under `deny:` as above.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use magnetar_broker::permissions::DENY_PREFIX;
use magnetar_broker::{AuthAction, Denies, Grants, NamespaceName, TopicName};

use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, Path};
use crate::AppState;

/// Role (or `deny:<role>`) -> action names, in Pulsar's order (`produce` before `consume`).
type GrantsJson = BTreeMap<String, Vec<&'static str>>;

/// Grants and deny rules in one listing, the deny rules under `deny:<role>`.
fn listing(grants: Grants, denies: Denies) -> GrantsJson {
    let mut out: GrantsJson = grants
        .into_iter()
        .map(|(role, actions)| (role, actions.iter().map(|a| a.as_str()).collect()))
        .collect();
    for (role, actions) in denies {
        out.insert(
            format!("{DENY_PREFIX}{role}"),
            actions.iter().map(|a| a.as_str()).collect(),
        );
    }
    out
}

fn namespace(tenant: &str, ns: &str) -> ApiResult<NamespaceName> {
    Ok(NamespaceName::new(tenant, ns)?)
}

/// Grants are per topic; a partition's name (`t-partition-N`) addresses its topic's grants.
fn topic(tenant: &str, ns: &str, topic: &str) -> ApiResult<TopicName> {
    Ok(crate::topics::topic_or_partition(tenant, ns, topic)?.0)
}

fn actions(body: Vec<String>) -> ApiResult<BTreeSet<AuthAction>> {
    if body.is_empty() {
        return Err(ApiError::bad_request(
            "give at least one action (produce, consume, functions, sources, sinks, packages)",
        ));
    }
    body.iter()
        .map(|a| AuthAction::parse(a).map_err(ApiError::from))
        .collect()
}

pub(crate) async fn namespace_permissions(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns)): Path<(String, String)>,
) -> ApiResult<Json<GrantsJson>> {
    let ns = namespace(&tenant, &ns)?;
    let auth = state.broker.auth_policies(&ns).await?;
    let (rule_grants, rule_denies) = auth.namespace_rules();
    let mut out = listing(auth.namespace_auth, auth.namespace_deny);
    out.extend(listing(rule_grants, rule_denies));
    Ok(Json(out))
}

pub(crate) async fn grant_namespace(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns, role)): Path<(String, String, String)>,
    JsonBody(body): JsonBody<Vec<String>>,
) -> ApiResult<StatusCode> {
    let ns = namespace(&tenant, &ns)?;
    state
        .broker
        .grant_namespace_permission(&ns, &role, actions(body)?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn revoke_namespace(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns, role)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    let ns = namespace(&tenant, &ns)?;
    state.broker.revoke_namespace_permission(&ns, &role).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn subscription_permissions(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns)): Path<(String, String)>,
) -> ApiResult<Json<BTreeMap<String, BTreeSet<String>>>> {
    let ns = namespace(&tenant, &ns)?;
    let auth = state.broker.auth_policies(&ns).await?;
    let (rule_allowed, rule_denied) = auth.subscription_rules();
    let mut out = auth.subscription_auth_roles;
    for (subscription, roles) in rule_allowed {
        out.entry(subscription).or_default().extend(roles);
    }
    let mut denied = auth.subscription_deny_roles;
    for (subscription, roles) in rule_denied {
        denied.entry(subscription).or_default().extend(roles);
    }
    for (subscription, roles) in denied {
        out.insert(format!("{DENY_PREFIX}{subscription}"), roles);
    }
    Ok(Json(out))
}

pub(crate) async fn grant_subscription(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns, subscription)): Path<(String, String, String)>,
    JsonBody(roles): JsonBody<BTreeSet<String>>,
) -> ApiResult<StatusCode> {
    let ns = namespace(&tenant, &ns)?;
    state
        .broker
        .grant_subscription_permission(&ns, &subscription, &roles)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn revoke_subscription(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns, subscription, role)): Path<(String, String, String, String)>,
) -> ApiResult<StatusCode> {
    let ns = namespace(&tenant, &ns)?;
    state
        .broker
        .revoke_subscription_permission(&ns, &subscription, &role)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn topic_permissions(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns, name)): Path<(String, String, String)>,
) -> ApiResult<Json<GrantsJson>> {
    let t = topic(&tenant, &ns, &name)?;
    let auth = state.broker.auth_policies(&t.namespace).await?;
    Ok(Json(listing(auth.topic_grants(&t), auth.topic_denies(&t))))
}

pub(crate) async fn grant_topic(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns, name, role)): Path<(String, String, String, String)>,
    JsonBody(body): JsonBody<Vec<String>>,
) -> ApiResult<StatusCode> {
    let t = topic(&tenant, &ns, &name)?;
    state
        .broker
        .grant_topic_permission(&t, &role, actions(body)?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn revoke_topic(
    State(state): State<Arc<AppState>>,
    Path((tenant, ns, name, role)): Path<(String, String, String, String)>,
) -> ApiResult<StatusCode> {
    let t = topic(&tenant, &ns, &name)?;
    state.broker.revoke_topic_permission(&t, &role).await?;
    Ok(StatusCode::NO_CONTENT)
}
