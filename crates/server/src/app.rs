//! [`app`]: the whole HTTP surface of `cls serve` but the webhook receiver, and [`serve`],
//! which runs a router with what the API's rate limiter needs (the peer address).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::Request;
use axum::routing::get;
use axum::Router;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::state::AppState;
use crate::{api, observe};

/// The router: `/api/…` (REST, bearer auth, rate limited), `/healthz`, `/readyz` and
/// `/metrics`, with one tracing span per request (`http.request`, with method and path;
/// headers are never recorded, so no token reaches the logs). Merge the webhook routes
/// ([`crate::router`]) beside it.
pub fn app(state: AppState) -> Router {
    let state = Arc::new(state);
    Router::new()
        .route("/healthz", get(observe::healthz))
        .route("/readyz", get(observe::readyz))
        .route("/metrics", get(observe::metrics))
        .with_state(state.clone())
        .nest("/api", api::router(state))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request| {
                    // The path only: a query string never reaches the log, nor any header.
                    tracing::info_span!("http.request", method = %req.method(), path = %req.uri().path())
                })
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
}

/// Serves `router` on `listener` until `shutdown` completes, then lets requests in flight
/// finish. Provides the peer address the API's rate limiter keys unauthenticated clients by.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
