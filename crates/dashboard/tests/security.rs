//! Sign-in is required everywhere, and every POST needs the session's CSRF token.

mod common;

use cls_dashboard::PROTECTED_ROUTES;
use common::{client, location, spawn_app};

#[tokio::test]
async fn every_page_but_sign_in_and_static_requires_a_session() {
    let app = spawn_app(3).await;
    let anonymous = client();
    for (method, path) in PROTECTED_ROUTES {
        let req = match *method {
            "GET" => anonymous.get(app.url(path)),
            _ => anonymous.post(app.url(path)).form(&[("csrf", "x")]),
        };
        let res = req.send().await.expect("request");
        assert_eq!(res.status(), 303, "{method} {path} without a session");
        let expected = match (*method, *path) {
            ("GET", "/") | ("POST", _) => "/login".to_string(),
            _ => format!("/login?next={}", path.replace('/', "%2F")),
        };
        assert_eq!(
            location(&res),
            expected,
            "{method} {path} without a session"
        );
    }
    // A forged or expired cookie is no session either.
    let forged = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let res = forged
        .get(app.url("/projects"))
        .header("Cookie", "cls_session=not-a-real-token")
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), "/login?next=%2Fprojects");

    // Sign-in and the static files are public.
    let login = anonymous
        .get(app.url("/login"))
        .send()
        .await
        .expect("login");
    assert_eq!(login.status(), 200);
    let css = anonymous
        .get(app.url("/static/app.css"))
        .send()
        .await
        .expect("css");
    assert_eq!(css.status(), 200);
    assert!(css
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"text/css")));
}

#[tokio::test]
async fn the_session_cookie_is_http_only_and_same_site_lax() {
    let app = spawn_app(3).await;
    let c = client();
    let page = app.get_ok(&c, "/login").await;
    let csrf = common::csrf_of(&page);
    let res = app
        .post(
            &c,
            "/login",
            &[
                ("username", "admin"),
                ("password", app.password.as_str()),
                ("csrf", csrf.as_str()),
            ],
        )
        .await;
    let cookie = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("cls_session="))
        .expect("a session cookie")
        .to_string();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
    assert!(cookie.contains("Path=/"), "{cookie}");
    // secure_cookies is off in tests (plain http://127.0.0.1).
    assert!(!cookie.contains("Secure"), "{cookie}");
}

#[tokio::test]
async fn wrong_passwords_are_refused_and_say_what_to_check() {
    let app = spawn_app(3).await;
    let c = client();
    let csrf = common::csrf_of(&app.get_ok(&c, "/login").await);
    let res = app
        .post(
            &c,
            "/login",
            &[
                ("username", "admin"),
                ("password", "not-the-password"),
                ("csrf", csrf.as_str()),
            ],
        )
        .await;
    assert_eq!(res.status(), 401);
    let body = res.text().await.expect("body");
    assert!(body.contains("Wrong username or password"), "{body}");
    assert!(
        !body.contains("not-the-password"),
        "the password is never echoed"
    );
    // Still signed out.
    let res = c.get(app.url("/")).send().await.expect("home");
    assert_eq!(location(&res), "/login");
}

#[tokio::test]
async fn posts_without_the_sessions_csrf_token_are_refused() {
    let app = spawn_app(3).await;
    let c = client();
    let csrf = app.sign_in(&c).await;

    for (method, path) in PROTECTED_ROUTES.iter().filter(|(m, _)| *m == "POST") {
        for form in [vec![], vec![("csrf", "wrong-token")]] {
            let res = app.post(&c, path, &form).await;
            assert_eq!(
                res.status(),
                403,
                "{method} {path} with csrf {form:?} must be refused"
            );
        }
    }
    // The token of the session works, and nothing above changed state.
    assert!(app.get_ok(&c, "/projects").await.contains("No project yet"));
    let to = app
        .post_redirect(&c, "/logout", &[("csrf", csrf.as_str())])
        .await;
    assert_eq!(to, "/login");
    let res = c.get(app.url("/")).send().await.expect("home");
    assert_eq!(location(&res), "/login", "signed out");

    // The sign-in form has its own double-submit token.
    let fresh = client();
    let res = app
        .post(
            &fresh,
            "/login",
            &[("username", "admin"), ("password", app.password.as_str())],
        )
        .await;
    assert_eq!(res.status(), 403);
}

