//! DescribeAcls, CreateAcls, DeleteAcls v1–v3: Kafka's ACL APIs read and write Pulsar's
//! permissions (the same ones the admin REST API and `magnetar admin namespaces
//! grant-permission` manage), so `kafka-acls`, AdminClient `create_acls` and Pulsar tooling see
//! one set of rules.
//!
//! Mapping (everything in the client's namespace unless a topic is named by its full name):
//! - `TOPIC` `LITERAL` `<topic>` — the topic's grants: `WRITE` is `produce`, `READ` is
//!   `consume`, `ALL` both;
//! - `TOPIC` `LITERAL` `*` — the namespace's grants (every topic of the namespace);
//! - `GROUP` `LITERAL` `<group>` `READ` — the roles allowed to use the group (Pulsar's
//!   subscription permission);
//! - principal `User:<role>`, host `*`; `User:*` only in a `DENY` (every role but superusers:
//!   Pulsar grants name roles, so an `ALLOW` for everyone has no place to go).
//!
//! `DENY` bindings are the model's deny rules, kept beside the grants (deny overrides allow,
//! superusers bypass): `TOPIC` `READ`, `WRITE`, `DESCRIBE` or `ALL` on a topic or on `*` refuses
//! `consume`, `produce`, lookup or everything; `GROUP` `READ` (or `ALL`) refuses the group.
//!
//! What the model cannot hold is refused with INVALID_REQUEST and a message: hosts other than
//! `*`, `PREFIXED` patterns, other operations (an allowed `DESCRIBE` follows from `READ`/`WRITE`,
//! `CREATE`/`DELETE`/`ALTER` belong to the tenant's admin roles), other resource types
//! (superusers are configuration). Describe and delete filters follow Kafka's rules (`MATCH`
//! also matches the `*` bindings; `LITERAL` only the exact name; `PREFIXED` nothing, since no
//! prefixed binding is stored). With authorization off the APIs answer SECURITY_DISABLED, as
//! Kafka does without an authorizer; managing ACLs needs an admin of the namespace's tenant.

use std::collections::BTreeSet;

use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use magnetar_broker::permissions::EVERY_ROLE;
use magnetar_broker::{AuthAction, DeniedAction, NamespaceName, TopicName};

use super::{Context, Envelope};
use crate::error_code;

const RESOURCE_ANY: i8 = 1;
const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_GROUP: i8 = 3;
const PATTERN_ANY: i8 = 1;
const PATTERN_MATCH: i8 = 2;
const PATTERN_LITERAL: i8 = 3;
const PATTERN_PREFIXED: i8 = 4;
const OP_ANY: i8 = 1;
const OP_ALL: i8 = 2;
const OP_READ: i8 = 3;
const OP_WRITE: i8 = 4;
const OP_DESCRIBE: i8 = 8;
const PERMISSION_ANY: i8 = 1;
const PERMISSION_DENY: i8 = 2;
const PERMISSION_ALLOW: i8 = 3;

/// Deny rules and the Kafka operations they are shown as.
const DENIED_OPERATIONS: [(DeniedAction, i8); 4] = [
    (DeniedAction::Produce, OP_WRITE),
    (DeniedAction::Consume, OP_READ),
    (DeniedAction::Lookup, OP_DESCRIBE),
    (DeniedAction::All, OP_ALL),
];
const WILDCARD: &str = "*";
const USER: &str = "User:";

/// One ACL as Kafka shows it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Binding {
    resource_type: i8,
    /// As the client names it: a topic's short name, `*`, or a group.
    name: String,
    role: String,
    operation: i8,
    permission_type: i8,
}

/// Where a binding lives in Pulsar's model.
enum Target {
    Namespace,
    Topic(TopicName),
    Group(String),
}

fn refused(message: impl Into<String>) -> (i16, String) {
    (ResponseError::InvalidRequest.code(), message.into())
}

