//! Parsing a schema of each language and checking two of them for compatibility.
//!
//! Avro (and Pulsar's JSON and PROTOBUF schemas, whose definitions are Avro records) is parsed
//! and resolved by `apache-avro`: "the new schema reads data written with the old one" is its
//! `SchemaCompatibility::can_read(old, new)`. A JSON Schema (Confluent's `JSON` type) is checked
//! against its meta-schema by `jsonschema`, and compared by the structural rules below. The
//! primitive types are compatible with themselves only. Protobuf (Confluent's `.proto` text or
//! base64 file descriptor, with its references as imports; Pulsar's `PROTOBUF_NATIVE`
//! descriptor set) is compiled by `protox` into `prost-reflect` descriptors and compared by
//! Confluent's Protobuf rules ([`protobuf`]).

use std::collections::BTreeSet;

use apache_avro::schema_compatibility::SchemaCompatibility;
use serde_json::Value;

use crate::types::{Compatibility, Result, Schema, SchemaError, SchemaType};

/// A schema parsed once, for comparisons.
#[derive(Debug, Clone)]
pub enum Parsed {
    /// An Avro schema (Avro, or Pulsar's Avro-shaped JSON/PROTOBUF definitions).
    Avro(Box<apache_avro::Schema>),
    /// A JSON Schema document.
    JsonSchema(Value),
    /// A Protobuf file (Confluent's, or the root file of Pulsar's `PROTOBUF_NATIVE`).
    Protobuf(Box<protobuf::ProtobufSchema>),
    /// Pulsar KeyValue: the key's and the value's schemas.
    KeyValue(Box<Parsed>, Box<Parsed>),
    /// A type without a definition (bytes, string, numbers, times).
    Primitive(SchemaType),
}

/// A parsed schema with what makes two registrations "the same schema".
#[derive(Debug, Clone)]
pub struct Checked {
    pub kind: SchemaType,
    pub parsed: Parsed,
    /// Normalized content: JSON definitions re-serialized (key order and whitespace do not
    /// matter), other definitions as given, plus the references.
    pub normalized: String,
}

/// Parses `schema`, with the schemas it references (already checked, in dependency order,
/// each with the name it is referenced by: Avro's named types, Protobuf's imports).
pub fn check_schema(schema: &Schema, references: &[(String, Schema)]) -> Result<Checked> {
    let parsed = parse(schema.kind, &schema.data, &schema.properties, references)?;
    let mut normalized = normalize(schema.kind, &schema.data);
    for r in &schema.references {
        normalized.push_str(&format!(
            "\u{0}{}\u{0}{}\u{0}{}",
            r.name, r.subject, r.version
        ));
    }
    Ok(Checked {
        kind: schema.kind,
        parsed,
        normalized,
    })
}

fn invalid(message: impl Into<String>) -> SchemaError {
    SchemaError::Invalid(message.into())
}

/// A JSON document, through serde_json (which refuses nesting deeper than 128).
fn json(data: &[u8]) -> Result<Value> {
    serde_json::from_slice(data).map_err(|e| invalid(format!("malformed schema JSON: {e}")))
}

fn normalize(kind: SchemaType, data: &[u8]) -> String {
    if matches!(
        kind,
        SchemaType::Avro | SchemaType::Json | SchemaType::Protobuf
    ) {
        if let Ok(value) = serde_json::from_slice::<Value>(data) {
            return format!("{kind}\u{0}{value}");
        }
    }
    format!("{kind}\u{0}{}", String::from_utf8_lossy(data))
}

fn parse(
    kind: SchemaType,
    data: &[u8],
    properties: &std::collections::BTreeMap<String, String>,
    references: &[(String, Schema)],
) -> Result<Parsed> {
    match kind {
        SchemaType::Avro => avro(data, references),
        SchemaType::Json => {
            let value = json(data)?;
            // Pulsar's JSON schema is an Avro record describing the JSON document.
            if value.get("type").and_then(Value::as_str) == Some("record") {
                return avro(data, references);
            }
            if !(value.is_object() || value.is_boolean()) {
                return Err(invalid("a JSON Schema is an object or a boolean"));
            }
            jsonschema::meta::validate(&value)
                .map_err(|e| invalid(format!("not a valid JSON Schema: {e}")))?;
            Ok(Parsed::JsonSchema(value))
        }
        SchemaType::Protobuf => {
            // Pulsar's PROTOBUF definition is Avro-shaped JSON; Confluent's is `.proto` text
            // (or a base64 file descriptor).
            if let Ok(value) = serde_json::from_slice::<Value>(data) {
                if value.get("type").and_then(Value::as_str) == Some("record") {
                    return avro(data, references);
                }
            }
            if data.iter().all(u8::is_ascii_whitespace) {
                return Err(invalid("empty Protobuf schema"));
            }
            Ok(Parsed::Protobuf(Box::new(protobuf::parse(
                data, references,
            )?)))
        }
        SchemaType::ProtobufNative => Ok(Parsed::Protobuf(Box::new(protobuf::parse_native(data)?))),
        SchemaType::KeyValue => key_value(data, properties),
        SchemaType::AutoConsume | SchemaType::AutoPublish => Err(invalid(format!(
            "{kind} is a request for the topic's schema, not a schema to store"
        ))),
        primitive => Ok(Parsed::Primitive(primitive)),
    }
}

