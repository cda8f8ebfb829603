//! The farm's web page: `GET /ui` and the two JSON endpoints behind it.
//!
//! The page (`crates/coop/web/`: one HTML file, one script, one style
//! sheet, no build step, no CDN) is compiled into the binary with
//! `include_str!`, so `coop serve` needs nothing beside itself. It shows
//! the three lessons of the talk on one screen:
//!
//! - the live hub, through the hub's own routes (`/topics/{names}` with
//!   `?format=sse`, `POST /topics/{name}`, `/api/topics`); nothing here;
//! - the animal race (`/api/race`, in `animals::race`): this very server's
//!   farm asked for N animals with coop's own client;
//! - the kitchen (`/api/kitchen`, in `kitchen::web`): the talk's dinner on
//!   tokio's paused clock, as JSON or the SVG chart.
//!
//! `serve.rs` merges [`router`] after it has bound its socket, because the
//! race needs the address to call itself.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

const INDEX_HTML: &str = include_str!("../web/index.html");
const APP_JS: &str = include_str!("../web/app.js");
const STYLE_CSS: &str = include_str!("../web/style.css");
const FAVICON_SVG: &str = include_str!("../web/favicon.svg");

/// The page's Content-Security-Policy: everything from this origin, no
/// inline script, nothing from anywhere else.
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; \
                   script-src 'self'; connect-src 'self'; base-uri 'none'; \
                   frame-ancestors 'none'; form-action 'none'";

/// The page and its endpoints. `local` is the address the server listens
/// on (an unspecified address such as `0.0.0.0` is reached on loopback).
pub fn router(local: SocketAddr) -> Router {
    let ip = match local.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let farm_base = format!("http://{}/animals", SocketAddr::new(ip, local.port()));
    Router::new()
        .route("/ui", get(index))
        .route("/ui/", get(index))
        .route("/ui/app.js", get(app_js))
        .route("/ui/style.css", get(style_css))
        .route("/ui/favicon.svg", get(favicon))
        .merge(animals::race::router(farm_base))
        .merge(kitchen::web::router())
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            // The assets change with the binary; a stale page after an
            // upgrade would talk to endpoints that changed under it.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        body,
    )
        .into_response()
}

async fn index() -> Response {
    let mut res = asset("text/html; charset=utf-8", INDEX_HTML);
    res.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    res
}

async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

async fn style_css() -> Response {
    asset("text/css; charset=utf-8", STYLE_CSS)
}

async fn favicon() -> Response {
    asset("image/svg+xml", FAVICON_SVG)
}