#[tokio::test]
async fn pages_forbid_framing_foreign_scripts_and_caching() {
    let app = spawn_app(3).await;
    let c = client();
    app.sign_in(&c).await;
    for path in ["/login", "/", "/settings"] {
        let res = c.get(app.url(path)).send().await.expect("page");
        let h = res.headers();
        let csp = h
            .get("content-security-policy")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(csp.contains("script-src 'self'"), "{path}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert_eq!(
            h.get("x-frame-options").map(|v| v.as_bytes()),
            Some(&b"DENY"[..]),
            "{path}"
        );
        assert_eq!(
            h.get("cache-control").map(|v| v.as_bytes()),
            Some(&b"no-store"[..]),
            "{path}"
        );
        // No inline script anywhere: the policy would block it, so none may be needed.
        let body = res.text().await.expect("body");
        assert!(!body.contains("<script>"), "{path} has an inline script");
        assert!(!body.contains(" style=\""), "{path} has an inline style");
    }
    let css = c.get(app.url("/static/app.css")).send().await.expect("css");
    assert!(css
        .headers()
        .get("cache-control")
        .is_some_and(|v| v.as_bytes().starts_with(b"public")));
}

#[tokio::test]
async fn signing_in_returns_to_the_page_asked_for_and_never_to_another_site() {
    let app = spawn_app(3).await;
    for (asked, lands) in [
        ("/settings", "/settings"),
        ("//evil.example/x", "/"),
        ("https://evil.example/", "/"),
    ] {
        let c = client();
        let next: String = url::form_urlencoded::byte_serialize(asked.as_bytes()).collect();
        let page = app.get_ok(&c, &format!("/login?next={next}")).await;
        let csrf = common::csrf_of(&page);
        let res = app
            .post(
                &c,
                "/login",
                &[
                    ("username", "admin"),
                    ("password", app.password.as_str()),
                    ("csrf", csrf.as_str()),
                    ("next", asked),
                ],
            )
            .await;
        assert_eq!(res.status(), 303);
        assert_eq!(location(&res), lands, "next={asked}");
    }
}

#[tokio::test]
async fn behind_https_the_session_cookie_is_secure() {
    let app = common::spawn_app_with(3, true).await;
    // reqwest keeps no Secure cookie over plain HTTP, so read the headers by hand.
    let raw = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let login = raw.get(app.url("/login")).send().await.expect("login");
    let csrf_cookie = login
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("cls_login_csrf="))
        .expect("a login csrf cookie")
        .to_string();
    assert!(csrf_cookie.contains("Secure"), "{csrf_cookie}");
    let token = csrf_cookie["cls_login_csrf=".len()..]
        .split(';')
        .next()
        .unwrap_or_default()
        .to_string();
    let res = raw
        .post(app.url("/login"))
        .header("Cookie", format!("cls_login_csrf={token}"))
        .form(&[
            ("username", "admin"),
            ("password", app.password.as_str()),
            ("csrf", token.as_str()),
        ])
        .send()
        .await
        .expect("sign in");
    assert_eq!(res.status(), 303);
    let session = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("cls_session="))
        .expect("a session cookie")
        .to_string();
    assert!(session.contains("Secure"), "{session}");
    assert!(session.contains("HttpOnly"), "{session}");
}

#[tokio::test]
async fn changing_the_password_signs_out_other_browsers_and_keeps_this_one() {
    let app = spawn_app(3).await;
    let this = client();
    let other = client();
    let csrf = app.sign_in(&this).await;
    app.sign_in(&other).await;
    let new_password = "a much longer new passphrase";

    for (current, new, confirm, says) in [
        (
            "wrong password!",
            new_password,
            new_password,
            "current password is wrong",
        ),
        (
            app.password.as_str(),
            new_password,
            "something else entirely",
            "two new passwords differ",
        ),
        (app.password.as_str(), "short", "short", "12"),
    ] {
        app.post_redirect(
            &this,
            "/settings/password",
            &[
                ("csrf", &csrf),
                ("current", current),
                ("new", new),
                ("confirm", confirm),
            ],
        )
        .await;
        let page = app.get_ok(&this, "/settings").await;
        assert!(page.contains("The password was not changed"), "{page}");
        assert!(page.contains(says), "{says}: {page}");
        for typed in [current, new, confirm] {
            if typed.len() >= 12 {
                assert!(!page.contains(typed), "a typed password is echoed");
            }
        }
    }

    let to = app
        .post_redirect(
            &this,
            "/settings/password",
            &[
                ("csrf", &csrf),
                ("current", app.password.as_str()),
                ("new", new_password),
                ("confirm", new_password),
            ],
        )
        .await;
    assert_eq!(to, "/settings");
    let page = app.get_ok(&this, "/settings").await;
    assert!(page.contains("Password changed."), "{page}");
    assert!(!page.contains(new_password));

    // The other browser's session ended.
    let res = other.get(app.url("/settings")).send().await.expect("other");
    assert_eq!(res.status(), 303);

    // The old password no longer signs in; the new one does.
    let c = client();
    let csrf = common::csrf_of(&app.get_ok(&c, "/login").await);
    let res = app
        .post(
            &c,
            "/login",
            &[
                ("username", "admin"),
                ("password", app.password.as_str()),
                ("csrf", csrf.as_str()),
            ],
        )
        .await;
    assert_eq!(res.status(), 401);
    let res = app
        .post(
            &c,
            "/login",
            &[
                ("username", "admin"),
                ("password", new_password),
                ("csrf", csrf.as_str()),
            ],
        )
        .await;
    assert_eq!(res.status(), 303);
}