fn avro(data: &[u8], references: &[(String, Schema)]) -> Result<Parsed> {
    // Through serde_json first: it bounds nesting, and gives a clear message for bad JSON.
    json(data)?;
    let text =
        std::str::from_utf8(data).map_err(|_| invalid("an Avro schema must be UTF-8 JSON"))?;
    let mut named = Vec::with_capacity(references.len());
    for (_, r) in references {
        named.push(
            std::str::from_utf8(&r.data)
                .map_err(|_| invalid("a referenced Avro schema must be UTF-8 JSON"))?,
        );
    }
    let schema = if named.is_empty() {
        apache_avro::Schema::parse_str(text)
    } else {
        apache_avro::Schema::parse_str_with_list(text, named).map(|(schema, _)| schema)
    }
    .map_err(|e| invalid(format!("not a valid Avro schema: {e}")))?;
    Ok(Parsed::Avro(Box::new(schema)))
}

/// Pulsar's KeyValue schema data: `[key length i32 BE][key][value length i32 BE][value]` (a
/// length of -1 is an empty half), the halves' types in the properties `key.schema.type` and
/// `value.schema.type`.
pub fn split_key_value(data: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    fn half(data: &[u8], at: usize) -> Result<(Vec<u8>, usize)> {
        let len_bytes: [u8; 4] = data
            .get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| invalid("KeyValue schema data is truncated"))?;
        let len = i32::from_be_bytes(len_bytes);
        if len < 0 {
            return Ok((Vec::new(), at + 4));
        }
        let end = (at + 4)
            .checked_add(len as usize)
            .filter(|end| *end <= data.len())
            .ok_or_else(|| invalid("KeyValue schema data is truncated"))?;
        Ok((data[at + 4..end].to_vec(), end))
    }
    let (key, at) = half(data, 0)?;
    let (value, end) = half(data, at)?;
    if end != data.len() {
        return Err(invalid("KeyValue schema data has trailing bytes"));
    }
    Ok((key, value))
}

fn key_value(
    data: &[u8],
    properties: &std::collections::BTreeMap<String, String>,
) -> Result<Parsed> {
    let (key, value) = split_key_value(data)?;
    let half = |name: &str, bytes: &[u8]| -> Result<Parsed> {
        let kind = match properties.get(&format!("{name}.schema.type")) {
            Some(t) => SchemaType::parse(t)
                .ok_or_else(|| invalid(format!("unknown {name}.schema.type '{t}'")))?,
            None => SchemaType::None,
        };
        if kind == SchemaType::KeyValue {
            return Err(invalid(
                "a KeyValue schema cannot nest another KeyValue schema",
            ));
        }
        parse(kind, bytes, &Default::default(), &[])
    };
    Ok(Parsed::KeyValue(
        Box::new(half("key", &key)?),
        Box::new(half("value", &value)?),
    ))
}

/// Whether data written with `writer` can be read with `reader`; `Err` says why not.
pub fn can_read(writer: &Parsed, reader: &Parsed) -> std::result::Result<(), String> {
    match (writer, reader) {
        (Parsed::Avro(w), Parsed::Avro(r)) => {
            SchemaCompatibility::can_read(w, r).map_err(|e| e.to_string())
        }
        (Parsed::JsonSchema(w), Parsed::JsonSchema(r)) => json_can_read(w, r, "#"),
        (Parsed::Protobuf(w), Parsed::Protobuf(r)) => protobuf::can_read(w, r),
        (Parsed::KeyValue(wk, wv), Parsed::KeyValue(rk, rv)) => {
            can_read(wk, rk).map_err(|e| format!("key schema: {e}"))?;
            can_read(wv, rv).map_err(|e| format!("value schema: {e}"))
        }
        (Parsed::Primitive(w), Parsed::Primitive(r)) if w == r => Ok(()),
        _ => Err(format!(
            "a {} schema cannot read data written with a {} schema",
            describe(reader),
            describe(writer)
        )),
    }
}

