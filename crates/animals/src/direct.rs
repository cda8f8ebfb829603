//! The farm's fast path: plain `GET /animals/...` requests answered straight
//! from the socket, without hyper.
//!
//! Why: the Animals API is mostly waiting. A request held through its
//! delay by hyper costs about 16 KB, most of it the two 8 KiB buffers that
//! hyper gives every HTTP/1 connection up front; 15,000 held requests are
//! then 330 MB. Here a held request costs its task, its timer and the
//! socket: the buffer that reads the request head lives only while the head
//! is parsed. At `--delay 0` the same loop also skips hyper's and the
//! router's per-request work.
//!
//! How: this is a [`gate::FastPath`]. The gate parses each request head
//! once and shows it here first: a plain HTTP/1.1 `GET` or `HEAD` for
//! `/animals` or `/animals/{name}`, with no body and no upgrade, is
//! claimed and answered here, through the same `decide` as the axum
//! handler, so both paths send the same status, headers and body and
//! count the same metrics. Anything else (another route, another method,
//! HTTP/1.0 or HTTP/2) is left to the next path or to hyper, even in the
//! middle of a keep-alive connection. Between requests the gate holds the
//! connection, under its header timeout, with no buffer.
//!
//! A client that goes away during the delay cancels its request, as with
//! hyper: the timer is dropped and the cancellation is counted.
//!
//! A request whose answer fault injection made anything but "the sound
//! after a delay" (a status, a paced body, a fault: [`crate::faults`]) is
//! written by [`crate::faults::wire`] on this same socket; this path only
//! hands it over. With nothing configured, no such answer is ever drawn.
//!
//! HTTP/2 requests cannot skip hyper (it owns the connection's framing),
//! but they can skip the router: hyper shows each one here first
//! ([`gate::FastPath::claim_h2`]), and `GET` and `HEAD` of the same two
//! routes are answered by the router's own handlers ([`server`]'s
//! `welcome` and `animal`), finished as axum finishes a route's answer.
//! With 100,000 streams held through their delay that halves the memory
//! and cuts a third of the server's CPU (`docs/benchmarks.md`, session 8).

use std::net::SocketAddr;

use axum::body::{Body, HttpBody};
use axum::response::Response;
use http::header::CONTENT_LENGTH;
use http::{Method, StatusCode};
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use crate::faults::wire::{self, After};
use crate::server::{
    self, accepts_json, decide, welcome_body, Answer, Failure, Farm, FarmInner, Track,
};

/// Answers the Animals API's simple requests on connections the gate
/// hands it. Cheap to clone.
#[derive(Clone)]
pub struct Direct {
    farm: Farm,
    shutdown: CancellationToken,
}

/// One request to answer: its head's flags and what to send.
struct Request {
    welcome: bool,
    head_only: bool,
    json: bool,
    close: bool,
    /// The sound and its delay, or the error to send at once. `None` for
    /// the welcome route.
    plan: Option<Result<Answer, Failure>>,
}

impl Direct {
    /// `shutdown`: when cancelled, busy connections close after their
    /// answer (`connection: close`; the gate closes idle ones).
    pub fn new(farm: Farm, shutdown: CancellationToken) -> Direct {
        Direct { farm, shutdown }
    }

    /// Answers one request on `conn`, then says whether the connection
    /// may carry another.
    async fn answer(self, mut conn: gate::Conn, request: Request) -> gate::Next {
        let farm = &*self.farm.inner;
        let route = if request.welcome {
            &farm.welcome
        } else {
            &farm.animal
        };
        let track = Track::start(farm, route);
        let (status, body, retry_after) = match request.plan {
            None => (StatusCode::OK, welcome_body(farm, request.json), false),
            Some(Err(failure)) => (failure.status, failure.body, failure.retry_after),
            Some(Ok(Answer::Faulty(faulty))) => {
                let close = request.close || self.shutdown.is_cancelled();
                let after = wire::answer(
                    conn.stream(),
                    &faulty,
                    request.head_only,
                    close,
                    farm.config.max_delay,
                )
                .await;
                // A fault that killed the connection still answered (that
                // was the answer asked for): count it.
                track.answered_with(faulty.outcome.status);
                farm.direct.increment(1);
                return match after {
                    After::KeepAlive => gate::Next::KeepAlive(conn),
                    // Dropping the stream closes it (with `RST` when a
                    // reset was armed).
                    After::Closed => gate::Next::Done,
                };
            }
            Some(Ok(Answer::Sound(body, delay))) => {
                if !delay.is_zero() {
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        // The client went away: dropping `track` counts
                        // the cancellation.
                        _ = conn.client_gone() => return gate::Next::Done,
                    }
                }
                (StatusCode::OK, body, false)
            }
        };

        let close = request.close || self.shutdown.is_cancelled();
        let retry = retry_after.then(|| farm.config.retry_after_secs.to_string());
        let extra: Vec<(&str, &[u8])> = match &retry {
            Some(secs) => vec![("retry-after", secs.as_bytes())],
            None => Vec::new(),
        };
        let response = gate::write::response(
            status,
            content_type(request.json),
            &extra,
            close,
            &body,
            request.head_only,
        );
        if conn.stream().write_all(&response).await.is_err() {
            return gate::Next::Done;
        }
        track.answered_with(status);
        farm.direct.increment(1);
        if close {
            let _ = conn.stream().shutdown().await;
            return gate::Next::Done;
        }
        gate::Next::KeepAlive(conn)
    }
}

