//! The page shell (head, navigation, notices), form helpers, and the static files.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup, PreEscaped, DOCTYPE};

use crate::auth::Session;
use crate::drafts::Notice;

/// The stylesheet, hand-written, served from `/static/app.css`.
const CSS: &str = include_str!("../static/app.css");
/// The little plain JavaScript: live progress polling and the key-prefix helper.
const JS: &str = include_str!("../static/app.js");

/// `GET /static/app.css`.
pub(crate) async fn stylesheet() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        CSS,
    )
}

/// `GET /static/app.js`.
pub(crate) async fn script() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        JS,
    )
}

/// What the browser may do with the dashboard's pages, on every response:
/// - a Content-Security-Policy allowing only this origin's own files (no inline script, no
///   other site), so even a string that escaped escaping could not run;
/// - no framing (clickjacking), no MIME sniffing, no referrer to other sites;
/// - pages are not cached (the API key shown once, masked secrets, live state) — except the
///   static files, which set their own caching.
pub(crate) async fn security_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

/// Which navigation entry is current.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nav {
    /// The overview.
    Home,
    /// Projects.
    Projects,
    /// Configurations (and the wizard, runs).
    Configurations,
    /// Settings.
    Settings,
}

/// What the shell needs besides the body.
pub(crate) struct Shell<'a> {
    /// The signed-in session (for the name shown and the sign-out form's CSRF token).
    pub session: &'a Session,
    /// The `<title>` and nothing else.
    pub title: &'a str,
    /// Current navigation entry.
    pub nav: Nav,
    /// A one-shot notice to show above the body.
    pub notice: Option<Notice>,
    /// Reload the page every few seconds when JavaScript is off (live progress).
    pub refresh: bool,
}

fn head(title: &str, refresh: bool) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · Codeless Sync" }
            link rel="stylesheet" href="/static/app.css";
            @if refresh {
                noscript { meta http-equiv="refresh" content="3"; }
            }
            script src="/static/app.js" defer {}
        }
    }
}

/// A signed-in page.
pub(crate) fn page(shell: Shell<'_>, body: Markup) -> Markup {
    let item = |nav: Nav, href: &str, label: &str| {
        html! {
            li { a href=(href) aria-current=[(shell.nav == nav).then_some("page")] { (label) } }
        }
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(shell.title, shell.refresh))
            body {
                header.top {
                    a.brand href="/" { "Codeless Sync" }
                    nav aria-label="Main" {
                        ul {
                            (item(Nav::Home, "/", "Overview"))
                            (item(Nav::Projects, "/projects", "Projects"))
                            (item(Nav::Configurations, "/configurations", "Configurations"))
                            (item(Nav::Settings, "/settings", "Settings"))
                        }
                    }
                    form.signout method="post" action="/logout" {
                        (csrf(shell.session))
                        span.who { (shell.session.username) }
                        button.link type="submit" { "Sign out" }
                    }
                }
                main {
                    @if let Some(n) = &shell.notice {
                        p.notice.ok[n.ok].bad[!n.ok] role="status" { (n.text) }
                    }
                    (body)
                }
            }
        }
    }
}

/// A page without navigation (sign-in, errors before a session exists).
pub(crate) fn bare(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title, false))
            body.bare {
                main.narrow {
                    p.brand { "Codeless Sync" }
                    (body)
                }
            }
        }
    }
}

/// The hidden CSRF field every POST form carries.
pub(crate) fn csrf(session: &Session) -> Markup {
    html! { input type="hidden" name="csrf" value=(session.csrf); }
}

/// A small form with one button posting to `action` (toggles, Sync Now, Cancel).
pub(crate) fn button_form(session: &Session, action: &str, label: &str, class: &str) -> Markup {
    html! {
        form.inline method="post" action=(action) {
            (csrf(session))
            button class=(class) type="submit" { (label) }
        }
    }
}

/// A tick or a cross, with words for screen readers (`role="img"`: an `aria-label` on a
/// plain span is not read out).
pub(crate) fn mark(ok: bool) -> Markup {
    if ok {
        html! { span.tick role="img" aria-label="ok" { (PreEscaped("&#10003;")) } }
    } else {
        html! { span.cross role="img" aria-label="problem" { (PreEscaped("&#10007;")) } }
    }
}

/// A status badge (`succeeded`, `running`, …).
pub(crate) fn badge(text: &str) -> Markup {
    html! { span class={ "badge " (text) } { (text) } }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_are_images_with_words() {
        for (ok, words) in [(true, "ok"), (false, "problem")] {
            let html = mark(ok).into_string();
            assert!(
                html.contains(&format!("role=\"img\" aria-label=\"{words}\"")),
                "{html}"
            );
        }
    }
}
