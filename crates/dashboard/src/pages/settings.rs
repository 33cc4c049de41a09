//! Settings: REST API keys (create — the token is shown once —, revoke after a
//! confirmation) and where the master key comes from (never the key).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use cls_control::{
    ApiToken, ApiTokenId, Entity, KeySource, PageRequest, StoreError, MASTER_KEY_ENV,
};
use maud::{html, Markup};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::shell;
use crate::auth::Session;
use crate::error::PageResult;
use crate::layout::{self, button_form, csrf, Nav};

/// API tokens read for the list (people have a handful).
const TOKENS_LISTED: u64 = 1000;
use crate::DashboardState;

/// The new API key form.
#[derive(Debug, Deserialize)]
pub(crate) struct NewKeyForm {
    /// What the key is for ("ci", "grafana").
    #[serde(default)]
    name: String,
}

fn master_key_view(source: Option<&KeySource>) -> Markup {
    html! {
        section.card {
            h2 { "Master key" }
            p { "Database connection strings and Stripe keys are encrypted at rest (AES-256-GCM) with the master key." }
            @match source {
                Some(KeySource::Environment) => p { "Source: the " code { (MASTER_KEY_ENV) } " environment variable." },
                Some(KeySource::File(path)) => p { "Source: the key file " code { (path.display()) } ". Back it up: without it the stored secrets cannot be read." },
                Some(KeySource::Generated) => p { "Source: a key generated for this process only (tests). Secrets stored now cannot be read after a restart." },
                None => p.muted { "Source: not reported by this server." },
            }
        }
    }
}

/// Every API token, revoked ones included, oldest first.
async fn all_tokens(state: &DashboardState) -> Result<Vec<ApiToken>, StoreError> {
    Ok(state
        .store
        .list_api_tokens(PageRequest {
            offset: 0,
            limit: TOKENS_LISTED,
        })
        .await?
        .items)
}

/// The API keys, one stacked row each (a table put Revoke off-screen on a phone).
fn tokens_view(tokens: &[ApiToken]) -> Markup {
    html! {
        ul.key-list {
            @for t in tokens {
                li {
                    p.key-name { strong { (t.name) } " " span.mono.prefix { (t.prefix) "_…" } }
                    p.key-dates.hint {
                        span.nowrap { "Created " (t.created_at.format("%Y-%m-%d %H:%M")) }
                        " · "
                        span.nowrap { "last used " @match t.last_used_at { Some(u) => { (u.format("%Y-%m-%d %H:%M")) }, None => { "never" } } }
                    }
                    div.key-action {
                        @match t.revoked_at {
                            Some(r) => { span.badge { "revoked " (r.format("%Y-%m-%d")) } }
                            None => { a.button.danger href={ "/settings/api-keys/" (t.id) "/revoke" } { "Revoke…" } }
                        }
                    }
                }
            }
        }
    }
}

