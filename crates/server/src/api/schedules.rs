//! Schedules: when a configuration syncs by itself.
//!
//! A cadence is written in JSON as either a string naming a fixed cadence —
//! `"hourly"`, `"daily"`, `"weekly"` or `"monthly"` (slots at the top of the hour, 00:00
//! UTC, Monday 00:00 UTC, the 1st at 00:00 UTC) — or an object holding a cron expression
//! read in UTC: `{"cron": "0 3 * * *"}` (five fields: minute hour day-of-month month
//! day-of-week). Answers use the same shape.

use std::sync::Arc;

use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use cls_control::{
    Cadence, ConfigurationId, CronExpression, Every, NewSchedule, Schedule, ScheduleId,
    SchedulePatch, SyncMode,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::configurations::parse_mode;
use super::envelope::{ApiError, ApiResult, Deleted, Envelope, ErrorEnvelope, ListEnvelope};
use super::extract::{clip, parse_id, ApiJson, PageQuery};
use crate::state::AppState;

/// When a schedule comes due: a fixed cadence or a cron expression (UTC).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(untagged)]
pub enum CadenceView {
    /// `hourly`, `daily`, `weekly` or `monthly`.
    #[schema(example = "daily")]
    Every(String),
    /// A cron expression, e.g. `{"cron": "0 3 * * *"}` for 03:00 UTC every day.
    Cron {
        /// Five fields: minute hour day-of-month month day-of-week.
        cron: String,
    },
}

impl From<&Cadence> for CadenceView {
    fn from(c: &Cadence) -> Self {
        match c {
            Cadence::Every(e) => CadenceView::Every(e.as_str().to_string()),
            Cadence::Cron(expr) => CadenceView::Cron {
                cron: expr.as_str().to_string(),
            },
        }
    }
}

/// Reads a cadence from its JSON shape (see the module doc), naming `cadence` when wrong.
fn parse_cadence(value: &Value) -> Result<Cadence, ApiError> {
    const SHAPE: &str = "write `\"hourly\"`, `\"daily\"`, `\"weekly\"`, `\"monthly\"` or `{\"cron\": \"0 3 * * *\"}`";
    match value {
        Value::String(s) => s.parse::<Every>().map(Cadence::Every).map_err(|_| {
            ApiError::invalid(
                "cadence",
                format!("`{}` is not a cadence: {SHAPE}", clip(s)),
            )
        }),
        Value::Object(map) => match (map.get("cron"), map.len()) {
            (Some(Value::String(expr)), 1) => CronExpression::parse(expr)
                .map(Cadence::Cron)
                .map_err(|e| ApiError::invalid("cadence.cron", e)),
            _ => Err(ApiError::invalid(
                "cadence",
                format!("an object cadence holds exactly one field, `cron`, a string: {SHAPE}"),
            )),
        },
        _ => Err(ApiError::invalid(
            "cadence",
            format!("not a cadence: {SHAPE}"),
        )),
    }
}

/// A schedule as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ScheduleView {
    /// Its id.
    pub id: i64,
    /// The configuration it starts.
    pub configuration_id: i64,
    /// When it comes due.
    pub cadence: CadenceView,
    /// `full` or `incremental` runs.
    pub mode: String,
    /// Off: paused by a person or by the system.
    pub active: bool,
    /// Why the system paused it (key revoked, permission lost, database unreachable); a
    /// passing Test Connection of the configuration switches it on again.
    pub paused_reason: Option<String>,
    /// Why it does not start runs right now (it, its configuration or its project is
    /// paused), in words; `null` when it runs.
    pub paused: Option<String>,
    /// When it next comes due, while it runs.
    pub next_due_at: Option<DateTime<Utc>>,
    /// The last slot it came due at.
    pub last_due_at: Option<DateTime<Utc>>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl ScheduleView {
    fn new(s: &Schedule, now: DateTime<Utc>) -> ScheduleView {
        let paused = s.paused();
        let next_due_at = match paused {
            Some(_) => None,
            None => cls_control::schedule::next_due(
                &s.cadence,
                s.last_due_at.unwrap_or(s.created_at),
                now,
            ),
        };
        ScheduleView {
            id: s.id.0,
            configuration_id: s.configuration_id.0,
            cadence: (&s.cadence).into(),
            mode: s.mode.to_string(),
            active: s.active,
            paused_reason: s.paused_reason.clone(),
            paused: paused.map(|p| p.to_string()),
            next_due_at,
            last_due_at: s.last_due_at,
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}

/// What creating a schedule takes.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSchedule {
    /// `"hourly"`, `"daily"`, `"weekly"`, `"monthly"` or `{"cron": "0 3 * * *"}` (UTC).
    #[schema(value_type = CadenceView)]
    pub cadence: Value,
    /// `incremental` (default) or `full`.
    #[serde(default)]
    pub mode: Option<String>,
    /// Start paused with `false` (default `true`).
    #[serde(default)]
    pub active: Option<bool>,
}

/// Changes to a schedule; absent fields stay as they are.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchSchedule {
    /// New cadence.
    #[serde(default)]
    #[schema(value_type = Option<CadenceView>)]
    pub cadence: Option<Value>,
    /// New mode: `full` or `incremental`.
    #[serde(default)]
    pub mode: Option<String>,
    /// Switch on (clears the system's pause reason) or off.
    #[serde(default)]
    pub active: Option<bool>,
}

fn schedule_id(raw: &str) -> Result<ScheduleId, ApiError> {
    parse_id(raw).map(ScheduleId)
}

/// Creates a schedule for a configuration.
#[utoipa::path(post, path = "/api/configurations/{id}/schedules", operation_id = "create_schedule", tag = "schedules",
    params(("id" = i64, Path, description = "Configuration id")),
    request_body = CreateSchedule,
    responses(
        (status = 201, description = "The schedule", body = Envelope<ScheduleView>),
        (status = 400, description = "Invalid input; the message names the field", body = ErrorEnvelope),
        (status = 404, description = "No such configuration", body = ErrorEnvelope),
    ))]
