//! The wire facts of the talk's Animals API (tutorial contract §1), byte for
//! byte, plus coop's additions: JSON, `?delay=`, fault injection, name
//! checks.

use std::time::{Duration, Instant};

use animals::catalog::BUILTIN;
use animals::Config;

use crate::support::{farm, farm_with, get};

const SHORT: Duration = Duration::from_millis(200);

#[tokio::test]
async fn welcome_is_plain_text_byte_for_byte() {
    let addr = farm(SHORT).await;
    let r = get(addr, "/animals", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"Welcome to the farm!");
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(r.header("content-length"), Some("20"));
}

#[tokio::test]
async fn a_known_animal_answers_its_sound_after_the_delay() {
    let addr = farm(SHORT).await;
    let start = Instant::now();
    let r = get(addr, "/animals/cow", &[]).await;
    let took = start.elapsed();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"Moo!");
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert!(took >= SHORT, "answered after {took:?}, before the delay");
    // Only that the answer is not held: far above the delay, since a
    // loaded machine can stall a request for a while.
    assert!(
        took < SHORT + Duration::from_secs(5),
        "answered after {took:?}"
    );
}

#[tokio::test]
async fn every_animal_of_the_talk_says_its_sound() {
    let addr = farm(Duration::ZERO).await;
    for (name, sound) in BUILTIN {
        let r = get(addr, &format!("/animals/{name}"), &[]).await;
        assert_eq!((r.status, r.text()), (200, sound), "{name}");
    }
}

#[tokio::test]
async fn an_unknown_animal_is_404_at_once_with_the_talks_text() {
    let addr = farm(Duration::from_secs(5)).await;
    let start = Instant::now();
    let r = get(addr, "/animals/unicorn", &[]).await;
    // Far below the farm's 5 s delay.
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "404 must not wait"
    );
    assert_eq!(r.status, 404);
    assert_eq!(r.body, b"The animal unicorn was not found.");
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    // Names are case-sensitive, like the talk's dictionary.
    let r = get(addr, "/animals/Cow", &[]).await;
    assert_eq!((r.status, r.text()), (404, "The animal Cow was not found."));
}

#[tokio::test]
async fn doubled_slashes_from_the_talks_url_join_are_tolerated() {
    let addr = farm(Duration::ZERO).await;
    for path in ["/animals//cow", "/animals/cow/", "/animals///cow"] {
        let r = get(addr, path, &[]).await;
        assert_eq!((r.status, r.text()), (200, "Moo!"), "{path}");
    }
    let r = get(addr, "/animals//unicorn", &[]).await;
    assert_eq!(
        (r.status, r.text()),
        (404, "The animal unicorn was not found.")
    );
}

#[tokio::test]
async fn json_when_the_client_accepts_it() {
    let addr = farm(Duration::ZERO).await;
    let accept = ["Accept: application/json"];
    let r = get(addr, "/animals/cow", &accept).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.body, br#"{"animal":"cow","sound":"Moo!"}"#);

    let r = get(addr, "/animals", &accept).await;
    let list: Vec<serde_json::Value> = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(list.len(), 12);
    assert_eq!(
        list[11],
        serde_json::json!({"animal": "rooster", "sound": "Cock-a-Doodle-Doo!"})
    );

    let r = get(addr, "/animals/unicorn", &accept).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.body, br#"{"error":"The animal unicorn was not found."}"#);
    // Browsers' Accept lists still get text unless JSON is named.
    let r = get(addr, "/animals/cow", &["Accept: text/html,*/*"]).await;
    assert_eq!(r.body, b"Moo!");
}

#[tokio::test]
async fn query_delay_overrides_and_is_capped_by_max_delay() {
    let addr = farm_with(Config {
        delay: Duration::from_secs(10),
        max_delay: Duration::from_millis(300),
        ..Config::default()
    })
    .await;
    let start = Instant::now();
    let r = get(addr, "/animals/pig?delay=0", &[]).await;
    assert_eq!((r.status, r.text()), (200, "Oink!"));
    // Far below the farm's 10 s: the request's own delay won.
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );

    let start = Instant::now();
    let r = get(addr, "/animals/pig?delay=50ms", &[]).await;
    assert_eq!(r.status, 200);
    assert!(start.elapsed() >= Duration::from_millis(50));

    // Asking for 60 s gets the 300 ms cap.
    let start = Instant::now();
    let r = get(addr, "/animals/pig?delay=60", &[]).await;
    let took = start.elapsed();
    assert_eq!(r.status, 200);
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");

    let r = get(addr, "/animals/pig?delay=soon", &[]).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.text(),
        "Bad delay \"soon\": use seconds like 0.25 or a duration like 250ms."
    );
}

#[tokio::test]
async fn error_rate_answers_503_with_retry_after() {
    let addr = farm_with(Config {
        delay: Duration::ZERO,
        error_rate: 1.0,
        retry_after_secs: 7,
        ..Config::default()
    })
    .await;
    let r = get(addr, "/animals/cow", &[]).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), Some("7"));
    assert_eq!(r.text(), animals::server::BUSY);
    // The welcome page is not part of the fault injection.
    assert_eq!(get(addr, "/animals", &[]).await.status, 200);
}

#[tokio::test]
async fn an_error_rate_between_zero_and_one_fails_about_that_share() {
    let addr = farm_with(Config {
        delay: Duration::ZERO,
        error_rate: 0.5,
        ..Config::default()
    })
    .await;
    let mut failed = 0;
    for _ in 0..200 {
        if get(addr, "/animals/cow", &[]).await.status == 503 {
            failed += 1;
        }
    }
    // Binomial(200, 0.5): outside 60..140 has odds below 1e-8.
    assert!((60..140).contains(&failed), "{failed} of 200 failed");
}

#[tokio::test]
async fn malformed_and_overlong_names_are_400_with_a_reason() {
    let addr = farm(Duration::from_secs(5)).await;
    let long = format!("/animals/{}", "a".repeat(65));
    let cases = [
        (
            long.as_str(),
            "Bad animal name: it is longer than 64 bytes.",
        ),
        (
            "/animals/c%20w",
            "Bad animal name: only ASCII letters, digits, '-' and '_' are allowed.",
        ),
        (
            "/animals/cow/moo",
            "Bad animal name: only ASCII letters, digits, '-' and '_' are allowed.",
        ),
        (
            "/animals/%ff",
            "Bad animal name: it is not valid percent-encoded UTF-8.",
        ),
        // A broken escape stays as written (the gate's one decoding
        // rule, the router's too), and `%` is not allowed in a name.
        (
            "/animals/c%2",
            "Bad animal name: only ASCII letters, digits, '-' and '_' are allowed.",
        ),
    ];
    for (path, reason) in cases {
        let start = Instant::now();
        let r = get(addr, path, &[]).await;
        assert_eq!((r.status, r.text()), (400, reason), "{path}");
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "{path} must not wait"
        );
    }
    // 64 bytes is still a name (just not a known one).
    let ok_len = format!("/animals/{}", "a".repeat(64));
    assert_eq!(get(addr, &ok_len, &[]).await.status, 404);
    // Percent-encoded letters are the same name.
    let r = get(addr, "/animals/c%6Fw?delay=0", &[]).await;
    assert_eq!((r.status, r.text()), (200, "Moo!"));
}

#[tokio::test]
async fn head_answers_without_a_body() {
    let addr = farm(Duration::ZERO).await;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(b"HEAD /animals HTTP/1.1\r\nHost: farm\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).await.unwrap();
    let text = String::from_utf8(bytes).unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(
        text.ends_with("\r\n\r\n"),
        "HEAD must have no body: {text:?}"
    );
}