/// Checks the switch and the caller's right to manage the namespace's permissions.
async fn may_manage(ctx: &Context, namespace: &NamespaceName) -> Result<(), (i16, String)> {
    if !ctx.broker.authorization_enabled() {
        return Err((
            ResponseError::SecurityDisabled.code(),
            "authorization is off (auth.authorization_enabled = false)".into(),
        ));
    }
    match ctx
        .broker
        .check_tenant_admin(ctx.role(), &namespace.tenant)
        .await
    {
        Ok(true) => Ok(()),
        Ok(false) => {
            tracing::warn!(
                role = ctx.role().unwrap_or("<none>"),
                namespace = %namespace,
                "kafka ACL request refused: not an admin of the tenant"
            );
            Err((
                ResponseError::ClusterAuthorizationFailed.code(),
                format!(
                    "managing ACLs of '{namespace}' needs an admin role of tenant '{}'",
                    namespace.tenant.as_str()
                ),
            ))
        }
        Err(e) => Err((error_code::code(&e), error_code::message(&e))),
    }
}

/// What a binding adds to (or removes from) its target.
enum Change {
    Grant(BTreeSet<AuthAction>),
    Deny(BTreeSet<DeniedAction>),
}

/// Every binding of the client's namespace.
async fn bindings(ctx: &Context) -> Result<Vec<Binding>, (i16, String)> {
    let namespace = ctx.default_namespace();
    let Some(policies) = ctx
        .broker
        .namespace_policies(namespace)
        .await
        .map_err(|e| (error_code::code(&e), error_code::message(&e)))?
    else {
        return Err((
            ResponseError::UnknownServerError.code(),
            format!("namespace '{namespace}' does not exist"),
        ));
    };
    let auth = policies.auth_policies;
    let mut out = Vec::new();
    let mut push = |resource_type, name: &str, role: &str, actions: &BTreeSet<AuthAction>| {
        for (action, operation) in [
            (AuthAction::Produce, OP_WRITE),
            (AuthAction::Consume, OP_READ),
        ] {
            if actions.contains(&action) {
                out.push(Binding {
                    resource_type,
                    name: name.to_string(),
                    role: role.to_string(),
                    operation,
                    permission_type: PERMISSION_ALLOW,
                });
            }
        }
    };
    let mut denied = Vec::new();
    let mut push_denied = |name: &str, role: &str, actions: &BTreeSet<DeniedAction>| {
        for (action, operation) in DENIED_OPERATIONS {
            if actions.contains(&action) {
                denied.push(Binding {
                    resource_type: RESOURCE_TOPIC,
                    name: name.to_string(),
                    role: role.to_string(),
                    operation,
                    permission_type: PERMISSION_DENY,
                });
            }
        }
    };
    let shown = |topic: &String| match TopicName::parse(topic, namespace) {
        Ok(name) => ctx.short_name(&name),
        Err(_) => topic.clone(),
    };
    for (role, actions) in &auth.namespace_deny {
        push_denied(WILDCARD, role, actions);
    }
    for (topic, denies) in &auth.destination_deny {
        for (role, actions) in denies {
            push_denied(&shown(topic), role, actions);
        }
    }
    for (group, roles) in &auth.subscription_deny_roles {
        for role in roles {
            denied.push(Binding {
                resource_type: RESOURCE_GROUP,
                name: group.clone(),
                role: role.clone(),
                operation: OP_READ,
                permission_type: PERMISSION_DENY,
            });
        }
    }
    for (role, actions) in &auth.namespace_auth {
        push(RESOURCE_TOPIC, WILDCARD, role, actions);
    }
    for (topic, grants) in &auth.destination_auth {
        for (role, actions) in grants {
            push(RESOURCE_TOPIC, &shown(topic), role, actions);
        }
    }
    for (group, roles) in &auth.subscription_auth_roles {
        for role in roles {
            out.push(Binding {
                resource_type: RESOURCE_GROUP,
                name: group.clone(),
                role: role.clone(),
                operation: OP_READ,
                permission_type: PERMISSION_ALLOW,
            });
        }
    }
    out.extend(denied);
    out.sort();
    Ok(out)
}

