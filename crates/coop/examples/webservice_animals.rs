//! The talk's slow web service in a few lines of axum.
//!
//! `GET /animals` greets; `GET /animals/{name}` waits, then answers the
//! animal's sound; an unknown name gets a 404 at once. The wait is
//! `tokio::time::sleep`: it parks this request's future on a timer and frees
//! the thread for everyone else, so a thousand waiting clients cost a
//! thousand small futures, not a thousand threads.
//!
//! ```sh
//! cargo run --example webservice_animals -- 8080 5    # port, delay in seconds
//! ```
//!
//! (`coop serve` is the production version: limits, metrics, JSON, faults,
//! graceful shutdown.)

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;

const SOUNDS: [(&str, &str); 12] = [
    ("cow", "Moo!"),
    ("pig", "Oink!"),
    ("sheep", "Baaa!"),
    ("chicken", "Cluck!"),
    ("bird", "Tweet!"),
    ("duck", "Quack!"),
    ("dog", "Woof!"),
    ("cat", "Meow!"),
    ("frog", "Ribbit!"),
    ("horse", "Neigh!"),
    ("turkey", "Gobble-Gobble!"),
    ("rooster", "Cock-a-Doodle-Doo!"),
];

async fn welcome() -> &'static str {
    "Welcome to the farm!"
}

async fn sound(State(delay): State<Duration>, Path(name): Path<String>) -> (StatusCode, String) {
    match SOUNDS.iter().find(|(animal, _)| *animal == name) {
        None => (
            StatusCode::NOT_FOUND,
            format!("The animal {name} was not found."),
        ),
        Some((_, sound)) => {
            // Waiting costs a timer, not a thread.
            tokio::time::sleep(delay).await;
            (StatusCode::OK, sound.to_string())
        }
    }
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let port: u16 = args
        .next()
        .map_or(8080, |p| p.parse().expect("PORT is a number"));
    let delay: f64 = args
        .next()
        .map_or(5.0, |d| d.parse().expect("DELAY is seconds"));

    let app = Router::new()
        .route("/animals", get(welcome))
        .route("/animals/{name}", get(sound))
        .with_state(Duration::from_secs_f64(delay));

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("port is free");
    println!("listening on http://{}", listener.local_addr().unwrap());
    axum::serve(listener, app).await.unwrap();
}