fn describe(parsed: &Parsed) -> &'static str {
    match parsed {
        Parsed::Avro(_) => "Avro",
        Parsed::JsonSchema(_) => "JSON Schema",
        Parsed::Protobuf(_) => "Protobuf",
        Parsed::KeyValue(..) => "KeyValue",
        Parsed::Primitive(t) => t.name(),
    }
}

/// JSON Schema reader/writer rules for the common shape of evolving records (Confluent's
/// rules cover far more): the types must agree where both name one; a property the reader
/// requires must be required by the writer; a reader closed to additional properties must
/// declare every property the writer may write; nested property schemas by the same rules.
fn json_can_read(writer: &Value, reader: &Value, at: &str) -> std::result::Result<(), String> {
    if writer == reader || reader == &Value::Bool(true) {
        return Ok(());
    }
    let (Some(w), Some(r)) = (writer.as_object(), reader.as_object()) else {
        return Err(format!("{at}: schemas differ and are not both objects"));
    };
    let types = |v: &serde_json::Map<String, Value>| -> Option<BTreeSet<String>> {
        match v.get("type")? {
            Value::String(s) => Some(BTreeSet::from([s.clone()])),
            Value::Array(a) => Some(
                a.iter()
                    .filter_map(|t| t.as_str().map(String::from))
                    .collect(),
            ),
            _ => None,
        }
    };
    if let (Some(wt), Some(rt)) = (types(w), types(r)) {
        let widened = |t: &String| rt.contains(t) || (t == "integer" && rt.contains("number"));
        if let Some(missing) = wt.iter().find(|t| !widened(t)) {
            return Err(format!("{at}: the reader does not accept type '{missing}'"));
        }
    }
    let required = |v: &serde_json::Map<String, Value>| -> BTreeSet<String> {
        v.get("required")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (wr, rr) = (required(w), required(r));
    if let Some(newly) = rr.difference(&wr).next() {
        return Err(format!(
            "{at}: property '{newly}' is required by the reader but not by the writer"
        ));
    }
    let empty = serde_json::Map::new();
    let props = |v: &'_ serde_json::Map<String, Value>| -> serde_json::Map<String, Value> {
        v.get("properties")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_else(|| empty.clone())
    };
    let (wp, rp) = (props(w), props(r));
    let reader_closed = r.get("additionalProperties") == Some(&Value::Bool(false));
    for (name, wschema) in &wp {
        match rp.get(name) {
            Some(rschema) => json_can_read(wschema, rschema, &format!("{at}/properties/{name}"))?,
            None if reader_closed => {
                return Err(format!(
                    "{at}: property '{name}' may be written but the reader allows no additional properties"
                ))
            }
            None => {}
        }
    }
    Ok(())
}

/// Checks `new` against `existing` (oldest first) under `level`: the latest only, or every
/// version for the transitive levels. `Err` carries the reasons, one per failed comparison.
pub fn check_compatibility(
    level: Compatibility,
    new: &Checked,
    existing: &[Checked],
) -> std::result::Result<(), Vec<String>> {
    let Some(latest) = existing.last() else {
        return Ok(());
    };
    if level == Compatibility::None {
        return Ok(());
    }
    if level == Compatibility::AlwaysIncompatible {
        return Err(vec![
            "the compatibility level is ALWAYS_INCOMPATIBLE: no new schema version is accepted"
                .into(),
        ]);
    }
    let against: &[Checked] = if level.is_transitive() {
        existing
    } else {
        std::slice::from_ref(latest)
    };
    let (backward, forward) = level.directions();
    let mut reasons = Vec::new();
    for old in against.iter().rev() {
        if backward {
            if let Err(e) = can_read(&old.parsed, &new.parsed) {
                reasons.push(format!(
                    "{level}: the new schema cannot read data written with an existing version: {e}"
                ));
            }
        }
        if forward {
            if let Err(e) = can_read(&new.parsed, &old.parsed) {
                reasons.push(format!(
                    "{level}: an existing version cannot read data written with the new schema: {e}"
                ));
            }
        }
    }
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(reasons)
    }
}

pub mod protobuf;

#[cfg(test)]
mod tests;
