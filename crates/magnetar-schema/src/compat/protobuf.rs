//! Protobuf schemas: parsing (`.proto` text compiled by `protox`, or a serialized
//! `FileDescriptorProto` as confluent-kafka's serializers send it, base64-encoded; Pulsar's
//! `PROTOBUF_NATIVE` `FileDescriptorSet`) into `prost-reflect` descriptors, and Confluent's
//! Protobuf compatibility rules (its `ProtobufSchema` diff) between two of them.
//!
//! The rules compare the writer's file (`original`) with the reader's (`update`); only these
//! differences are incompatible, the others (messages, enums, enum constants, optional fields
//! and oneofs added or removed, fields renamed, messages moved, string <-> bytes) are not:
//! - the package changed;
//! - a message of the writer is missing in the reader (nested ones too; map entries aside);
//! - a field's kind changed (scalar, message, map; an enum is a scalar), or its scalar group
//!   (`int32/int64/uint32/uint64/bool/enum`, `sint32/sint64`, `string/bytes`,
//!   `fixed32/sfixed32`, `fixed64/sfixed64`, `float`, `double`);
//! - a numeric field changed between repeated, required and singular;
//! - a field's message type changed name (package aside), or the message it names changed
//!   incompatibly;
//! - a required field was added or removed;
//! - a field was removed from a oneof (and from the message);
//! - several existing fields moved into one oneof, or a field moved into a oneof that had
//!   fields already.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use base64::Engine;
use protox::file::{ChainFileResolver, File, FileResolver, GoogleFileResolver};
use protox::prost_reflect::{
    Cardinality, DescriptorPool, FieldDescriptor, FileDescriptor, Kind, MessageDescriptor,
};
use serde_json::Value;

use crate::types::{Result, Schema, SchemaError};

/// The name the registered file is compiled under when it is `.proto` text (imports name the
/// references; nothing imports the registered file itself).
const MAIN_FILE: &str = "magnetar/registered.proto";

fn invalid(message: impl Into<String>) -> SchemaError {
    SchemaError::Invalid(message.into())
}

/// A parsed Protobuf schema: the registered file, and for Pulsar's `PROTOBUF_NATIVE` the root
/// message its producers write.
#[derive(Debug, Clone)]
pub struct ProtobufSchema {
    pub file: FileDescriptor,
    pub root_message: Option<String>,
}

/// Deepest `{` nesting of `.proto` text accepted: protox's parser recurses per nested message
/// or option value without a limit of its own, so deeper text could exhaust the stack (a
/// descriptor's nesting is bounded by prost's decoder, at 100).
const NESTING_MAX: usize = 64;