pub async fn create(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<CreateSchedule>,
) -> ApiResult {
    let configuration_id = ConfigurationId(parse_id(&id)?);
    let cadence = parse_cadence(&body.cadence)?;
    let mode = match body.mode.as_deref() {
        Some(raw) => parse_mode("mode", raw)?,
        None => SyncMode::Incremental,
    };
    let mut schedule = state
        .store
        .create_schedule(NewSchedule {
            configuration_id,
            cadence,
            mode,
        })
        .await?;
    if body.active == Some(false) {
        let patch = SchedulePatch {
            active: Some(false),
            ..SchedulePatch::default()
        };
        schedule = state.store.update_schedule(schedule.id, patch).await?;
    }
    Ok(Envelope::created(ScheduleView::new(
        &schedule,
        state.clock.now(),
    )))
}

/// A configuration's schedules, oldest first.
#[utoipa::path(get, path = "/api/configurations/{id}/schedules", operation_id = "list_schedules", tag = "schedules",
    params(("id" = i64, Path, description = "Configuration id"), PageQuery),
    responses(
        (status = 200, description = "One page of schedules", body = ListEnvelope<ScheduleView>),
        (status = 400, description = "Bad `page` or `limit`", body = ErrorEnvelope),
        (status = 404, description = "No such configuration", body = ErrorEnvelope),
    ))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    page: PageQuery,
) -> ApiResult {
    let id = ConfigurationId(parse_id(&id)?);
    state.store.configuration(id).await?;
    let got = state.store.list_schedules(Some(id), page.request()).await?;
    let now = state.clock.now();
    let items = got
        .items
        .iter()
        .map(|s| ScheduleView::new(s, now))
        .collect();
    Ok(ListEnvelope::ok(items, page.pagination(got.total)))
}

/// One schedule.
#[utoipa::path(get, path = "/api/schedules/{id}", operation_id = "get_schedule", tag = "schedules",
    params(("id" = i64, Path, description = "Schedule id")),
    responses(
        (status = 200, description = "The schedule", body = Envelope<ScheduleView>),
        (status = 404, description = "No such schedule", body = ErrorEnvelope),
    ))]
pub async fn get(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> ApiResult {
    let schedule = state.store.schedule(schedule_id(&id)?).await?;
    Ok(Envelope::ok(ScheduleView::new(
        &schedule,
        state.clock.now(),
    )))
}

/// Changes a schedule's cadence, mode or active toggle.
#[utoipa::path(patch, path = "/api/schedules/{id}", operation_id = "update_schedule", tag = "schedules",
    params(("id" = i64, Path, description = "Schedule id")),
    request_body = PatchSchedule,
    responses(
        (status = 200, description = "The schedule as changed", body = Envelope<ScheduleView>),
        (status = 400, description = "Invalid input; the message names the field", body = ErrorEnvelope),
        (status = 404, description = "No such schedule", body = ErrorEnvelope),
    ))]
pub async fn patch(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<PatchSchedule>,
) -> ApiResult {
    let id = schedule_id(&id)?;
    let patch = SchedulePatch {
        cadence: body.cadence.as_ref().map(parse_cadence).transpose()?,
        mode: body
            .mode
            .as_deref()
            .map(|raw| parse_mode("mode", raw))
            .transpose()?,
        active: body.active,
    };
    let schedule = state.store.update_schedule(id, patch).await?;
    Ok(Envelope::ok(ScheduleView::new(
        &schedule,
        state.clock.now(),
    )))
}

/// Deletes a schedule.
#[utoipa::path(delete, path = "/api/schedules/{id}", operation_id = "delete_schedule", tag = "schedules",
    params(("id" = i64, Path, description = "Schedule id")),
    responses(
        (status = 200, description = "Deleted", body = Envelope<Deleted>),
        (status = 404, description = "No such schedule", body = ErrorEnvelope),
    ))]
pub async fn delete(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> ApiResult {
    let id = schedule_id(&id)?;
    state.store.delete_schedule(id).await?;
    Ok(Envelope::ok(Deleted {
        id: id.0,
        deleted: true,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cadences_parse_in_both_shapes_and_round_trip() {
        for v in [
            json!("hourly"),
            json!("monthly"),
            json!({"cron": "0 3 * * *"}),
        ] {
            let c = parse_cadence(&v).map_err(|e| e.message);
            let back = c
                .as_ref()
                .map(|c| serde_json::to_value(CadenceView::from(c)).ok());
            assert_eq!(back, Ok(Some(v.clone())), "{v}");
        }
        for (bad, field) in [
            (json!("sometimes"), "`cadence`"),
            (json!({"cron": "every day"}), "`cadence.cron`"),
            (json!({"cron": "0 3 * * *", "tz": "x"}), "`cadence`"),
            (json!(3), "`cadence`"),
        ] {
            let msg = parse_cadence(&bad)
                .err()
                .map(|e| e.message)
                .unwrap_or_default();
            assert!(msg.starts_with(field), "{bad}: {msg}");
        }
    }
}
