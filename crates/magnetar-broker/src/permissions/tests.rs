use super::*;
use crate::names::NamespaceName;
use std::net::IpAddr;

fn topic(s: &str) -> TopicName {
    TopicName::parse(s, &NamespaceName::new("public", "default").unwrap()).unwrap()
}

#[test]
fn namespace_and_topic_grants_decide_produce_consume_lookup() {
    let mut p = AuthPolicies::default();
    p.namespace_auth
        .insert("reader".into(), [AuthAction::Consume].into());
    p.destination_auth.insert(
        "persistent://t/ns/orders".into(),
        [("writer".to_string(), [AuthAction::Produce].into())].into(),
    );
    let orders = topic("persistent://t/ns/orders");
    let other = topic("persistent://t/ns/other");
    let consume = Access::Consume { subscription: None };
    assert!(p.allows(&orders, "writer", &Access::Produce));
    assert!(!p.allows(&other, "writer", &Access::Produce));
    assert!(!p.allows(&orders, "writer", &consume));
    assert!(p.allows(&orders, "writer", &Access::Lookup));
    assert!(!p.allows(&other, "writer", &Access::Lookup));
    assert!(p.allows(&other, "reader", &consume));
    assert!(!p.allows(&other, "reader", &Access::Produce));
    assert!(!p.allows(&other, "nobody", &Access::Lookup));
    assert!(!p.allows(&other, "reader", &Access::Admin));
}

#[test]
fn a_subscription_with_roles_is_closed_to_other_roles() {
    let mut p = AuthPolicies::default();
    for r in ["a", "b"] {
        p.namespace_auth
            .insert(r.into(), [AuthAction::Consume].into());
    }
    p.subscription_auth_roles
        .insert("g".into(), ["a".to_string()].into());
    let t = topic("persistent://t/ns/x");
    let with = |s: &str| Access::Consume {
        subscription: Some(s.into()),
    };
    assert!(p.allows(&t, "a", &with("g")));
    assert!(!p.allows(&t, "b", &with("g")));
    assert!(p.allows(&t, "b", &with("open")));
}

#[test]
fn a_deny_overrides_the_grants_it_names() {
    let mut p = AuthPolicies::default();
    for r in ["a", "b"] {
        p.namespace_auth
            .insert(r.into(), [AuthAction::Produce, AuthAction::Consume].into());
    }
    p.destination_deny.insert(
        "persistent://t/ns/orders".into(),
        [("a".to_string(), [DeniedAction::Produce].into())].into(),
    );
    let orders = topic("persistent://t/ns/orders");
    let other = topic("persistent://t/ns/other");
    let consume = Access::Consume { subscription: None };
    assert!(!p.allows(&orders, "a", &Access::Produce));
    assert!(p.denies(&orders, "a", &Access::Produce));
    assert!(p.allows(&orders, "a", &consume));
    assert!(
        p.allows(&orders, "a", &Access::Lookup),
        "DESCRIBE is not denied"
    );
    assert!(p.allows(&other, "a", &Access::Produce));
    assert!(p.allows(&orders, "b", &Access::Produce));
    // `all` on the namespace refuses everything, administration included.
    p.namespace_deny
        .insert("b".into(), [DeniedAction::All].into());
    for access in [
        Access::Produce,
        consume.clone(),
        Access::Lookup,
        Access::Admin,
    ] {
        assert!(p.denies(&other, "b", &access), "{access:?}");
    }
    // A subscription deny refuses the group and consuming with it, not other groups.
    p.subscription_deny_roles
        .insert("g".into(), ["a".to_string()].into());
    assert!(!p.allows_group("a", "g"));
    assert!(p.allows_group("a", "h"));
    let with = |s: &str| Access::Consume {
        subscription: Some(s.into()),
    };
    assert!(!p.allows(&orders, "a", &with("g")));
    assert!(p.allows(&orders, "a", &with("h")));
    // `*` refuses every role.
    p.destination_deny.insert(
        "persistent://t/ns/other".into(),
        [(EVERY_ROLE.to_string(), [DeniedAction::Consume].into())].into(),
    );
    assert!(p.denies(&other, "a", &consume) && p.denies(&other, "anyone", &consume));
    assert!(!p.denies(&other, "a", &Access::Produce));
    p.subscription_deny_roles
        .insert("closed".into(), [EVERY_ROLE.to_string()].into());
    assert!(!p.allows_group("a", "closed") && p.allows_group("a", "h"));
    assert_eq!(
        p.topic_denies(&orders).keys().collect::<Vec<_>>(),
        ["a", "b"]
    );
}

