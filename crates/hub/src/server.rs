//! HTTP surface of the hub: `router(hub) -> Router`.
//!
//! | request | what it does |
//! |---|---|
//! | `GET /` | subscribe to topic `default` (the talk's stream) |
//! | `POST /?msg=…` or body | publish to `default`; answers `ok` |
//! | `GET /topics/{spec}` | subscribe: `a`, `a,b`, `farm.*`, `farm.**` |
//! | `POST /topics/{name}` | publish to one topic |
//! | `GET /api/topics` | topics with subscribers, last id, history size (paged: `?limit=`, `?after=`) |
//! | `GET /api/topics/{name}` | one topic |
//!
//! With auth on, the two `/api` routes need a valid token too, and show only
//! topics the token may subscribe to.
//!
//! Subscriptions choose their transport by `?format=`, a WebSocket upgrade
//! or `Accept` (`transport/mod.rs`), and resume with `Last-Event-ID` (wins)
//! or `?since=ID|all`. Publishing with `Accept: application/json` answers
//! `{"id","topic","subscribers"}`. Tokens (when `--auth-secret` is set) come
//! as `Authorization: Bearer` or `?token=`.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message as WsMessage, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::Request;
use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, State};
use axum::http::{header, request::Parts, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Limited};
use tower_http::cors::{AllowOrigin, Any, CorsLayer};

use crate::auth::{AuthError, Grant};
use crate::error::HubError;
use crate::hub::{Hub, Since, Spec};
use crate::limit::ClientKey;
use crate::message::TopicName;
use crate::subscriber::{Event, Subscriber};
use crate::transport::Format;

/// The topic of `/`.
pub const DEFAULT_TOPIC: &str = "default";

/// The hub's routes, with CORS if configured.
pub fn router(hub: Hub) -> Router {
    let cors = cors_layer(&hub.config().cors_origins);
    let router = Router::new()
        .route("/", get(subscribe_default).post(publish_default))
        .route("/topics/{spec}", get(subscribe_topics).post(publish_topic))
        .route("/api/topics", get(list_topics))
        .route("/api/topics/{name}", get(one_topic))
        .layer(axum::middleware::from_fn_with_state(
            hub.clone(),
            check_origin,
        ))
        .with_state(hub);
    match cors {
        Some(cors) => router.layer(cors),
        None => router,
    }
}

fn cors_layer(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::from(Any)
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::ACCEPT,
                header::HeaderName::from_static("last-event-id"),
            ]),
    )
}

type Params = Query<HashMap<String, String>>;

/// `Host` and `Origin` checks on every hub route (`origin.rs`).
async fn check_origin(
    State(hub): State<Hub>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    let config = hub.config();
    match crate::origin::check(
        &config.allowed_hosts,
        &config.cors_origins,
        req.method(),
        req.headers(),
    ) {
        Ok(()) => next.run(req).await,
        Err(err) => err.into_response(),
    }
}

/// The bearer token of a request: header first, then `?token=`.
fn token<'a>(headers: &'a HeaderMap, params: &'a HashMap<String, String>) -> Option<&'a str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .or_else(|| params.get("token").map(String::as_str))
}

fn grant(
    hub: &Hub,
    headers: &HeaderMap,
    params: &HashMap<String, String>,
) -> Result<Grant, HubError> {
    match &hub.inner.auth {
        None => Ok(Grant::Open),
        Some(auth) => auth.check(token(headers, params)).map_err(|e| match e {
            AuthError::Missing | AuthError::Invalid(_) => HubError::Unauthorized(e.to_string()),
        }),
    }
}

/// Access to a route outside the hub that shows hub-wide figures (the
/// binary's `/metrics`): open when auth is off; with auth on, a valid token
/// (`401`) whose subscribe claims cover `**`, every topic (`403`): the
/// figures say something about every topic, so only a token that may read
/// everything may see them.
pub fn authorize_hub_wide(
    hub: &Hub,
    headers: &HeaderMap,
    params: &HashMap<String, String>,
) -> Result<(), HubError> {
    if grant(hub, headers, params)?.may_subscribe("**") {
        Ok(())
    } else {
        Err(HubError::Forbidden(
            "token may not read hub-wide figures: it needs a subscribe claim of \"**\"".into(),
        ))
    }
}

