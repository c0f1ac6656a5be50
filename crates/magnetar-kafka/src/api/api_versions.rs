//! ApiVersions v0–v4: exactly the APIs and versions in [`super::SUPPORTED`]. No features or
//! tagged fields are sent (they are encoded only when they differ from their defaults), which is
//! what librdkafka 2.0 (Debian's kcat) needs to connect.

use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};

use super::versions::versions;
use super::{Context, Envelope};

pub async fn handle(
    ctx: &Context,
    envelope: &Envelope<'_>,
    request: ApiVersionsRequest,
) -> ApiVersionsResponse {
    let header = envelope.header;
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
