use proptest::prelude::*;
use serde_json::json;

use super::*;

fn avro(value: serde_json::Value) -> Checked {
    check_schema(&Schema::new(SchemaType::Avro, value.to_string()), &[]).unwrap()
}

fn record(fields: &[(&str, &str, Option<serde_json::Value>)]) -> serde_json::Value {
    let fields: Vec<serde_json::Value> = fields
        .iter()
        .map(|(name, t, default)| {
            let mut f = json!({"name": name, "type": t});
            if let Some(d) = default {
                f["default"] = d.clone();
            }
            f
        })
        .collect();
    json!({"type": "record", "name": "User", "namespace": "test", "fields": fields})
}

#[test]
fn adding_a_field_with_a_default_is_full_compatible() {
    let v1 = avro(record(&[("name", "string", None)]));
    let v2 = avro(record(&[
        ("name", "string", None),
        ("age", "int", Some(json!(0))),
    ]));
    for level in [
        Compatibility::Backward,
        Compatibility::Forward,
        Compatibility::Full,
        Compatibility::FullTransitive,
    ] {
        assert!(
            check_compatibility(level, &v2, std::slice::from_ref(&v1)).is_ok(),
            "{level}"
        );
    }
}

#[test]
fn adding_a_field_without_default_is_forward_only() {
    let v1 = avro(record(&[("name", "string", None)]));
    let v2 = avro(record(&[("name", "string", None), ("age", "int", None)]));
    let old = std::slice::from_ref(&v1);
    let backward = check_compatibility(Compatibility::Backward, &v2, old).unwrap_err();
    assert!(backward[0].contains("age"), "{backward:?}");
    assert!(check_compatibility(Compatibility::Forward, &v2, old).is_ok());
    assert!(check_compatibility(Compatibility::Full, &v2, old).is_err());
    assert!(check_compatibility(Compatibility::None, &v2, old).is_ok());
    assert!(check_compatibility(Compatibility::AlwaysIncompatible, &v2, old).is_err());
}

#[test]
fn removing_a_field_without_default_is_backward_only() {
    let v1 = avro(record(&[("name", "string", None), ("age", "int", None)]));
    let v2 = avro(record(&[("name", "string", None)]));
    let old = std::slice::from_ref(&v1);
    assert!(check_compatibility(Compatibility::Backward, &v2, old).is_ok());
    assert!(check_compatibility(Compatibility::Forward, &v2, old).is_err());
}

#[test]
fn transitive_levels_check_every_version() {
    // v1 -> v2 drops `age` (backward ok), v2 -> v3 adds `age` as a string with a default
    // (backward ok against v2, but v3 cannot read v1's int `age`).
    let v1 = avro(record(&[("name", "string", None), ("age", "int", None)]));
    let v2 = avro(record(&[("name", "string", None)]));
    let v3 = avro(record(&[
        ("name", "string", None),
        ("age", "string", Some(json!(""))),
    ]));
    let old = [v1, v2];
    assert!(check_compatibility(Compatibility::Backward, &v3, &old).is_ok());
    assert!(check_compatibility(Compatibility::BackwardTransitive, &v3, &old).is_err());
}

#[test]
fn type_promotion_follows_avro() {
    let int = avro(record(&[("n", "int", None)]));
    let long = avro(record(&[("n", "long", None)]));
    // A long reader reads int data; an int reader cannot read long data.
    assert!(can_read(&int.parsed, &long.parsed).is_ok());
    assert!(can_read(&long.parsed, &int.parsed).is_err());
}

#[test]
fn bad_input_is_refused_with_a_reason() {
    for (kind, data, needle) in [
        (SchemaType::Avro, "{not json", "malformed schema JSON"),
        (
            SchemaType::Avro,
            r#"{"type":"record"}"#,
            "not a valid Avro schema",
        ),
        (
            SchemaType::Avro,
            r#"{"type":"nope"}"#,
            "not a valid Avro schema",
        ),
        (
            SchemaType::Json,
            r#"{"type": 12}"#,
            "not a valid JSON Schema",
        ),
        (SchemaType::Json, "[1,2]", "object or a boolean"),
        (SchemaType::Protobuf, "  ", "empty Protobuf"),
        (SchemaType::AutoConsume, "", "not a schema to store"),
    ] {
        let err = check_schema(&Schema::new(kind, data), &[]).unwrap_err();
        assert!(err.to_string().contains(needle), "{kind} {data}: {err}");
    }
    // Deep nesting stops in serde_json's recursion limit, not in a stack overflow.
    let deep = format!(
        "{}\"int\"{}",
        "{\"type\":\"array\",\"items\":".repeat(10_000),
        "}".repeat(10_000)
    );
    assert!(check_schema(&Schema::new(SchemaType::Avro, deep), &[]).is_err());
}

#[test]
fn pulsar_json_schema_is_avro_shaped() {
    let definition = record(&[("name", "string", None)]).to_string();
    let checked = check_schema(&Schema::new(SchemaType::Json, definition), &[]).unwrap();
    assert!(matches!(checked.parsed, Parsed::Avro(_)));
}

