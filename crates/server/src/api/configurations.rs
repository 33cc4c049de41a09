//! `/api/configurations`: Stripe sources, each feeding one project; Test Connection and Sync
//! Now. A configuration's Stripe key is accepted in full and only ever shown as
//! `{kind, mode, masked}`; its webhook signing secret only as `webhook_secret_set`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use cls_catalog::{DataType, CATALOG};
use cls_control::{
    test_configuration, Configuration, ConfigurationId, ConfigurationPatch, NewConfiguration,
    QueuedRun, StoreError, SyncMode, TimeLimits,
};
use cls_engine::StripeCheck;
use cls_stripe::ApiKey;
use secrecy::SecretString;
use serde::{Deserialize, Deserializer, Serialize};
use url::Url;
use utoipa::ToSchema;

use super::envelope::{
    ApiError, ApiResult, Deleted, Envelope, ErrorCode, ErrorEnvelope, ListEnvelope,
};
use super::extract::{clip, parse_id, ApiJson, OptionalJson, PageQuery, QueryPairs};
use super::projects::DatabaseCheckView;
use super::runs::RunStatusView;
use crate::state::AppState;
use crate::WebhookSecret;

/// A Stripe key as the API shows it: never the key itself.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct KeyView {
    /// `restricted` (`rk_…`, recommended) or `secret` (`sk_…`).
    pub kind: String,
    /// `test` or `live`.
    pub mode: String,
    /// The prefix and last four characters: `rk_test_…abcd`.
    pub masked: String,
}

impl KeyView {
    fn of(key: &ApiKey) -> KeyView {
        KeyView {
            kind: key.kind().to_string(),
            mode: key.mode().to_string(),
            masked: key.masked(),
        }
    }
}

/// A configuration as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConfigurationView {
    /// Its id.
    pub id: i64,
    /// Name shown to people.
    pub name: String,
    /// The project it writes into (fixed after creation).
    pub project_id: i64,
    /// Always `stripe` (fixed after creation).
    pub provider: String,
    /// The Stripe key, masked.
    pub key: KeyView,
    /// Set for a secret (`sk_…`) key: it grants more than cls needs; use a restricted key.
    pub warning: Option<String>,
    /// Data types synced, in catalog order (fixed after creation).
    pub data_types: Vec<String>,
    /// The destination table of each data type, in the same order.
    pub tables: Vec<String>,
    /// The Stripe-compatible API base this configuration talks to; `null` uses the server's
    /// default (`--stripe-api-base`, else Stripe's).
    pub stripe_api_base: Option<String>,
    /// Whether a webhook signing secret is set (the secret itself is never shown).
    pub webhook_secret_set: bool,
    /// Stripe Connect: whether runs also sync the connected accounts the key reaches.
    pub include_connected_accounts: bool,
    /// Off: it does not sync.
    pub active: bool,
    /// Why it does not sync, when it does not (it or its project is switched off).
    pub paused: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl From<&Configuration> for ConfigurationView {
    fn from(c: &Configuration) -> Self {
        ConfigurationView {
            id: c.id.0,
            name: c.name.clone(),
            project_id: c.project_id.0,
            provider: c.provider.clone(),
            key: KeyView::of(&c.key),
            warning: c.key.warning(),
            data_types: c.data_types.clone(),
            tables: c.table_names(),
            stripe_api_base: c.stripe_api_base.as_deref().map(mask_url),
            webhook_secret_set: c.has_webhook_secret(),
            include_connected_accounts: c.include_connected_accounts,
            active: c.active,
            paused: c.paused().map(|p| p.to_string()),
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

/// A URL with any password replaced by `***` (a proxy URL may carry credentials).
fn mask_url(raw: &str) -> String {
    match Url::parse(raw) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "(unreadable URL)".to_string(),
    }
}

/// What creating a configuration takes.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateConfiguration {
    /// Name shown to people.
    pub name: String,
    /// The project to write into.
    pub project_id: i64,
    /// A restricted (`rk_…`, recommended) or secret (`sk_…`) Stripe key; stored encrypted,
    /// never shown again.
    pub stripe_api_key: String,
    /// Data types to sync, by catalog name (`customers`, `invoices`, …).
    pub data_types: Vec<String>,
    /// A Stripe-compatible API base (an emulator, a proxy); default: the server's
    /// `--stripe-api-base`, else `https://api.stripe.com`.
    #[serde(default)]
    pub stripe_api_base: Option<String>,
    /// The Stripe webhook signing secret (`whsec_…`) for real-time updates.
    #[serde(default)]
    pub webhook_secret: Option<String>,
    /// Stripe Connect: with a platform's key, also sync every connected account the key
    /// reaches (listed from `/v1/accounts`), each row carrying its `account_id`. Default false.
    #[serde(default)]
    pub include_connected_accounts: Option<bool>,
}

/// Changes to a configuration; absent fields stay as they are. `project_id`, `data_types`,
/// `provider`, `stripe_api_base` and `tables` are fixed after creation: giving one is a `400`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchConfiguration {
    /// New name.
    #[serde(default)]
    pub name: Option<String>,
    /// Switch on or off.
    #[serde(default)]
    pub active: Option<bool>,
    /// A replacement Stripe key (rotation).
    #[serde(default)]
    pub stripe_api_key: Option<String>,
    /// A new webhook signing secret (`whsec_…`); `null` removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub webhook_secret: Option<Option<String>>,
    /// Stripe Connect: also sync the connected accounts the key reaches (on or off).
    #[serde(default)]
    pub include_connected_accounts: Option<bool>,
    /// The project it writes into: fixed after creation, so read-only here (giving it, with
    /// any value, is a `400`).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = i64, read_only)]
    pub project_id: Option<Option<serde_json::Value>>,
    /// The data types synced: fixed after creation, so read-only here (giving it, with any
    /// value, is a `400`).
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = fixed_list_of_names)]
    pub data_types: Option<Option<serde_json::Value>>,
    /// Always `stripe`: fixed after creation, so read-only here (giving it, with any value,
    /// is a `400`).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = String, read_only)]
    pub provider: Option<Option<serde_json::Value>>,
    /// The Stripe-compatible API base: fixed after creation, so read-only here (giving it,
    /// with any value, is a `400`).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = String, read_only)]
    pub stripe_api_base: Option<Option<serde_json::Value>>,
    /// The destination tables: fixed after creation, so read-only here (giving it, with any
    /// value, is a `400`).
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = fixed_list_of_names)]
    pub tables: Option<Option<serde_json::Value>>,
}

