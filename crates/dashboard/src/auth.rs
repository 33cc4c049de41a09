//! Sign-in, sessions and CSRF.
//!
//! - A session is the store's: signing in creates one and hands back its token, which goes
//!   into the `cls_session` cookie (HttpOnly, SameSite=Lax; Secure with `--secure-cookies`
//!   or when the reverse proxy says the browser came over HTTPS); the store keeps only the
//!   token's hash.
//! - [`require_session`] guards every page but `/login` and `/static/…`: no valid session →
//!   redirect to `/login`. For a POST it also reads the form's `csrf` field and compares it
//!   with the session's CSRF token; a missing or different token is a 403. Guarding in one
//!   layer means no handler can forget it.
//! - Wrong sign-ins are counted per peer address (`SignInThrottle`): after a few, that
//!   peer's sign-ins are refused unchecked for a while, as the REST API refuses a client
//!   guessing tokens.
//! - The sign-in form itself has no session yet: it carries a double-submit token (a random
//!   value in both a cookie and the form), so another site cannot sign a browser into an
//!   account of its choosing.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{to_bytes, Body};
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use cls_control::{Store, StoreError};
use maud::html;
use rand::distributions::Alphanumeric;
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::error::PageError;
use crate::layout;
use crate::DashboardState;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "cls_session";
/// The sign-in form's double-submit cookie.
const LOGIN_CSRF_COOKIE: &str = "cls_login_csrf";
/// How long a session lasts, in hours.
pub const SESSION_TTL_HOURS: i64 = 12;
/// The account [`ensure_admin`] creates.
pub const ADMIN_USERNAME: &str = "admin";
/// Largest form body read by the CSRF check.
const MAX_FORM_BYTES: usize = 256 * 1024;
/// Wrong sign-ins a peer may make within [`SIGN_IN_WINDOW`] before it must wait.
const MAX_FAILED_SIGN_INS: u32 = 10;
/// The window failed sign-ins are counted over, and the longest wait.
const SIGN_IN_WINDOW: Duration = Duration::from_secs(300);
/// Peers remembered beyond which those whose window has passed are forgotten.
const SIGN_IN_PEERS_MAX: usize = 10_000;

/// Failed sign-ins per peer address. Passwords are checked with argon2, slow on purpose:
/// without a bound, a client could guess passwords as fast as the server hashes them and
/// spend its CPU doing so. After [`MAX_FAILED_SIGN_INS`] wrong ones within
/// [`SIGN_IN_WINDOW`], the peer's sign-ins are refused (`429`) unchecked until the window
/// has passed — the right password too, so a guess cannot be confirmed. A peer whose
/// address is unknown (no `ConnectInfo`) shares one allowance with all such peers; as with
/// the REST API's limits, `X-Forwarded-For` is not trusted, so behind a reverse proxy every
/// browser shares the proxy's allowance (a guesser there delays everyone's sign-in, by at
/// most [`SIGN_IN_WINDOW`]).
#[derive(Debug, Clone, Default)]
pub(crate) struct SignInThrottle {
    /// Peer → (start of its window, wrong sign-ins in it).
    failed: Arc<Mutex<FailedSignIns>>,
}

/// Peer (`None`: address unknown) → (start of its window, wrong sign-ins in it).
type FailedSignIns = HashMap<Option<IpAddr>, (Instant, u32)>;

impl SignInThrottle {
    /// How long `peer` must still wait, if it made too many wrong sign-ins.
    fn wait(&self, peer: Option<IpAddr>) -> Option<Duration> {
        let failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        let (since, count) = *failed.get(&peer)?;
        let left = SIGN_IN_WINDOW.checked_sub(since.elapsed())?;
        (count >= MAX_FAILED_SIGN_INS && !left.is_zero()).then_some(left)
    }

    /// Counts a wrong sign-in of `peer`.
    fn failed(&self, peer: Option<IpAddr>) {
        let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        if failed.len() >= SIGN_IN_PEERS_MAX {
            failed.retain(|_, (since, _)| since.elapsed() < SIGN_IN_WINDOW);
        }
        let entry = failed.entry(peer).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= SIGN_IN_WINDOW {
            *entry = (Instant::now(), 0);
        }
        entry.1 = entry.1.saturating_add(1);
    }
}

/// The signed-in person, as handlers see it.
#[derive(Debug, Clone)]
pub struct Session {
    /// The store's session id, as text (also the key of the session's drafts).
    pub(crate) id: String,
    /// The store's session id.
    pub(crate) store_id: cls_control::SessionId,
    /// Who is signed in.
    pub(crate) username: String,
    /// The token every POST form must carry.
    pub(crate) csrf: String,
}