/// A describe/delete filter.
struct Filter {
    resource_type: i8,
    name: Option<String>,
    pattern_type: i8,
    principal: Option<String>,
    host: Option<String>,
    operation: i8,
    permission_type: i8,
}

impl Filter {
    /// Kafka's `AclBindingFilter` rules for the bindings stored, all `LITERAL`: `ANY` and
    /// `LITERAL` take the exact name (or any when none is given), `MATCH` also the `*` binding
    /// (what applies to the name), `PREFIXED` nothing.
    fn matches_pattern(&self, b: &Binding) -> bool {
        match self.pattern_type {
            PATTERN_ANY | PATTERN_LITERAL => self.name.as_ref().is_none_or(|n| *n == b.name),
            PATTERN_MATCH => self
                .name
                .as_ref()
                .is_none_or(|n| *n == b.name || b.name == WILDCARD),
            // No prefixed binding is stored.
            PATTERN_PREFIXED => false,
            _ => false,
        }
    }

    fn matches(&self, b: &Binding) -> bool {
        (self.resource_type == RESOURCE_ANY || self.resource_type == b.resource_type)
            && self.matches_pattern(b)
            && self
                .principal
                .as_ref()
                .is_none_or(|p| p.strip_prefix(USER) == Some(b.role.as_str()))
            && self.host.as_ref().is_none_or(|h| h == WILDCARD)
            && (self.operation == OP_ANY
                || self.operation == b.operation
                || self.operation == OP_ALL)
            && (self.permission_type == PERMISSION_ANY || self.permission_type == b.permission_type)
    }
}

fn s(v: &StrBytes) -> String {
    v.as_str().to_string()
}

fn wire(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

pub async fn describe(
    ctx: &Context,
    _envelope: &Envelope<'_>,
    request: DescribeAclsRequest,
) -> DescribeAclsResponse {
    let mut response = DescribeAclsResponse::default();
    let filter = Filter {
        resource_type: request.resource_type_filter,
        name: request.resource_name_filter.as_ref().map(s),
        pattern_type: request.pattern_type_filter,
        principal: request.principal_filter.as_ref().map(s),
        host: request.host_filter.as_ref().map(s),
        operation: request.operation,
        permission_type: request.permission_type,
    };
    let found = async {
        may_manage(ctx, ctx.default_namespace()).await?;
        bindings(ctx).await
    }
    .await;
    match found {
        Ok(all) => {
            let mut resources: Vec<DescribeAclsResource> = Vec::new();
            for b in all.iter().filter(|b| filter.matches(b)) {
                let acl = AclDescription::default()
                    .with_principal(wire(format!("{USER}{}", b.role)))
                    .with_host(wire(WILDCARD))
                    .with_operation(b.operation)
                    .with_permission_type(b.permission_type);
                match resources.last_mut() {
                    Some(r) if r.resource_type == b.resource_type && r.resource_name == *b.name => {
                        r.acls.push(acl)
                    }
                    _ => resources.push(
                        DescribeAclsResource::default()
                            .with_resource_type(b.resource_type)
                            .with_resource_name(wire(b.name.clone()))
                            .with_pattern_type(PATTERN_LITERAL)
                            .with_acls(vec![acl]),
                    ),
                }
            }
            response.resources = resources;
        }
        Err((code, message)) => {
            response.error_code = code;
            response.error_message = Some(wire(message));
        }
    }
    response
}

/// One ACL of a CreateAcls request (or a binding being deleted).
struct Acl<'a> {
    resource_type: i8,
    name: &'a str,
    pattern_type: i8,
    principal: &'a str,
    host: &'a str,
    operation: i8,
    permission_type: i8,
}

