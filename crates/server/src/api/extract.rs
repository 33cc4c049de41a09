//! Request extractors that fail with the API's envelope (axum's own answer in plain text):
//! [`ApiJson`] and [`OptionalJson`] bodies, [`PageQuery`] (`?page=&limit=`) and [`parse_id`]
//! for path ids.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::Json;
use cls_control::PageRequest;
use serde::de::DeserializeOwned;
use utoipa::IntoParams;

use super::envelope::{ApiError, Pagination};

/// Items per page when `limit` is not given.
pub const DEFAULT_LIMIT: u64 = 20;
/// Most items a page may hold.
pub const MAX_LIMIT: u64 = 100;

/// A JSON body; a malformed one is a `400` naming the field serde stumbled on.
#[derive(Debug, Clone)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(json_rejection(&rejection)),
        }
    }
}

/// The body's problem in words; serde names the field (`missing field \`name\``).
fn json_rejection(rejection: &JsonRejection) -> ApiError {
    let hint = "send a JSON object with `Content-Type: application/json`, as GET /api/openapi.json describes";
    ApiError::bad_request(format!("{}: {hint}", rejection.body_text()))
}

/// A JSON body that may be absent (empty): then `T::default()`.
#[derive(Debug, Clone)]
pub struct OptionalJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::bad_request(format!("the body could not be read: {e}")))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(T::default()));
        }
        serde_json::from_slice(&bytes)
            .map(OptionalJson)
            .map_err(|e| {
                ApiError::bad_request(format!(
                    "the body is not a valid JSON object for this route ({e}): send one as GET /api/openapi.json describes, or no body"
                ))
            })
    }
}

/// `?page=&limit=`: which page of a list to answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Page number, from 1 (default 1).
    #[param(minimum = 1)]
    pub page: u64,
    /// Items per page, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: u64,
}

impl PageQuery {
    /// Reads `page` and `limit` from a query string's pairs.
    pub fn parse(pairs: &HashMap<String, String>) -> Result<PageQuery, ApiError> {
        let page = match pairs.get("page") {
            None => 1,
            Some(raw) => match raw.trim().parse::<u64>() {
                Ok(n) if n >= 1 => n,
                _ => {
                    return Err(ApiError::invalid(
                        "page",
                        format!(
                            "`{}` is not a page number: pages are numbered from 1",
                            clip(raw)
                        ),
                    ))
                }
            },
        };
        let limit = match pairs.get("limit") {
            None => DEFAULT_LIMIT,
            Some(raw) => match raw.trim().parse::<u64>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                _ => {
                    return Err(ApiError::invalid(
                        "limit",
                        format!(
                            "`{}` is not a usable page size: give a number from 1 to {MAX_LIMIT} (default {DEFAULT_LIMIT})",
                            clip(raw)
                        ),
                    ))
                }
            },
        };
        Ok(PageQuery { page, limit })
    }

    /// The store's offset and limit for this page.
    pub fn request(self) -> PageRequest {
        PageRequest {
            offset: (self.page - 1).saturating_mul(self.limit),
            limit: self.limit,
        }
    }

    /// Where this page sits in a list of `total` items.
    pub fn pagination(self, total: u64) -> Pagination {
        Pagination {
            page: self.page,
            limit: self.limit,
            total,
            total_pages: total.div_ceil(self.limit),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for PageQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let QueryPairs(pairs) = QueryPairs::from_request_parts(parts, state).await?;
        PageQuery::parse(&pairs)
    }
}

/// The query string's `name=value` pairs (the last value of a repeated name wins).
#[derive(Debug, Clone, Default)]
pub struct QueryPairs(pub HashMap<String, String>);

impl QueryPairs {
    /// An optional id filter (`?project_id=3`); a value that is not a number is a `400`.
    pub fn id(&self, name: &str) -> Result<Option<i64>, ApiError> {
        match self.0.get(name) {
            None => Ok(None),
            Some(raw) => raw.trim().parse::<i64>().map(Some).map_err(|_| {
                ApiError::invalid(
                    name,
                    format!("`{}` is not an id: ids are whole numbers", clip(raw)),
                )
            }),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for QueryPairs {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Query(pairs) = Query::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|e| {
                ApiError::bad_request(format!(
                    "the query string is malformed ({e}): write it as `?page=1&limit=20`"
                ))
            })?;
        Ok(QueryPairs(pairs))
    }
}

/// A path id (`/api/projects/{id}`) as a number; anything else is a `400` naming `id`.
pub fn parse_id(raw: &str) -> Result<i64, ApiError> {
    raw.trim().parse::<i64>().map_err(|_| {
        ApiError::invalid(
            "id",
            format!(
                "`{}` is not an id: ids are whole numbers, as the list routes show them",
                clip(raw)
            ),
        )
    })
}

/// Echoed input, cut short so an error never carries a pasted essay (or a secret) whole.
pub fn clip(raw: &str) -> String {
    const MAX: usize = 40;
    if raw.chars().count() <= MAX {
        raw.to_string()
    } else {
        let head: String = raw.chars().take(MAX).collect();
        format!("{head}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<PageQuery, ApiError> {
        let map = pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        PageQuery::parse(&map)
    }

    #[test]
    fn pages_default_and_bound() {
        assert_eq!(parse(&[]).ok(), Some(PageQuery { page: 1, limit: 20 }));
        assert_eq!(
            parse(&[("page", "3"), ("limit", "100")]).ok(),
            Some(PageQuery {
                page: 3,
                limit: 100
            })
        );
        for bad in [
            &[("page", "0")][..],
            &[("page", "-1")],
            &[("page", "x")],
            &[("limit", "0")],
            &[("limit", "101")],
            &[("limit", "")],
        ] {
            let err = parse(bad).err().map(|e| e.message).unwrap_or_default();
            assert!(
                err.starts_with(&format!("`{}`", bad[0].0)),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn pages_map_to_offsets_and_totals() {
        let q = PageQuery { page: 3, limit: 20 };
        assert_eq!(
            q.request(),
            PageRequest {
                offset: 40,
                limit: 20
            }
        );
        assert_eq!(q.pagination(41).total_pages, 3);
        assert_eq!(q.pagination(0).total_pages, 0);
        assert_eq!(q.pagination(40).total_pages, 2);
    }
}
