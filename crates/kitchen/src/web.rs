//! `GET /api/kitchen?mode=sequential|concurrent|cooks2&format=json|svg`:
//! the talk's dinner cooked on virtual time, as the timeline (JSON) or its
//! chart (SVG), for the web page. A bad parameter gets `400` and a one-line
//! reason.

use axum::extract::Query;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

/// The kitchen's endpoint, to merge into a server's router.
pub fn router() -> Router {
    Router::new().route("/api/kitchen", get(kitchen_chart))
}

/// `400` or `500` with a one-line reason.
fn refuse(status: StatusCode, reason: impl Into<String>) -> Response {
    (status, format!("{}\n", reason.into())).into_response()
}

#[derive(Debug, Deserialize)]
struct KitchenQuery {
    mode: Option<String>,
    format: Option<String>,
}

/// `GET /api/kitchen?mode=sequential|concurrent|cooks2&format=json|svg`:
/// the talk's dinner, cooked on virtual time.
async fn kitchen_chart(Query(q): Query<KitchenQuery>) -> Response {
    let (mode, cooks) = match q.mode.as_deref().unwrap_or("concurrent") {
        "sequential" => (crate::Mode::Sequential, 1),
        "concurrent" => (crate::Mode::Interleaved, 1),
        "cooks2" => (crate::Mode::Interleaved, 2),
        other => {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!("unknown mode {other:?}: use sequential, concurrent or cooks2"),
            )
        }
    };
    let svg = match q.format.as_deref().unwrap_or("json") {
        "json" => false,
        "svg" => true,
        other => {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!("unknown format {other:?}: use json or svg"),
            )
        }
    };
    // `cook_virtual` builds its own paused-clock runtime and blocks on it,
    // which must not happen on one of the server's runtime threads. It
    // takes about a millisecond.
    let cooked = tokio::task::spawn_blocking(move || {
        crate::cook_virtual(&crate::Menu::builtin(), mode, cooks)
    })
    .await;
    let timeline = match cooked {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "kitchen simulation failed");
            return refuse(StatusCode::INTERNAL_SERVER_ERROR, "the kitchen failed");
        }
    };
    if svg {
        (
            [(header::CONTENT_TYPE, "image/svg+xml; charset=utf-8")],
            crate::svg(&timeline),
        )
            .into_response()
    } else {
        Json(timeline).into_response()
    }
}
