use base64::Engine;
use protox::prost_reflect::prost::Message;

use crate::compat::{check_compatibility, check_schema, Checked, Parsed};
use crate::types::{Compatibility, Schema, SchemaType};

fn proto(text: &str) -> Checked {
    check_schema(&Schema::new(SchemaType::Protobuf, text), &[]).unwrap()
}

fn user(fields: &str) -> Checked {
    proto(&format!(
        "syntax = \"proto3\";\npackage test;\nmessage User {{\n{fields}\n}}\n"
    ))
}

/// The reasons `new` is refused under `level` after `old`, empty when it is accepted.
fn refused(level: Compatibility, old: &Checked, new: &Checked) -> String {
    check_compatibility(level, new, std::slice::from_ref(old))
        .err()
        .unwrap_or_default()
        .join(" | ")
}

#[test]
fn adding_and_removing_optional_fields_is_full_compatible() {
    let v1 = user("string name = 1;");
    let v2 = user("string name = 1; int64 age = 2; optional string email = 3;");
    for level in [
        Compatibility::Backward,
        Compatibility::Forward,
        Compatibility::Full,
    ] {
        assert_eq!(refused(level, &v1, &v2), "", "{level} add");
        assert_eq!(refused(level, &v2, &v1), "", "{level} remove");
    }
    // Renaming a field (same number, same type) and string <-> bytes are compatible.
    let renamed = user("bytes full_name = 1;");
    assert_eq!(refused(Compatibility::Full, &v1, &renamed), "");
}

#[test]
fn changing_a_field_type_is_refused_by_its_scalar_group() {
    let v1 = user("int32 count = 1;");
    // int32 -> int64 (same group: varint) is compatible; sint64 and string are not.
    assert_eq!(
        refused(Compatibility::Backward, &v1, &user("int64 count = 1;")),
        ""
    );
    let r = refused(Compatibility::Backward, &v1, &user("sint64 count = 1;"));
    assert!(
        r.contains("FIELD_SCALAR_KIND_CHANGED") && r.contains("#/User/1"),
        "{r}"
    );
    let r = refused(Compatibility::Backward, &v1, &user("string count = 1;"));
    assert!(r.contains("FIELD_SCALAR_KIND_CHANGED"), "{r}");
    // A scalar that becomes a message is a kind change.
    let r = refused(
        Compatibility::Backward,
        &v1,
        &user("Inner count = 1; message Inner { int32 v = 1; }"),
    );
    assert!(
        r.contains("FIELD_KIND_CHANGED from scalar to message"),
        "{r}"
    );
    // A numeric field that becomes repeated changes its label.
    let r = refused(
        Compatibility::Backward,
        &v1,
        &user("repeated int32 count = 1;"),
    );
    assert!(r.contains("FIELD_NUMERIC_LABEL_CHANGED"), "{r}");
    // A string one may.
    let s = user("string tag = 1;");
    assert_eq!(
        refused(
            Compatibility::Backward,
            &s,
            &user("repeated string tag = 1;")
        ),
        ""
    );
}

#[test]
fn removing_a_message_or_changing_the_package_is_refused() {
    let v1 = proto(
        "syntax = \"proto3\"; package test; message User { string name = 1; } message Order { int64 id = 1; }",
    );
    let v2 = proto("syntax = \"proto3\"; package test; message User { string name = 1; }");
    let r = refused(Compatibility::Backward, &v1, &v2);
    assert!(r.contains("#/Order: MESSAGE_REMOVED"), "{r}");
    // Adding one is compatible (backward), so FORWARD refuses the removal the other way only.
    assert_eq!(refused(Compatibility::Backward, &v2, &v1), "");
    let r = refused(Compatibility::Forward, &v2, &v1);
    assert!(r.contains("MESSAGE_REMOVED"), "{r}");
    let moved = proto("syntax = \"proto3\"; package other; message User { string name = 1; }");
    let r = refused(Compatibility::Backward, &v2, &moved);
    assert!(r.contains("PACKAGE_CHANGED"), "{r}");
}

