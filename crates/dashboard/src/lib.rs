//! Codeless Sync's dashboard: server-rendered pages (maud, no JavaScript build step) to sign
//! in, manage projects and configurations, run the configuration wizard, Sync Now, follow a
//! run live and read the sync history.
//!
//! `cls serve` and `cls demo` mount [`router`] over a [`DashboardState`] and call
//! [`ensure_admin`] once at start to create the first account.
//!
//! Layout:
//! - [`auth`]: sign-in, sessions (a cookie holding the store's session token) and the CSRF
//!   check every POST passes through.
//! - `drafts`: per-session, in-memory state that must never travel through the browser —
//!   the configuration wizard's Stripe key, a project form's connection string, one-shot
//!   notices.
//! - `pages`: one module per area (projects, configurations and the wizard, runs,
//!   settings), each with thin handlers and the views they render.
//! - `layout`, `chart`: the page shell and the server-rendered SVG chart of the sync
//!   history.
//!
//! Rules kept everywhere:
//! - every page but `/login` and `/static/…` needs a session (otherwise: redirect to
//!   `/login`), and every POST carries the session's CSRF token (otherwise: 403);
//! - a secret is never rendered after it was entered: Stripe keys show as `rk_test_…abcd`,
//!   database URLs with `***` for the password;
//! - every user-entered or Stripe-provided string goes through maud's escaping
//!   (`PreEscaped` is used only on this crate's own constants).

pub mod auth;
mod chart;
mod drafts;
mod error;
mod layout;
mod pages;

use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;
use cls_control::{KeySource, Runner, Store};
use url::Url;

pub use auth::{ensure_admin, reset_admin};

/// Everything the dashboard's handlers share.
#[derive(Debug, Clone)]
pub struct DashboardState {
    /// The state store: projects, configurations, runs, users and sessions.
    pub store: Arc<dyn Store>,
    /// The scheduler and runner; Sync Now queues through it.
    pub runner: Runner,
    /// The Stripe API base used by Test Connection for a new configuration (the emulator in
    /// `cls demo`); `None` means Stripe's own API. Matches the runner's `--stripe-api-base`.
    pub default_stripe_api_base: Option<Url>,
    /// Whether the cookies always carry `Secure` (true behind HTTPS; false for plain
    /// `http://localhost`, where browsers would drop a `Secure` cookie). When false they
    /// still do for a request whose proxy sends `X-Forwarded-Proto: https`.
    pub secure_cookies: bool,
    /// Where the master key came from (env var or key file), shown in Settings; never the
    /// key itself. `None` when the caller does not say.
    pub master_key_source: Option<KeySource>,
    /// In-memory wizard drafts and notices, keyed by session.
    drafts: drafts::Drafts,
    /// Wrong sign-ins per peer, to stop password guessing.
    sign_ins: auth::SignInThrottle,
}

impl DashboardState {
    /// State with the given store, runner and Stripe API base; cookies are `Secure` when
    /// `secure_cookies`. Set [`DashboardState::master_key_source`] afterwards to show it.
    pub fn new(
        store: Arc<dyn Store>,
        runner: Runner,
        default_stripe_api_base: Option<Url>,
        secure_cookies: bool,
    ) -> DashboardState {
        DashboardState {
            store,
            runner,
            default_stripe_api_base,
            secure_cookies,
            master_key_source: None,
            drafts: drafts::Drafts::default(),
            sign_ins: auth::SignInThrottle::default(),
        }
    }

    /// The same state, showing `source` as the master key's origin in Settings.
    pub fn with_master_key_source(mut self, source: KeySource) -> DashboardState {
        self.master_key_source = Some(source);
        self
    }
}

