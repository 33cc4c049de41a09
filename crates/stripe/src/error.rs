//! Typed errors of the Stripe client, and the parsing of Stripe's error bodies.
//!
//! Each [`StripeError`] variant is something a caller acts on differently: an invalid key stops
//! everything, a missing permission skips one data type and names the permission to add, a
//! rate limit that survived every retry marks the run partial. `Display` is a sentence for the
//! user that ends with what to do.
//!
//! Stripe's error body is `{"error":{"type","code","message","param"}}`. Bodies that are not
//! that (an HTML page from a proxy, an empty body) still become a typed error by status.

use serde::Deserialize;

/// Where restricted keys are edited; repeated in messages.
const WHERE_KEYS_ARE: &str = "Stripe Dashboard → Developers → API keys";

/// Longest piece of a non-JSON error body kept in a message.
const BODY_SNIPPET_CHARS: usize = 200;

/// Errors of [`crate::StripeClient`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StripeError {
    /// 401: the key is unknown, expired or rolled.
    #[error("Stripe rejected the API key ({message}): paste a current key from {WHERE_KEYS_ARE}")]
    InvalidKey {
        /// Stripe's message (it masks the key itself).
        message: String,
    },
    /// 403: a restricted key lacks the permission this request needs.
    #[error("{}", permission_sentence(.permission.as_deref(), .message))]
    PermissionDenied {
        /// The missing permission, e.g. `rak_invoice_read`, when Stripe's message names it.
        permission: Option<String>,
        /// Stripe's message.
        message: String,
    },
    /// 404: no such object or endpoint.
    #[error("Stripe has no such object or endpoint ({message}); if the API base was changed, check that it points at Stripe or the emulator")]
    NotFound {
        /// Stripe's message.
        message: String,
    },
    /// 400 and other 4xx answers that retrying cannot fix.
    #[error("Stripe refused the request: {message}{}{}; this is likely a bug in Codeless Sync or an API version it does not support — please report it", code_suffix(.code.as_deref()), param_suffix(.param.as_deref()))]
    BadRequest {
        /// Stripe's error code (`parameter_unknown`, `resource_missing`, …).
        code: Option<String>,
        /// The offending parameter, when Stripe names one.
        param: Option<String>,
        /// Stripe's message.
        message: String,
    },
    /// 409 answers (lock contention on an object) that survived every retry.
    #[error("Stripe kept answering 409 Conflict ({message}): another process is changing the same objects; run the sync again later")]
    Conflict {
        /// Stripe's message.
        message: String,
    },
    /// 429 answers that survived every retry.
    #[error("Stripe kept answering 429 Too Many Requests ({message}): another integration may be using this account's rate limit; run the sync again later, or lower the request rate")]
    RateLimited {
        /// Stripe's message.
        message: String,
    },
    /// 5xx (or an unexpected status) after every retry.
    // Whether it was retried is in the message ("gave up after N attempts"): with
    // `Stripe-Should-Retry: false` it was not, and saying so would send people the wrong way.
    #[error("Stripe answered HTTP {status} ({message}): Stripe may be having trouble (see status.stripe.com); run the sync again later")]
    Server {
        /// HTTP status.
        status: u16,
        /// Stripe's message, or a description of the body.
        message: String,
    },
    /// Connection refused or reset, timeout, cut-off body — after every retry.
    #[error(
        "could not talk to Stripe ({message}): check the network connection and the API base URL"
    )]
    Network {
        /// What went wrong.
        message: String,
    },
    /// A successful answer whose body is not the JSON expected.
    #[error("Stripe's answer was not the JSON expected ({message}); if the API base was changed, check that it points at Stripe or the emulator")]
    Decode {
        /// What was wrong with it.
        message: String,
    },
    /// The client could not be set up, or was asked for a malformed path.
    #[error("the Stripe client is misconfigured: {message}")]
    Config {
        /// What is wrong.
        message: String,
    },
}

