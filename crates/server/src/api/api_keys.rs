//! `/api/api-keys`: the bearer tokens the API accepts. A token is shown once, in the answer
//! that creates it; the store keeps only its public prefix and a hash.

use std::sync::Arc;

use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use cls_control::{ApiToken, ApiTokenId};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::envelope::{ApiResult, Envelope, ErrorEnvelope, ListEnvelope};
use super::extract::{parse_id, ApiJson, PageQuery};
use crate::state::AppState;

/// An API key as listed: never the token.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ApiKeyView {
    /// Its id (to revoke it).
    pub id: i64,
    /// Name given at creation (`ci`, `grafana`).
    pub name: String,
    /// The token's public start (`cls_1a2b3c4d`), to recognise it.
    pub prefix: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last authenticated a request (updated about once a minute).
    pub last_used_at: Option<DateTime<Utc>>,
    /// When it was revoked; a revoked key authenticates nothing.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<&ApiToken> for ApiKeyView {
    fn from(t: &ApiToken) -> Self {
        ApiKeyView {
            id: t.id.0,
            name: t.name.clone(),
            prefix: t.prefix.clone(),
            created_at: t.created_at,
            last_used_at: t.last_used_at,
            revoked_at: t.revoked_at,
        }
    }
}

/// A new API key, with its token: the only time the token is shown.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CreatedApiKey {
    /// The key as it will be listed.
    #[serde(flatten)]
    pub key: ApiKeyView,
    /// The token to send as `Authorization: Bearer <token>`. Shown once: store it now.
    pub token: String,
}

/// What creating an API key takes.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKey {
    /// A name saying who uses it (`ci`, `grafana`).
    pub name: String,
}

/// Creates an API key. The answer holds its token, which is never shown again.
#[utoipa::path(post, path = "/api/api-keys", operation_id = "create_api_key", tag = "api-keys",
    request_body = CreateApiKey,
    responses(
        (status = 201, description = "The key and its token (shown once)", body = Envelope<CreatedApiKey>),
        (status = 400, description = "Invalid input; the message names the field", body = ErrorEnvelope),
    ))]
pub async fn create(
    State(state): State<Arc<AppState>>,
    ApiJson(body): ApiJson<CreateApiKey>,
) -> ApiResult {
    let (token, secret) = state.store.create_api_token(&body.name).await?;
    Ok(Envelope::created(CreatedApiKey {
        key: ApiKeyView::from(&token),
        token: secret.expose_secret().to_string(),
    }))
}

/// Lists API keys (revoked ones included), oldest first.
#[utoipa::path(get, path = "/api/api-keys", operation_id = "list_api_keys", tag = "api-keys",
    params(PageQuery),
    responses(
        (status = 200, description = "One page of keys", body = ListEnvelope<ApiKeyView>),
        (status = 400, description = "Bad `page` or `limit`", body = ErrorEnvelope),
    ))]
pub async fn list(State(state): State<Arc<AppState>>, page: PageQuery) -> ApiResult {
    let got = state.store.list_api_tokens(page.request()).await?;
    let items = got.items.iter().map(ApiKeyView::from).collect();
    Ok(ListEnvelope::ok(items, page.pagination(got.total)))
}

/// Revokes an API key: from now on it authenticates nothing (revoking twice is harmless).
#[utoipa::path(delete, path = "/api/api-keys/{id}", operation_id = "revoke_api_key", tag = "api-keys",
    params(("id" = i64, Path, description = "API key id")),
    responses(
        (status = 200, description = "The key, revoked", body = Envelope<ApiKeyView>),
        (status = 404, description = "No such key", body = ErrorEnvelope),
    ))]
pub async fn revoke(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> ApiResult {
    let token = state
        .store
        .revoke_api_token(ApiTokenId(parse_id(&id)?))
        .await?;
    Ok(Envelope::ok(ApiKeyView::from(&token)))
}