#[test]
fn nested_message_changes_are_found_through_fields() {
    let v1 = user("Address home = 1; message Address { string city = 1; }");
    let v2 = user("Address home = 1; message Address { int32 city = 1; }");
    let r = refused(Compatibility::Backward, &v1, &v2);
    assert!(r.contains("FIELD_SCALAR_KIND_CHANGED"), "{r}");
    assert!(r.contains("FIELD_NAMED_TYPE_CHANGED"), "{r}");
    // A field that names another message type.
    let v3 = user("Place home = 1; message Place { string city = 1; }");
    let r = refused(Compatibility::Backward, &v1, &v3);
    assert!(
        r.contains("FIELD_NAMED_TYPE_CHANGED from 'test.User.Address'"),
        "{r}"
    );
    // Recursive types compare once.
    let tree = user("User parent = 1; repeated User children = 2;");
    assert_eq!(refused(Compatibility::Full, &tree, &tree.clone()), "");
}

#[test]
fn required_fields_and_oneofs_follow_confluents_rules() {
    let p2 = |fields: &str| {
        proto(&format!(
            "syntax = \"proto2\"; package test; message User {{ {fields} }}"
        ))
    };
    let v1 = p2("optional string name = 1;");
    let r = refused(
        Compatibility::Backward,
        &v1,
        &p2("optional string name = 1; required int32 age = 2;"),
    );
    assert!(r.contains("REQUIRED_FIELD_ADDED"), "{r}");
    let r = refused(
        Compatibility::Backward,
        &p2("optional string name = 1; required int32 age = 2;"),
        &v1,
    );
    assert!(r.contains("REQUIRED_FIELD_REMOVED"), "{r}");

    let o1 = user("oneof contact { string email = 1; string phone = 2; }");
    // Adding a field to a oneof is compatible; removing one is not.
    let o2 = user("oneof contact { string email = 1; string phone = 2; string fax = 3; }");
    assert_eq!(refused(Compatibility::Backward, &o1, &o2), "");
    let r = refused(Compatibility::Backward, &o2, &o1);
    assert!(r.contains("ONEOF_FIELD_REMOVED"), "{r}");
    // One existing field moved into a new oneof is compatible; two are not.
    let flat = user("string email = 1; string phone = 2;");
    assert_eq!(
        refused(
            Compatibility::Backward,
            &flat,
            &user("string phone = 2; oneof contact { string email = 1; }")
        ),
        ""
    );
    let r = refused(Compatibility::Backward, &flat, &o1);
    assert!(r.contains("MULTIPLE_FIELDS_MOVED_TO_ONEOF"), "{r}");
    // proto3 `optional` is not a oneof.
    assert_eq!(
        refused(
            Compatibility::Full,
            &user("string email = 1;"),
            &user("optional string email = 1;")
        ),
        ""
    );
}

#[test]
fn maps_compare_their_key_and_value_types() {
    let v1 = user("map<string, int32> counts = 1;");
    assert_eq!(
        refused(
            Compatibility::Full,
            &v1,
            &user("map<string, int64> counts = 1;")
        ),
        ""
    );
    let r = refused(
        Compatibility::Full,
        &v1,
        &user("map<string, string> counts = 1;"),
    );
    assert!(
        r.contains("#/User/1/value: FIELD_SCALAR_KIND_CHANGED"),
        "{r}"
    );
    let r = refused(Compatibility::Full, &v1, &user("int32 counts = 1;"));
    assert!(r.contains("FIELD_KIND_CHANGED from map to scalar"), "{r}");
}

#[test]
fn transitive_levels_check_every_version() {
    let v1 = user("int32 a = 1;");
    let v2 = user("int32 b = 2;");
    let v3 = user("string a = 1; int32 b = 2;");
    let versions = [v1, v2];
    assert!(check_compatibility(Compatibility::Backward, &v3, &versions).is_ok());
    let err = check_compatibility(Compatibility::BackwardTransitive, &v3, &versions).unwrap_err();
    assert!(
        err.join(" ").contains("FIELD_SCALAR_KIND_CHANGED"),
        "{err:?}"
    );
}