#[tokio::test]
async fn a_client_guessing_passwords_is_stopped_before_the_password_is_checked() {
    let app = spawn_app(3).await;
    let c = client();
    let csrf = common::csrf_of(&app.get_ok(&c, "/login").await);
    let attempt = |password: &'static str| {
        let c = c.clone();
        let csrf = csrf.clone();
        let url = app.url("/login");
        async move {
            c.post(url)
                .form(&[
                    ("username", "admin"),
                    ("password", password),
                    ("csrf", csrf.as_str()),
                ])
                .send()
                .await
                .expect("post /login")
        }
    };
    let mut refused_at = None;
    for n in 1..=50 {
        let res = attempt("not-the-password").await;
        if res.status() == 429 {
            refused_at = Some(n);
            assert!(res.headers().contains_key("retry-after"));
            let body = res.text().await.expect("body");
            assert!(body.contains("Too many"), "{body}");
            break;
        }
        assert_eq!(res.status(), 401, "attempt {n}");
    }
    let refused_at = refused_at.expect("50 wrong passwords in a row were all checked");
    assert!(
        refused_at > 5,
        "a person mistyping a few times is not refused"
    );
    // Even the right password waits: a guesser must not learn it was right.
    let password: &'static str = Box::leak(app.password.clone().into_boxed_str());
    assert_eq!(attempt(password).await.status(), 429);
}

/// Nodes sharing one fresh state start together: each may find no user and create the
/// admin; exactly one does, and the others start as if it had existed (none fails to start).
#[tokio::test]
async fn nodes_starting_together_create_one_admin_and_all_start() {
    use cls_control::{MasterKey, SqliteStore, StateUrl, Store};
    let dir = tempfile::tempdir().expect("temp dir");
    let url = StateUrl::parse(&format!(
        "sqlite://{}",
        dir.path().join("state.db").display()
    ))
    .expect("state url");
    let store: std::sync::Arc<dyn Store> = std::sync::Arc::new(
        SqliteStore::open(&url, MasterKey::generate())
            .await
            .expect("open"),
    );
    let (a, b, c) = tokio::join!(
        cls_dashboard::ensure_admin(store.as_ref()),
        cls_dashboard::ensure_admin(store.as_ref()),
        cls_dashboard::ensure_admin(store.as_ref()),
    );
    let started: Vec<_> = [a, b, c]
        .into_iter()
        .map(|r| r.unwrap_or_else(|e| panic!("a node failed to start: {e}")))
        .collect();
    assert_eq!(started.iter().filter(|c| c.is_some()).count(), 1);
    assert_eq!(store.user_count().await.expect("count"), 1);
}

/// The `Set-Cookie` of `name` in `res`.
fn set_cookie(res: &reqwest::Response, name: &str) -> String {
    res.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} cookie"))
        .to_string()
}

#[tokio::test]
async fn behind_a_proxy_saying_https_cookies_are_secure_without_the_flag() {
    // --secure-cookies off; the proxy says the browser came over HTTPS.
    let app = spawn_app(3).await;
    let raw = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let plain = raw.get(app.url("/login")).send().await.expect("login");
    assert!(!set_cookie(&plain, "cls_login_csrf").contains("Secure"));
    let login = raw
        .get(app.url("/login"))
        .header("X-Forwarded-Proto", "https")
        .send()
        .await
        .expect("login");
    let csrf_cookie = set_cookie(&login, "cls_login_csrf");
    assert!(csrf_cookie.contains("Secure"), "{csrf_cookie}");
    let token = csrf_cookie["cls_login_csrf=".len()..]
        .split(';')
        .next()
        .unwrap_or_default()
        .to_string();
    let res = raw
        .post(app.url("/login"))
        .header("X-Forwarded-Proto", "https")
        .header("Cookie", format!("cls_login_csrf={token}"))
        .form(&[
            ("username", "admin"),
            ("password", app.password.as_str()),
            ("csrf", token.as_str()),
        ])
        .send()
        .await
        .expect("sign in");
    assert_eq!(res.status(), 303);
    let session = set_cookie(&res, "cls_session");
    assert!(session.contains("Secure"), "{session}");
    assert!(session.contains("HttpOnly"), "{session}");
}
