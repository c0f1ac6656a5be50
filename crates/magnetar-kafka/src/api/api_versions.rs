//! ApiVersions v0–v4: exactly the APIs and versions in [`super::SUPPORTED`]. No features or
//! tagged fields are sent (they are encoded only when they differ from their defaults), which is
//! what librdkafka 2.0 (Debian's kcat) needs to connect.

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};

use super::{Context, SASL_SUPPORTED, SUPPORTED};
use crate::frame::RequestHeader;

pub fn supported_versions() -> ApiVersionsResponse {
    versions(false)
}

/// The table, with the SASL APIs on a listener that requires SASL.
pub fn versions(sasl: bool) -> ApiVersionsResponse {
    let sasl_table: &[_] = if sasl { SASL_SUPPORTED } else { &[] };
    let mut response = ApiVersionsResponse::default();
    response.api_keys = SUPPORTED
        .iter()
        .chain(sasl_table)
        .map(|(key, min, max)| {
            ApiVersion::default()
                .with_api_key(*key as i16)
                .with_min_version(*min)
                .with_max_version(*max)
        })
        .collect();
    response
}

pub fn handle(
    ctx: &Context,
    header: &RequestHeader,
    request: ApiVersionsRequest,
) -> ApiVersionsResponse {
    if header.api_version >= 3 {
        tracing::debug!(
            client_id = header.client_id.as_deref().unwrap_or(""),
            software = %request.client_software_name,
            version = %request.client_software_version,
            "kafka client connected"
        );
    }
    versions(ctx.config.sasl_required())
}