impl StripeError {
    /// Whether trying the same request later could succeed.
    ///
    /// The client has already retried these within its bounds when it returns them; this tells
    /// a caller whether a later run (or a later window) is worth it, as opposed to a fix by the
    /// user (key, permission) or in the code (bad request).
    pub fn is_retriable(&self) -> bool {
        match self {
            StripeError::RateLimited { .. }
            | StripeError::Conflict { .. }
            | StripeError::Network { .. } => true,
            StripeError::Server { status, .. } => *status >= 500,
            StripeError::InvalidKey { .. }
            | StripeError::PermissionDenied { .. }
            | StripeError::NotFound { .. }
            | StripeError::BadRequest { .. }
            | StripeError::Decode { .. }
            | StripeError::Config { .. } => false,
        }
    }

    /// Stripe's error code, when the error carries one (`resource_missing` for an unknown cursor).
    pub fn code(&self) -> Option<&str> {
        match self {
            StripeError::BadRequest { code, .. } => code.as_deref(),
            _ => None,
        }
    }
}

fn code_suffix(code: Option<&str>) -> String {
    code.map(|c| format!(" (code {c})")).unwrap_or_default()
}

fn param_suffix(param: Option<&str>) -> String {
    param
        .map(|p| format!(" (parameter {p})"))
        .unwrap_or_default()
}

fn permission_sentence(permission: Option<&str>, message: &str) -> String {
    match permission {
        Some(permission) => format!(
            "this restricted key lacks `{permission}`: enable {} on the key in the Stripe Dashboard (Developers → API keys → edit the key)",
            permission_label(permission)
        ),
        None => format!(
            "Stripe refused this key access ({message}): give the restricted key Read access to this data in {WHERE_KEYS_ARE}, or use a key that has it"
        ),
    }
}

/// Dashboard wording for a restricted-key permission: `rak_invoice_read` → `Invoices → Read`.
///
/// Uses the catalog's `dashboard_section` when a data type needs that permission, and otherwise
/// derives a label from the name (`rak_tax_id_read` → `Tax ids → Read`).
pub fn permission_label(permission: &str) -> String {
    let access = if permission.ends_with("_write") {
        "Write"
    } else {
        "Read"
    };
    let section = cls_catalog::CATALOG
        .iter()
        .find(|d| d.permission == permission)
        .map(|d| d.dashboard_section.to_string())
        .unwrap_or_else(|| derived_section(permission));
    format!("{section} → {access}")
}

fn derived_section(permission: &str) -> String {
    let resource = permission.strip_prefix("rak_").unwrap_or(permission);
    let resource = resource
        .strip_suffix("_read")
        .or_else(|| resource.strip_suffix("_write"))
        .unwrap_or(resource);
    let words = resource.replace('_', " ");
    let mut chars = words.chars();
    let mut label = match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect::<String>(),
        None => return permission.to_string(),
    };
    if !label.ends_with('s') {
        label.push('s');
    }
    label
}

/// Pulls `rak_…` out of Stripe's 403 message: "… Having the 'rak_customer_read' permission would
/// allow this request to continue."
pub fn parse_permission(message: &str) -> Option<String> {
    const MARKER: &str = "Having the '";
    let start = message.find(MARKER)? + MARKER.len();
    let rest = &message[start..];
    let end = rest.find('\'')?;
    let permission = &rest[..end];
    let well_formed = permission.starts_with("rak_")
        && permission
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    well_formed.then(|| permission.to_string())
}

/// The `error` object of Stripe's error body.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ErrorBody {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub param: Option<String>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
}

#[derive(Deserialize)]
struct Envelope {
    error: ErrorBody,
}

/// Parses an error body; `None` when it is not Stripe's error JSON.
pub(crate) fn parse_error_body(body: &[u8]) -> Option<ErrorBody> {
    serde_json::from_slice::<Envelope>(body)
        .ok()
        .map(|e| e.error)
}

