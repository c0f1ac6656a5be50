//! DescribeAcls, CreateAcls, DeleteAcls v1–v3: Kafka's ACL APIs read and write Pulsar's
//! permissions (the same ones the admin REST API and `magnetar admin namespaces
//! grant-permission` manage), so `kafka-acls`, AdminClient `create_acls` and Pulsar tooling see
//! one set of rules.
//!
//! Mapping (everything in the client's namespace unless a topic is named by its full name):
//! - `TOPIC` `LITERAL` `<topic>` host `*` — the topic's grants: `WRITE` is `produce`, `READ` is
//!   `consume`, `ALL` both;
//! - `TOPIC` `LITERAL` `*` host `*` — the namespace's grants (every topic of the namespace);
//! - `GROUP` `LITERAL` `<group>` host `*` `READ` — the roles allowed to use the group (Pulsar's
//!   subscription permission; group `*`, every group, is an ACL rule);
//! - principal `User:<role>`; `User:*` only in a `DENY` (every role but superusers: Pulsar
//!   grants name roles, so an `ALLOW` for everyone has no place to go).
//!
//! `DENY` bindings are the model's deny rules, kept beside the grants (deny overrides allow,
//! superusers bypass): `TOPIC` `READ`, `WRITE`, `DESCRIBE` or `ALL` on a topic or on `*` refuses
//! `consume`, `produce`, lookup or everything; `GROUP` `READ` (or `ALL`) refuses the group.
//!
//! Bindings the grant maps cannot hold are the namespace's ACL rules
//! (`magnetar_broker::AclRule`), decided with the grants on both protocols: `PREFIXED` patterns
//! (a binding on `orders-` applies to every topic, group or transactional id whose name starts
//! with it), hosts other than `*` (an IP address: the binding applies to connections from it
//! only; host names are refused), and `TRANSACTIONAL_ID` bindings (`WRITE`, `DESCRIBE`, `ALL`).
//!
//! What the model cannot hold is refused with INVALID_REQUEST and a message: other operations
//! (an allowed `DESCRIBE` on a topic follows from `READ`/`WRITE`, `CREATE`/`DELETE`/`ALTER`
//! belong to the tenant's admin roles), other resource types (superusers are configuration).
//! Describe and delete filters follow Kafka's rules: `ANY` matches every pattern type, `LITERAL`
//! and `PREFIXED` their own with the exact name, `MATCH` the bindings that apply to the name
//! (literal, `*` and prefixes of it); a host filter matches that exact host. With authorization
//! off the APIs answer SECURITY_DISABLED, as Kafka does without an authorizer; managing ACLs
//! needs an admin of the namespace's tenant.

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
use magnetar_broker::permissions::{parse_host, EVERY_HOST, EVERY_ROLE};
use magnetar_broker::{
    AclRule, AuthAction, DeniedAction, NamespaceName, RuleAction, RulePattern, RuleResource,
    TopicName,
};

use super::{Context, Envelope};
use crate::error_code;

const RESOURCE_ANY: i8 = 1;
const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_GROUP: i8 = 3;
const RESOURCE_TRANSACTIONAL_ID: i8 = 5;
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
/// Rule actions and the Kafka operations they are shown as.
const RULE_OPERATIONS: [(RuleAction, i8); 4] = [
    (RuleAction::Produce, OP_WRITE),
    (RuleAction::Consume, OP_READ),
    (RuleAction::Lookup, OP_DESCRIBE),
    (RuleAction::All, OP_ALL),
];
const WILDCARD: &str = "*";
const USER: &str = "User:";

/// One ACL as Kafka shows it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Binding {
    resource_type: i8,
    /// As the client names it: a topic's short name (or prefix), `*`, a group, a transactional
    /// id.
    name: String,
    pattern_type: i8,
    role: String,
    host: String,
    operation: i8,
    permission_type: i8,
}

/// Where a binding lives in Pulsar's model.
enum Target {
    Namespace,
    Topic(TopicName),
    Group(String),
    /// An ACL rule of a namespace (prefixed, of one host, or a transactional id).
    Rule(NamespaceName, AclRule),
}