/// Refuses text nested deeper than [`NESTING_MAX`] (braces in strings or comments count too:
/// that only errs towards refusing absurd schemas).
fn check_nesting(text: &str) -> Result<()> {
    let mut depth = 0usize;
    for b in text.bytes() {
        match b {
            b'{' => {
                depth += 1;
                if depth > NESTING_MAX {
                    return Err(invalid(format!(
                        "Protobuf schema nested deeper than {NESTING_MAX} levels"
                    )));
                }
            }
            b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// One file as given: `.proto` text, or a base64 `FileDescriptorProto`.
fn open(name: &str, data: &[u8]) -> Result<File> {
    let text =
        std::str::from_utf8(data).map_err(|_| invalid("a Protobuf schema must be UTF-8 text"))?;
    check_nesting(text)?;
    let text_error = match File::from_source(name, text) {
        Ok(file) => return Ok(file),
        Err(e) => e,
    };
    // confluent-kafka's serializers register the file descriptor, base64-encoded.
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(text.trim().as_bytes())
        .ok()
        .and_then(|bytes| File::decode_file_descriptor_proto(bytes.as_slice()).ok())
        .filter(|f| !f.file_descriptor_proto().message_type.is_empty() || !f.name().is_empty());
    match decoded {
        Some(file) => Ok(file),
        None => Err(invalid(format!(
            "not a valid Protobuf schema: {text_error}"
        ))),
    }
}

/// The references, by import name.
struct References(HashMap<String, Vec<u8>>);

impl FileResolver for References {
    fn open_file(&self, name: &str) -> std::result::Result<File, protox::Error> {
        let Some(data) = self.0.get(name) else {
            return Err(protox::Error::file_not_found(name));
        };
        let mut file = open(name, data).map_err(protox::Error::new)?;
        // A descriptor registered under another file name is still this import.
        if file.name() != name {
            let mut proto = file.file_descriptor_proto().clone();
            proto.name = Some(name.to_string());
            file = File::from_file_descriptor_proto(proto);
        }
        Ok(file)
    }
}

/// Confluent's `.proto` text or base64 descriptor, with its references (import name ->
/// definition) for its imports; well-known `google/protobuf/*` imports need none.
pub fn parse(data: &[u8], references: &[(String, Schema)]) -> Result<ProtobufSchema> {
    let main = open(MAIN_FILE, data)?;
    let main_name = if main.name().is_empty() {
        MAIN_FILE.to_string()
    } else {
        main.name().to_string()
    };
    let files: HashMap<String, Vec<u8>> = references
        .iter()
        .map(|(name, schema)| (name.clone(), schema.data.clone()))
        .collect();
    let mut resolver = ChainFileResolver::new();
    resolver.add(MainFile {
        name: main_name.clone(),
        file: main,
    });
    resolver.add(References(files));
    resolver.add(GoogleFileResolver::new());
    let mut compiler = protox::Compiler::with_file_resolver(resolver);
    compiler
        .open_file(&main_name)
        .map_err(|e| invalid(format!("not a valid Protobuf schema: {e}")))?;
    let file = compiler
        .descriptor_pool()
        .get_file_by_name(&main_name)
        .ok_or_else(|| invalid("the Protobuf schema did not compile to a file"))?;
    Ok(ProtobufSchema {
        file,
        root_message: None,
    })
}

/// The registered file, already opened.
struct MainFile {
    name: String,
    file: File,
}

impl FileResolver for MainFile {
    fn open_file(&self, name: &str) -> std::result::Result<File, protox::Error> {
        if name == self.name {
            Ok(self.file.clone())
        } else {
            Err(protox::Error::file_not_found(name))
        }
    }
}

/// Pulsar's `PROTOBUF_NATIVE` definition: JSON with `fileDescriptorSet` (base64 of a
/// `FileDescriptorSet`), `rootMessageTypeName` and `rootFileDescriptorName`.
pub fn parse_native(data: &[u8]) -> Result<ProtobufSchema> {
    let value: Value = serde_json::from_slice(data)
        .map_err(|e| invalid(format!("malformed PROTOBUF_NATIVE schema JSON: {e}")))?;
    let field = |name: &str| -> Result<&str> {
        value
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(format!("PROTOBUF_NATIVE schema without '{name}'")))
    };
    let set = base64::engine::general_purpose::STANDARD
        .decode(field("fileDescriptorSet")?.as_bytes())
        .map_err(|e| invalid(format!("fileDescriptorSet is not base64: {e}")))?;
    let pool = DescriptorPool::decode(set.as_slice())
        .map_err(|e| invalid(format!("fileDescriptorSet does not decode: {e}")))?;
    let root = field("rootMessageTypeName")?;
    let message = pool.get_message_by_name(root).ok_or_else(|| {
        invalid(format!(
            "root message '{root}' is not in the descriptor set"
        ))
    })?;
    let file_name = field("rootFileDescriptorName")?;
    if message.parent_file().name() != file_name {
        return Err(invalid(format!(
            "root message '{root}' is not in file '{file_name}'"
        )));
    }
    Ok(ProtobufSchema {
        file: message.parent_file(),
        root_message: Some(root.to_string()),
    })
}

/// Whether data written with `writer` can be read with `reader`; `Err` lists the
/// incompatible differences.
pub fn can_read(
    writer: &ProtobufSchema,
    reader: &ProtobufSchema,
) -> std::result::Result<(), String> {
    let mut diff = Diff::default();
    if writer.root_message != reader.root_message {
        diff.add(
            "#",
            format!(
                "the root message changed from '{}' to '{}'",
                writer.root_message.as_deref().unwrap_or(""),
                reader.root_message.as_deref().unwrap_or("")
            ),
        );
    }
    if writer.file.package_name() != reader.file.package_name() {
        diff.add(
            "#",
            format!(
                "PACKAGE_CHANGED from '{}' to '{}'",
                writer.file.package_name(),
                reader.file.package_name()
            ),
        );
    }
    diff.messages(
        "#",
        writer.file.messages().collect(),
        reader.file.messages().collect(),
    );
    if diff.found.is_empty() {
        Ok(())
    } else {
        Err(diff.found.join("; "))
    }
}

#[derive(Default)]
struct Diff {
    /// Incompatible differences, as `path: what`.
    found: Vec<String>,
    /// Message pairs being (or already) compared: recursive types compare once.
    visited: BTreeSet<(String, String)>,
}

/// A field's shape for the rules: a scalar group, a message, or a map.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Scalar {
    GeneralNumber,
    SignedNumber,
    StringOrBytes,
    Fixed32,
    Fixed64,
    Float,
    Double,
}

enum Shape {
    Scalar(Scalar),
    Message(MessageDescriptor),
    Map(FieldDescriptor, FieldDescriptor),
}

fn shape(field: &FieldDescriptor) -> Shape {
    kind_shape(field.kind())
}

fn kind_shape(kind: Kind) -> Shape {
    match kind {
        Kind::Int32 | Kind::Int64 | Kind::Uint32 | Kind::Uint64 | Kind::Bool | Kind::Enum(_) => {
            Shape::Scalar(Scalar::GeneralNumber)
        }
        Kind::Sint32 | Kind::Sint64 => Shape::Scalar(Scalar::SignedNumber),
        Kind::String | Kind::Bytes => Shape::Scalar(Scalar::StringOrBytes),
        Kind::Fixed32 | Kind::Sfixed32 => Shape::Scalar(Scalar::Fixed32),
        Kind::Fixed64 | Kind::Sfixed64 => Shape::Scalar(Scalar::Fixed64),
        Kind::Float => Shape::Scalar(Scalar::Float),
        Kind::Double => Shape::Scalar(Scalar::Double),
        Kind::Message(m) if m.is_map_entry() => {
            Shape::Map(m.map_entry_key_field(), m.map_entry_value_field())
        }
        Kind::Message(m) => Shape::Message(m),
    }
}

fn shape_name(shape: &Shape) -> &'static str {
    match shape {
        Shape::Scalar(_) => "scalar",
        Shape::Message(_) => "message",
        Shape::Map(..) => "map",
    }
}