async fn subscribe_default(
    State(hub): State<Hub>,
    Query(params): Params,
    parts: Parts,
) -> Response {
    subscribe(hub, DEFAULT_TOPIC, params, parts)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn subscribe_topics(
    State(hub): State<Hub>,
    Path(spec): Path<String>,
    Query(params): Params,
    parts: Parts,
) -> Response {
    subscribe(hub, &spec, params, parts)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// Validates a subscription request (spec, token, format, resume point),
/// takes a subscriber slot and opens it with its history: everything up to
/// the first byte of the response, shared by hyper-served and direct
/// (`direct.rs`) subscribers. `format`: the transport, when the caller
/// already knows it (the direct path's WebSocket upgrades, whose handshake
/// it checked); otherwise chosen from the request (`Format::choose`).
pub(crate) async fn start_subscriber(
    hub: &Hub,
    spec: &str,
    params: &HashMap<String, String>,
    headers: &HeaderMap,
    format: Option<Format>,
) -> Result<Subscriber, HubError> {
    let spec = Spec::parse(spec).map_err(HubError::BadRequest)?;
    let max = hub.config().max_subscription_topics;
    let parts = spec.topics.len() + spec.patterns.len();
    if parts > max {
        return Err(HubError::BadRequest(format!(
            "{parts} topics and patterns in one subscription; at most {max}"
        )));
    }
    let grant = grant(hub, headers, params)?;
    // Checked on this request's task, under no lock; all the parts together
    // cost at most `pattern::MAX_COVER_STEPS` (see `auth.rs`).
    let mut budget = crate::pattern::MAX_COVER_STEPS;
    for part in spec.parts() {
        grant
            .check_subscribe_within(part, &mut budget)
            .map_err(HubError::Forbidden)?;
    }
    let format = match format {
        Some(format) => format,
        None => choose_format(params, headers).map_err(HubError::BadRequest)?,
    };
    let since = resume_point(headers, params).map_err(HubError::BadRequest)?;
    if hub.shutdown().is_cancelled() {
        return Err(HubError::Unavailable("hub is shutting down".into()));
    }
    let slot = hub.take_slot()?;
    let opened = hub.open(&spec, since, slot).await?;
    Ok(Subscriber::new(hub.clone(), format, opened))
}

/// The transport a subscription request asks for (`Format::choose`:
/// `?format=`, then a WebSocket upgrade, then `Accept`).
pub(crate) fn choose_format(
    params: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Result<Format, String> {
    let upgrade = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    Format::choose(params.get("format").map(String::as_str), upgrade, accept)
}

/// Where a subscription starts: `Last-Event-ID` (wins; an empty one is
/// ignored, as the SSE spec resets it that way), else `?since=`, else live.
/// An id that is not a number up to [`crate::MessageId::MAX`], or a header
/// that is not text, is an error (`400`) on every store alike.
fn resume_point(headers: &HeaderMap, params: &HashMap<String, String>) -> Result<Since, String> {
    if let Some(value) = headers.get("last-event-id") {
        let id = value
            .to_str()
            .map_err(|_| "bad Last-Event-ID: not visible ASCII".to_string())?;
        if !id.trim().is_empty() {
            return Since::parse(id).map_err(|e| format!("Last-Event-ID: {e}"));
        }
    }
    match params.get("since") {
        Some(s) => Since::parse(s),
        None => Ok(Since::Live),
    }
}

async fn subscribe(
    hub: Hub,
    spec: &str,
    params: HashMap<String, String>,
    mut parts: Parts,
) -> Result<Response, HubError> {
    let sub = start_subscriber(&hub, spec, &params, &parts.headers, None).await?;
    let format = sub.format();
    if format == Format::WebSocket {
        let ws = WebSocketUpgrade::from_request_parts(&mut parts, &())
            .await
            .map_err(|e| HubError::BadRequest(format!("bad WebSocket upgrade: {e}")))?
            // A subscriber sends nothing but control frames (at most 125
            // bytes): anything larger, or fragments adding up to more, is
            // refused with 1009 instead of being buffered (axum's default
            // would hold 64 MiB per connection).
            .max_frame_size(WS_MAX_INCOMING)
            .max_message_size(WS_MAX_INCOMING);
        return Ok(ws.on_upgrade(move |socket| run_websocket(socket, sub)));
    }
    let mut resp = Response::new(sub.into_body());
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // nginx and friends: do not buffer a stream.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(resp)
}

/// Largest WebSocket frame or message a subscriber may send, in bytes.
pub const WS_MAX_INCOMING: usize = 4096;

/// Drives a WebSocket subscriber through hyper and tungstenite (TLS, and
/// hubs without the direct path): each batch is fed as text frames (the
/// NDJSON objects) and flushed once; pings while idle; a close frame at the
/// end (`subscriber::websocket_close`: 1001 at shutdown, 1008 when lagged
/// with the last id in the reason). What a client sends is read as
/// `direct.rs` reads it: pings answered, a close answered and the end,
/// 1009 past [`WS_MAX_INCOMING`], 1002 for broken framing.
async fn run_websocket(socket: WebSocket, mut sub: Subscriber) {
    let (mut tx, mut rx) = socket.split();
    if let Some(notices) = sub.take_notices() {
        for line in notices.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let Ok(text) = Utf8Bytes::try_from(Bytes::copy_from_slice(line)) else {
                continue;
            };
            if tx.feed(WsMessage::Text(text)).await.is_err() {
                return;
            }
        }
    }
    let enc = sub.format().encoding();
    let write_timeout = sub.write_timeout();
    let close = |(code, reason): (u16, String)| {
        WsMessage::Close(Some(CloseFrame {
            code,
            reason: Utf8Bytes::from(reason),
        }))
    };
    loop {
        let event = tokio::select! {
            event = sub.next_event() => event,
            incoming = rx.next() => match incoming {
                // Clients have nothing to say; pings are answered by the
                // library. A frame past `WS_MAX_INCOMING` or broken framing
                // is told why (1009, 1002); a close is answered (the
                // library queued the reply: flushed here) and ends it.
                Some(Err(e)) => {
                    if let Some(why) = refusal(&e) {
                        let _ = tokio::time::timeout(write_timeout, tx.send(close(why))).await;
                    }
                    return;
                }
                Some(Ok(WsMessage::Close(_))) => {
                    let _ = tokio::time::timeout(write_timeout, tx.flush()).await;
                    return;
                }
                None => return,
                Some(Ok(_)) => continue,
            },
        };
        if let Event::Heartbeat = event {
            let ping = tx.send(WsMessage::Ping(Bytes::new()));
            if !matches!(tokio::time::timeout(write_timeout, ping).await, Ok(Ok(()))) {
                return;
            }
            continue;
        }
        if let Some(why) = crate::subscriber::websocket_close(&event, &sub.interrupted_why()) {
            let _ = tokio::time::timeout(write_timeout, tx.send(close(why))).await;
            return;
        }
        let n = sub.pending().len();
        let frames: Vec<Utf8Bytes> = sub
            .pending()
            .iter()
            .filter_map(|m| {
                let b = m.encoded(enc);
                Utf8Bytes::try_from(b.slice(..b.len().saturating_sub(1))).ok()
            })
            .collect();
        // A client that stops reading blocks the flush: past
        // `--write-timeout` it is dropped with what it held.
        let sent = tokio::time::timeout(write_timeout, async {
            for text in frames {
                tx.feed(WsMessage::Text(text)).await?;
            }
            tx.flush().await
        })
        .await;
        if !matches!(sent, Ok(Ok(()))) {
            return;
        }
        sub.mark_sent(n);
    }
}

/// The close a WebSocket read error deserves: 1009 for a frame or message
/// past the limits, 1002 for broken framing; `None` when the connection
/// itself failed.
fn refusal(e: &axum::Error) -> Option<(u16, String)> {
    use crate::transport::websocket::{too_big_reason, CLOSE_PROTOCOL, CLOSE_TOO_BIG};
    use std::error::Error as _;
    match e
        .source()
        .and_then(|s| s.downcast_ref::<tungstenite::Error>())
    {
        Some(tungstenite::Error::Capacity(_)) => Some((CLOSE_TOO_BIG, too_big_reason())),
        Some(tungstenite::Error::Protocol(p)) => {
            Some((CLOSE_PROTOCOL, format!("protocol error: {p}")))
        }
        _ => None,
    }
}

async fn publish_default(State(hub): State<Hub>, Query(params): Params, req: Request) -> Response {
    publish(hub, DEFAULT_TOPIC, params, req)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn publish_topic(
    State(hub): State<Hub>,
    Path(name): Path<String>,
    Query(params): Params,
    req: Request,
) -> Response {
    publish(hub, &name, params, req)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn publish(
    hub: Hub,
    name: &str,
    params: HashMap<String, String>,
    req: Request,
) -> Result<Response, HubError> {
    let (parts, body) = req.into_parts();
    let headers = parts.headers;
    // The peer address, when the server provides it (`ConnectInfo`).
    let connect = parts.extensions.get::<ConnectInfo<SocketAddr>>().copied();
    let topic = TopicName::new(name).map_err(|e| {
        if name.contains(',') || name.contains('*') {
            HubError::BadRequest(format!("publish to one topic, not {name:?} ({e})"))
        } else {
            HubError::BadRequest(e)
        }
    })?;
    let grant = grant(&hub, &headers, &params)?;
    if !grant.may_publish(topic.as_str()) {
        return Err(HubError::Forbidden(format!(
            "token may not publish to {:?}",
            topic.as_str()
        )));
    }
    if let Some(limiter) = &hub.inner.limiter {
        // Behind a trusted proxy, the address it forwarded for; otherwise
        // the TCP peer (`limit.rs` explains which and why).
        let client = connect
            .map(|ConnectInfo(addr)| hub.config().trusted_proxies.client(addr.ip(), &headers));
        if let Err(wait) = limiter.check(ClientKey::of(client)) {
            return Err(HubError::RateLimited(
                wait.as_secs_f64().ceil().max(1.0) as u64
            ));
        }
    }
    let max = hub.config().max_message;
    let body_timeout = hub.config().body_timeout;
    let message = match params.get("msg") {
        Some(msg) => Bytes::copy_from_slice(msg.as_bytes()),
        None => tokio::time::timeout(body_timeout, Limited::new(body, max).collect())
            .await
            .map_err(|_| {
                HubError::Timeout(format!(
                    "the message body did not arrive within {body_timeout:?}"
                ))
            })?
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    HubError::TooLarge(max)
                } else {
                    HubError::BadRequest(format!("cannot read the request body: {e}"))
                }
            })?
            .to_bytes(),
    };
    let (msg, subscribers) = hub.publish(topic, message).await?;
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json"));
    if wants_json {
        Ok(Json(serde_json::json!({
            "id": msg.id.0,
            "topic": msg.topic.as_str(),
            "subscribers": subscribers,
        }))
        .into_response())
    } else {
        Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "ok").into_response())
    }
}