fn rule_resource(resource_type: i8) -> Option<RuleResource> {
    match resource_type {
        RESOURCE_TOPIC => Some(RuleResource::Topic),
        RESOURCE_GROUP => Some(RuleResource::Group),
        RESOURCE_TRANSACTIONAL_ID => Some(RuleResource::TransactionalId),
        _ => None,
    }
}

fn resource_type_of(resource: RuleResource) -> i8 {
    match resource {
        RuleResource::Topic => RESOURCE_TOPIC,
        RuleResource::Group => RESOURCE_GROUP,
        RuleResource::TransactionalId => RESOURCE_TRANSACTIONAL_ID,
    }
}

fn operation_of(action: RuleAction) -> i8 {
    RULE_OPERATIONS
        .iter()
        .find(|(a, _)| *a == action)
        .map_or(OP_ALL, |(_, op)| *op)
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
                    pattern_type: PATTERN_LITERAL,
                    role: role.to_string(),
                    host: EVERY_HOST.to_string(),
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
                    pattern_type: PATTERN_LITERAL,
                    role: role.to_string(),
                    host: EVERY_HOST.to_string(),
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
                pattern_type: PATTERN_LITERAL,
                role: role.clone(),
                host: EVERY_HOST.to_string(),
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
                pattern_type: PATTERN_LITERAL,
                role: role.clone(),
                host: EVERY_HOST.to_string(),
                operation: OP_READ,
                permission_type: PERMISSION_ALLOW,
            });
        }
    }
    out.extend(denied);
    // Rules of a namespace keep a topic's local name: shown as the client names it when the
    // namespace is the client's (the only one listed).
    for rule in &auth.acl_rules {
        out.push(Binding {
            resource_type: resource_type_of(rule.resource),
            name: rule.name.clone(),
            pattern_type: match rule.pattern {
                RulePattern::Literal => PATTERN_LITERAL,
                RulePattern::Prefixed => PATTERN_PREFIXED,
            },
            role: rule.role.clone(),
            host: rule.host.clone(),
            operation: operation_of(rule.action),
            permission_type: if rule.deny {
                PERMISSION_DENY
            } else {
                PERMISSION_ALLOW
            },
        });
    }
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
    /// Kafka's `ResourcePatternFilter` rules: `ANY` takes the exact name (or any when none is
    /// given) of any pattern type; `LITERAL` and `PREFIXED` the exact name of their own type;
    /// `MATCH` every binding that applies to the name: the literal name, the literal `*`, and
    /// the prefixes of the name.
    fn matches_pattern(&self, b: &Binding) -> bool {
        let exact = || self.name.as_ref().is_none_or(|n| *n == b.name);
        match self.pattern_type {
            PATTERN_ANY => exact(),
            PATTERN_LITERAL | PATTERN_PREFIXED => b.pattern_type == self.pattern_type && exact(),
            PATTERN_MATCH => self.name.as_ref().is_none_or(|n| match b.pattern_type {
                PATTERN_LITERAL => *n == b.name || b.name == WILDCARD,
                PATTERN_PREFIXED => n.starts_with(b.name.as_str()),
                _ => false,
            }),
            _ => false,
        }
    }

    /// Kafka's `AccessControlEntryFilter` rules beside the pattern: a principal or host given
    /// must be the binding's, an operation or permission type other than `ANY` the binding's.
    fn matches(&self, b: &Binding) -> bool {
        (self.resource_type == RESOURCE_ANY || self.resource_type == b.resource_type)
            && self.matches_pattern(b)
            && self
                .principal
                .as_ref()
                .is_none_or(|p| p.strip_prefix(USER) == Some(b.role.as_str()))
            && self.host.as_ref().is_none_or(|h| *h == b.host)
            && (self.operation == OP_ANY || self.operation == b.operation)
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
                    .with_host(wire(b.host.clone()))
                    .with_operation(b.operation)
                    .with_permission_type(b.permission_type);
                match resources.last_mut() {
                    Some(r)
                        if r.resource_type == b.resource_type
                            && r.resource_name == *b.name
                            && r.pattern_type == b.pattern_type =>
                    {
                        r.acls.push(acl)
                    }
                    _ => resources.push(
                        DescribeAclsResource::default()
                            .with_resource_type(b.resource_type)
                            .with_resource_name(wire(b.name.clone()))
                            .with_pattern_type(b.pattern_type)
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

/// Where an ACL goes, the role, and the grant or deny its operation stands for (for a
/// [`Target::Rule`], the change is the rule's and only says allow or deny).
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
    let host = parse_host(host).map_err(|e| refused(error_code::message(&e)))?;
    if !matches!(pattern_type, PATTERN_LITERAL | PATTERN_PREFIXED) {
        return Err(refused(format!(
            "pattern type {pattern_type} is neither LITERAL nor PREFIXED; name '*' with LITERAL \
             means every resource of the namespace"
        )));
    }
    if name.is_empty() {
        return Err(refused("the resource name is empty"));
    }
    let role = principal
        .strip_prefix(USER)
        .filter(|r| !r.is_empty())
        .ok_or_else(|| refused(format!("principal '{principal}' is not 'User:<role>'")))?
        .to_string();
    let deny = permission_type == PERMISSION_DENY;
    let action = |op: i8| {
        RULE_OPERATIONS
            .iter()
            .find(|(_, o)| *o == op)
            .map(|(a, _)| *a)
    };
    // The rule action the binding stands for, per resource type and operation.
    let rule_action = match (resource_type, operation) {
        (RESOURCE_TOPIC, OP_READ | OP_WRITE | OP_ALL) => action(operation),
        (RESOURCE_TOPIC, OP_DESCRIBE) if deny => action(operation),
        (RESOURCE_GROUP, OP_READ | OP_ALL) => action(operation),
        (RESOURCE_TRANSACTIONAL_ID, OP_WRITE | OP_DESCRIBE | OP_ALL) => action(operation),
        (RESOURCE_TOPIC | RESOURCE_GROUP | RESOURCE_TRANSACTIONAL_ID, op) => {
            return Err(refused(format!(
                "operation {op} cannot be {}: topics take READ, WRITE or ALL (DENY also \
                 DESCRIBE; an allowed DESCRIBE follows from READ and WRITE; CREATE, DELETE and \
                 ALTER belong to the tenant's admin roles), groups READ or ALL, transactional \
                 ids WRITE, DESCRIBE or ALL",
                if deny { "denied" } else { "granted" }
            )))
        }
        (other, _) => {
            return Err(refused(format!(
                "resource type {other} cannot be granted: only TOPIC, GROUP and \
                 TRANSACTIONAL_ID map to Pulsar permissions"
            )))
        }
    };
    let Some(rule_action) = rule_action else {
        return Err(refused(format!("operation {operation} is not known")));
    };
    // Group `*` is Kafka's wildcard (every group): a rule, since a subscription permission
    // named `*` is a subscription of that name.
    let in_maps = pattern_type == PATTERN_LITERAL
        && host == EVERY_HOST
        && (resource_type == RESOURCE_TOPIC
            || (resource_type == RESOURCE_GROUP && name != WILDCARD));
    if !in_maps {
        let Some(resource) = rule_resource(resource_type) else {
            return Err(refused(format!(
                "resource type {resource_type} is not known"
            )));
        };
        let pattern = if pattern_type == PATTERN_PREFIXED {
            RulePattern::Prefixed
        } else {
            RulePattern::Literal
        };
        // A topic rule lives in the topic's namespace (the client's unless the name is full),
        // under the local name or prefix; group and transactional-id rules in the client's.
        let (namespace, name) = match resource {
            RuleResource::Topic if !(pattern == RulePattern::Literal && name == WILDCARD) => {
                let topic = ctx
                    .parse_topic(name)
                    .map_err(|e| (error_code::code(&e), error_code::message(&e)))?;
                (topic.namespace, topic.local)
            }
            _ => (ctx.default_namespace().clone(), name.to_string()),
        };
        let rule = AclRule {
            resource,
            pattern,
            name,
            role: role.clone(),
            host,
            deny,
            action: rule_action,
        };
        let change = if deny {
            Change::Deny(BTreeSet::new())
        } else {
            Change::Grant(BTreeSet::new())
        };
        return Ok((Target::Rule(namespace, rule), role, change));
    }
    let change = match (resource_type, rule_action) {
        (RESOURCE_TOPIC, action) if deny => Change::Deny([action.denied()].into()),
        (RESOURCE_TOPIC, action) => Change::Grant(action.granted().iter().copied().collect()),
        (_, _) if deny => Change::Deny(BTreeSet::new()),
        (_, _) => Change::Grant(BTreeSet::new()),
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
        Target::Rule(namespace, _) => namespace,
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
        (_, Target::Rule(namespace, rule)) => broker.change_acl_rule(namespace, rule, add).await,
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
        Target::Rule(namespace, rule) => broker.change_acl_rule(namespace, rule, grant).await,
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
                        .with_pattern_type(b.pattern_type)
                        .with_principal(wire(format!("{USER}{}", b.role)))
                        .with_host(wire(b.host.clone()))
                        .with_operation(b.operation)
                        .with_permission_type(b.permission_type);
                    let principal = format!("{USER}{}", b.role);
                    let removed = match target(
                        ctx,
                        &Acl {
                            resource_type: b.resource_type,
                            name: &b.name,
                            pattern_type: b.pattern_type,
                            principal: &principal,
                            host: &b.host,
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
            pattern_type: PATTERN_LITERAL,
            role: "app".into(),
            host: EVERY_HOST.into(),
            operation,
            permission_type,
        }
    }

    fn prefixed(name: &str, host: &str) -> Binding {
        Binding {
            pattern_type: PATTERN_PREFIXED,
            host: host.into(),
            ..binding(name, OP_READ, PERMISSION_ALLOW)
        }
    }

    #[test]
    fn filters_match_prefixed_bindings_as_kafka_does() {
        let orders = prefixed("orders-", "*");
        let order = prefixed("order", "10.0.0.1");
        let literal = binding("orders-eu", OP_READ, PERMISSION_ALLOW);
        let wildcard = binding(WILDCARD, OP_READ, PERMISSION_ALLOW);
        // MATCH on a name: every binding that applies to it.
        let m = filter(Some("orders-eu"), PATTERN_MATCH, PERMISSION_ANY);
        for b in [&orders, &order, &literal, &wildcard] {
            assert!(m.matches(b), "{b:?}");
        }
        let m = filter(Some("ord"), PATTERN_MATCH, PERMISSION_ANY);
        assert!(!m.matches(&orders) && !m.matches(&order) && m.matches(&wildcard));
        // PREFIXED: prefixed bindings of that exact name only; LITERAL: literal ones only.
        let p = filter(Some("orders-"), PATTERN_PREFIXED, PERMISSION_ANY);
        assert!(p.matches(&orders) && !p.matches(&order) && !p.matches(&literal));
        let p = filter(None, PATTERN_PREFIXED, PERMISSION_ANY);
        assert!(p.matches(&orders) && p.matches(&order) && !p.matches(&wildcard));
        let l = filter(Some("orders-"), PATTERN_LITERAL, PERMISSION_ANY);
        assert!(!l.matches(&orders));
        // ANY: the exact name, whatever the pattern type.
        let a = filter(Some("orders-"), PATTERN_ANY, PERMISSION_ANY);
        assert!(a.matches(&orders) && !a.matches(&order) && !a.matches(&literal));
        // A host filter matches that exact host ('*' only the bindings of every host).
        let mut h = filter(None, PATTERN_ANY, PERMISSION_ANY);
        h.host = Some("10.0.0.1".into());
        assert!(h.matches(&order) && !h.matches(&orders));
        h.host = Some("*".into());
        assert!(!h.matches(&order) && h.matches(&orders));
    }

    #[test]
    fn an_operation_filter_other_than_any_matches_that_operation_only() {
        let all = binding("t", OP_ALL, PERMISSION_DENY);
        let write = binding("t", OP_WRITE, PERMISSION_DENY);
        let mut f = filter(None, PATTERN_ANY, PERMISSION_ANY);
        f.operation = OP_ALL;
        assert!(
            f.matches(&all) && !f.matches(&write),
            "Kafka: ALL is not ANY"
        );
        f.operation = OP_ANY;
        assert!(f.matches(&all) && f.matches(&write));
    }

    #[test]
    fn rule_operations_round_trip() {
        for (action, op) in RULE_OPERATIONS {
            assert_eq!(operation_of(action), op);
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