#[test]
fn imports_resolve_through_references_and_well_known_types() {
    let common = Schema::new(
        SchemaType::Protobuf,
        "syntax = \"proto3\"; package common; message Money { int64 cents = 1; }",
    );
    let text = "syntax = \"proto3\"; package shop; import \"common.proto\"; import \"google/protobuf/timestamp.proto\"; message Order { common.Money total = 1; google.protobuf.Timestamp at = 2; }";
    let order = check_schema(
        &Schema::new(SchemaType::Protobuf, text),
        &[("common.proto".to_string(), common)],
    )
    .unwrap();
    assert!(matches!(order.parsed, Parsed::Protobuf(_)));
    let err = check_schema(&Schema::new(SchemaType::Protobuf, text), &[]).unwrap_err();
    assert!(err.to_string().contains("common.proto"), "{err}");
}

#[test]
fn a_base64_file_descriptor_is_a_schema_and_bad_text_is_refused() {
    // What confluent-kafka's ProtobufSerializer registers: the FileDescriptorProto, base64.
    let compiled = user("string name = 1;");
    let Parsed::Protobuf(p) = &compiled.parsed else {
        panic!("not protobuf")
    };
    let mut descriptor = p.file.file_descriptor_proto().clone();
    descriptor.name = Some("user.proto".into());
    let encoded = base64::engine::general_purpose::STANDARD.encode(descriptor.encode_to_vec());
    let from_descriptor = proto(&encoded);
    assert_eq!(
        refused(Compatibility::Full, &compiled, &from_descriptor),
        ""
    );
    let changed = user("int32 name = 1;");
    assert!(!refused(Compatibility::Backward, &from_descriptor, &changed).is_empty());
    let err = check_schema(&Schema::new(SchemaType::Protobuf, "message { nope"), &[]).unwrap_err();
    assert!(
        err.to_string().contains("not a valid Protobuf schema"),
        "{err}"
    );
}

#[test]
fn pulsar_protobuf_native_schemas_compare_their_root_files() {
    let native = |fields: &str| {
        let compiled = user(fields);
        let Parsed::Protobuf(p) = &compiled.parsed else {
            panic!("not protobuf")
        };
        let mut file = p.file.file_descriptor_proto().clone();
        file.name = Some("user.proto".into());
        let set = protox::prost_reflect::prost_types::FileDescriptorSet { file: vec![file] };
        let data = serde_json::json!({
            "fileDescriptorSet": base64::engine::general_purpose::STANDARD.encode(set.encode_to_vec()),
            "rootMessageTypeName": "test.User",
            "rootFileDescriptorName": "user.proto",
        });
        check_schema(
            &Schema::new(SchemaType::ProtobufNative, data.to_string()),
            &[],
        )
        .unwrap()
    };
    let v1 = native("string name = 1;");
    assert_eq!(
        refused(
            Compatibility::Full,
            &v1,
            &native("string name = 1; int32 age = 2;")
        ),
        ""
    );
    let r = refused(Compatibility::Full, &v1, &native("double name = 1;"));
    assert!(r.contains("FIELD_SCALAR_KIND_CHANGED"), "{r}");
    let err = check_schema(&Schema::new(SchemaType::ProtobufNative, "{}"), &[]).unwrap_err();
    assert!(err.to_string().contains("fileDescriptorSet"), "{err}");
}

#[test]
fn deep_nesting_is_refused_before_the_parser_recurses() {
    let deep = format!(
        "syntax = \"proto3\"; {} {}",
        "message M { ".repeat(20_000),
        "}".repeat(20_000)
    );
    let err = check_schema(&Schema::new(SchemaType::Protobuf, deep), &[]).unwrap_err();
    assert!(err.to_string().contains("nested deeper"), "{err}");
    // Sixty levels are fine.
    let nested = format!(
        "syntax = \"proto3\"; {} {}",
        "message M { ".repeat(60),
        "}".repeat(60)
    );
    check_schema(&Schema::new(SchemaType::Protobuf, nested), &[]).unwrap();
}