/// The schema of a list of names that is fixed after creation: read-only. (utoipa puts
/// `read_only` on a list's items, not on the list, and its array schema has no such field:
/// `allOf` carries it instead.)
fn fixed_list_of_names() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{
        AllOfBuilder, ArrayBuilder, ObjectBuilder, Schema, SchemaType, Type,
    };
    let list = AllOfBuilder::new()
        .item(ArrayBuilder::new().items(ObjectBuilder::new().schema_type(Type::String)))
        .item(
            ObjectBuilder::new()
                .schema_type(SchemaType::AnyValue)
                .read_only(Some(true)),
        )
        .description(Some(
            "Fixed after creation, so read-only here (giving it, with any value, is a `400`).",
        ))
        .build();
    Schema::AllOf(list)
}

/// Tells "given as `null`" (`Some(None)`) from "absent" (`None`, through `default`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// Parses a pasted Stripe key; the error never quotes it.
fn parse_key(raw: &str) -> Result<ApiKey, ApiError> {
    ApiKey::parse(raw).map_err(|e| ApiError::invalid("stripe_api_key", e))
}

/// Parses a webhook signing secret; the error never quotes it.
fn parse_webhook_secret(raw: &str) -> Result<SecretString, ApiError> {
    WebhookSecret::parse(raw).map_err(|e| ApiError::invalid("webhook_secret", e))?;
    Ok(SecretString::from(raw.trim().to_string()))
}

/// Catalog entries for the names given, in catalog order, each once; unknown names are a
/// `400` listing the valid ones.
fn parse_data_types(names: &[String]) -> Result<Vec<&'static DataType>, ApiError> {
    let valid = || {
        CATALOG
            .iter()
            .map(|t| t.name)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let unknown: Vec<String> = names
        .iter()
        .filter(|n| cls_catalog::find(n).is_none())
        .map(|n| format!("`{}`", clip(n)))
        .collect();
    if !unknown.is_empty() {
        return Err(ApiError::invalid(
            "data_types",
            format!(
                "unknown data type {}: choose from {}",
                unknown.join(", "),
                valid()
            ),
        ));
    }
    if names.is_empty() {
        return Err(ApiError::invalid(
            "data_types",
            format!("no data type was chosen: choose one or more of {}", valid()),
        ));
    }
    Ok(CATALOG
        .iter()
        .filter(|t| names.iter().any(|n| n == t.name))
        .collect())
}