impl gate::FastPath for Direct {
    fn claim(&self, head: &gate::Head<'_>, _peer: SocketAddr) -> Option<gate::Answer> {
        let request = plan(&self.farm.inner, head)?;
        let direct = self.clone();
        Some(Box::new(move |conn| Box::pin(direct.answer(conn, request))))
    }

    /// HTTP/2 `GET` and `HEAD` of `/animals` and `/animals/{name}`: the
    /// router's own handlers, called without the router. The answer is
    /// finished as the router finishes it (see [`as_routed`]); hyper
    /// frames it.
    fn claim_h2(&self, req: gate::HyperRequest) -> Result<gate::Reply, gate::HyperRequest> {
        let head_only = match *req.method() {
            Method::GET => false,
            Method::HEAD => true,
            _ => return Err(req),
        };
        let Some(welcome) = route(req.uri().path()) else {
            return Err(req);
        };
        let farm = &*self.farm.inner;
        farm.h2_direct.increment(1);
        if welcome {
            let response = server::welcome(farm, &req);
            return Ok(Box::pin(std::future::ready(as_routed(response, head_only))));
        }
        let answer = server::animal(self.farm.clone(), req);
        Ok(Box::pin(async move { as_routed(answer.await, head_only) }))
    }
}

/// Which route of this path `path` is: `Some(true)` for `/animals`,
/// `Some(false)` for `/animals/{name}`, `None` for any other (`/animals/`
/// and `/animals//` included: the router answers those `404`).
fn route(path: &str) -> Option<bool> {
    if path == "/animals" {
        return Some(true);
    }
    match path.strip_prefix("/animals/") {
        Some(rest) if !rest.trim_matches('/').is_empty() => Some(false),
        _ => None,
    }
}

/// What axum's router does to every answer of a route on its way out: a
/// `Content-Length` when the body's size is known, and no body for `HEAD`
/// (the length stays: that of the `GET`).
fn as_routed(mut response: Response, head_only: bool) -> Response {
    if !response.headers().contains_key(CONTENT_LENGTH) {
        if let Some(len) = response.body().size_hint().exact() {
            response.headers_mut().insert(CONTENT_LENGTH, len.into());
        }
    }
    if head_only {
        *response.body_mut() = Body::empty();
    }
    response
}

fn content_type(json: bool) -> &'static str {
    if json {
        "application/json"
    } else {
        "text/plain; charset=utf-8"
    }
}

/// Decides what to answer to a parsed head, if it is one for this path: a
/// plain HTTP/1.1 `GET` or `HEAD` of `/animals` or `/animals/{name}`.
fn plan(farm: &FarmInner, head: &gate::Head<'_>) -> Option<Request> {
    let head_only = match head.method {
        "GET" => false,
        "HEAD" => true,
        _ => return None,
    };
    if !head.is_simple() {
        return None;
    }
    let welcome = route(head.path)?;
    let json = head
        .headers()
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("accept"))
        .any(|h| accepts_json(Some(h.value)));
    let plan = (!welcome).then(|| decide(farm, head.path, head.query, json));
    Some(Request {
        welcome,
        head_only,
        json,
        close: head.wants_close(),
        plan,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Catalog, Config};
    use std::time::Duration;

    fn farm() -> Farm {
        Farm::new(Catalog::builtin(), Config::default())
    }

    fn parsed(text: &str) -> Option<Request> {
        match gate::head::parse(text.as_bytes()) {
            gate::head::Parsed::Complete(h) => plan(&farm().inner, &h),
            _ => None,
        }
    }

    #[test]
    fn takes_simple_animal_requests() {
        let r = parsed("GET /animals/cow HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert!(!r.welcome && !r.head_only && !r.json && !r.close);
        let Some(Ok(Answer::Sound(body, delay))) = r.plan else {
            panic!("cow should be found")
        };
        assert_eq!(&body[..], b"Moo!");
        assert_eq!(delay, Duration::from_secs(5));

        let r = parsed("HEAD /animals?x=1 HTTP/1.1\r\nAccept: application/json\r\nConnection: keep-alive, close\r\n\r\n").unwrap();
        assert!(r.welcome && r.head_only && r.json && r.close);

        let r = parsed("GET /animals//nope HTTP/1.1\r\n\r\n").unwrap();
        let Some(Err(failure)) = r.plan else {
            panic!("nope is unknown")
        };
        assert_eq!(failure.status, StatusCode::NOT_FOUND);
    }

    #[test]
    fn hands_back_everything_else() {
        for head in [
            "GET /animals/cow HTTP/1.0\r\n\r\n",
            "POST /animals/cow HTTP/1.1\r\n\r\n",
            "GET /animals/cow HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
            "GET /animals/cow HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET /animals/cow HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
            "GET /animals/ HTTP/1.1\r\n\r\n",
            "GET /animalsx HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\n\r\n",
            "GET http://x/animals/cow HTTP/1.1\r\n\r\n",
        ] {
            assert!(parsed(head).is_none(), "{head:?}");
        }
    }
}
