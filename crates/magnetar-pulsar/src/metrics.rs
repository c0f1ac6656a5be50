//! The Pulsar front end's request metrics: one slot per command type (labelled with the
//! protocol's command name, e.g. `SEND`), errors by `ServerError` name.

use std::sync::Arc;

use magnetar_metrics::ProtocolMetrics;

use crate::proto::base_command::Type;
use crate::proto::ServerError;

/// Command numbers looked up for names; PulsarApi.proto's types are well below this.
const COMMAND_NUMBER_MAX: i32 = 128;

/// Counters for every command type of the vendored PulsarApi.proto.
pub fn protocol_metrics() -> Arc<ProtocolMetrics> {
    let apis: Vec<(usize, &str)> = (0..COMMAND_NUMBER_MAX)
        .filter_map(|n| Some((n as usize, Type::try_from(n).ok()?.as_str_name())))
        .collect();
    Arc::new(ProtocolMetrics::new("pulsar", &apis, error_name))
}

fn error_name(code: i32) -> String {
    ServerError::try_from(code)
        .map(|e| e.as_str_name().to_string())
        .unwrap_or_else(|_| "UNKNOWN".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_and_errors_are_named() {
        let m = protocol_metrics();
        m.record(Type::Send as usize, std::time::Duration::ZERO);
        m.record_error(Type::Lookup as usize, ServerError::TopicNotFound as i32);
        let s = m.snapshot();
        assert!(s.apis.iter().any(|a| a.api == "SEND" && a.requests == 1));
        let lookup = s.apis.iter().find(|a| a.api == "LOOKUP").unwrap();
        assert_eq!(lookup.errors[0].1, "TopicNotFound");
    }
}