/// Where an ACL goes, the role, and the grant or deny its operation stands for.
fn target(ctx: &Context, acl: &Acl) -> Result<(Target, String, Change), (i16, String)> {
    let Acl {
        resource_type,
        name,
        pattern_type,
        principal,
        host,
        operation,
        permission_type,
    } = *acl;
    if !matches!(permission_type, PERMISSION_ALLOW | PERMISSION_DENY) {
        return Err(refused(format!(
            "permission type {permission_type} is neither ALLOW nor DENY"
        )));
    }
    if host != WILDCARD {
        return Err(refused(
            "only host '*' is supported: permissions are per role",
        ));
    }
    if pattern_type != PATTERN_LITERAL {
        return Err(refused(
            "only LITERAL patterns are supported; name '*' means every topic of the namespace",
        ));
    }
    let role = principal
        .strip_prefix(USER)
        .filter(|r| !r.is_empty())
        .ok_or_else(|| refused(format!("principal '{principal}' is not 'User:<role>'")))?
        .to_string();
    let deny = permission_type == PERMISSION_DENY;
    let change = match (resource_type, operation) {
        (RESOURCE_TOPIC, op) if deny && op != OP_ANY => match DENIED_OPERATIONS
            .iter()
            .find(|(_, o)| *o == op)
        {
            Some((action, _)) => Change::Deny([*action].into()),
            None => {
                return Err(refused(format!(
                    "operation {op} cannot be denied: topics take READ, WRITE, DESCRIBE or ALL"
                )))
            }
        },
        (RESOURCE_TOPIC, OP_READ) => Change::Grant([AuthAction::Consume].into()),
        (RESOURCE_TOPIC, OP_WRITE) => Change::Grant([AuthAction::Produce].into()),
        (RESOURCE_TOPIC, OP_ALL) => {
            Change::Grant([AuthAction::Produce, AuthAction::Consume].into())
        }
        (RESOURCE_GROUP, OP_READ | OP_ALL) if deny => Change::Deny(BTreeSet::new()),
        (RESOURCE_GROUP, OP_READ | OP_ALL) => Change::Grant(BTreeSet::new()),
        (RESOURCE_TOPIC | RESOURCE_GROUP, op) => {
            return Err(refused(format!(
                "operation {op} cannot be granted: topics take READ, WRITE or ALL (DESCRIBE follows from them; CREATE, DELETE and ALTER belong to the tenant's admin roles), groups READ"
            )))
        }
        (other, _) => {
            return Err(refused(format!(
                "resource type {other} cannot be granted: only TOPIC and GROUP map to Pulsar permissions"
            )))
        }
    };
    let target = match resource_type {
        RESOURCE_GROUP => Target::Group(name.to_string()),
        _ if name == WILDCARD => Target::Namespace,
        _ => Target::Topic(
            ctx.parse_topic(name)
                .map_err(|e| (error_code::code(&e), error_code::message(&e)))?,
        ),
    };
    Ok((target, role, change))
}

fn namespace_of<'a>(ctx: &'a Context, target: &'a Target) -> &'a NamespaceName {
    match target {
        Target::Topic(topic) => &topic.namespace,
        _ => ctx.default_namespace(),
    }
}

/// Adds (`add`) or removes what a binding stands for.
async fn apply(
    ctx: &Context,
    target: &Target,
    role: &str,
    change: &Change,
    add: bool,
) -> Result<(), magnetar_broker::Error> {
    let broker = &ctx.broker;
    match (change, target) {
        (Change::Grant(actions), _) => apply_grant(ctx, target, role, actions, add).await,
        (Change::Deny(actions), Target::Namespace) => {
            broker
                .change_denies(ctx.default_namespace(), None, role, actions, add)
                .await
        }
        (Change::Deny(actions), Target::Topic(topic)) => {
            broker
                .change_denies(&topic.namespace, Some(topic), role, actions, add)
                .await
        }
        (Change::Deny(_), Target::Group(group)) => {
            broker
                .change_subscription_deny(ctx.default_namespace(), group, role, add)
                .await
        }
    }
}