/// Turns a non-2xx answer into a typed error. `secret` is scrubbed from every kept text in case
/// a misbehaving server echoes the key back.
pub(crate) fn error_from_response(status: u16, body: &[u8], secret: &str) -> StripeError {
    let parsed = parse_error_body(body);
    let message = match &parsed {
        Some(ErrorBody {
            message: Some(m), ..
        }) => m.clone(),
        Some(parsed) => format!(
            "HTTP {status}, error type {}",
            parsed.kind.as_deref().unwrap_or("unknown")
        ),
        None => describe_body(status, body),
    };
    let message = scrub(&message, secret);
    let parsed = parsed.unwrap_or_default();
    let code = parsed.code.map(|c| scrub(&c, secret));
    let param = parsed.param.map(|p| scrub(&p, secret));
    match status {
        401 => StripeError::InvalidKey { message },
        403 => StripeError::PermissionDenied {
            permission: parse_permission(&message),
            message,
        },
        404 => StripeError::NotFound { message },
        409 => StripeError::Conflict { message },
        429 => StripeError::RateLimited { message },
        400..=499 => StripeError::BadRequest {
            code,
            param,
            message,
        },
        _ => StripeError::Server { status, message },
    }
}

/// A short, printable description of a body that is not Stripe's error JSON.
pub(crate) fn describe_body(status: u16, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let snippet: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(BODY_SNIPPET_CHARS)
        .collect();
    let snippet = snippet.split_whitespace().collect::<Vec<_>>().join(" ");
    if snippet.is_empty() {
        format!("HTTP {status} with an empty body")
    } else {
        format!("HTTP {status} with a non-JSON body: {snippet}")
    }
}

