//! The JSON envelope every API answer travels in, and [`ApiError`], the one place a failure
//! becomes an HTTP status.
//!
//! - success: `{"success": true, "data": …}` — lists add `"pagination": {page, limit, total,
//!   total_pages}` next to `data`;
//! - failure: `{"success": false, "error": {"code": "…", "message": "…"}}`, where `code` is
//!   one of the [`ErrorCode`] spellings and `message` says what happened and what to do.
//!
//! [`StoreError`] is mapped to HTTP in [`ApiError::from`] and nowhere else. Failures of the
//! state store itself (a lost connection, a wrong master key) are logged with their cause
//! and answered `500` without it: the cause can name hosts and files a client has no need
//! to see.

use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use cls_control::{RunnerError, StoreError};
use serde::Serialize;
use utoipa::ToSchema;

/// A successful answer carrying one value.
#[derive(Debug, Serialize, ToSchema)]
pub struct Envelope<T> {
    /// Always `true`.
    pub success: bool,
    /// The answer.
    pub data: T,
}

impl<T: Serialize> Envelope<T> {
    /// `200` with `data`.
    pub fn ok(data: T) -> Response {
        Envelope::with_status(StatusCode::OK, data)
    }

    /// `201` with `data`.
    pub fn created(data: T) -> Response {
        Envelope::with_status(StatusCode::CREATED, data)
    }

    /// `status` with `data`.
    pub fn with_status(status: StatusCode, data: T) -> Response {
        (
            status,
            Json(Envelope {
                success: true,
                data,
            }),
        )
            .into_response()
    }
}

/// Where a page sits in a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct Pagination {
    /// This page's number, from 1.
    pub page: u64,
    /// Items per page asked for.
    pub limit: u64,
    /// Items in the whole list.
    pub total: u64,
    /// Pages in the whole list (0 when it is empty).
    pub total_pages: u64,
}

/// A successful answer carrying one page of a list.
#[derive(Debug, Serialize, ToSchema)]
pub struct ListEnvelope<T> {
    /// Always `true`.
    pub success: bool,
    /// The items of this page.
    pub data: Vec<T>,
    /// Where this page sits in the list.
    pub pagination: Pagination,
}

impl<T: Serialize> ListEnvelope<T> {
    /// `200` with one page.
    pub fn ok(data: Vec<T>, pagination: Pagination) -> Response {
        Json(ListEnvelope {
            success: true,
            data,
            pagination,
        })
        .into_response()
    }
}

/// A failed answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorEnvelope {
    /// Always `false`.
    pub success: bool,
    /// What went wrong.
    pub error: ErrorBody,
}

/// What went wrong, for people and programs.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Stable, machine-readable kind of failure.
    pub code: ErrorCode,
    /// What happened and what to do, in words; names the input field at fault for a `400`.
    pub message: String,
}

/// The kinds of failure; each has one HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// `400`: the request's input is not acceptable; the message names the field.
    InvalidRequest,
    /// `401`: no API key, or one that is unknown or revoked.
    Unauthorized,
    /// `404`: no such resource (or route).
    NotFound,
    /// `405`: the route exists, the method does not.
    MethodNotAllowed,
    /// `409`: the resource is not in a state that allows it (a run that already ended).
    Conflict,
    /// `429`: too many requests from this client; retry after `Retry-After` seconds.
    RateLimited,
    /// `500`: the server failed; the server's log has the cause.
    Internal,
    /// `503`: a dependency (the state store) is unavailable; retry later.
    Unavailable,
}

impl ErrorCode {
    /// The HTTP status this kind of failure is answered with.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::InvalidRequest => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::Conflict => StatusCode::CONFLICT,
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// A failure on its way to becoming a response.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// Kind of failure (and so the status).
    pub code: ErrorCode,
    /// What happened and what to do.
    pub message: String,
    /// Headers the failure needs (`WWW-Authenticate`, `Retry-After`).
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// What an internal failure tells the client: that it happened, not what it was.
pub const INTERNAL_MESSAGE: &str =
    "the server failed to complete the request: retry, and if it keeps failing, the server's log has the cause";

impl ApiError {
    /// A failure of `code` saying `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    /// `400` for input field `field`; the message starts with the field's name.
    pub fn invalid(field: &str, reason: impl std::fmt::Display) -> ApiError {
        ApiError::new(ErrorCode::InvalidRequest, format!("`{field}`: {reason}"))
    }

    /// `400` about the request as a whole (a body that is not JSON).
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::InvalidRequest, message)
    }

    /// `404` for a route that does not exist.
    pub fn no_route() -> ApiError {
        ApiError::new(
            ErrorCode::NotFound,
            "no such API route: GET /api/openapi.json lists every route",
        )
    }

    /// `401`, with the `WWW-Authenticate` challenge RFC 6750 asks for.
    pub fn unauthorized(message: impl Into<String>, invalid_token: bool) -> ApiError {
        let challenge = if invalid_token {
            "Bearer realm=\"cls\", error=\"invalid_token\""
        } else {
            "Bearer realm=\"cls\""
        };
        ApiError::new(ErrorCode::Unauthorized, message).with_header(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(challenge),
        )
    }

    /// `500`; `cause` goes to the log only.
    pub fn internal(cause: &dyn std::fmt::Display) -> ApiError {
        tracing::error!(error = %cause, "request failed");
        ApiError::new(ErrorCode::Internal, INTERNAL_MESSAGE)
    }

    /// Adds a header to the response.
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> ApiError {
        self.headers.push((name, value));
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorEnvelope {
            success: false,
            error: ErrorBody {
                code: self.code,
                message: self.message,
            },
        };
        let mut response = (self.code.status(), Json(body)).into_response();
        for (name, value) in self.headers {
            response.headers_mut().append(name, value);
        }
        response
    }
}

impl From<StoreError> for ApiError {
    /// The one mapping from the store's errors to HTTP.
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::NotFound { .. } => ApiError::new(ErrorCode::NotFound, e.to_string()),
            StoreError::RunFinished { .. } => ApiError::new(ErrorCode::Conflict, e.to_string()),
            StoreError::Invalid { field, ref reason } => ApiError::invalid(field, reason),
            StoreError::Unauthorized { reason } => ApiError::unauthorized(reason, true),
            // A worker's lease, never an API client's: reaching here means a race with a
            // worker the client can only wait out.
            StoreError::LeaseLost { .. } => ApiError::new(ErrorCode::Conflict, e.to_string()),
            StoreError::Hash(_)
            | StoreError::InvalidStateUrl { .. }
            | StoreError::Connect { .. }
            | StoreError::Migrate(_)
            | StoreError::Database(_)
            | StoreError::Secrets(_)
            | StoreError::Corrupt { .. } => ApiError::internal(&e),
        }
    }
}

/// What a delete (or a revoke) answers.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct Deleted {
    /// The id of what was deleted.
    pub id: i64,
    /// Always `true`.
    pub deleted: bool,
}

impl From<RunnerError> for ApiError {
    fn from(e: RunnerError) -> ApiError {
        match e {
            RunnerError::Store(e) => e.into(),
        }
    }
}

/// What handlers return.
pub type ApiResult = Result<Response, ApiError>;