/// The dashboard's routes over `state`: `/`, `/login`, `/logout`, `/projects…`,
/// `/configurations…`, `/runs/…`, `/settings` and `/static/app.css`.
pub fn router(state: DashboardState) -> Router {
    use pages::{configurations as c, projects as p, runs as r, settings as s, wizard as w};
    let protected = Router::new()
        .route("/", get(pages::home))
        .route("/logout", post(auth::logout))
        .route("/projects", get(p::list).post(p::create))
        .route("/projects/new", get(p::new_form))
        .route("/projects/{id}", get(p::edit_form).post(p::update))
        .route("/projects/{id}/active", post(p::set_active))
        .route(
            "/projects/{id}/delete",
            get(p::confirm_delete).post(p::delete),
        )
        .route("/configurations", get(c::list))
        .route(
            "/configurations/new",
            get(w::types_form).post(w::types_submit),
        )
        .route(
            "/configurations/new/project",
            get(w::project_form).post(w::project_submit),
        )
        .route(
            "/configurations/new/key",
            get(w::key_form).post(w::key_submit),
        )
        .route("/configurations/new/check", post(w::check_submit))
        .route(
            "/configurations/new/tables",
            get(w::tables_form).post(w::tables_submit),
        )
        .route(
            "/configurations/new/review",
            get(w::review_form).post(w::review_submit),
        )
        .route("/configurations/{id}", get(c::show))
        .route("/configurations/{id}/progress", get(c::progress))
        .route("/configurations/{id}/sync", post(c::sync_now))
        .route("/configurations/{id}/schedule", post(c::save_schedule))
        .route(
            "/configurations/{id}/schedule/active",
            post(c::schedule_active),
        )
        .route(
            "/configurations/{id}/schedule/delete",
            post(c::delete_schedule),
        )
        .route("/configurations/{id}/check", post(c::test_connection))
        .route("/configurations/{id}/key", post(c::rotate_key))
        .route(
            "/configurations/{id}/webhook-secret",
            post(c::webhook_secret),
        )
        .route("/configurations/{id}/active", post(c::set_active))
        .route(
            "/configurations/{id}/connected-accounts",
            post(c::set_connected_accounts),
        )
        .route(
            "/configurations/{id}/delete",
            get(c::confirm_delete).post(c::delete),
        )
        .route("/configurations/{id}/runs", get(r::history))
        .route("/runs/{id}", get(r::show))
        .route("/runs/{id}/progress", get(r::progress))
        .route("/runs/{id}/cancel", post(r::cancel))
        .route("/settings", get(s::show))
        .route("/settings/password", post(auth::change_password))
        .route("/settings/api-keys", post(s::create_api_key))
        .route(
            "/settings/api-keys/{id}/revoke",
            get(s::confirm_revoke).post(s::revoke_api_key),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_session,
        ));
    Router::new()
        .route("/login", get(auth::login_form).post(auth::login))
        .route("/static/app.css", get(layout::stylesheet))
        .route("/static/app.js", get(layout::script))
        .merge(protected)
        .layer(axum::middleware::map_response(layout::security_headers))
        .with_state(state)
}

/// Every path the router serves behind sign-in, with a method, for tests that walk them.
/// Ids are `1`.
pub const PROTECTED_ROUTES: &[(&str, &str)] = &[
    ("GET", "/"),
    ("POST", "/logout"),
    ("GET", "/projects"),
    ("POST", "/projects"),
    ("GET", "/projects/new"),
    ("GET", "/projects/1"),
    ("POST", "/projects/1"),
    ("POST", "/projects/1/active"),
    ("GET", "/projects/1/delete"),
    ("POST", "/projects/1/delete"),
    ("GET", "/configurations"),
    ("GET", "/configurations/new"),
    ("POST", "/configurations/new"),
    ("GET", "/configurations/new/project"),
    ("POST", "/configurations/new/project"),
    ("GET", "/configurations/new/key"),
    ("POST", "/configurations/new/key"),
    ("POST", "/configurations/new/check"),
    ("GET", "/configurations/new/tables"),
    ("POST", "/configurations/new/tables"),
    ("GET", "/configurations/new/review"),
    ("POST", "/configurations/new/review"),
    ("GET", "/configurations/1"),
    ("GET", "/configurations/1/progress"),
    ("POST", "/configurations/1/sync"),
    ("POST", "/configurations/1/schedule"),
    ("POST", "/configurations/1/schedule/active"),
    ("POST", "/configurations/1/schedule/delete"),
    ("POST", "/configurations/1/check"),
    ("POST", "/configurations/1/key"),
    ("POST", "/configurations/1/webhook-secret"),
    ("POST", "/configurations/1/active"),
    ("POST", "/configurations/1/connected-accounts"),
    ("GET", "/configurations/1/delete"),
    ("POST", "/configurations/1/delete"),
    ("GET", "/configurations/1/runs"),
    ("GET", "/runs/1"),
    ("GET", "/runs/1/progress"),
    ("POST", "/runs/1/cancel"),
    ("GET", "/settings"),
    ("POST", "/settings/password"),
    ("POST", "/settings/api-keys"),
    ("GET", "/settings/api-keys/1/revoke"),
    ("POST", "/settings/api-keys/1/revoke"),
];