/// Adds (`grant`) or removes actions of a role on a target, keeping its other actions.
async fn apply_grant(
    ctx: &Context,
    target: &Target,
    role: &str,
    actions: &BTreeSet<AuthAction>,
    grant: bool,
) -> Result<(), magnetar_broker::Error> {
    let broker = &ctx.broker;
    let merge = |current: Option<&BTreeSet<AuthAction>>| -> BTreeSet<AuthAction> {
        let mut next = current.cloned().unwrap_or_default();
        if grant {
            next.extend(actions.iter().copied());
        } else {
            next.retain(|a| !actions.contains(a));
        }
        next
    };
    match target {
        Target::Namespace => {
            let ns = ctx.default_namespace();
            let current = broker.namespace_permissions(ns).await?;
            let next = merge(current.get(role));
            if next.is_empty() {
                broker.revoke_namespace_permission(ns, role).await
            } else {
                broker.grant_namespace_permission(ns, role, next).await
            }
        }
        Target::Topic(topic) => {
            let own = broker
                .namespace_policies(&topic.namespace)
                .await?
                .and_then(|p| {
                    p.auth_policies
                        .destination_auth
                        .get(&magnetar_broker::permissions::permission_key(topic))
                        .and_then(|g| g.get(role).cloned())
                });
            let next = merge(own.as_ref());
            if next.is_empty() {
                broker.revoke_topic_permission(topic, role).await
            } else {
                broker.grant_topic_permission(topic, role, next).await
            }
        }
        Target::Group(group) => {
            let ns = ctx.default_namespace();
            if grant {
                broker
                    .grant_subscription_permission(ns, group, &[role.to_string()].into())
                    .await
            } else {
                broker.revoke_subscription_permission(ns, group, role).await
            }
        }
    }
}

pub async fn create(
    ctx: &Context,
    _envelope: &Envelope<'_>,
    request: CreateAclsRequest,
) -> CreateAclsResponse {
    let mut response = CreateAclsResponse::default();
    for c in request.creations {
        let outcome = async {
            let (target, role, change) = target(
                ctx,
                &Acl {
                    resource_type: c.resource_type,
                    name: c.resource_name.as_str(),
                    pattern_type: c.resource_pattern_type,
                    principal: c.principal.as_str(),
                    host: c.host.as_str(),
                    operation: c.operation,
                    permission_type: c.permission_type,
                },
            )?;
            if matches!(change, Change::Grant(_)) && role == EVERY_ROLE {
                return Err(refused(
                    "ALLOW for User:* cannot be stored: grants name roles (grant each role, on \
                     topic '*' for the whole namespace); DENY for User:* refuses every role",
                ));
            }
            may_manage(ctx, namespace_of(ctx, &target)).await?;
            apply(ctx, &target, &role, &change, true)
                .await
                .map_err(|e| (error_code::code(&e), error_code::message(&e)))?;
            tracing::info!(role = %role, resource = %c.resource_name.as_str(), operation = c.operation, permission_type = c.permission_type, by = ctx.role().unwrap_or("<none>"), "kafka ACL created");
            Ok::<(), (i16, String)>(())
        }
        .await;
        let mut result = AclCreationResult::default();
        if let Err((code, message)) = outcome {
            result.error_code = code;
            result.error_message = Some(wire(message));
        }
        response.results.push(result);
    }
    response
}