async fn page(
    state: &DashboardState,
    session: &Session,
    created: Option<(String, SecretString)>,
    error: Option<String>,
) -> PageResult<Response> {
    let tokens = all_tokens(state).await?;
    let status = if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let body = html! {
        h1 { "Settings" }
        section.card {
            h2 { "API keys" }
            p { "For the REST API: send " code { "Authorization: Bearer <key>" } "." }
            @if let Some((name, token)) = &created {
                div.notice.ok role="status" {
                    p { "API key \"" (name) "\" created. Copy it now: it is shown only this once." }
                    p { input.mono type="text" readonly value=(token.expose_secret()) aria-label="The new API key"; }
                }
            }
            @if let Some(e) = &error { p.notice.bad role="alert" { (e) } }
            @if tokens.is_empty() {
                p.empty { "No API key yet." }
            } @else {
                (tokens_view(&tokens))
            }
            form method="post" action="/settings/api-keys" {
                (csrf(session))
                label for="key-name" { "Name of a new API key" }
                input #key-name name="name" type="text" required placeholder="ci";
                div.actions { button.primary type="submit" { "Create API key" } }
            }
        }
        section.card {
            h2 { "Your password" }
            p { "Signed in as " strong { (session.username) } ". Changing the password signs out every other browser." }
            form method="post" action="/settings/password" {
                (csrf(session))
                input type="text" name="username" value=(session.username) autocomplete="username" hidden aria-hidden="true" tabindex="-1" aria-label="Username";
                label for="current-password" { "Current password" }
                input #current-password name="current" type="password" autocomplete="current-password" required;
                label for="new-password" { "New password (12 characters or more)" }
                input #new-password name="new" type="password" autocomplete="new-password" minlength="12" required;
                label for="confirm-password" { "New password again" }
                input #confirm-password name="confirm" type="password" autocomplete="new-password" minlength="12" required;
                div.actions { button.primary type="submit" { "Change password" } }
            }
        }
        (master_key_view(state.master_key_source.as_ref()))
    };
    Ok((
        status,
        layout::page(shell(state, session, "Settings", Nav::Settings), body),
    )
        .into_response())
}

/// `GET /settings`.
pub(crate) async fn show(
    State(state): State<DashboardState>,
    Extension(session): Extension<Session>,
) -> PageResult<Response> {
    page(&state, &session, None, None).await
}

/// `POST /settings/api-keys`: creates a key and shows it once (no redirect, so a reload
/// does not show it again — the browser asks before re-posting).
pub(crate) async fn create_api_key(
    State(state): State<DashboardState>,
    Extension(session): Extension<Session>,
    Form(form): Form<NewKeyForm>,
) -> PageResult<Response> {
    let name = form.name.trim();
    if name.is_empty() {
        return page(
            &state,
            &session,
            None,
            Some("the API key has no name: name it after what will use it, e.g. ci".into()),
        )
        .await;
    }
    match state.store.create_api_token(name).await {
        Ok((t, token)) => page(&state, &session, Some((t.name, token)), None).await,
        Err(cls_control::StoreError::Invalid { reason, .. }) => {
            page(&state, &session, None, Some(reason)).await
        }
        Err(e) => Err(e.into()),
    }
}

/// `GET /settings/api-keys/{id}/revoke`: the confirmation step.
pub(crate) async fn confirm_revoke(
    State(state): State<DashboardState>,
    Extension(session): Extension<Session>,
    Path(id): Path<i64>,
) -> PageResult<Response> {
    let Some(t) = all_tokens(&state)
        .await?
        .into_iter()
        .find(|t| t.id == ApiTokenId(id))
    else {
        return Err(StoreError::NotFound {
            entity: Entity::ApiToken,
            id,
        }
        .into());
    };
    if t.revoked_at.is_some() {
        return Ok(Redirect::to("/settings").into_response());
    }
    let body = html! {
        h1 { "Revoke API key \"" (t.name) "\"?" }
        div.card.danger-zone {
            p { "Whatever uses the key " span.mono.prefix { (t.prefix) "_…" } " is refused from then on (401). This cannot be undone: to give it access again, create a new key." }
            div.actions {
                (button_form(&session, &format!("/settings/api-keys/{}/revoke", t.id), "Revoke API key", "danger"))
                a.button href="/settings" { "Keep it" }
            }
        }
    };
    Ok(layout::page(
        shell(&state, &session, "Revoke API key", Nav::Settings),
        body,
    )
    .into_response())
}

/// `POST /settings/api-keys/{id}/revoke`.
pub(crate) async fn revoke_api_key(
    State(state): State<DashboardState>,
    Extension(session): Extension<Session>,
    Path(id): Path<i64>,
) -> PageResult<Redirect> {
    let t = state.store.revoke_api_token(ApiTokenId(id)).await?;
    state.drafts.notice(
        &session.id,
        true,
        format!("API key \"{}\" revoked: it no longer works.", t.name),
    );
    Ok(Redirect::to("/settings"))
}