fn rule(
    resource: RuleResource,
    pattern: RulePattern,
    name: &str,
    role: &str,
    host: &str,
    deny: bool,
    action: RuleAction,
) -> AclRule {
    AclRule {
        resource,
        pattern,
        name: name.into(),
        role: role.into(),
        host: host.into(),
        deny,
        action,
    }
}

fn ip(s: &str) -> Option<IpAddr> {
    Some(s.parse().unwrap())
}

#[test]
fn a_prefixed_rule_names_every_resource_starting_with_it() {
    use RulePattern::*;
    use RuleResource::*;
    let r = rule(
        Topic,
        Prefixed,
        "orders-",
        "app",
        "*",
        false,
        RuleAction::Produce,
    );
    assert!(r.names(Topic, "orders-eu") && r.names(Topic, "orders-"));
    assert!(!r.names(Topic, "orders") && !r.names(Topic, "xorders-eu"));
    assert!(
        !r.names(Group, "orders-eu"),
        "a topic rule does not name groups"
    );
    let literal = rule(Group, Literal, "g", "app", "*", false, RuleAction::Consume);
    assert!(literal.names(Group, "g") && !literal.names(Group, "g2"));
    let every = rule(
        Topic,
        Literal,
        EVERY_NAME,
        "app",
        "*",
        false,
        RuleAction::Consume,
    );
    assert!(every.names(Topic, "anything"));
    // A prefix '*' is the character, not a wildcard.
    let star = rule(Topic, Prefixed, "*", "app", "*", false, RuleAction::Consume);
    assert!(star.names(Topic, "*x") && !star.names(Topic, "x"));
}

#[test]
fn a_rule_of_one_host_applies_to_connections_from_that_address_only() {
    let r = rule(
        RuleResource::Topic,
        RulePattern::Literal,
        "t",
        "app",
        "10.0.0.1",
        false,
        RuleAction::Consume,
    );
    assert!(r.applies_to("app", ip("10.0.0.1")));
    assert!(r.applies_to("app", ip("::ffff:10.0.0.1")), "IPv4-mapped");
    assert!(!r.applies_to("app", ip("10.0.0.2")));
    assert!(!r.applies_to("app", None), "an unknown address");
    assert!(!r.applies_to("other", ip("10.0.0.1")));
    let any_host = AclRule {
        host: EVERY_HOST.into(),
        ..r.clone()
    };
    assert!(any_host.applies_to("app", None) && any_host.applies_to("app", ip("::1")));
    // '*' as a role: deny rules only.
    let everyone = AclRule {
        role: EVERY_ROLE.into(),
        ..any_host.clone()
    };
    assert!(!everyone.applies_to("app", None) && everyone.check().is_err());
    let deny_everyone = AclRule {
        deny: true,
        ..everyone
    };
    assert!(deny_everyone.applies_to("app", None) && deny_everyone.check().is_ok());
    assert_eq!(parse_host("::FFFF:10.0.0.1").unwrap(), "10.0.0.1");
    assert_eq!(parse_host("*").unwrap(), "*");
    assert!(parse_host("broker.example.com").is_err());
    assert!(AclRule {
        host: "010.0.0.1".into(),
        ..any_host
    }
    .check()
    .is_err());
}