/// Parses a Stripe-compatible API base: an `http(s)` URL with a host.
fn parse_api_base(raw: &str) -> Result<Url, ApiError> {
    let bad = |why: String| {
        ApiError::invalid(
            "stripe_api_base",
            format!("{why}: give an http(s) URL such as `https://api.stripe.com` or `http://127.0.0.1:12111`, or leave it out"),
        )
    };
    let url = Url::parse(raw.trim()).map_err(|e| bad(format!("not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad(format!(
            "the scheme `{}` is not http or https",
            url.scheme()
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("the URL has no host".to_string()));
    }
    Ok(url)
}

fn configuration_id(raw: &str) -> Result<ConfigurationId, ApiError> {
    parse_id(raw).map(ConfigurationId)
}

/// Creates a configuration.
#[utoipa::path(post, path = "/api/configurations", operation_id = "create_configuration", tag = "configurations",
    request_body = CreateConfiguration,
    responses(
        (status = 201, description = "The configuration (`warning` set for a secret key)", body = Envelope<ConfigurationView>),
        (status = 400, description = "Invalid input; the message names the field", body = ErrorEnvelope),
    ))]
pub async fn create(
    State(state): State<Arc<AppState>>,
    ApiJson(body): ApiJson<CreateConfiguration>,
) -> ApiResult {
    let key = parse_key(&body.stripe_api_key)?;
    let data_types = parse_data_types(&body.data_types)?;
    let stripe_api_base = body
        .stripe_api_base
        .as_deref()
        .map(parse_api_base)
        .transpose()?;
    let webhook_secret = body
        .webhook_secret
        .as_deref()
        .map(parse_webhook_secret)
        .transpose()?;
    let new = NewConfiguration {
        name: body.name,
        project_id: cls_control::ProjectId(body.project_id),
        key,
        data_types,
        stripe_api_base,
        webhook_secret,
    };
    let configuration = match state.store.create_configuration(new).await {
        Ok(c) => c,
        // The project is named in the body, so its absence is bad input, not a missing route.
        Err(StoreError::NotFound { .. }) => {
            return Err(ApiError::invalid(
                "project_id",
                format!(
                    "project {} does not exist: GET /api/projects lists them",
                    body.project_id
                ),
            ))
        }
        Err(e) => return Err(e.into()),
    };
    let configuration = match body.include_connected_accounts {
        Some(true) => {
            state
                .store
                .set_include_connected_accounts(configuration.id, true)
                .await?
        }
        _ => configuration,
    };
    Ok(Envelope::created(ConfigurationView::from(&configuration)))
}

/// Lists configurations, oldest first; `?project_id=` keeps one project's.
#[utoipa::path(get, path = "/api/configurations", operation_id = "list_configurations", tag = "configurations",
    params(PageQuery, ("project_id" = Option<i64>, Query, description = "Only this project's configurations")),
    responses(
        (status = 200, description = "One page of configurations", body = ListEnvelope<ConfigurationView>),
        (status = 400, description = "Bad `page`, `limit` or `project_id`", body = ErrorEnvelope),
    ))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    page: PageQuery,
    query: QueryPairs,
) -> ApiResult {
    let project = query.id("project_id")?.map(cls_control::ProjectId);
    let got = state
        .store
        .list_configurations(project, page.request())
        .await?;
    let items = got.items.iter().map(ConfigurationView::from).collect();
    Ok(ListEnvelope::ok(items, page.pagination(got.total)))
}

/// One configuration.
#[utoipa::path(get, path = "/api/configurations/{id}", operation_id = "get_configuration", tag = "configurations",
    params(("id" = i64, Path, description = "Configuration id")),
    responses(
        (status = 200, description = "The configuration", body = Envelope<ConfigurationView>),
        (status = 404, description = "No such configuration", body = ErrorEnvelope),
    ))]
pub async fn get(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> ApiResult {
    let configuration = state.store.configuration(configuration_id(&id)?).await?;
    Ok(Envelope::ok(ConfigurationView::from(&configuration)))
}

/// Changes a configuration's name, active toggle, Stripe key (rotation) or webhook secret.
#[utoipa::path(patch, path = "/api/configurations/{id}", operation_id = "update_configuration", tag = "configurations",
    params(("id" = i64, Path, description = "Configuration id")),
    request_body = PatchConfiguration,
    responses(
        (status = 200, description = "The configuration as changed", body = Envelope<ConfigurationView>),
        (status = 400, description = "Invalid input, or a field that is fixed after creation", body = ErrorEnvelope),
        (status = 404, description = "No such configuration", body = ErrorEnvelope),
    ))]
