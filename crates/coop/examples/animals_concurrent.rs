//! The talk's second client: start every request at once, then wait for all
//! of them together.
//!
//! Each request is a future; `join_all` polls them all on one thread, and
//! while they wait for the farm the thread is free to drive the others. So
//! three animals at a 5-second delay take about 5 seconds, not 15. The
//! results come back in the order the futures were given, whatever order
//! the answers arrived in.
//!
//! ```sh
//! cargo run --example animals_concurrent -- http://127.0.0.1:8080/animals cow pig chicken
//! ```
//!
//! (`coop speak` is the production version: bounded concurrency, retries,
//! lines printed as soon as they are ready.)

use std::time::Instant;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let (base, animals) = url_and_animals();
    let started = Instant::now();

    // One client = one connection pool, shared by every request (the
    // talk's `aiohttp.ClientSession`).
    let http = reqwest::Client::new();

    // Building the futures does not send anything yet: futures are lazy.
    let requests = animals.iter().map(|animal| {
        let http = &http;
        let url = format!("{base}/{animal}");
        async move {
            let response = http.get(url).send().await?.error_for_status()?;
            response.text().await
        }
    });

    // Now drive them all at once and collect the results, in order.
    let sounds = futures::future::join_all(requests).await;

    let mut failed = false;
    for (animal, sound) in animals.iter().zip(sounds) {
        match sound {
            Ok(sound) => println!("The {animal} says \"{sound}\"."),
            Err(err) => {
                eprintln!("could not ask the {animal}: {err}");
                failed = true;
            }
        }
    }
    eprintln!(
        "{} animals, all at once: {:.2?}",
        animals.len(),
        started.elapsed()
    );
    if failed {
        std::process::exit(1);
    }
}

/// `[URL] [ANIMAL...]`: the URL is the first argument if it looks like one,
/// else `COOP_URL`, else the local farm.
fn url_and_animals() -> (String, Vec<String>) {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let base = if args.first().is_some_and(|a| a.starts_with("http")) {
        args.remove(0)
    } else {
        std::env::var("COOP_URL").unwrap_or_else(|_| "http://127.0.0.1:8080/animals".into())
    };
    if args.is_empty() {
        args = vec!["cow".into(), "pig".into(), "chicken".into()];
    }
    (base.trim_end_matches('/').to_string(), args)
}
