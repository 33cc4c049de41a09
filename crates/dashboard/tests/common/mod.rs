//! The dashboard started for real on 127.0.0.1:0 over a SQLite state store in a temp dir,
//! with the in-process Stripe emulator, and a cookie-keeping HTTP client.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use cls_control::{
    KeySource, MasterKey, Runner, RunnerConfig, SqliteStore, StateUrl, Store, SystemClock,
};
use cls_dashboard::{ensure_admin, router, DashboardState};
use cls_emulator::RunningEmulator;
use reqwest::redirect::Policy;
use secrecy::ExposeSecret;

/// Keys the emulator accepts.
pub const FULL_KEY: &str = "rk_test_cls_emulator";
/// Lacks `rak_charge_read` and `rak_invoice_read`.
pub const LIMITED_KEY: &str = "rk_test_cls_limited";
/// The emulator's secret key.
pub const SECRET_KEY: &str = "sk_test_cls_emulator";

/// A running dashboard.
pub struct App {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The store behind it.
    pub store: Arc<dyn Store>,
    /// The runner tests drive with `step()`.
    pub runner: Runner,
    /// The emulator.
    pub emulator: RunningEmulator,
    /// The admin password printed at first start.
    pub password: String,
    /// A temp dir for destination databases.
    pub dir: PathBuf,
}

/// Starts everything; `customers` seeds the emulator. Cookies are not `Secure` (plain HTTP).
pub async fn spawn_app(customers: usize) -> App {
    spawn_app_with(customers, false).await
}

/// Starts everything, with `Secure` cookies when `secure_cookies`.
pub async fn spawn_app_with(customers: usize, secure_cookies: bool) -> App {
    let dir = cls_testkit::db::temp_dir("cls_dashboard");
    let state_url = StateUrl::parse(&format!("sqlite://{}", dir.join("state.db").display()))
        .expect("state url");
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&state_url, MasterKey::generate())
            .await
            .expect("open state store"),
    );
    let emulator = cls_testkit::emulator::spawn_emulator(7, customers).await;
    let api_base = url::Url::parse(&emulator.base_url).expect("emulator url");
    let runner = Runner::with_config(
        store.clone(),
        Arc::new(SystemClock),
        RunnerConfig {
            stripe_api_base: Some(api_base.clone()),
            ..RunnerConfig::default()
        },
    );
    let (username, password) = ensure_admin(store.as_ref())
        .await
        .expect("ensure admin")
        .expect("first start creates the admin");
    assert_eq!(username, "admin");
    assert!(
        ensure_admin(store.as_ref())
            .await
            .expect("ensure admin")
            .is_none(),
        "a second start must not create another admin"
    );
    // The store's master key was generated above: Settings says so.
    let state = DashboardState::new(
        store.clone(),
        runner.clone(),
        Some(api_base),
        secure_cookies,
    )
    .with_master_key_source(KeySource::Generated);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        axum::serve(listener, router(state)).await.expect("serve");
    });
    App {
        base: format!("http://{addr}"),
        store,
        runner,
        emulator,
        password: password.expose_secret().to_string(),
        dir,
    }
}

/// A client that keeps cookies and does not follow redirects (tests look at them).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(Policy::none())
        .build()
        .expect("client")
}

/// The value of the first hidden `csrf` field of a page.
pub fn csrf_of(html: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = html
        .find(marker)
        .unwrap_or_else(|| panic!("no csrf field in page:\n{html}"))
        + marker.len();
    let end = html[start..].find('"').expect("end of csrf value") + start;
    html[start..end].to_string()
}

impl App {
    /// `base` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Signs `client` in as the admin; returns the session's CSRF token.
    pub async fn sign_in(&self, client: &reqwest::Client) -> String {
        let page = self.get_ok(client, "/login").await;
        let csrf = csrf_of(&page);
        let res = client
            .post(self.url("/login"))
            .form(&[
                ("username", "admin"),
                ("password", self.password.as_str()),
                ("csrf", csrf.as_str()),
            ])
            .send()
            .await
            .expect("post /login");
        assert_eq!(res.status(), 303, "sign-in should redirect");
        assert_eq!(location(&res), "/");
        let home = self.get_ok(client, "/").await;
        csrf_of(&home)
    }

    /// GETs a page that must answer 200; returns its body.
    pub async fn get_ok(&self, client: &reqwest::Client, path: &str) -> String {
        let res = client
            .get(self.url(path))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = res.status();
        let body = res.text().await.expect("body");
        assert_eq!(status, 200, "GET {path} answered {status}:\n{body}");
        body
    }

    /// POSTs a form; returns the response.
    pub async fn post(
        &self,
        client: &reqwest::Client,
        path: &str,
        form: &[(&str, &str)],
    ) -> reqwest::Response {
        client
            .post(self.url(path))
            .form(form)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    /// POSTs a form that must redirect; returns where to.
    pub async fn post_redirect(
        &self,
        client: &reqwest::Client,
        path: &str,
        form: &[(&str, &str)],
    ) -> String {
        let res = self.post(client, path, form).await;
        let status = res.status();
        let to = location(&res);
        let body = res.text().await.unwrap_or_default();
        assert_eq!(status, 303, "POST {path} answered {status}:\n{body}");
        to
    }
}

/// A response's `Location`.
pub fn location(res: &reqwest::Response) -> String {
    res.headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}