pub async fn patch(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<PatchConfiguration>,
) -> ApiResult {
    let id = configuration_id(&id)?;
    let fixed = [
        ("project_id", body.project_id.is_some()),
        ("data_types", body.data_types.is_some()),
        ("provider", body.provider.is_some()),
        ("stripe_api_base", body.stripe_api_base.is_some()),
        ("tables", body.tables.is_some()),
    ];
    if let Some((field, _)) = fixed.iter().find(|(_, given)| *given) {
        return Err(ApiError::invalid(
            field,
            "is fixed after creation and cannot be changed: create a new configuration with the value you want (then delete this one); name, active, stripe_api_key, webhook_secret and include_connected_accounts can change",
        ));
    }
    let patch = ConfigurationPatch {
        name: body.name,
        active: body.active,
        key: body.stripe_api_key.as_deref().map(parse_key).transpose()?,
        webhook_secret: match body.webhook_secret {
            None => None,
            Some(None) => Some(None),
            Some(Some(raw)) => Some(Some(parse_webhook_secret(&raw)?)),
        },
    };
    let mut configuration = state.store.update_configuration(id, patch).await?;
    if let Some(on) = body.include_connected_accounts {
        configuration = state.store.set_include_connected_accounts(id, on).await?;
    }
    Ok(Envelope::ok(ConfigurationView::from(&configuration)))
}

/// Deletes a configuration with its schedules and runs. The data already copied stays in
/// the project's database.
#[utoipa::path(delete, path = "/api/configurations/{id}", operation_id = "delete_configuration", tag = "configurations",
    params(("id" = i64, Path, description = "Configuration id")),
    responses(
        (status = 200, description = "Deleted", body = Envelope<Deleted>),
        (status = 404, description = "No such configuration", body = ErrorEnvelope),
    ))]
pub async fn delete(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> ApiResult {
    let id = configuration_id(&id)?;
    state.store.delete_configuration(id).await?;
    Ok(Envelope::ok(Deleted {
        id: id.0,
        deleted: true,
    }))
}

/// Whether the key can read one data type.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TypeAccessView {
    /// Data type name.
    pub data_type: String,
    /// Whether a list request succeeded.
    pub readable: bool,
    /// The restricted-key permission lacking (`rak_invoice_read`), when that is why not.
    pub missing_permission: Option<String>,
    /// What went wrong and where to fix it (which Dashboard setting to enable).
    pub error: Option<String>,
}

/// The Stripe half of Test Connection.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StripeCheckView {
    /// The key, masked.
    pub key: KeyView,
    /// Set for a secret (`sk_…`) key.
    pub warning: Option<String>,
    /// The Stripe account the key belongs to.
    pub account_id: String,
    /// The account's business name, when Stripe shares it with this key.
    pub account_name: Option<String>,
    /// Per chosen data type, in catalog order.
    pub data_types: Vec<TypeAccessView>,
}

impl StripeCheckView {
    fn new(key: &ApiKey, c: StripeCheck) -> StripeCheckView {
        StripeCheckView {
            key: KeyView::of(key),
            warning: c.warning,
            account_id: c.account_id,
            account_name: c.account_name,
            data_types: c
                .types
                .into_iter()
                .map(|t| TypeAccessView {
                    data_type: t.data_type.to_string(),
                    readable: t.readable,
                    missing_permission: t.missing_permission,
                    error: t.error,
                })
                .collect(),
        }
    }
}

/// What Test Connection found for a configuration: its Stripe key and its project's
/// database.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConfigurationCheckView {
    /// Everything passed: the key works, every chosen data type is readable and the
    /// database is ready.
    pub ok: bool,
    /// The Stripe half, when the key could be used at all.
    pub stripe: Option<StripeCheckView>,
    /// Why the key could not be used at all (rejected, Stripe unreachable).
    pub stripe_error: Option<String>,
    /// The database half.
    pub database: DatabaseCheckView,
    /// Schedules the system had paused (key revoked, permission lost, database
    /// unreachable) that this passing test switched on again.
    pub resumed_schedules: Vec<i64>,
    /// The outcome in one sentence.
    pub message: String,
}

/// Test Connection for a configuration: the Stripe key (account, kind and mode, and per data
/// type whether it is readable or which permission to enable) and the project's database.
/// The answer is `200` either way; `data.ok` tells. A passing test switches on again the
/// schedules the system had paused.
#[utoipa::path(post, path = "/api/configurations/{id}/test-connection", operation_id = "test_configuration_connection", tag = "configurations",
    params(("id" = i64, Path, description = "Configuration id")),
    responses(
        (status = 200, description = "What the test found", body = Envelope<ConfigurationCheckView>),
        (status = 404, description = "No such configuration", body = ErrorEnvelope),
    ))]