/// Creates the admin account on first start: when the store has no user yet, creates
/// [`ADMIN_USERNAME`] with a generated password and returns both, for the caller to print
/// once (it is not stored anywhere in clear). `None` when users already exist.
pub async fn ensure_admin(store: &dyn Store) -> Result<Option<(String, SecretString)>, StoreError> {
    if store.user_count().await? > 0 {
        return Ok(None);
    }
    let password = SecretString::from(random_text(20));
    match store.create_user(ADMIN_USERNAME, &password).await {
        Ok(_) => Ok(Some((ADMIN_USERNAME.to_string(), password))),
        // Another node sharing this state created it since the count: theirs stands (and
        // they print its password), as if it had existed when this node started.
        Err(StoreError::Invalid {
            field: "username", ..
        }) if store.user_count().await? > 0 => Ok(None),
        Err(e) => Err(e),
    }
}

/// For `cls demo`, a throwaway local install: gives the admin account a new one-time
/// password (creating the account when missing) and returns both, for the caller to print.
/// Ends the admin's sessions.
pub async fn reset_admin(store: &dyn Store) -> Result<(String, SecretString), StoreError> {
    if let Some(created) = ensure_admin(store).await? {
        return Ok(created);
    }
    let password = SecretString::from(random_text(20));
    store.set_user_password(ADMIN_USERNAME, &password).await?;
    Ok((ADMIN_USERNAME.to_string(), password))
}

