//! End-to-end tests: examples. Each example of the talk runs against a real
//! server on a free port, and its output is checked.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::{announced_addr, example, Server};

const TRIO: &str =
    "The cow says \"Moo!\".\nThe pig says \"Oink!\".\nThe chicken says \"Cluck!\".\n";

#[test]
fn animals_sequential_asks_one_at_a_time() {
    let server = Server::start(&["--delay", "200ms"]);
    let start = Instant::now();
    let out = example("animals_sequential")
        .arg(server.url("/animals"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), TRIO);
    assert!(
        start.elapsed() >= Duration::from_millis(600),
        "three delays, one after the other"
    );
}

#[test]
fn animals_concurrent_asks_all_at_once() {
    let server = Server::start(&["--delay", "400ms"]);
    let start = Instant::now();
    let out = example("animals_concurrent")
        .env("COOP_URL", server.url("/animals/"))
        .args(["cow", "pig", "chicken", "unicorn"])
        .output()
        .unwrap();
    let took = start.elapsed();
    // The unknown animal fails (exit 1) but the others still print, in order.
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stdout), TRIO);
    assert!(String::from_utf8_lossy(&out.stderr).contains("could not ask the unicorn"));
    // Against the sequential example on the same server, measured the same
    // way (process start included): concurrent is faster whatever the
    // machine's load, and it waited at least one delay.
    let start = Instant::now();
    let sequential = example("animals_sequential")
        .arg(server.url("/animals"))
        .output()
        .unwrap();
    let sequential_took = start.elapsed();
    assert_eq!(String::from_utf8_lossy(&sequential.stdout), TRIO);
    assert!(took >= Duration::from_millis(400), "{took:?}");
    assert!(
        took < sequential_took,
        "concurrent {took:?} vs sequential {sequential_took:?}: not concurrent"
    );
}

#[test]
fn webservice_animals_is_the_talks_farm() {
    let mut child = example("webservice_animals")
        .args(["0", "0.1"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let base = format!("http://{}", announced_addr(&mut child));

    let get = |path: &str| {
        let r = reqwest::blocking::get(format!("{base}{path}")).unwrap();
        (r.status().as_u16(), r.text().unwrap())
    };
    assert_eq!(get("/animals"), (200, "Welcome to the farm!".into()));
    assert_eq!(get("/animals/rooster"), (200, "Cock-a-Doodle-Doo!".into()));
    assert_eq!(
        get("/animals/unicorn"),
        (404, "The animal unicorn was not found.".into())
    );

    // And the sequential example works against it too.
    let out = example("animals_sequential")
        .arg(format!("{base}/animals"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), TRIO);

    child.kill().unwrap();
    child.wait().unwrap();
}
