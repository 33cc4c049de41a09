//! The REST API under `/api`, JSON in and out.
//!
//! - [`envelope`]: the answer's shape (`{"success": …, "data"|"error": …}`) and
//!   [`ApiError`], the one mapping from failures to HTTP statuses;
//! - [`extract`]: request extractors that fail in that shape (bodies, `?page=&limit=`, ids);
//! - [`guard`]: bearer-token authentication and per-client rate limiting, in front of every
//!   route here;
//! - one module per resource: [`projects`], [`configurations`] (with Test Connection and
//!   Sync Now), [`runs`], [`schedules`], [`api_keys`].
//!
//! The OpenAPI document ([`ApiDoc`]) is generated from the handlers and types and served at
//! `GET /api/openapi.json`. It sits behind the same guard as every other `/api` route: the
//! product promises that everything but health, metrics and webhooks refuses requests without
//! a key, and a route list is no exception worth making (the document describes the API, it is
//! not needed to reach it; anyone with a key can fetch it).

pub mod api_keys;
pub mod configurations;
pub mod envelope;
pub mod extract;
pub mod guard;
pub mod projects;
pub mod runs;
pub mod schedules;

use std::sync::Arc;

use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use utoipa::openapi::header::{Header, HeaderBuilder};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

pub use envelope::{ApiError, Envelope, ErrorCode, ErrorEnvelope, ListEnvelope, Pagination};
pub use guard::RateLimit;

use crate::state::AppState;

/// The OpenAPI document of the REST API.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Codeless Sync API",
        description = "Projects (destination databases), configurations (Stripe sources), schedules and sync runs. Every route needs `Authorization: Bearer <token>`. Answers are `{\"success\": true, \"data\": …}` (lists add `pagination`) or `{\"success\": false, \"error\": {\"code\", \"message\"}}`."
    ),
    paths(
        projects::create, projects::list, projects::get, projects::patch, projects::delete,
        projects::test_connection,
        configurations::create, configurations::list, configurations::get,
        configurations::patch, configurations::delete, configurations::test_connection,
        configurations::sync,
        runs::list, runs::get, runs::cancel,
        schedules::create, schedules::list, schedules::get, schedules::patch,
        schedules::delete,
        api_keys::create, api_keys::list, api_keys::revoke,
    ),
    modifiers(&BearerAuth, &PathIds, &RateLimitHeaders),
    security(("bearer" = [])),
    tags(
        (name = "projects", description = "Destination databases"),
        (name = "configurations", description = "Stripe sources feeding a project; Test Connection and Sync Now"),
        (name = "runs", description = "Sync runs: the sync history"),
        (name = "schedules", description = "When a configuration syncs by itself"),
        (name = "api-keys", description = "The bearer tokens this API accepts"),
    )
)]
pub struct ApiDoc;

/// Declares the `bearer` security scheme every route requires, and the answers every route
/// can give whatever it does: `401` (no valid key) and `429` (rate limited).
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for op in operations_mut(openapi) {
            op.responses.responses.insert(
                "401".to_string(),
                error_response(
                    "No API key, or an unknown or revoked one (`WWW-Authenticate: Bearer`)",
                )
                .into(),
            );
            op.responses.responses.insert(
                "429".to_string(),
                error_response(
                    "Too many requests from this client; retry after `Retry-After` seconds",
                )
                .into(),
            );
        }
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key from `POST /api/api-keys` or `cls admin create-api-key`",
                    ))
                    .build(),
            ),
        );
    }
}

/// Declares the `400` every route with a path id gives when the id is not a whole number
/// that fits an `int64` (`/api/runs/abc`, `/api/runs/9223372036854775808`): [`extract::parse_id`]
/// refuses it before the handler runs, whatever the handler itself documents.
struct PathIds;

impl Modify for PathIds {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for op in operations_mut(openapi) {
            let has_path_id = op
                .parameters
                .iter()
                .flatten()
                .any(|p| p.parameter_in == utoipa::openapi::path::ParameterIn::Path);
            if has_path_id && !op.responses.responses.contains_key("400") {
                op.responses.responses.insert(
                    "400".to_string(),
                    error_response(
                        "The path's `id` is not an id: a whole number, as the list routes show them",
                    )
                    .into(),
                );
            }
        }
    }
}

/// Declares the headers [`guard`] puts on every answer of every route — `RateLimit-Limit`,
/// `RateLimit-Remaining`, `RateLimit-Reset` and `RateLimit-Policy` — and the `Retry-After`
/// of a `429`. Runs after [`BearerAuth`], so the `401` and `429` it adds carry them too.
struct RateLimitHeaders;

impl RateLimitHeaders {
    /// The rate-limit headers of every answer: (name, description, whole number?).
    const EVERY_ANSWER: [(&'static str, &'static str, bool); 4] = [
        (
            "RateLimit-Limit",
            "Requests this client (its API key; its address when unauthenticated) may make per window",
            true,
        ),
        (
            "RateLimit-Remaining",
            "Requests this client may still make right now",
            true,
        ),
        (
            "RateLimit-Reset",
            "Seconds until the client's full allowance is back (when refused: until one request is)",
            true,
        ),
        (
            "RateLimit-Policy",
            "The limit and its window in seconds, e.g. `600;w=60`",
            false,
        ),
    ];

    fn header(description: &str, whole: bool) -> Header {
        let schema = if whole {
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(0))
        } else {
            ObjectBuilder::new().schema_type(Type::String)
        };
        HeaderBuilder::new()
            .schema(schema)
            .description(Some(description))
            .build()
    }
}

