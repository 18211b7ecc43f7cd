//! HTTP layer: the axum router built by `app(state)` (one router for the standalone server,
//! the Lambda adapter and the tests), the shared `AppState`, health and metrics endpoints,
//! request metrics. Route handlers: `write` (`/write`, `/api/v1/write`), `read` (`/read`,
//! `/api/v1/read`); credentials come from the `auth::Creds` extractor, backpressure and
//! timeouts from the tower layers of `limits` (remote routes only), body size from axum's
//! `DefaultBodyLimit`, panics from tower-http's `CatchPanicLayer`. Handlers, the limits, the
//! fallback route and the panic handler answer with `crate::error::ApiError`, whose one
//! exhaustive mapping decides the status.

pub mod auth;
pub mod limits;
pub mod read;
pub mod write;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::config::Config;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::read::ReadService;
use crate::timestream::client::{ClientCache, CredentialKey};

/// Everything handlers share.
#[derive(Clone)]
pub struct AppState {
    /// Validated configuration.
    pub config: Arc<Config>,
    /// Metrics registry.
    pub metrics: Arc<Metrics>,
    /// SDK clients per credential.
    pub clients: Arc<ClientCache>,
    /// The read service and its column knowledge (per app, keyed by credential; the write
    /// path notes tables through it).
    pub read: Arc<ReadService<CredentialKey>>,
}

/// The router: remote write/read, telemetry, health.
pub fn app(state: AppState) -> Router {
    let limits = limits::Limits::new(&state.config.limits, state.metrics.clone());
    app_with_limits(state, limits)
}

/// `app` with the given limits (the server keeps a handle to cut requests at shutdown).
pub fn app_with_limits(state: AppState, limits: limits::Limits) -> Router {
    let telemetry_path = state.config.telemetry_path.clone();
    let body_limit = state.config.max_request_bytes;
    // Only the remote routes are limited: health and metrics must answer under overload.
    let remote = Router::new()
        .route("/write", post(write::handle))
        .route("/api/v1/write", post(write::handle))
        .route("/read", post(read::handle))
        .route("/api/v1/read", post(read::handle));
    #[cfg(feature = "test-panic-route")]
    let remote = remote.route(
        "/-/test/panic",
        post(|| async {
            if std::hint::black_box(true) {
                panic!("panic injected by the test-panic-route feature");
            }
            axum::http::StatusCode::OK
        }),
    );
    let remote = limits::route_layer(remote, &limits);
    Router::new()
        .merge(remote)
        .route(&telemetry_path, get(metrics_handler))
        .route("/-/healthy", get(|| async { "Healthy\n" }))
        .route("/-/ready", get(|| async { "Ready\n" }))
        .fallback(|| async { ApiError::UnknownRoute })
        .layer(DefaultBodyLimit::max(body_limit))
        // Inside `track`, so a panic is counted as the 500 it answers.
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(on_panic))
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

/// A handler that panicked: 500 and an error log, and the process keeps serving (the
/// request's concurrency slot and other guards are released as the panic unwinds).
/// Without this, the connection was dropped with no answer.
fn on_panic(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let what = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)");
    // Logged by the mapping (the panic message goes to the log, not to the client).
    ApiError::Panicked(what.to_string()).into_response()
}

async fn metrics_handler(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}

/// Counts requests by route (never the raw URI) and status; tracks in-flight remote calls:
/// a remote request counts until the last byte of its answer (a streamed read until its
/// body ends, like its concurrency slot), not only until its headers go out.
async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let handler = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let remote = matches!(
        handler.as_str(),
        "/write" | "/api/v1/write" | "/read" | "/api/v1/read"
    );
    // A guard, so a request dropped mid-way (client gone) still leaves the gauge.
    let in_flight = remote.then(|| InFlight::new(&state.metrics.requests_in_flight));
    let started = Instant::now();
    let resp = next.run(req).await;
    state
        .metrics
        .http_duration
        .with_label_values(&[handler.as_str()])
        .observe(started.elapsed().as_secs_f64());
    state
        .metrics
        .http_requests
        .with_label_values(&[handler.as_str(), resp.status().as_str()])
        .inc();
    match in_flight {
        Some(guard) => limits::hold_until_end(resp, guard),
        None => resp,
    }
}

struct InFlight(prometheus::IntGauge);

impl InFlight {
    fn new(g: &prometheus::IntGauge) -> InFlight {
        g.inc();
        InFlight(g.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}