fn topic_json(
    name: &str,
    subscribers: usize,
    stats: Option<crate::store::TopicStats>,
) -> serde_json::Value {
    let stats = stats.unwrap_or_default();
    serde_json::json!({
        "name": name,
        "subscribers": subscribers,
        "last_id": stats.last_id.map(|i| i.0),
        "oldest_id": stats.oldest_id.map(|i| i.0),
        "history": stats.len,
    })
}

/// Topics in one `/api/topics` answer unless `?limit=` says otherwise.
pub const TOPICS_PAGE: usize = 1000;
/// Largest `?limit=` accepted (more is `400`).
pub const MAX_TOPICS_PAGE: usize = 10_000;

/// `GET /api/topics[?limit=N][&after=NAME]`: topics in name order, at most
/// `limit` ([`TOPICS_PAGE`] by default, [`MAX_TOPICS_PAGE`] at most), after
/// `after`; `next` is the name to pass as `after` for the following page
/// (`null` on the last one). With auth on, a valid token is required (`401`)
/// and only topics it may subscribe to are listed; the hub-wide
/// `subscribers` and `last_id` are shown only to a token that may
/// subscribe to `**` (they say something about every topic), `null`
/// otherwise.
///
/// Cost per request: one pass over the topics held and live (at most
/// `--max-topics` held), a hash-map merge and a partial selection of the
/// page (O(n + limit log limit)); no lock is held across it but the
/// stores' and fan-out's own, each for a copy of their list.
async fn list_topics(
    State(hub): State<Hub>,
    Query(params): Params,
    headers: HeaderMap,
) -> Result<Response, HubError> {
    let grant = grant(&hub, &headers, &params)?;
    let limit = match params.get("limit") {
        None => TOPICS_PAGE,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=MAX_TOPICS_PAGE).contains(&n) => n,
            _ => {
                return Err(HubError::BadRequest(format!(
                    "bad limit: expected 1 to {MAX_TOPICS_PAGE}"
                )))
            }
        },
    };
    let after = params.get("after").map(String::as_str);
    let held = hub
        .store()
        .topics()
        .await
        .map_err(|e| HubError::Unavailable(e.to_string()))?;
    let live: HashMap<TopicName, usize> = hub.rings().live_topics().into_iter().collect();
    let stats: HashMap<TopicName, crate::store::TopicStats> = held.into_iter().collect();
    // Held or live, after the cursor, visible to this token: each name once
    // (a hash lookup per live topic, not a scan of the held ones).
    let mut names: Vec<&TopicName> = stats
        .keys()
        .chain(live.keys().filter(|n| !stats.contains_key(*n)))
        .filter(|n| after.is_none_or(|a| n.as_str() > a))
        .filter(|n| grant.may_subscribe(n.as_str()))
        .collect();
    let more = names.len() > limit;
    if more {
        // The `limit` smallest names, without sorting all of them.
        names.select_nth_unstable(limit);
        names.truncate(limit);
    }
    names.sort_unstable();
    let topics: Vec<_> = names
        .iter()
        .map(|n| {
            topic_json(
                n.as_str(),
                live.get(*n).copied().unwrap_or(0),
                stats.get(*n).copied(),
            )
        })
        .collect();
    let next = if more {
        names.last().map(|n| n.as_str())
    } else {
        None
    };
    let sees_all = grant.may_subscribe("**");
    Ok(Json(serde_json::json!({
        "topics": topics,
        "next": next,
        "subscribers": sees_all.then(|| hub.subscriber_count()),
        "last_id": if sees_all { hub.store().last_id().map(|i| i.0) } else { None },
    }))
    .into_response())
}

/// `GET /api/topics/{name}`. With auth on, a valid token is required
/// (`401`) that may subscribe to `name` (`403` otherwise, before looking
/// the topic up, so a refusal says nothing about whether it exists).
async fn one_topic(
    State(hub): State<Hub>,
    Path(name): Path<String>,
    Query(params): Params,
    headers: HeaderMap,
) -> Result<Response, HubError> {
    let topic = TopicName::new(&name).map_err(HubError::BadRequest)?;
    let grant = grant(&hub, &headers, &params)?;
    if !grant.may_subscribe(topic.as_str()) {
        return Err(HubError::Forbidden(format!(
            "token may not subscribe to {name:?}"
        )));
    }
    let stats = hub
        .store()
        .stats(&topic)
        .await
        .map_err(|e| HubError::Unavailable(e.to_string()))?;
    let subscribers = hub.rings().subscribers(&topic);
    if stats.is_none() && subscribers == 0 {
        return Err(HubError::NotFound(format!(
            "no topic {name:?}: nothing held, nobody subscribed"
        )));
    }
    Ok((StatusCode::OK, Json(topic_json(&name, subscribers, stats))).into_response())
}