/// Replaces the key with a mask wherever it appears.
pub(crate) fn scrub(text: &str, secret: &str) -> String {
    if secret.is_empty() || !text.contains(secret) {
        return text.to_string();
    }
    text.replace(secret, "[redacted key]")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stripe's exact 403 wording for a restricted key without the permission.
    const STRIPE_403: &str = "The provided key 'rk_test_***********************************************************************************************abcd' does not have the required permissions for this endpoint on account 'acct_1Abc2Def3Ghi4Jkl'. Having the 'rak_customer_read' permission would allow this request to continue.";

    #[test]
    fn parses_the_permission_from_stripes_403_message() {
        assert_eq!(
            parse_permission(STRIPE_403).as_deref(),
            Some("rak_customer_read")
        );
        assert_eq!(
            parse_permission(
                &STRIPE_403.replace("rak_customer_read", "rak_radar_early_fraud_warning_read")
            )
            .as_deref(),
            Some("rak_radar_early_fraud_warning_read")
        );
        assert_eq!(parse_permission("You do not have permission."), None);
        assert_eq!(parse_permission("Having the 'rak_customer_read"), None);
        assert_eq!(parse_permission("Having the 'DROP TABLE' permission"), None);
        assert_eq!(parse_permission("Having the '' permission"), None);
    }

    #[test]
    fn a_403_body_becomes_permission_denied_with_a_fix() {
        let body = serde_json::json!({"error": {"type": "invalid_request_error", "message": STRIPE_403.replace("rak_customer_read", "rak_invoice_read")}});
        let err = error_from_response(403, body.to_string().as_bytes(), "rk_test_secret");
        match &err {
            StripeError::PermissionDenied { permission, .. } => {
                assert_eq!(permission.as_deref(), Some("rak_invoice_read"))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            err.to_string(),
            "this restricted key lacks `rak_invoice_read`: enable Invoices → Read on the key in the Stripe Dashboard (Developers → API keys → edit the key)"
        );
        assert!(!err.is_retriable());
    }

    #[test]
    fn a_403_without_a_named_permission_still_says_what_to_do() {
        let err = error_from_response(403, b"Forbidden", "rk_test_secret");
        assert!(matches!(
            err,
            StripeError::PermissionDenied {
                permission: None,
                ..
            }
        ));
        assert!(err.to_string().contains("Read access"), "{err}");
    }

    #[test]
    fn statuses_map_to_variants() {
        let body = |code: &str, msg: &str| {
            serde_json::json!({"error": {"type": "invalid_request_error", "code": code, "message": msg, "param": "limit"}})
                .to_string()
        };
        let e = error_from_response(
            401,
            body("", "Invalid API Key provided: sk_test_****abcd").as_bytes(),
            "x",
        );
        assert_eq!(
            e.to_string(),
            "Stripe rejected the API key (Invalid API Key provided: sk_test_****abcd): paste a current key from Stripe Dashboard → Developers → API keys"
        );
        assert!(matches!(
            error_from_response(
                404,
                body("resource_missing", "No such customer").as_bytes(),
                "x"
            ),
            StripeError::NotFound { .. }
        ));
        assert_eq!(
            error_from_response(
                400,
                body("parameter_unknown", "Received unknown parameter: limitt").as_bytes(),
                "x"
            ),
            StripeError::BadRequest {
                code: Some("parameter_unknown".into()),
                param: Some("limit".into()),
                message: "Received unknown parameter: limitt".into()
            }
        );
        assert!(matches!(
            error_from_response(402, b"{}", "x"),
            StripeError::BadRequest { .. }
        ));
        assert!(matches!(
            error_from_response(409, b"{}", "x"),
            StripeError::Conflict { .. }
        ));
        assert!(matches!(
            error_from_response(429, body("rate_limit", "Too many").as_bytes(), "x"),
            StripeError::RateLimited { .. }
        ));
        assert_eq!(
            error_from_response(503, b"<html>\n<b>Service Unavailable</b></html>", "x"),
            StripeError::Server {
                status: 503,
                message: "HTTP 503 with a non-JSON body: <html> <b>Service Unavailable</b></html>"
                    .into()
            }
        );
        assert_eq!(
            error_from_response(502, b"", "x"),
            StripeError::Server {
                status: 502,
                message: "HTTP 502 with an empty body".into()
            }
        );
    }

    #[test]
    fn a_server_error_claims_no_retry_it_did_not_make() {
        let once = StripeError::Server {
            status: 503,
            message: "An unknown error occurred".into(),
        };
        let text = once.to_string();
        assert!(
            text.starts_with("Stripe answered HTTP 503 (An unknown error occurred): "),
            "{text}"
        );
        assert!(!text.contains("retrying"), "{text}");
    }

    #[test]
    fn an_echoed_key_is_scrubbed() {
        let secret = "rk_test_cls_emulator";
        let err = error_from_response(401, format!("bad key {secret}").as_bytes(), secret);
        assert!(!err.to_string().contains(secret), "{err}");
        let body = serde_json::json!({"error": {"message": format!("Invalid API Key provided: {secret}")}});
        let err = error_from_response(401, body.to_string().as_bytes(), secret);
        assert!(!err.to_string().contains(secret), "{err}");
    }

    #[test]
    fn permission_labels_use_the_dashboard_wording() {
        assert_eq!(permission_label("rak_invoice_read"), "Invoices → Read");
        assert_eq!(permission_label("rak_customer_read"), "Customers → Read");
        assert_eq!(
            permission_label("rak_checkout_session_read"),
            "Checkout Sessions → Read"
        );
        assert_eq!(permission_label("rak_tax_id_read"), "Tax ids → Read");
        assert_eq!(permission_label("rak_file_write"), "Files → Write");
    }

    #[test]
    fn retriable_errors_are_the_transient_ones() {
        let m = || "m".to_string();
        assert!(StripeError::RateLimited { message: m() }.is_retriable());
        assert!(StripeError::Network { message: m() }.is_retriable());
        assert!(StripeError::Conflict { message: m() }.is_retriable());
        assert!(StripeError::Server {
            status: 500,
            message: m()
        }
        .is_retriable());
        assert!(!StripeError::Server {
            status: 302,
            message: m()
        }
        .is_retriable());
        assert!(!StripeError::InvalidKey { message: m() }.is_retriable());
        assert!(!StripeError::PermissionDenied {
            permission: None,
            message: m()
        }
        .is_retriable());
        assert!(!StripeError::NotFound { message: m() }.is_retriable());
        assert!(!StripeError::BadRequest {
            code: None,
            param: None,
            message: m()
        }
        .is_retriable());
        assert!(!StripeError::Decode { message: m() }.is_retriable());
    }
}