#[test]
fn prefixed_and_host_rules_grant_and_deny_like_the_maps() {
    use RuleAction::*;
    let mut p = AuthPolicies::default();
    let t = |local: &str| topic(&format!("persistent://t/ns/{local}"));
    let consume = Access::Consume { subscription: None };
    let from = ip("127.0.0.1");
    let elsewhere = ip("10.1.1.1");
    p.acl_rules.insert(rule(
        RuleResource::Topic,
        RulePattern::Prefixed,
        "orders-",
        "app",
        "*",
        false,
        All,
    ));
    assert!(p.allows_from(&t("orders-eu"), "app", from, &Access::Produce));
    assert!(p.allows_from(&t("orders-eu"), "app", None, &consume));
    assert!(p.allows_from(&t("orders-eu"), "app", from, &Access::Lookup));
    assert!(!p.allows_from(&t("order"), "app", from, &Access::Lookup));
    assert!(!p.allows_from(&t("orders-eu"), "app", from, &Access::Admin));
    assert!(!p.allows_from(&t("orders-eu"), "other", from, &consume));
    // A deny of one host, on a longer prefix: refused from that address only.
    p.acl_rules.insert(rule(
        RuleResource::Topic,
        RulePattern::Prefixed,
        "orders-eu",
        "app",
        "127.0.0.1",
        true,
        Produce,
    ));
    assert!(!p.allows_from(&t("orders-eu-1"), "app", from, &Access::Produce));
    assert!(p.denies_from(&t("orders-eu-1"), "app", from, &Access::Produce));
    assert!(p.allows_from(&t("orders-eu-1"), "app", elsewhere, &Access::Produce));
    assert!(p.allows_from(&t("orders-eu-1"), "app", from, &consume));
    assert!(p.allows_from(&t("orders-us"), "app", from, &Access::Produce));
    // An allow of one host.
    p.acl_rules.insert(rule(
        RuleResource::Topic,
        RulePattern::Literal,
        "audit",
        "reader",
        "127.0.0.1",
        false,
        Consume,
    ));
    assert!(p.allows_from(&t("audit"), "reader", from, &consume));
    assert!(p.allows_from(&t("audit"), "reader", from, &Access::Lookup));
    assert!(!p.allows_from(&t("audit"), "reader", elsewhere, &consume));
    assert!(!p.allows_from(&t("audit"), "reader", from, &Access::Produce));
    // A deny of every role on a prefix beats a namespace grant.
    p.namespace_auth
        .insert("ns-user".into(), [AuthAction::Produce].into());
    p.acl_rules.insert(rule(
        RuleResource::Topic,
        RulePattern::Prefixed,
        "secret",
        EVERY_ROLE,
        "*",
        true,
        All,
    ));
    assert!(p.allows_from(&t("public"), "ns-user", from, &Access::Produce));
    assert!(!p.allows_from(&t("secret-1"), "ns-user", from, &Access::Produce));
    assert!(p.denies_from(&t("secret-1"), "app", None, &Access::Admin));
    // Listings: the rules that name a topic, `role@host` for one host.
    let grants = p.topic_grants(&t("orders-eu-1"));
    assert_eq!(
        grants["app"],
        [AuthAction::Produce, AuthAction::Consume].into()
    );
    let denies = p.topic_denies(&t("orders-eu-1"));
    assert_eq!(denies["app@127.0.0.1"], [DeniedAction::Produce].into());
    let (ns_grants, ns_denies) = p.namespace_rules();
    assert!(ns_grants.contains_key("app on orders-*"), "{ns_grants:?}");
    assert!(ns_denies.contains_key("* on secret*"), "{ns_denies:?}");
    assert!(!ns_grants.keys().any(|k| k.starts_with("reader")));
}