#[test]
fn json_schema_rules() {
    let js = |v: serde_json::Value| {
        check_schema(&Schema::new(SchemaType::Json, v.to_string()), &[]).unwrap()
    };
    let v1 = js(json!({"type": "object", "properties": {"a": {"type": "string"}}}));
    let v2 = js(
        json!({"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "integer"}}}),
    );
    let v3 =
        js(json!({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}));
    let v4 = js(json!({"type": "object", "properties": {"a": {"type": "integer"}}}));
    assert!(check_compatibility(Compatibility::Full, &v2, std::slice::from_ref(&v1)).is_ok());
    assert!(check_compatibility(Compatibility::Backward, &v3, std::slice::from_ref(&v1)).is_err());
    assert!(check_compatibility(Compatibility::Forward, &v3, std::slice::from_ref(&v1)).is_ok());
    assert!(check_compatibility(Compatibility::Backward, &v4, std::slice::from_ref(&v1)).is_err());
}

#[test]
fn key_value_checks_each_half() {
    let kv = |key: &str, value: serde_json::Value| {
        let value = value.to_string();
        let mut data = Vec::new();
        data.extend_from_slice(&(key.len() as i32).to_be_bytes());
        data.extend_from_slice(key.as_bytes());
        data.extend_from_slice(&(value.len() as i32).to_be_bytes());
        data.extend_from_slice(value.as_bytes());
        let mut s = Schema::new(SchemaType::KeyValue, data);
        s.properties
            .insert("key.schema.type".into(), "STRING".into());
        s.properties
            .insert("value.schema.type".into(), "AVRO".into());
        check_schema(&s, &[]).unwrap()
    };
    let v1 = kv("", record(&[("name", "string", None)]));
    let v2 = kv("", record(&[("name", "string", None), ("x", "int", None)]));
    let err = check_compatibility(Compatibility::Backward, &v2, &[v1]).unwrap_err();
    assert!(err[0].contains("value schema"), "{err:?}");
    assert!(split_key_value(&[0, 0, 0, 9, 1]).is_err());
    assert!(split_key_value(&[255, 255, 255, 255, 255, 255, 255, 255]).is_ok());
}

#[test]
fn primitive_types_only_match_themselves() {
    let s = check_schema(&Schema::new(SchemaType::String, ""), &[]).unwrap();
    let i = check_schema(&Schema::new(SchemaType::Int32, ""), &[]).unwrap();
    assert!(check_compatibility(Compatibility::Full, &s, std::slice::from_ref(&s)).is_ok());
    assert!(check_compatibility(Compatibility::Backward, &i, &[s]).is_err());
}

#[test]
fn normalized_content_ignores_whitespace_and_key_order() {
    let a = check_schema(
        &Schema::new(
            SchemaType::Avro,
            r#"{"type":"record","name":"R","fields":[]}"#,
        ),
        &[],
    )
    .unwrap();
    let b = check_schema(
        &Schema::new(
            SchemaType::Avro,
            "{ \"name\": \"R\",\n \"fields\": [], \"type\": \"record\" }",
        ),
        &[],
    )
    .unwrap();
    assert_eq!(a.normalized, b.normalized);
}

/// A random record schema: field names from a small set, types from Avro's primitives, some
/// with defaults.
fn arb_record() -> impl Strategy<Value = serde_json::Value> {
    let field = (
        prop::sample::select(vec!["a", "b", "c", "d", "e"]),
        prop::sample::select(vec![
            "int", "long", "float", "double", "string", "bytes", "boolean",
        ]),
        any::<bool>(),
    );
    prop::collection::vec(field, 0..5).prop_map(|fields| {
        let mut seen = std::collections::BTreeSet::new();
        let fields: Vec<serde_json::Value> = fields
            .into_iter()
            .filter(|(name, _, _)| seen.insert(*name))
            .map(|(name, t, with_default)| {
                let mut f = json!({"name": name, "type": t});
                if with_default {
                    f["default"] = match t {
                        "int" | "long" => json!(0),
                        "float" | "double" => json!(0.0),
                        "boolean" => json!(false),
                        _ => json!(""),
                    };
                }
                f
            })
            .collect();
        json!({"type": "record", "name": "R", "fields": fields})
    })
}

proptest! {
    /// A schema always reads its own data; FULL is exactly BACKWARD and FORWARD; NONE accepts
    /// everything; transitive over one version is the plain level.
    #[test]
    fn compatibility_levels_are_consistent(a in arb_record(), b in arb_record()) {
        let (a, b) = (avro(a), avro(b));
        prop_assert!(can_read(&a.parsed, &a.parsed).is_ok());
        let old = std::slice::from_ref(&a);
        let backward = check_compatibility(Compatibility::Backward, &b, old).is_ok();
        let forward = check_compatibility(Compatibility::Forward, &b, old).is_ok();
        let full = check_compatibility(Compatibility::Full, &b, old).is_ok();
        prop_assert_eq!(full, backward && forward);
        prop_assert!(check_compatibility(Compatibility::None, &b, old).is_ok());
        prop_assert_eq!(check_compatibility(Compatibility::BackwardTransitive, &b, old).is_ok(), backward);
        prop_assert_eq!(check_compatibility(Compatibility::FullTransitive, &b, old).is_ok(), full);
        // BACKWARD of b over a is FORWARD of a over b.
        prop_assert_eq!(backward, check_compatibility(Compatibility::Forward, &a, std::slice::from_ref(&b)).is_ok());
    }

    /// A field added with a default keeps FULL compatibility.
    #[test]
    fn adding_a_defaulted_field_is_full(a in arb_record()) {
        let mut b = a.clone();
        b["fields"].as_array_mut().unwrap().push(json!({"name": "zz", "type": "string", "default": ""}));
        let (a, b) = (avro(a), avro(b));
        prop_assert!(check_compatibility(Compatibility::Full, &b, &[a]).is_ok());
    }

    /// Arbitrary bytes never panic the parsers.
    #[test]
    fn arbitrary_definitions_do_not_panic(data in prop::collection::vec(any::<u8>(), 0..256), kind in prop::sample::select(SchemaType::ALL.to_vec())) {
        let _ = check_schema(&Schema::new(kind, data), &[]);
    }
}
