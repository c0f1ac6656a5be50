//! Helpers shared by the consumer group APIs: conversions between wire strings and the
//! coordinator's plain strings.

use kafka_protocol::protocol::StrBytes;

pub(super) fn s(value: &StrBytes) -> String {
    value.as_str().to_string()
}

pub(super) fn opt(value: &Option<StrBytes>) -> Option<String> {
    value.as_ref().map(s)
}

pub(super) fn wire(value: String) -> StrBytes {
    StrBytes::from_string(value)
}

pub(super) fn wire_opt(value: Option<String>) -> Option<StrBytes> {
    value.map(StrBytes::from_string)
}
