//! Confluent's `/config` (compatibility levels) and `/mode` endpoints, global and per subject.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use magnetar_schema::{Compatibility, Mode, SchemaError};
use serde::Deserialize;
use serde_json::json;

use super::{
    body, ok, on, registry_error, subject, Flags, RegistryError, RegistryResult, RegistryState,
};

#[derive(Deserialize)]
struct ConfigBody {
    compatibility: String,
}

fn level(name: &str) -> RegistryResult<Compatibility> {
    Compatibility::parse(name).ok_or_else(|| {
        RegistryError::unprocessable(42203, format!("Invalid compatibility level '{name}'"))
    })
}

pub(super) async fn get_global_config(State(state): State<Arc<RegistryState>>) -> RegistryResult {
    let level = state
        .schemas
        .global_compatibility()
        .await
        .map_err(registry_error)?;
    ok(json!({"compatibilityLevel": level.name()}))
}

pub(super) async fn put_global_config(
    State(state): State<Arc<RegistryState>>,
    bytes: Bytes,
) -> RegistryResult {
    let config: ConfigBody = body(&bytes)?;
    let level = level(&config.compatibility)?;
    state
        .schemas
        .set_global_compatibility(Some(level))
        .await
        .map_err(registry_error)?;
    ok(json!({"compatibility": level.name()}))
}

pub(super) async fn get_subject_config(
    State(state): State<Arc<RegistryState>>,
    Path(name): Path<String>,
    Query(flags): Query<Flags>,
) -> RegistryResult {
    let subject = subject(&state.schemas, &name)?;
    let own = state
        .schemas
        .subject_compatibility(&subject)
        .await
        .map_err(registry_error)?;
    let level = match own {
        Some(level) => level,
        None if on(&flags.default_to_global) => state
            .schemas
            .effective_compatibility(&subject)
            .await
            .map_err(registry_error)?,
        None => {
            return Err(RegistryError::new(
                StatusCode::NOT_FOUND,
                40408,
                format!("Subject '{name}' does not have subject-level compatibility configured"),
            ))
        }
    };
    ok(json!({"compatibilityLevel": level.name()}))
}

pub(super) async fn put_subject_config(
    State(state): State<Arc<RegistryState>>,
    Path(name): Path<String>,
    bytes: Bytes,
) -> RegistryResult {
    let subject = subject(&state.schemas, &name)?;
    let config: ConfigBody = body(&bytes)?;
    let level = level(&config.compatibility)?;
    state
        .schemas
        .set_subject_compatibility(&subject, Some(level))
        .await
        .map_err(registry_error)?;
    ok(json!({"compatibility": level.name()}))
}

pub(super) async fn delete_subject_config(
    State(state): State<Arc<RegistryState>>,
    Path(name): Path<String>,
) -> RegistryResult {
    let subject = subject(&state.schemas, &name)?;
    let old = state
        .schemas
        .subject_compatibility(&subject)
        .await
        .map_err(registry_error)?
        .ok_or_else(|| registry_error(SchemaError::SubjectNotFound(name.clone())))?;
    state
        .schemas
        .set_subject_compatibility(&subject, None)
        .await
        .map_err(registry_error)?;
    ok(json!({"compatibilityLevel": old.name()}))
}

#[derive(Deserialize)]
struct ModeBody {
    mode: String,
}

fn mode(name: &str) -> RegistryResult<Mode> {
    Mode::parse(name).ok_or_else(|| {
        RegistryError::unprocessable(
            42204,
            format!("Invalid mode '{name}' (READWRITE, READONLY or IMPORT)"),
        )
    })
}

pub(super) async fn get_global_mode(State(state): State<Arc<RegistryState>>) -> RegistryResult {
    let mode = state.schemas.global_mode().await.map_err(registry_error)?;
    ok(json!({"mode": mode.name()}))
}

pub(super) async fn put_global_mode(
    State(state): State<Arc<RegistryState>>,
    Query(flags): Query<Flags>,
    bytes: Bytes,
) -> RegistryResult {
    let mode = mode(&body::<ModeBody>(&bytes)?.mode)?;
    if mode == Mode::Import {
        state
            .schemas
            .check_import_allowed(None, on(&flags.force))
            .await
            .map_err(registry_error)?;
    }
    state
        .schemas
        .set_global_mode(Some(mode))
        .await
        .map_err(registry_error)?;
    ok(json!({"mode": mode.name()}))
}

pub(super) async fn get_subject_mode(
    State(state): State<Arc<RegistryState>>,
    Path(name): Path<String>,
    Query(flags): Query<Flags>,
) -> RegistryResult {
    let subject = subject(&state.schemas, &name)?;
    let own = state
        .schemas
        .subject_mode(&subject)
        .await
        .map_err(registry_error)?;
    let mode = match own {
        Some(mode) => mode,
        None if on(&flags.default_to_global) => {
            state.schemas.global_mode().await.map_err(registry_error)?
        }
        None => {
            return Err(RegistryError::new(
                StatusCode::NOT_FOUND,
                40409,
                format!("Subject '{name}' does not have subject-level mode configured"),
            ))
        }
    };
    ok(json!({"mode": mode.name()}))
}

pub(super) async fn put_subject_mode(
    State(state): State<Arc<RegistryState>>,
    Path(name): Path<String>,
    Query(flags): Query<Flags>,
    bytes: Bytes,
) -> RegistryResult {
    let subject = subject(&state.schemas, &name)?;
    let mode = mode(&body::<ModeBody>(&bytes)?.mode)?;
    if mode == Mode::Import {
        state
            .schemas
            .check_import_allowed(Some(&subject), on(&flags.force))
            .await
            .map_err(registry_error)?;
    }
    state
        .schemas
        .set_subject_mode(&subject, Some(mode))
        .await
        .map_err(registry_error)?;
    ok(json!({"mode": mode.name()}))
}

pub(super) async fn delete_subject_mode(
    State(state): State<Arc<RegistryState>>,
    Path(name): Path<String>,
) -> RegistryResult {
    let subject = subject(&state.schemas, &name)?;
    let old = state
        .schemas
        .subject_mode(&subject)
        .await
        .map_err(registry_error)?
        .unwrap_or(Mode::ReadWrite);
    state
        .schemas
        .set_subject_mode(&subject, None)
        .await
        .map_err(registry_error)?;
    ok(json!({"mode": old.name()}))
}