pub async fn delete(
    ctx: &Context,
    _envelope: &Envelope<'_>,
    request: DeleteAclsRequest,
) -> DeleteAclsResponse {
    let mut response = DeleteAclsResponse::default();
    for f in request.filters {
        let filter = Filter {
            resource_type: f.resource_type_filter,
            name: f.resource_name_filter.as_ref().map(s),
            pattern_type: f.pattern_type_filter,
            principal: f.principal_filter.as_ref().map(s),
            host: f.host_filter.as_ref().map(s),
            operation: f.operation,
            permission_type: f.permission_type,
        };
        let mut result = DeleteAclsFilterResult::default();
        let matched = async {
            may_manage(ctx, ctx.default_namespace()).await?;
            bindings(ctx).await
        }
        .await;
        match matched {
            Ok(all) => {
                for b in all.into_iter().filter(|b| filter.matches(b)) {
                    let mut acl = DeleteAclsMatchingAcl::default()
                        .with_resource_type(b.resource_type)
                        .with_resource_name(wire(b.name.clone()))
                        .with_pattern_type(PATTERN_LITERAL)
                        .with_principal(wire(format!("{USER}{}", b.role)))
                        .with_host(wire(WILDCARD))
                        .with_operation(b.operation)
                        .with_permission_type(b.permission_type);
                    let principal = format!("{USER}{}", b.role);
                    let removed = match target(
                        ctx,
                        &Acl {
                            resource_type: b.resource_type,
                            name: &b.name,
                            pattern_type: PATTERN_LITERAL,
                            principal: &principal,
                            host: WILDCARD,
                            operation: b.operation,
                            permission_type: b.permission_type,
                        },
                    ) {
                        Ok((target, role, change)) => apply(ctx, &target, &role, &change, false)
                            .await
                            .map_err(|e| (error_code::code(&e), error_code::message(&e))),
                        Err(e) => Err(e),
                    };
                    if let Err((code, message)) = removed {
                        acl.error_code = code;
                        acl.error_message = Some(wire(message));
                    } else {
                        tracing::info!(role = %b.role, resource = %b.name, operation = b.operation, permission_type = b.permission_type, by = ctx.role().unwrap_or("<none>"), "kafka ACL deleted");
                    }
                    result.matching_acls.push(acl);
                }
            }
            Err((code, message)) => {
                result.error_code = code;
                result.error_message = Some(wire(message));
            }
        }
        response.filter_results.push(result);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(name: &str, operation: i8, permission_type: i8) -> Binding {
        Binding {
            resource_type: RESOURCE_TOPIC,
            name: name.into(),
            role: "app".into(),
            operation,
            permission_type,
        }
    }

    fn filter(name: Option<&str>, pattern_type: i8, permission_type: i8) -> Filter {
        Filter {
            resource_type: RESOURCE_ANY,
            name: name.map(String::from),
            pattern_type,
            principal: None,
            host: None,
            operation: OP_ANY,
            permission_type,
        }
    }

    #[test]
    fn filters_follow_kafka_pattern_and_permission_rules() {
        let own = binding("orders", OP_WRITE, PERMISSION_DENY);
        let wildcard = binding(WILDCARD, OP_READ, PERMISSION_ALLOW);
        let other = binding("other", OP_READ, PERMISSION_ALLOW);
        let m = filter(Some("orders"), PATTERN_MATCH, PERMISSION_ANY);
        assert!(m.matches(&own) && m.matches(&wildcard) && !m.matches(&other));
        for exact in [PATTERN_LITERAL, PATTERN_ANY] {
            let f = filter(Some("orders"), exact, PERMISSION_ANY);
            assert!(f.matches(&own) && !f.matches(&wildcard));
        }
        assert!(!filter(None, PATTERN_PREFIXED, PERMISSION_ANY).matches(&own));
        assert!(filter(None, PATTERN_MATCH, PERMISSION_ANY).matches(&other));
        assert!(filter(None, PATTERN_ANY, PERMISSION_DENY).matches(&own));
        assert!(!filter(None, PATTERN_ANY, PERMISSION_DENY).matches(&wildcard));
        assert!(!filter(None, PATTERN_ANY, PERMISSION_ALLOW).matches(&own));
    }

    #[test]
    fn deny_operations_round_trip_to_kafka_operations() {
        for (action, op) in DENIED_OPERATIONS {
            let back = DENIED_OPERATIONS.iter().find(|(_, o)| *o == op).unwrap().0;
            assert_eq!(back, action);
        }
    }
}
