//! The talk's first client: ask the farm for each animal, one at a time.
//!
//! Each request blocks this thread until the farm answers, so three animals
//! at a 5-second delay take 15 seconds. Compare `animals_concurrent.rs`.
//!
//! Run a farm (`coop serve`), then:
//!
//! ```sh
//! cargo run --example animals_sequential -- http://127.0.0.1:8080/animals cow pig chicken
//! ```
//!
//! The URL may also come from `COOP_URL`; the animals default to the talk's.

use std::time::Instant;

fn main() {
    let (base, animals) = url_and_animals();
    let started = Instant::now();

    // One blocking client, reused: it keeps the connection open between
    // requests, but still waits for each answer before asking the next.
    let http = reqwest::blocking::Client::new();
    for animal in &animals {
        let url = format!("{base}/{animal}");
        let sound = http
            .get(&url)
            .send()
            // Like the talk, a non-2xx answer is an error for that animal.
            .and_then(|response| response.error_for_status())
            .and_then(|response| response.text());
        match sound {
            Ok(sound) => println!("The {animal} says \"{sound}\"."),
            Err(err) => {
                eprintln!("could not ask the {animal}: {err}");
                std::process::exit(1);
            }
        }
    }
    eprintln!(
        "{} animals, one at a time: {:.2?}",
        animals.len(),
        started.elapsed()
    );
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
