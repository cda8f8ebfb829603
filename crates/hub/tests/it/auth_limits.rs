//! Access control (JWT claims with topic patterns; 401/403 with a reason;
//! `?token=` for EventSource) and limits (503 past --max-subscribers, 429
//! with Retry-After past the publish rate, idle timeout).

use std::time::Duration;

use jsonwebtoken::{encode, EncodingKey, Header};

use crate::support::{client, Stream, TestHub};
use hub::Config;

const SECRET: &str = "farm-secret";

/// A token with `claims`, valid for ten minutes unless they say otherwise
/// (tokens must carry `exp`).
fn token(mut claims: serde_json::Value) -> String {
    if claims.get("exp").is_none() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        claims["exp"] = serde_json::json!(now + 600);
    }
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

async fn authed() -> TestHub {
    TestHub::start(Config {
        auth_secret: Some(SECRET.into()),
        ..Config::default()
    })
    .await
}

#[tokio::test]
async fn publishing_needs_a_token_whose_claims_cover_the_topic() {
    let hub = authed().await;
    let farmer = token(serde_json::json!({"coop": {"publish": ["farm.*"]}}));
    let post = |path: &str| client().post(hub.url(path));

    let resp = post("/topics/farm.cow?msg=moo").send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert!(resp.text().await.unwrap().contains("missing token"));

    let resp = post("/topics/farm.cow?msg=moo")
        .bearer_auth("not.a.jwt")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(resp.text().await.unwrap().contains("invalid token"));

    let forged = encode(
        &Header::default(),
        &serde_json::json!({"coop": {"publish": ["**"]}}),
        &EncodingKey::from_secret(b"guess"),
    )
    .unwrap();
    let resp = post("/topics/farm.cow?msg=moo")
        .bearer_auth(forged)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    let resp = post("/topics/zoo?msg=roar")
        .bearer_auth(&farmer)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert!(resp
        .text()
        .await
        .unwrap()
        .contains("may not publish to \"zoo\""));

    let resp = post("/topics/farm.cow?msg=moo")
        .bearer_auth(&farmer)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = post(&format!("/topics/farm.cow?msg=moo&token={farmer}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "?token= works for publishing too");

    let expired = token(serde_json::json!({"coop": {"publish": ["**"]}, "exp": 1_000_000}));
    let resp = post("/topics/farm.cow?msg=moo")
        .bearer_auth(expired)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(resp.text().await.unwrap().contains("Expired"));
}

#[tokio::test]
async fn subscribing_needs_a_token_and_event_source_can_pass_it_in_the_query() {
    let hub = authed().await;
    let reader = token(serde_json::json!({"coop": {"subscribe": ["farm.*"]}}));
    let writer = token(serde_json::json!({"coop": {"publish": ["**"]}}));

    let resp = client()
        .get(hub.url("/topics/farm.cow"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = client()
        .get(hub.url("/topics/farm.cow,zoo"))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert!(resp
        .text()
        .await
        .unwrap()
        .contains("may not subscribe to \"zoo\""));
    let resp = client()
        .get(hub.url("/topics/**"))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403, "farm.* does not cover every topic");

    let mut sub = Stream::get(&hub.url(&format!("/topics/farm.*?format=sse&token={reader}"))).await;
    hub.wait_subscribers(1).await;
    let resp = client()
        .post(hub.url("/topics/farm.pig?msg=oink"))
        .bearer_auth(&writer)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(sub.event().await.unwrap().data(), "oink");
}

#[tokio::test]
async fn subscribers_past_the_limit_get_503() {
    let hub = TestHub::start(Config {
        max_subscribers: 2,
        ..Config::default()
    })
    .await;
    let _a = Stream::get(&hub.url("/")).await;
    let _b = Stream::get(&hub.url("/topics/x")).await;
    let resp = client().get(hub.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    assert!(resp.text().await.unwrap().contains("too many subscribers"));
    drop(_a);
    hub.wait_subscribers(1).await;
    let _c = Stream::get(&hub.url("/")).await;
}

#[tokio::test]
async fn publishing_too_fast_gets_429_with_retry_after() {
    let hub = TestHub::start(Config {
        publish_rate: Some((1.0, 2)),
        ..Config::default()
    })
    .await;
    for _ in 0..2 {
        let resp = client().post(hub.url("/?msg=x")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
    }
    let resp = client().post(hub.url("/?msg=x")).send().await.unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "1");
    assert!(resp.text().await.unwrap().contains("too fast"));
}

#[tokio::test]
async fn an_idle_subscription_is_closed_after_the_idle_timeout() {
    let hub = TestHub::start(Config {
        idle_timeout: Some(Duration::from_millis(100)),
        ..Config::default()
    })
    .await;
    let mut sub = Stream::get(&hub.url("/")).await;
    hub.wait_subscribers(1).await;
    hub.publish("/", "one").await;
    assert_eq!(sub.raw_line().await.unwrap(), "one");
    sub.expect_end().await;
    hub.wait_subscribers(0).await;
}

#[tokio::test]
async fn too_many_topics_is_503() {
    let hub = TestHub::start(Config {
        max_topics: 2,
        ..Config::default()
    })
    .await;
    hub.publish("/topics/a", "1").await;
    hub.publish("/topics/b", "1").await;
    let resp = client()
        .post(hub.url("/topics/c?msg=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert!(resp.text().await.unwrap().contains("too many topics"));
}