/// Random letters and digits, from the operating system's generator.
pub(crate) fn random_text(len: usize) -> String {
    rand::rngs::OsRng
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// Equal, in time that does not depend on where they differ.
fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The session of a cookie token, if it is valid and current.
async fn session_of(store: &dyn Store, token: &str) -> Result<Option<Session>, StoreError> {
    match store.session_by_token(token).await {
        Ok(s) => Ok(Some(Session {
            id: s.id.to_string(),
            store_id: s.id,
            username: s.username,
            csrf: s.csrf_token,
        })),
        Err(StoreError::Unauthorized { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Guards the signed-in routes; see the module doc.
pub(crate) async fn require_session(
    State(state): State<DashboardState>,
    jar: CookieJar,
    req: Request,
    next: Next,
) -> Response {
    let session = match jar.get(SESSION_COOKIE) {
        Some(c) => match session_of(state.store.as_ref(), c.value()).await {
            Ok(s) => s,
            Err(e) => return PageError::from(e).into_response(),
        },
        None => None,
    };
    let Some(session) = session else {
        // Back to the page asked for after signing in (GETs only: a form post is not
        // replayed).
        if req.method() == Method::GET {
            if let Some(pq) = req.uri().path_and_query() {
                if pq.as_str() != "/" {
                    let next: String =
                        url::form_urlencoded::byte_serialize(pq.as_str().as_bytes()).collect();
                    return Redirect::to(&format!("/login?next={next}")).into_response();
                }
            }
        }
        return Redirect::to("/login").into_response();
    };
    let mut req = if req.method() == Method::POST {
        match check_csrf(req, &session).await {
            Ok(req) => req,
            Err(e) => return e.into_response(),
        }
    } else {
        req
    };
    req.extensions_mut().insert(session);
    next.run(req).await
}

/// Reads a POST body, checks its `csrf` field and hands the request on with the same body.
async fn check_csrf(req: Request, session: &Session) -> Result<Request, PageError> {
    let (parts, body) = req.into_parts();
    let bytes = to_bytes(body, MAX_FORM_BYTES).await.map_err(|_| {
        PageError::BadRequest(format!(
            "the form is larger than {} KiB: send less text",
            MAX_FORM_BYTES / 1024
        ))
    })?;
    let given = url::form_urlencoded::parse(&bytes)
        .find(|(k, _)| k == "csrf")
        .map(|(_, v)| v.into_owned());
    match given {
        Some(t) if same_token(&t, &session.csrf) => {
            Ok(Request::from_parts(parts, Body::from(bytes)))
        }
        _ => Err(PageError::Forbidden(
            "this form is stale or was sent from another site (its security token does not match your session): reload the page and submit it again".into(),
        )),
    }
}

/// Whether cookies set in answer to this request carry `Secure`: always with
/// `--secure-cookies`, and otherwise when the reverse proxy in front says the browser came
/// over HTTPS (`X-Forwarded-Proto: https`; with several proxies the first value is the
/// browser's). The header is trusted though anyone can send it: it can only add `Secure`,
/// so a client lying about it only loses its own cookies over plain HTTP.
fn secure_cookies(state: &DashboardState, headers: &HeaderMap) -> bool {
    state.secure_cookies || forwarded_https(headers)
}

/// Whether `X-Forwarded-Proto` says the browser used HTTPS.
fn forwarded_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
}

fn cookie(secure: bool, name: &'static str, value: String) -> Cookie<'static> {
    Cookie::build((name, value))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(secure)
        .build()
}

/// Where to go after signing in: a path on this site, never another site (`//evil.com`,
/// `/\\evil.com`, `https://…` all become `/`).
fn safe_next(next: &str) -> &str {
    let local = next.starts_with('/')
        && !next.starts_with("//")
        && !next.chars().any(|c| c.is_control() || c == '\\');
    if local {
        next
    } else {
        "/"
    }
}

/// `GET /login`'s query.
#[derive(Deserialize)]
pub(crate) struct LoginQuery {
    /// The page to return to.
    #[serde(default)]
    next: String,
}

/// The sign-in form's fields.
#[derive(Deserialize)]
pub(crate) struct LoginForm {
    /// The page to return to.
    #[serde(default)]
    next: String,
    /// Account name.
    #[serde(default)]
    username: String,
    /// Password (never echoed back).
    #[serde(default)]
    password: String,
    /// The double-submit token.
    #[serde(default)]
    csrf: String,
}

fn login_page(csrf: &str, next: &str, username: &str, error: Option<&str>) -> maud::Markup {
    layout::bare(
        "Sign in",
        html! {
            h1 { "Sign in" }
            @if let Some(e) = error { p.notice.bad role="alert" { (e) } }
            form.card method="post" action="/login" {
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="next" value=(safe_next(next));
                label for="username" { "Username" }
                input #username name="username" type="text" autocomplete="username" required value=(username);
                label for="password" { "Password" }
                input #password name="password" type="password" autocomplete="current-password" required;
                button.primary type="submit" { "Sign in" }
            }
            p.hint { "First start? The admin password was printed once in the terminal where cls started." }
        },
    )
}

/// `GET /login`.
pub(crate) async fn login_form(
    State(state): State<DashboardState>,
    Query(query): Query<LoginQuery>,
    headers: HeaderMap,
    jar: CookieJar,
) -> Response {
    if let Some(c) = jar.get(SESSION_COOKIE) {
        if let Ok(Some(_)) = session_of(state.store.as_ref(), c.value()).await {
            return Redirect::to(safe_next(&query.next)).into_response();
        }
    }
    let token = random_text(32);
    let secure = secure_cookies(&state, &headers);
    let jar = jar.add(cookie(secure, LOGIN_CSRF_COOKIE, token.clone()));
    (jar, login_page(&token, &query.next, "", None)).into_response()
}

/// `POST /login`.
pub(crate) async fn login(
    State(state): State<DashboardState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    jar: CookieJar,
    Form(form): Form<LoginForm>,
) -> Response {
    let expected = jar.get(LOGIN_CSRF_COOKIE).map(|c| c.value().to_string());
    if !expected.is_some_and(|e| same_token(&e, &form.csrf)) {
        return PageError::Forbidden(
            "the sign-in form is stale or was sent from another site: open the sign-in page again and retry".into(),
        )
        .into_response();
    }
    let peer = peer.map(|Extension(ConnectInfo(addr))| addr.ip());
    if let Some(wait) = state.sign_ins.wait(peer) {
        tracing::warn!("dashboard sign-in refused unchecked: too many wrong passwords");
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let minutes = secs.div_ceil(60);
        let page = login_page(
            &form.csrf,
            &form.next,
            &form.username,
            Some(&format!("Too many wrong sign-ins from this address: wait {minutes} minute(s), then sign in again. The admin password was printed once when cls first started.")),
        );
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, HeaderValue::from(secs))],
            page,
        )
            .into_response();
    }
    let password = SecretString::from(form.password);
    let user = match state
        .store
        .verify_user_password(form.username.trim(), &password)
        .await
    {
        Ok(u) => u,
        Err(StoreError::Unauthorized { .. }) => {
            tracing::warn!("dashboard sign-in refused");
            state.sign_ins.failed(peer);
            let page = login_page(
                &form.csrf,
                &form.next,
                &form.username,
                Some("Wrong username or password: check both (they are case-sensitive). The admin password was printed once when cls first started."),
            );
            return (StatusCode::UNAUTHORIZED, page).into_response();
        }
        Err(e) => return PageError::from(e).into_response(),
    };
    let (_, token) = match state
        .store
        .create_session(user.id, chrono::Duration::hours(SESSION_TTL_HOURS))
        .await
    {
        Ok(s) => s,
        Err(e) => return PageError::from(e).into_response(),
    };
    let jar = jar
        .remove(Cookie::build(LOGIN_CSRF_COOKIE).path("/"))
        .add(cookie(
            secure_cookies(&state, &headers),
            SESSION_COOKIE,
            token.expose_secret().to_string(),
        ));
    (jar, Redirect::to(safe_next(&form.next))).into_response()
}

/// The change-password form's fields (none is ever echoed back).
#[derive(Deserialize)]
pub(crate) struct PasswordForm {
    /// The password now.
    #[serde(default)]
    current: String,
    /// The new password.
    #[serde(default)]
    new: String,
    /// The new password again.
    #[serde(default)]
    confirm: String,
}

/// `POST /settings/password`: checks the current password, replaces it, and — since the
/// store ends every session of the user — signs this browser in again with a new session.
pub(crate) async fn change_password(
    State(state): State<DashboardState>,
    Extension(session): Extension<Session>,
    headers: HeaderMap,
    jar: CookieJar,
    Form(form): Form<PasswordForm>,
) -> Response {
    let refuse = |text: &str| {
        state.drafts.notice(
            &session.id,
            false,
            format!("The password was not changed: {text}"),
        );
        Redirect::to("/settings").into_response()
    };
    let current = SecretString::from(form.current);
    match state
        .store
        .verify_user_password(&session.username, &current)
        .await
    {
        Ok(_) => {}
        Err(StoreError::Unauthorized { .. }) => {
            return refuse("the current password is wrong; type it again.")
        }
        Err(e) => return PageError::from(e).into_response(),
    }
    if form.new != form.confirm {
        return refuse("the two new passwords differ; type the same one twice.");
    }
    let new = SecretString::from(form.new);
    let user = match state.store.set_user_password(&session.username, &new).await {
        Ok(u) => u,
        Err(StoreError::Invalid { reason, .. }) => return refuse(&reason),
        Err(e) => return PageError::from(e).into_response(),
    };
    state.drafts.forget(&session.id);
    let (fresh, token) = match state
        .store
        .create_session(user.id, chrono::Duration::hours(SESSION_TTL_HOURS))
        .await
    {
        Ok(s) => s,
        Err(e) => return PageError::from(e).into_response(),
    };
    state.drafts.notice(
        &fresh.id.to_string(),
        true,
        "Password changed. Every other browser signed in as you was signed out.",
    );
    let jar = jar.add(cookie(
        secure_cookies(&state, &headers),
        SESSION_COOKIE,
        token.expose_secret().to_string(),
    ));
    (jar, Redirect::to("/settings")).into_response()
}

/// `POST /logout`.
pub(crate) async fn logout(
    State(state): State<DashboardState>,
    Extension(session): Extension<Session>,
    jar: CookieJar,
) -> Response {
    if let Err(e) = state.store.delete_session(session.store_id).await {
        return PageError::from(e).into_response();
    }
    state.drafts.forget(&session.id);
    let jar = jar.remove(Cookie::build(SESSION_COOKIE).path("/"));
    (jar, Redirect::to("/login")).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(same_token("abc", "abc"));
        assert!(!same_token("abc", "abd"));
        assert!(!same_token("abc", "ab"));
        assert!(!same_token("", "a"));
        assert_eq!(random_text(20).len(), 20);
        assert_ne!(random_text(20), random_text(20));
    }

    #[test]
    fn cookies_are_secure_when_the_proxy_says_https() {
        for (proto, https) in [
            (Some("https"), true),
            (Some("HTTPS"), true),
            (Some("https, http"), true),
            (Some("http"), false),
            (Some("http, https"), false),
            (Some(""), false),
            (None, false),
        ] {
            let mut headers = HeaderMap::new();
            if let Some(p) = proto {
                headers.insert("x-forwarded-proto", HeaderValue::from_static(p));
            }
            assert_eq!(forwarded_https(&headers), https, "{proto:?}");
        }
    }

    #[test]
    fn sign_in_returns_only_to_pages_of_this_site() {
        assert_eq!(safe_next("/projects?x=1"), "/projects?x=1");
        assert_eq!(safe_next("/runs/3"), "/runs/3");
        for bad in [
            "",
            "//evil.example",
            "/\\evil.example",
            "https://evil.example/",
            "evil",
            "/ok\\..",
            "/a\nb",
        ] {
            assert_eq!(safe_next(bad), "/", "{bad:?}");
        }
    }
}