#[test]
fn group_and_transactional_id_rules() {
    use RuleAction::*;
    let mut p = AuthPolicies::default();
    p.namespace_auth
        .insert("app".into(), [AuthAction::Consume].into());
    p.namespace_auth
        .insert("other".into(), [AuthAction::Consume].into());
    let from = ip("127.0.0.1");
    // An allow on a group prefix lists the role: other roles are closed out of those groups.
    p.acl_rules.insert(rule(
        RuleResource::Group,
        RulePattern::Prefixed,
        "billing-",
        "app",
        "*",
        false,
        Consume,
    ));
    assert!(p.allows_group_from("app", from, "billing-1"));
    assert!(!p.allows_group_from("other", from, "billing-1"));
    assert!(p.allows_group_from("other", from, "reports"));
    let with = |s: &str| Access::Consume {
        subscription: Some(s.into()),
    };
    let t = topic("persistent://t/ns/x");
    assert!(p.allows_from(&t, "app", from, &with("billing-1")));
    assert!(!p.allows_from(&t, "other", from, &with("billing-1")));
    // A deny of one host on a group prefix.
    p.acl_rules.insert(rule(
        RuleResource::Group,
        RulePattern::Prefixed,
        "billing-eu",
        "app",
        "127.0.0.1",
        true,
        All,
    ));
    assert!(!p.allows_group_from("app", from, "billing-eu-1"));
    assert!(p.allows_group_from("app", ip("10.0.0.9"), "billing-eu-1"));
    assert!(!p.allows_from(&t, "app", from, &with("billing-eu-1")));
    // Transactional ids: an allow rule is needed; WRITE covers DESCRIBE; a deny wins.
    assert!(!p.allows_transactional_id("app", from, "tx-1", Produce));
    p.acl_rules.insert(rule(
        RuleResource::TransactionalId,
        RulePattern::Prefixed,
        "tx-",
        "app",
        "*",
        false,
        Produce,
    ));
    assert!(p.allows_transactional_id("app", from, "tx-1", Produce));
    assert!(p.allows_transactional_id("app", from, "tx-1", Lookup));
    assert!(!p.allows_transactional_id("app", from, "ty-1", Produce));
    p.acl_rules.insert(rule(
        RuleResource::TransactionalId,
        RulePattern::Literal,
        "tx-9",
        EVERY_ROLE,
        "*",
        true,
        Produce,
    ));
    assert!(!p.allows_transactional_id("app", from, "tx-9", Produce));
    assert!(p.allows_transactional_id("app", from, "tx-9", Lookup));
    // A literal '*' names every group: a deny of every group for one role.
    p.acl_rules.insert(rule(
        RuleResource::Group,
        RulePattern::Literal,
        EVERY_NAME,
        "other",
        "*",
        true,
        Consume,
    ));
    assert!(!p.allows_group_from("other", from, "reports"));
    assert!(p.allows_group_from("app", from, "billing-1"));
    p.acl_rules.retain(|r| r.name != EVERY_NAME);
    let (allowed, denied) = p.subscription_rules();
    assert_eq!(allowed["billing-*"], ["app".to_string()].into());
    assert_eq!(denied["billing-eu*"], ["app@127.0.0.1".to_string()].into());
    // Rules round-trip through the stored JSON.
    let json = serde_json::to_string(&p).unwrap();
    assert_eq!(serde_json::from_str::<AuthPolicies>(&json).unwrap(), p);
}

#[test]
fn policies_without_deny_rules_serialize_as_before() {
    let json = serde_json::to_string(&AuthPolicies::default()).unwrap();
    assert!(!json.contains("deny"), "{json}");
    let old = r#"{"namespace_auth":{},"destination_auth":{},"subscription_auth_roles":{}}"#;
    let p: AuthPolicies = serde_json::from_str(old).unwrap();
    assert!(p.namespace_deny.is_empty() && p.subscription_deny_roles.is_empty());
    assert!(check_role("deny:x").is_err());
}

#[test]
fn actions_parse_and_serialize_as_pulsar_names() {
    assert_eq!(AuthAction::parse("consume").unwrap(), AuthAction::Consume);
    assert!(AuthAction::parse("write").is_err());
    let json = serde_json::to_string(&[AuthAction::Produce, AuthAction::Consume]).unwrap();
    assert_eq!(json, r#"["produce","consume"]"#);
    assert!(check_role("").is_err());
    assert!(check_role("app-1").is_ok());
}