/// Repeated, required or singular (optional, implicit presence, oneof member).
fn label(field: &FieldDescriptor) -> Cardinality {
    field.cardinality()
}

/// A message's name without its package.
fn local_name(message: &MessageDescriptor) -> &str {
    let package = message.package_name();
    let full = message.full_name();
    if package.is_empty() {
        full
    } else {
        full.strip_prefix(package)
            .and_then(|s| s.strip_prefix('.'))
            .unwrap_or(full)
    }
}

impl Diff {
    fn add(&mut self, path: &str, what: String) {
        self.found.push(format!("{path}: {what}"));
    }

    fn messages(
        &mut self,
        path: &str,
        original: Vec<MessageDescriptor>,
        update: Vec<MessageDescriptor>,
    ) {
        let by_name = |list: Vec<MessageDescriptor>| -> BTreeMap<String, MessageDescriptor> {
            list.into_iter()
                .filter(|m| !m.is_map_entry())
                .map(|m| (m.name().to_string(), m))
                .collect()
        };
        let (original, update) = (by_name(original), by_name(update));
        for (name, o) in &original {
            let at = format!("{path}/{name}");
            match update.get(name) {
                None => self.add(&at, "MESSAGE_REMOVED".into()),
                Some(u) => self.message(&at, o, u),
            }
        }
    }

