//! Placeholder for `POST /read` (owned by the remote-read work; replaced there).

use axum::http::StatusCode;
use axum::response::IntoResponse;

/// Answers 501 until the remote-read handler lands.
pub async fn handle() -> impl IntoResponse {
    (
        StatusCode::NOT_IMPLEMENTED,
        "remote read is not implemented yet\n",
    )
}
