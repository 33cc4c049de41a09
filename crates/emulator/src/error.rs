//! Stripe's error bodies: `{"error":{"type":…,"code":…,"message":…,"param":…}}` with the status
//! codes and wording Stripe uses (absent `code`/`param` are left out, as Stripe does).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

/// Error type for request problems (Stripe puts authentication and permission failures here too).
pub const INVALID_REQUEST: &str = "invalid_request_error";

/// One API error, rendered in Stripe's shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {kind}: {message}")]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// Stripe's error `type`.
    pub kind: &'static str,
    /// Stripe's error `code` (`resource_missing`, `parameter_unknown`, …).
    pub code: Option<&'static str>,
    /// Human-readable message, worded as Stripe words it.
    pub message: String,
    /// The parameter at fault.
    pub param: Option<String>,
}

impl ApiError {
    fn new(
        status: u16,
        code: Option<&'static str>,
        message: String,
        param: Option<String>,
    ) -> Self {
        ApiError {
            status,
            kind: INVALID_REQUEST,
            code,
            message,
            param,
        }
    }

    /// 400 `parameter_unknown`.
    pub fn unknown_param(param: &str) -> Self {
        Self::new(
            400,
            Some("parameter_unknown"),
            format!("Received unknown parameter: {param}"),
            Some(param.to_string()),
        )
    }

    /// 400 `parameter_missing`.
    pub fn missing_param(param: &str) -> Self {
        Self::new(
            400,
            Some("parameter_missing"),
            format!("Missing required param: {param}."),
            Some(param.to_string()),
        )
    }

    /// 400/404 `resource_missing`: "No such customer: 'cus_…'".
    pub fn no_such(status: u16, object: &str, id: &str, param: &str) -> Self {
        Self::new(
            status,
            Some("resource_missing"),
            format!("No such {}: '{id}'", display_object(object)),
            Some(param.to_string()),
        )
    }

    /// 400 for a value that is not an integer.
    pub fn invalid_integer(param: &str, value: &str) -> Self {
        Self::new(
            400,
            None,
            format!("Invalid integer: {value}"),
            Some(param.to_string()),
        )
    }

    /// 400 for an out-of-range value.
    pub fn out_of_range(param: &str, message: &str) -> Self {
        Self::new(400, None, message.to_string(), Some(param.to_string()))
    }

    /// 400 for any other bad value.
    pub fn invalid(param: &str, message: String) -> Self {
        Self::new(400, None, message, Some(param.to_string()))
    }

    /// 400 when two exclusive parameters are both given.
    pub fn only_one(first: &str, second: &str) -> Self {
        Self::new(
            400,
            None,
            format!("You may only specify one of these parameters: {first}, {second}."),
            Some(second.to_string()),
        )
    }

    /// 404 for a path the API does not have.
    pub fn unrecognized_url(method: &str, path: &str) -> Self {
        Self::new(
            404,
            None,
            format!(
                "Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs or we can help at https://support.stripe.com/."
            ),
            None,
        )
    }

    /// Authentication failure (401).
    pub fn unauthorized(message: String) -> Self {
        Self::new(401, None, message, None)
    }

    /// Permission failure (403).
    pub fn forbidden(message: String) -> Self {
        Self::new(403, None, message, None)
    }

    /// 403 `account_invalid`: the `Stripe-Account` header names an account this key cannot
    /// act on (not connected to the platform, or no such account). Stripe's wording, which
    /// does not tell the two apart.
    pub fn account_invalid(masked_key: &str, account: &str) -> Self {
        Self::new(
            403,
            Some("account_invalid"),
            format!(
                "The provided key '{masked_key}' does not have access to account '{account}' (or that account does not exist). Application access may have been revoked."
            ),
            None,
        )
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        let mut e = Map::new();
        e.insert("type".into(), json!(self.kind));
        if let Some(code) = self.code {
            e.insert("code".into(), json!(code));
            e.insert(
                "doc_url".into(),
                json!(format!(
                    "https://stripe.com/docs/error-codes/{}",
                    code.replace('_', "-")
                )),
            );
        }
        e.insert("message".into(), json!(self.message));
        if let Some(p) = &self.param {
            e.insert("param".into(), json!(p));
        }
        json!({ "error": Value::Object(e) })
    }
}

/// How Stripe names an object type in "No such …" messages. Payment methods are the known
/// exception that Stripe spells in CamelCase.
fn display_object(object: &str) -> &str {
    match object {
        "payment_method" => "PaymentMethod",
        "line_item" => "invoice line item",
        other => other,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        let body = serde_json::to_vec(&self.body()).unwrap_or_default();
        let mut resp = (status, body).into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if self.status == 401 {
            // Stripe answers 401s with a Basic challenge.
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"Stripe\""),
            );
        }
        resp
    }
}