    fn message(&mut self, path: &str, original: &MessageDescriptor, update: &MessageDescriptor) {
        if !self.visited.insert((
            original.full_name().to_string(),
            update.full_name().to_string(),
        )) {
            return;
        }
        // Fields outside a real oneof (proto3 `optional` is a synthetic oneof, not a oneof).
        let oneof_of = |f: &FieldDescriptor| {
            f.containing_oneof()
                .filter(|o| !o.is_synthetic())
                .map(|o| o.name().to_string())
        };
        let top = |m: &MessageDescriptor| -> BTreeMap<u32, FieldDescriptor> {
            m.fields()
                .filter(|f| oneof_of(f).is_none())
                .map(|f| (f.number(), f))
                .collect()
        };
        let all = |m: &MessageDescriptor| -> BTreeMap<u32, (FieldDescriptor, Option<String>)> {
            m.fields()
                .map(|f| {
                    let oneof = oneof_of(&f);
                    (f.number(), (f, oneof))
                })
                .collect()
        };
        let (mut original_top, update_top) = (top(original), top(update));
        let (original_all, update_all) = (all(original), all(update));
        let oneofs = |m: &MessageDescriptor| -> BTreeMap<String, Vec<FieldDescriptor>> {
            m.oneofs()
                .filter(|o| !o.is_synthetic())
                .map(|o| (o.name().to_string(), o.fields().collect()))
                .collect()
        };
        let (original_oneofs, update_oneofs) = (oneofs(original), oneofs(update));
        for (name, fields) in &update_oneofs {
            let (mut moved, mut existing) = (0, 0);
            for f in fields {
                if original_top.remove(&f.number()).is_some() {
                    moved += 1;
                } else if original_all
                    .get(&f.number())
                    .is_some_and(|(_, oneof)| oneof.is_some())
                {
                    existing += 1;
                }
            }
            let at = format!("{path}/{name}");
            if moved > 1 {
                self.add(&at, "MULTIPLE_FIELDS_MOVED_TO_ONEOF".into());
            } else if moved == 1 && existing > 0 {
                self.add(&at, "FIELD_MOVED_TO_EXISTING_ONEOF".into());
            }
        }
        for (name, o_fields) in &original_oneofs {
            let Some(u_fields) = update_oneofs.get(name) else {
                continue; // ONEOF_REMOVED is compatible
            };
            let u_by_tag: BTreeMap<u32, &FieldDescriptor> =
                u_fields.iter().map(|f| (f.number(), f)).collect();
            for o in o_fields {
                let at = format!("{path}/{name}/{}", o.number());
                match u_by_tag.get(&o.number()) {
                    Some(u) => self.field(&at, o, u),
                    // A field that left the oneof for elsewhere in the message was moved.
                    None if !update_all.contains_key(&o.number()) => {
                        self.add(&at, "ONEOF_FIELD_REMOVED".into())
                    }
                    None => {}
                }
            }
        }
        let tags: BTreeSet<u32> = original_top
            .keys()
            .chain(update_top.keys())
            .copied()
            .collect();
        for tag in tags {
            let at = format!("{path}/{tag}");
            match (original_top.get(&tag), update_top.get(&tag)) {
                (Some(o), None) if label(o) == Cardinality::Required => {
                    self.add(&at, "REQUIRED_FIELD_REMOVED".into())
                }
                (None, Some(u)) if label(u) == Cardinality::Required => {
                    self.add(&at, "REQUIRED_FIELD_ADDED".into())
                }
                (Some(o), Some(u)) => self.field(&at, o, u),
                _ => {}
            }
        }
        // Fields whose oneof membership changed are compared by number too.
        for (tag, (o, o_oneof)) in &original_all {
            let Some((u, u_oneof)) = update_all.get(tag) else {
                continue;
            };
            let compared = (o_oneof.is_none() && u_oneof.is_none())
                || (o_oneof.is_some() && o_oneof == u_oneof);
            if !compared {
                self.field(&format!("{path}/{tag}"), o, u);
            }
        }
        self.messages(
            path,
            original.child_messages().collect(),
            update.child_messages().collect(),
        );
    }

    fn field(&mut self, path: &str, original: &FieldDescriptor, update: &FieldDescriptor) {
        self.shapes(
            path,
            shape(original),
            shape(update),
            Some((label(original), label(update))),
        );
    }

    fn shapes(
        &mut self,
        path: &str,
        original: Shape,
        update: Shape,
        labels: Option<(Cardinality, Cardinality)>,
    ) {
        match (original, update) {
            (Shape::Scalar(o), Shape::Scalar(u)) => {
                if o != u {
                    self.add(
                        path,
                        format!("FIELD_SCALAR_KIND_CHANGED from {o:?} to {u:?}"),
                    );
                } else if o != Scalar::StringOrBytes {
                    if let Some((ol, ul)) = labels.filter(|(ol, ul)| ol != ul) {
                        self.add(
                            path,
                            format!("FIELD_NUMERIC_LABEL_CHANGED from {ol:?} to {ul:?}"),
                        );
                    }
                }
            }
            (Shape::Message(o), Shape::Message(u)) => {
                if local_name(&o) != local_name(&u) {
                    self.add(
                        path,
                        format!(
                            "FIELD_NAMED_TYPE_CHANGED from '{}' to '{}'",
                            o.full_name(),
                            u.full_name()
                        ),
                    );
                    return;
                }
                let before = self.found.len();
                self.message(&format!("{path}({})", local_name(&o)), &o, &u);
                if self.found.len() > before {
                    self.add(
                        path,
                        format!("FIELD_NAMED_TYPE_CHANGED: '{}' changed", local_name(&o)),
                    );
                }
            }
            (Shape::Map(ok, ov), Shape::Map(uk, uv)) => {
                self.shapes(&format!("{path}/key"), shape(&ok), shape(&uk), None);
                self.shapes(&format!("{path}/value"), shape(&ov), shape(&uv), None);
            }
            (o, u) => self.add(
                path,
                format!(
                    "FIELD_KIND_CHANGED from {} to {}",
                    shape_name(&o),
                    shape_name(&u)
                ),
            ),
        }
    }
}

#[cfg(test)]
mod tests;