impl Modify for RateLimitHeaders {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for op in operations_mut(openapi) {
            for (status, response) in op.responses.responses.iter_mut() {
                let RefOr::T(response) = response else {
                    continue;
                };
                for (name, description, whole) in Self::EVERY_ANSWER {
                    response
                        .headers
                        .insert(name.to_string(), Self::header(description, whole));
                }
                if status == "429" {
                    response.headers.insert(
                        "Retry-After".to_string(),
                        Self::header("Seconds to wait before the next request", true),
                    );
                }
            }
        }
    }
}

/// `GET /api/openapi.json`.
async fn openapi_json() -> Response {
    Json(ApiDoc::openapi()).into_response()
}

/// The `/api` routes, relative to `/api` (the caller nests them), behind the guard.
pub(crate) fn router(state: Arc<AppState>) -> Router {
    let guard = Arc::new(guard::Guard::new(state.store.clone(), state.rate_limit));
    Router::new()
        .route("/projects", post(projects::create).get(projects::list))
        .route(
            "/projects/{id}",
            get(projects::get)
                .patch(projects::patch)
                .delete(projects::delete),
        )
        .route(
            "/projects/{id}/test-connection",
            post(projects::test_connection),
        )
        .route(
            "/configurations",
            post(configurations::create).get(configurations::list),
        )
        .route(
            "/configurations/{id}",
            get(configurations::get)
                .patch(configurations::patch)
                .delete(configurations::delete),
        )
        .route(
            "/configurations/{id}/test-connection",
            post(configurations::test_connection),
        )
        .route("/configurations/{id}/sync", post(configurations::sync))
        .route("/configurations/{id}/runs", get(runs::list))
        .route(
            "/configurations/{id}/schedules",
            post(schedules::create).get(schedules::list),
        )
        .route("/runs/{id}", get(runs::get))
        .route("/runs/{id}/cancel", post(runs::cancel))
        .route(
            "/schedules/{id}",
            get(schedules::get)
                .patch(schedules::patch)
                .delete(schedules::delete),
        )
        .route("/api-keys", post(api_keys::create).get(api_keys::list))
        .route("/api-keys/{id}", delete(api_keys::revoke))
        .route("/openapi.json", get(openapi_json))
        .fallback(|| async { ApiError::no_route() })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                ErrorCode::MethodNotAllowed,
                "this route does not take this method: GET /api/openapi.json lists each route's methods",
            )
        })
        .layer(middleware::from_fn_with_state(guard, guard::guard))
        .with_state(state)
}

/// An answer in the error envelope, as the modifiers document it on every route.
fn error_response(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorEnvelope")))
                .build(),
        )
        .build()
}

/// Every operation of the document, whatever its method.
fn operations_mut(
    openapi: &mut utoipa::openapi::OpenApi,
) -> impl Iterator<Item = &mut utoipa::openapi::path::Operation> {
    openapi.paths.paths.values_mut().flat_map(|item| {
        [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.patch,
            &mut item.delete,
        ]
        .into_iter()
        .flatten()
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// PATCH fields that are fixed after creation are refused whatever their value: the
    /// document types them as what they are and marks them read-only (not as objects a
    /// client might send).
    #[test]
    fn fields_fixed_after_creation_are_read_only_in_the_patch_body() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
        let props = &doc["components"]["schemas"]["PatchConfiguration"]["properties"];
        for (field, kind) in [
            ("project_id", "integer"),
            ("provider", "string"),
            ("stripe_api_base", "string"),
            ("data_types", "array"),
            ("tables", "array"),
        ] {
            let p = &props[field];
            let parts: Vec<&serde_json::Value> = match p["allOf"].as_array() {
                Some(all) => all.iter().collect(),
                None => vec![p],
            };
            assert!(
                parts
                    .iter()
                    .any(|s| s["readOnly"] == serde_json::json!(true)),
                "{field}: {p}"
            );
            assert!(
                parts.iter().any(|s| s["type"] == serde_json::json!(kind)),
                "{field}: {p}"
            );
        }
    }

    #[test]
    fn the_document_names_each_operation_once_and_secures_it() {
        let doc = ApiDoc::openapi();
        let mut ids = BTreeSet::new();
        let mut operations = 0;
        for item in doc.paths.paths.values() {
            for op in [&item.get, &item.post, &item.put, &item.patch, &item.delete]
                .into_iter()
                .flatten()
            {
                operations += 1;
                let id = op.operation_id.clone().unwrap_or_default();
                assert!(ids.insert(id.clone()), "operationId `{id}` is used twice");
                assert!(op.responses.responses.contains_key("401"), "{id}");
                assert!(op.responses.responses.contains_key("429"), "{id}");
                for (status, response) in &op.responses.responses {
                    let RefOr::T(response) = response else {
                        panic!("{id} {status}: a response by reference");
                    };
                    for header in [
                        "RateLimit-Limit",
                        "RateLimit-Remaining",
                        "RateLimit-Reset",
                        "RateLimit-Policy",
                    ] {
                        assert!(
                            response.headers.contains_key(header),
                            "{id} {status} {header}"
                        );
                    }
                    assert_eq!(
                        response.headers.contains_key("Retry-After"),
                        status == "429",
                        "{id} {status}"
                    );
                }
                let path_id = op
                    .parameters
                    .iter()
                    .flatten()
                    .any(|p| p.parameter_in == utoipa::openapi::path::ParameterIn::Path);
                assert!(
                    !path_id || op.responses.responses.contains_key("400"),
                    "{id} takes a path id, so it documents the 400 a bad one gets"
                );
            }
        }
        assert_eq!(operations, 24);
        let schemes = doc
            .components
            .map(|c| c.security_schemes)
            .unwrap_or_default();
        assert!(schemes.contains_key("bearer"));
        assert!(doc.security.is_some_and(|s| !s.is_empty()));
    }
}