pub async fn test_connection(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> ApiResult {
    let test = test_configuration(
        state.store.as_ref(),
        configuration_id(&id)?,
        state.default_stripe_api_base.as_ref(),
        TimeLimits::default(),
    )
    .await?;
    let ok = test.passed();
    let database = DatabaseCheckView::new(&test.project.database_url, &test.database);
    let resumed_schedules: Vec<i64> = test.resumed.iter().map(|s| s.0).collect();
    let message = match &test.stripe {
        _ if ok && resumed_schedules.is_empty() => "Connection test passed.".to_string(),
        _ if ok => format!(
            "Connection test passed; {} schedule(s) the system had paused are running again.",
            resumed_schedules.len()
        ),
        Err(e) => format!("Connection test failed: {e}"),
        Ok(_) if !test.stripe_passed() => "Connection test failed: the key cannot read every chosen data type; each data type's `error` says which permission to enable.".to_string(),
        Ok(_) => format!("Connection test failed: {}", database.message),
    };
    let (stripe, stripe_error) = match test.stripe {
        Ok(s) => (Some(StripeCheckView::new(&test.configuration.key, s)), None),
        Err(e) => (None, Some(e.to_string())),
    };
    Ok(Envelope::ok(ConfigurationCheckView {
        ok,
        stripe,
        stripe_error,
        database,
        resumed_schedules,
        message,
    }))
}

/// What Sync Now takes (the body is optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SyncRequest {
    /// `incremental` (default: the changes since the last run, from Stripe's events; the
    /// first run of a configuration, or one whose events expired, copies everything) or
    /// `full` (copy everything again).
    #[serde(default)]
    pub mode: Option<String>,
}

/// What Sync Now did.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SyncStarted {
    /// The run that will carry out the request (new, or the one already waiting).
    pub run_id: i64,
    /// Its status (`queued`).
    pub status: RunStatusView,
    /// `full` or `incremental`.
    pub mode: String,
    /// The running run this one waits for, if one is running.
    pub queued_behind: Option<i64>,
    /// `true` when a run was already waiting and no new one was queued.
    pub already_queued: bool,
    /// What happened, in words (e.g. that it is queued behind run N).
    pub message: String,
}

/// Parses a sync mode given in field `field`.
pub(crate) fn parse_mode(field: &str, raw: &str) -> Result<SyncMode, ApiError> {
    raw.parse::<SyncMode>().map_err(|_| {
        ApiError::invalid(
            field,
            format!(
                "`{}` is not a sync mode: give `full` or `incremental`",
                clip(raw)
            ),
        )
    })
}

/// Sync Now: queues a run of the configuration. During a run the new one waits for it; when
/// one is already waiting, that one is answered and no second run is queued.
#[utoipa::path(post, path = "/api/configurations/{id}/sync", operation_id = "sync_configuration", tag = "configurations",
    params(("id" = i64, Path, description = "Configuration id")),
    request_body(content = Option<SyncRequest>, description = "Optional; `{\"mode\": \"full\"}` for a full copy"),
    responses(
        (status = 202, description = "Queued", body = Envelope<SyncStarted>),
        (status = 400, description = "Bad mode", body = ErrorEnvelope),
        (status = 404, description = "No such configuration", body = ErrorEnvelope),
        (status = 409, description = "The configuration or its project is switched off", body = ErrorEnvelope),
    ))]
pub async fn sync(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    OptionalJson(body): OptionalJson<SyncRequest>,
) -> ApiResult {
    let id = configuration_id(&id)?;
    let mode = match body.mode.as_deref() {
        Some(raw) => parse_mode("mode", raw)?,
        None => SyncMode::Incremental,
    };
    let configuration = state.store.configuration(id).await?;
    if let Some(paused) = configuration.paused() {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            format!("configuration {id} cannot sync ({paused}): switch it and its project on (PATCH `active: true`), then sync again"),
        ));
    }
    let queued = state.runner.sync_now(id, mode).await?;
    let (queued_behind, already_queued) = match &queued {
        QueuedRun::Queued { behind, .. } => (behind.map(|r| r.0), false),
        QueuedRun::AlreadyQueued(_) => (None, true),
    };
    let run = queued.run();
    Ok(Envelope::with_status(
        StatusCode::ACCEPTED,
        SyncStarted {
            run_id: run.id.0,
            status: run.status.into(),
            mode: run.mode.to_string(),
            queued_behind,
            already_queued,
            message: queued.message(),
        },
    ))
}
