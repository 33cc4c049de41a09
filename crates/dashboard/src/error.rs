//! What a page shows when a request cannot be served: the cause and the fix, with the
//! matching HTTP status.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cls_control::StoreError;
use maud::html;

use crate::layout;

/// Why a page could not be served.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PageError {
    /// The state store failed or refused; its messages name the cause and the fix.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The request was refused (a missing or stale CSRF token).
    #[error("{0}")]
    Forbidden(String),
    /// The request does not make sense (a wizard step reached before the earlier ones).
    #[error("{0}")]
    BadRequest(String),
}

impl PageError {
    fn status(&self) -> StatusCode {
        match self {
            PageError::Store(StoreError::NotFound { .. }) => StatusCode::NOT_FOUND,
            PageError::Store(StoreError::Invalid { .. } | StoreError::RunFinished { .. }) => {
                StatusCode::BAD_REQUEST
            }
            PageError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
            PageError::Forbidden(_) => StatusCode::FORBIDDEN,
            PageError::BadRequest(_) => StatusCode::BAD_REQUEST,
        }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "dashboard page failed");
        }
        let title = match status {
            StatusCode::NOT_FOUND => "Not found",
            StatusCode::FORBIDDEN => "Refused",
            StatusCode::BAD_REQUEST => "Cannot do that",
            _ => "Something went wrong",
        };
        let body = html! {
            h1 { (title) }
            p.notice.bad { (self.to_string()) }
            p { a href="/" { "Back to the overview" } }
        };
        (status, layout::bare(title, body)).into_response()
    }
}

/// The result of a page handler.
pub(crate) type PageResult<T> = Result<T, PageError>;
