//! End-to-end tests: the web page at `/ui`, in real browsers.
//!
//! Debian's headless Chromium (through chromedriver) and Firefox ESR
//! (through geckodriver), both driven over the W3C WebDriver protocol
//! (plain JSON over HTTP: the few commands needed are spoken directly with
//! reqwest, see [`Browser`]). The browser loads the page from a real
//! `coop serve`, publishes from the page and sees the message in the page's
//! log, sees a message published over plain HTTP (as curl would), runs a
//! small animal race and reads the totals off the page (and one from the
//! browser itself, which shows the six-connection cap), reads the kitchen's
//! totals, and checks the page met no error. A second browser test restarts
//! a durable server under the page and checks that the stream resumes with
//! `Last-Event-ID` (a message published while the page was away arrives
//! once, nothing twice). A third serves the page over TLS, where the
//! browser speaks HTTP/2, and opens more `EventSource` streams than the six
//! connections HTTP/1.1 allows, each receiving its message. Each browser saves `target/ui-screenshot-NAME.png`
//! (desktop) and `target/ui-screenshot-NAME-phone.png`.
//!
//! Every test runs once per browser. A browser that is not installed is
//! skipped with a message saying what to install, unless
//! `COOP_REQUIRE_BROWSERS=1` (set by `.ci/run`, which installs `chromium`,
//! `chromium-driver`, `firefox-esr` and geckodriver), where it fails.
//!
//! The endpoints behind the page (`/api/race`, `/api/kitchen`) are also
//! tested without a browser, including their answers to bad input.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

use crate::support::{identity, serve_tls, wait_until, write_files, Server, WAIT};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const FIREFOX: &str = "/usr/bin/firefox-esr";

/// The browsers the page is tested in.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Engine {
    Chromium,
    Firefox,
}

impl Engine {
    fn name(self) -> &'static str {
        match self {
            Engine::Chromium => "chromium",
            Engine::Firefox => "firefox",
        }
    }

    /// The browser and its WebDriver server, or why they cannot be used.
    fn binaries(self) -> Result<(PathBuf, PathBuf), String> {
        let (browser, driver, install) = match self {
            Engine::Chromium => (
                Some(PathBuf::from(CHROMIUM)),
                Some(PathBuf::from(CHROMEDRIVER)),
                "apt-get install -y chromium chromium-driver",
            ),
            Engine::Firefox => (
                Some(PathBuf::from(FIREFOX)),
                find_in_path("geckodriver"),
                "apt-get install -y firefox-esr; cargo install geckodriver --locked",
            ),
        };
        match (browser, driver) {
            (Some(b), Some(d)) if b.exists() && d.exists() => Ok((b, d)),
            (b, d) => Err(format!(
                "{} is not installed (browser {}, driver {}): {install}",
                self.name(),
                b.map_or("none".into(), |p| p.display().to_string()),
                d.map_or("geckodriver not on PATH nor in ~/.cargo/bin".into(), |p| p
                    .display()
                    .to_string()),
            )),
        }
    }
}

/// `name` on `PATH`, or in cargo's bin directory (where `cargo install`
/// puts geckodriver).
fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .map(|c| c.join("bin"));
    std::env::split_paths(&path)
        .chain(cargo_bin)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The W3C key of an element reference in WebDriver answers.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("http client")
}

/// A WebDriver server (chromedriver or geckodriver) and one headless
/// browser session; both end on drop.
struct Browser {
    engine: Engine,
    driver: Child,
    base: String,
    session: String,
    http: reqwest::blocking::Client,
    /// Chromium's profile; geckodriver makes and removes its own.
    _profile: tempfile::TempDir,
    /// The driver's output, where Firefox writes its console (see
    /// [`Browser::console_errors`]).
    driver_log: PathBuf,
}

impl Browser {
    /// Starts `engine`, or returns `None` (after saying why) when it is not
    /// installed and `COOP_REQUIRE_BROWSERS` is not `1`.
    fn start(engine: Engine) -> Option<Browser> {
        let (browser, driver) = match engine.binaries() {
            Ok(found) => found,
            Err(why) => {
                let required = std::env::var_os("COOP_REQUIRE_BROWSERS").is_some_and(|v| v == "1");
                assert!(!required, "{why} (COOP_REQUIRE_BROWSERS=1)");
                eprintln!("SKIPPED: {why}");
                return None;
            }
        };
        let port = {
            let probe = TcpListener::bind("127.0.0.1:0").expect("bind a probe port");
            probe.local_addr().expect("probe address").port()
        };
        let profile = tempfile::tempdir().expect("a fresh profile dir");
        let driver_log = profile.path().join("driver.log");
        let log = std::fs::File::create(&driver_log).expect("create the driver log");
        let mut command = Command::new(&driver);
        match engine {
            Engine::Chromium => command.arg(format!("--port={port}")),
            Engine::Firefox => command.args(["--port", &port.to_string()]),
        };
        let driver = command
            .stdout(log.try_clone().expect("clone the log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", driver.display()));
        let http = http();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + WAIT;
        loop {
            let ready = http
                .get(format!("{base}/status"))
                .send()
                .ok()
                .and_then(|r| r.json::<Value>().ok())
                .is_some_and(|v| v["value"]["ready"] == true);
            if ready {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the {} driver did not get ready",
                engine.name()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let caps = match engine {
            Engine::Chromium => json!({
                "capabilities": { "alwaysMatch": {
                    "browserName": "chrome",
                    // The TLS test's certificate is made by the test.
                    "acceptInsecureCerts": true,
                    "goog:chromeOptions": {
                        "binary": browser,
                        "args": [
                            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                            "--no-first-run", "--disable-background-networking",
                            "--disable-component-update", "--disable-sync",
                            "--disable-dev-shm-usage", "--window-size=1280,900",
                            format!("--user-data-dir={}", profile.path().display()),
                        ],
                    },
                    "goog:loggingPrefs": { "browser": "ALL" },
                }}
            }),
            Engine::Firefox => json!({
                "capabilities": { "alwaysMatch": {
                    "browserName": "firefox",
                    "acceptInsecureCerts": true,
                    "moz:firefoxOptions": {
                        "binary": browser,
                        "args": ["-headless"],
                        "prefs": {
                            // The page's console (and only the page's, not
                            // the browser's own), written to the driver's
                            // output: geckodriver has no log command.
                            "devtools.console.stdout.content": true,
                            "devtools.console.stdout.chrome": false,
                            "app.update.enabled": false,
                            "browser.shell.checkDefaultBrowser": false,
                            "datareporting.policy.dataSubmissionEnabled": false,
                        },
                    },
                }}
            }),
        };
        let answer: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .and_then(|r| r.json())
            .expect("create a WebDriver session");
        let session = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session from the {} driver: {answer}", engine.name()))
            .to_string();
        let browser = Browser {
            engine,
            driver,
            base,
            session,
            http,
            _profile: profile,
            driver_log,
        };
        browser.set_size(1280, 900);
        Some(browser)
    }

    /// One WebDriver command; panics with the driver's message on error.
    fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{}", self.base, self.session, path);
        let mut req = self.http.request(method, &url);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().unwrap_or_else(|e| panic!("{url}: {e}"));
        let status = res.status();
        let v: Value = res.json().unwrap_or_else(|e| panic!("{url}: {e}"));
        assert!(status.is_success(), "{path} failed ({status}): {v}");
        v["value"].clone()
    }

    fn post(&self, path: &str, body: Value) -> Value {
        self.cmd(reqwest::Method::POST, path, Some(body))
    }

    fn goto(&self, url: &str) {
        self.post("/url", json!({ "url": url }));
    }

    /// Runs `script` (a function body; `arguments` as usual) in the page.
    fn js(&self, script: &str, args: Value) -> Value {
        self.post("/execute/sync", json!({ "script": script, "args": args }))
    }

    fn find(&self, css: &str) -> String {
        let v = self.post("/element", json!({ "using": "css selector", "value": css }));
        v[ELEMENT_KEY]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_string()
    }

    /// Clears an input and types `text` into it, as a user would.
    fn type_into(&self, css: &str, text: &str) {
        let el = self.find(css);
        self.post(&format!("/element/{el}/clear"), json!({}));
        self.post(&format!("/element/{el}/value"), json!({ "text": text }));
    }

    fn click(&self, css: &str) {
        let el = self.find(css);
        self.post(&format!("/element/{el}/click"), json!({}));
    }

    /// Polls `script` until it returns something truthy; returns that.
    fn wait_for(&self, what: &str, script: &str) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let v = self.js(script, json!([]));
            if !(v.is_null() || v == false || v == "" || v == 0) {
                return v;
            }
            if Instant::now() > deadline {
                let log = self.js("return document.querySelector('#log').innerText", json!([]));
                panic!("timed out waiting for {what}; the page's log:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn set_size(&self, width: u32, height: u32) {
        self.post("/window/rect", json!({ "width": width, "height": height }));
    }

    fn screenshot(&self, path: &Path) {
        let v = self.cmd(reqwest::Method::GET, "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("screenshot is base64"))
            .expect("screenshot decodes");
        assert!(png.starts_with(b"\x89PNG"), "the screenshot is a PNG");
        std::fs::write(path, png).expect("write the screenshot");
    }

    /// Errors in the page's console: Chromium's severe log entries (script
    /// errors, failed loads, policy violations) through its log command;
    /// for Firefox, the page's `console.error` calls and script errors,
    /// which it writes to the driver's output when
    /// `devtools.console.stdout.content` is set. Firefox's own modules log
    /// to the same output (in a sandbox with no network, remote settings
    /// and backups fail at every start); those lines are the browser's, not
    /// the page's, and are told apart by their form: a page's script error
    /// names an `http://` script, and a page's `console.error` arguments
    /// are printed quoted, while the browser's loggers print
    /// `console.error: Module: ...` and name `resource://` scripts.
    fn console_errors(&self) -> Vec<String> {
        match self.engine {
            Engine::Chromium => {
                let v = self.post("/se/log", json!({ "type": "browser" }));
                v.as_array()
                    .into_iter()
                    .flatten()
                    .filter(|e| e["level"] == "SEVERE")
                    .map(|e| e["message"].to_string())
                    .collect()
            }
            Engine::Firefox => std::fs::read_to_string(&self.driver_log)
                .unwrap_or_default()
                .lines()
                .filter(|l| {
                    l.starts_with("console.error: \"")
                        || l.starts_with("JavaScript error: http://")
                        || l.starts_with("JavaScript error: https://")
                })
                .map(str::to_owned)
                .collect(),
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self
            .http
            .delete(format!("{}/session/{}", self.base, self.session))
            .send();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// `target/` of this build, where the screenshots go.
fn target_dir() -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_coop"));
    bin.ancestors()
        .nth(2)
        .expect("the binary lives in target/<profile>/")
        .to_path_buf()
}

#[test]
fn page_in_chromium_hub_race_kitchen() {
    tour(Engine::Chromium);
}

#[test]
fn page_in_firefox_hub_race_kitchen() {
    tour(Engine::Firefox);
}

/// The whole tour in one browser session (the browser starts once).
fn tour(engine: Engine) {
    let Some(browser) = Browser::start(engine) else {
        return;
    };
    let server = Server::start(&["--delay", "200ms"]);
    browser.goto(&server.url("/ui"));

    // The page subscribed to `default,farm.*` over SSE.
    browser.wait_for(
        "the SSE stream to open",
        "return document.querySelector('#sub-status').dataset.state === 'open'",
    );
    assert_eq!(
        browser.js("return document.title", json!([])),
        "coop: the farm"
    );

    // Publish from the page's box; the message comes back through the hub.
    browser.type_into("#pub-message", "hello from the page");
    browser.click("#pub-button");
    browser.wait_for(
        "the page's own message in the log",
        "return [...document.querySelectorAll('#log .text')].some(e => e.textContent === 'hello from the page')",
    );
    let status = browser.wait_for(
        "the publish answer",
        "const t = document.querySelector('#pub-status').textContent; return t.startsWith('published') && t",
    );
    assert!(
        status.as_str().unwrap().ends_with(": 1 subscriber"),
        "the page itself is the one subscriber: {status}"
    );

    // Publish like curl would; the page shows it too.
    let res = http()
        .post(server.url("/?msg=hello%20from%20curl"))
        .send()
        .expect("publish over HTTP");
    assert_eq!(res.text().unwrap(), "ok");
    browser.wait_for(
        "curl's message in the log",
        "return [...document.querySelectorAll('#log .text')].some(e => e.textContent === 'hello from curl')",
    );
    // And a topic that only the pattern `farm.*` matches.
    http()
        .post(server.url("/topics/farm.cow"))
        .body("Moo!")
        .send()
        .expect("publish to farm.cow");
    browser.wait_for(
        "the pattern's message in the log, named by its topic",
        "return [...document.querySelectorAll('#log li')].some(li => \
         li.querySelector('.text').textContent === 'Moo!' && \
         li.querySelector('.meta').textContent.includes(' · farm.cow · '))",
    );
    // The topic table (polled every 2 s) lists the topics published to.
    browser.wait_for(
        "the topics table",
        "const t = document.querySelector('#topics tbody').innerText; return t.includes('default') && t.includes('farm.cow')",
    );

    // A small race run by the server: 5 animals, 300 ms each.
    browser.type_into("#race-n", "5");
    browser.type_into("#race-delay", "300");
    browser.click("#race-button");
    let totals = browser.wait_for(
        "both race totals",
        "const s = document.querySelector('#race-sequential .total').dataset.totalMs; \
         const c = document.querySelector('#race-concurrent .total').dataset.totalMs; \
         return s && c && [Number(s), Number(c)]",
    );
    let (seq, conc) = (totals[0].as_f64().unwrap(), totals[1].as_f64().unwrap());
    // Sequential cannot beat 5 × 300 ms; concurrent is about one delay.
    assert!(seq >= 1500.0, "sequential total {seq} ms < 5 × 300 ms");
    assert!(conc >= 300.0, "concurrent total {conc} ms < one delay");
    assert!(conc < seq, "concurrent {conc} ms, sequential {seq} ms");
    // The shape, whatever the machine's load: in the concurrent lane the
    // page drew, every request started before any had ended (read off the
    // bars' titles, "cow: START–END ms Moo!").
    let spans = browser.js(
        "return [...document.querySelectorAll('#race-concurrent .bar')] \
           .map(b => b.title.match(/: (\\d+)–(\\d+) ms/).slice(1).map(Number))",
        json!([]),
    );
    let spans: Vec<(f64, f64)> = spans
        .as_array()
        .expect("the concurrent race's requests")
        .iter()
        .map(|q| (q[0].as_f64().unwrap(), q[1].as_f64().unwrap()))
        .collect();
    assert_eq!(spans.len(), 5, "{spans:?}");
    let first_end = spans.iter().map(|q| q.1).fold(f64::MAX, f64::min);
    assert!(
        spans.iter().all(|q| q.0 < first_end),
        "not all at once: {spans:?}"
    );
    let bars = browser.js(
        "return document.querySelectorAll('#race-concurrent .bar:not(.failed)').length",
        json!([]),
    );
    assert_eq!(bars, 5, "one bar per animal, none failed");
    let summary = browser.js(
        "return document.querySelector('#race-summary').textContent",
        json!([]),
    );
    assert!(
        summary.as_str().unwrap().contains("faster"),
        "summary: {summary}"
    );

    // The same race from the browser itself: 8 animals, while the page's
    // SSE stream holds one of the browser's six HTTP/1.1 connections to
    // this host. The concurrent run cannot finish in one wave, which is
    // what the page's note on the staircase says.
    browser.click("input[name=where][value=browser]");
    browser.type_into("#race-n", "8");
    browser.click("#race-button");
    let totals = browser.wait_for(
        "both browser race totals",
        "const s = document.querySelector('#race-sequential .total').dataset.totalMs; \
         const c = document.querySelector('#race-concurrent .total').dataset.totalMs; \
         return !document.querySelector('#race-button').disabled && s && c && [Number(s), Number(c)]",
    );
    let (seq, conc) = (totals[0].as_f64().unwrap(), totals[1].as_f64().unwrap());
    assert!(
        seq >= 2400.0,
        "browser sequential total {seq} ms < 8 × 300 ms"
    );
    assert!(
        conc >= 600.0,
        "8 requests over at most 6 connections take two waves, not {conc} ms"
    );
    assert!(
        conc * 2.0 < seq,
        "browser: concurrent {conc} ms, sequential {seq} ms"
    );
    // Faults, retried by coop's client on the server: every attempt is
    // reset, so each bar fails after 2 attempts and is marked so, and the
    // status line says what the client coped with.
    browser.click("input[name=where][value=server]");
    browser.type_into("#race-n", "3");
    browser.type_into("#race-faults", "fault=reset");
    browser.type_into("#race-retries", "1");
    browser.click("#race-button");
    let status = browser.wait_for(
        "the faulty race",
        "return !document.querySelector('#race-button').disabled && \
         document.querySelector('#race-concurrent .total').dataset.totalMs && \
         document.querySelector('#race-status').textContent",
    );
    assert!(
        status.as_str().unwrap().contains("retries 3, resets 6"),
        "status: {status}"
    );
    let retried = browser.js(
        "return document.querySelectorAll('#race-concurrent .bar.failed.retried').length",
        json!([]),
    );
    assert_eq!(retried, 3, "three failed bars marked with their retries");
    browser.type_into("#race-faults", "");
    browser.type_into("#race-retries", "0");

    // Back to the server's race for the screenshot.
    browser.click("input[name=where][value=server]");
    browser.type_into("#race-n", "6");
    browser.click("#race-button");
    browser.wait_for(
        "the server race again",
        "return !document.querySelector('#race-button').disabled && \
         document.querySelector('#race-concurrent .total').dataset.totalMs",
    );

    // The kitchen: the talk's three dinners.
    let kitchen = browser.wait_for(
        "the kitchen totals",
        "return document.querySelectorAll('#kitchen-totals tbody tr').length === 3 && \
         document.querySelector('#kitchen-totals tbody').innerText",
    );
    let kitchen = kitchen.as_str().unwrap();
    for total in ["56:00", "30:30", "30:00"] {
        assert!(
            kitchen.contains(total),
            "kitchen totals lack {total}: {kitchen}"
        );
    }
    browser.wait_for(
        "the kitchen chart to load",
        "const i = document.querySelector('#kitchen-chart'); return i.complete && i.naturalWidth > 0",
    );
    browser.click("input[name=kmode][value=sequential]");
    browser.wait_for(
        "the sequential chart",
        "return document.querySelector('#kitchen-summary').textContent.includes('56:00')",
    );
    browser.click("input[name=kmode][value=concurrent]");
    browser.wait_for(
        "the interleaved chart",
        "const i = document.querySelector('#kitchen-chart'); \
         return i.src.includes('mode=concurrent') && i.complete && i.naturalWidth > 0",
    );

    // Every control has a name a screen reader can say, and the log
    // announces new messages.
    let unnamed = browser.js(
        "return [...document.querySelectorAll('input, button, select, textarea')] \
           .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') \
                        && !e.textContent.trim()) \
           .map(e => e.outerHTML)",
        json!([]),
    );
    assert_eq!(unnamed, json!([]), "controls without a label");
    assert_eq!(
        browser.js(
            "return document.querySelector('#log').getAttribute('aria-live')",
            json!([])
        ),
        "polite"
    );

    // No error anywhere: the page's own hook and the browser's console.
    let errors = browser.js("return window.coopErrors", json!([]));
    assert_eq!(errors, json!([]), "the page recorded errors");
    // A probe first, so that an empty list means "no errors", not "this
    // browser's console is not being read".
    browser.js("console.error('coop console probe')", json!([]));
    let mut console = browser.console_errors();
    let probe = console
        .iter()
        .position(|e| e.contains("coop console probe"));
    assert!(
        probe.is_some(),
        "the console probe was not seen: {console:#?}"
    );
    console.remove(probe.unwrap_or_default());
    assert!(console.is_empty(), "console errors: {console:#?}");

    // Screenshots: the whole page on a desktop, the top on a phone.
    let height = browser
        .js("return document.documentElement.scrollHeight", json!([]))
        .as_u64()
        .unwrap();
    browser.set_size(1280, height.clamp(900, 4000) as u32 + 140);
    browser.js("window.scrollTo(0, 0)", json!([]));
    let name = engine.name();
    browser.screenshot(&target_dir().join(format!("ui-screenshot-{name}.png")));
    // (Firefox makes no window narrower than 500 px, so its "phone" is
    // 500 px wide; Chromium's is 400.)
    browser.set_size(400, 900);
    let overflow = browser.js(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
        json!([]),
    );
    assert_eq!(overflow, 0, "the page scrolls sideways on a phone");
    let height = browser
        .js("return document.documentElement.scrollHeight", json!([]))
        .as_u64()
        .unwrap();
    browser.set_size(400, height.clamp(900, 6000) as u32 + 140);
    browser.screenshot(&target_dir().join(format!("ui-screenshot-{name}-phone.png")));
}

/// `coop serve` on a fixed port with durable history, so that it can be
/// stopped and started again at the same address with the same ids.
fn serve_durable(port: u16, dir: &Path) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_coop"))
        .args(["serve", "--port", &port.to_string(), "--delay", "0s"])
        .arg("--data-dir")
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn coop serve");
    let mut out = std::io::BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).expect("read the first line");
    assert!(line.contains("listening on http://"), "unexpected: {line}");
    // Keep draining so the server never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    child
}

fn stop(mut child: Child) {
    let pid = child.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let _ = child.wait();
}

#[test]
fn page_in_chromium_resumes_its_stream_after_a_restart() {
    resumes_after_a_restart(Engine::Chromium);
}

#[test]
fn page_in_firefox_resumes_its_stream_after_a_restart() {
    resumes_after_a_restart(Engine::Firefox);
}

/// The page's stream resumes after the server restarts: a message published
/// while the page was disconnected arrives once, and none before it twice.
fn resumes_after_a_restart(engine: Engine) {
    let Some(browser) = Browser::start(engine) else {
        return;
    };
    let dir = tempfile::tempdir().expect("data dir");
    let port = {
        let probe = TcpListener::bind("127.0.0.1:0").expect("bind a probe port");
        probe.local_addr().expect("probe address").port()
    };
    let url = |path: &str| format!("http://127.0.0.1:{port}{path}");
    let server = serve_durable(port, dir.path());
    browser.goto(&url("/ui"));
    browser.wait_for(
        "the SSE stream to open",
        "return document.querySelector('#sub-status').dataset.state === 'open'",
    );
    let client = http();
    // Publishes and answers how many subscribers the message reached.
    let publish = |text: &str| -> u64 {
        let res = client
            .post(url("/topics/default"))
            .header("Accept", "application/json")
            .body(text.to_string())
            .send()
            .expect("publish");
        assert_eq!(res.status(), 200, "publish {text}");
        let v: Value = res.json().expect("publish answer");
        v["subscribers"].as_u64().expect("subscribers")
    };
    let count = |text: &str| {
        format!(
            "return [...document.querySelectorAll('#log .text')].filter(e => e.textContent === '{text}').length"
        )
    };
    assert_eq!(publish("before the restart"), 1, "the page is subscribed");
    browser.wait_for("the first message", &count("before the restart"));

    // Restart the server and publish before the page is back (the hub
    // asks browsers to wait a second before reconnecting). If the page
    // beat us to it, the message went out live and proves nothing: restart
    // again.
    let mut server = server;
    let mut missed = None;
    for attempt in 0..3 {
        stop(server);
        browser.wait_for(
            "the page to notice the restart",
            "return document.querySelector('#sub-status').dataset.state === 'reconnecting'",
        );
        server = serve_durable(port, dir.path());
        let text = format!("while the page was away {attempt}");
        if publish(&text) == 0 {
            missed = Some(text);
            break;
        }
        browser.wait_for("the live message", &count(&text));
    }
    let missed = missed.expect("the page reconnected too fast three times in a row");
    browser.wait_for("the missed message, replayed", &count(&missed));
    browser.wait_for(
        "the stream to be open again",
        "return document.querySelector('#sub-status').dataset.state === 'open'",
    );
    assert_eq!(publish("after the restart"), 1);
    browser.wait_for("a live message", &count("after the restart"));
    for text in ["before the restart", missed.as_str(), "after the restart"] {
        assert_eq!(
            browser.js(&count(text), json!([])),
            1,
            "{text:?} must be in the log exactly once"
        );
    }
    let errors = browser.js("return window.coopErrors", json!([]));
    assert_eq!(errors, json!([]), "the page recorded errors");
    stop(server);
}

#[test]
fn page_in_chromium_over_tls_holds_more_than_six_streams() {
    many_streams_over_http2(Engine::Chromium);
}

#[test]
fn page_in_firefox_over_tls_holds_more_than_six_streams() {
    many_streams_over_http2(Engine::Firefox);
}

/// Streams the page opens beside its own: with its own, more than the six
/// connections a browser opens to one host over HTTP/1.1.
const STREAMS: usize = 10;

/// Over TLS the browser speaks HTTP/2 (ALPN) and every `EventSource` of
/// the page shares one connection: ten of them, plus the page's own, all
/// open at once and each receiving the message published to its topic
/// (over HTTP/1.1 the seventh would wait for a free connection).
fn many_streams_over_http2(engine: Engine) {
    let Some(browser) = Browser::start(engine) else {
        return;
    };
    let dir = tempfile::tempdir().expect("a dir for the certificate");
    let id = identity("browser");
    let (cert, key) = write_files(dir.path(), &id);
    let server = serve_tls(&cert, &key, &["--delay", "0s"]);
    let origin = format!("https://127.0.0.1:{}", server.addr.port());
    browser.goto(&format!("{origin}/ui"));
    browser.wait_for(
        "the page's own SSE stream to open",
        "return document.querySelector('#sub-status').dataset.state === 'open'",
    );
    assert_eq!(
        browser.js(
            "return performance.getEntriesByType('navigation')[0].nextHopProtocol",
            json!([])
        ),
        "h2",
        "the page came over HTTP/2"
    );

    browser.js(
        "window.tlsStreams = []; window.tlsGot = []; \
         for (let i = 0; i < arguments[0]; i++) { \
           const es = new EventSource('/topics/tls' + i); \
           window.tlsGot.push([]); \
           es.onmessage = e => window.tlsGot[i].push(e.data); \
           window.tlsStreams.push(es); \
         }",
        json!([STREAMS]),
    );
    browser.wait_for(
        "every stream to be open at once",
        "return window.tlsStreams.every(es => es.readyState === EventSource.OPEN)",
    );
    // The hub agrees: the page's stream and ten more.
    let client = reqwest::blocking::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(id.ca.as_bytes()).unwrap())
        .timeout(WAIT)
        .build()
        .unwrap();
    wait_until(WAIT, "the hub to count every stream", || {
        client
            .get(format!("{origin}/api/topics"))
            .send()
            .and_then(|r| r.json::<Value>())
            .is_ok_and(|v| v["subscribers"] == STREAMS as u64 + 1)
    });

    // Publish to each topic from the page (same-origin, over HTTP/2).
    browser.js(
        "window.tlsPublished = []; \
         window.tlsStreams.forEach((_, i) => \
           fetch('/topics/tls' + i, { method: 'POST', headers: { 'Accept': 'application/json' }, \
                                      body: 'hello ' + i }) \
             .then(r => r.json().then(v => window.tlsPublished.push([i, r.status, v.subscribers]))) \
             .catch(e => window.tlsPublished.push([i, String(e)])));",
        json!([]),
    );
    let published = browser.wait_for(
        "every publish to be answered",
        &format!("return window.tlsPublished.length === {STREAMS} && window.tlsPublished"),
    );
    for answer in published.as_array().unwrap() {
        assert_eq!(answer[1], 200, "publish {answer}");
        assert_eq!(answer[2], 1, "each topic has its one stream: {answer}");
    }
    let got = browser.wait_for(
        "every stream's message",
        "return window.tlsGot.every((got, i) => got.includes('hello ' + i)) && window.tlsGot",
    );
    for (i, got) in got.as_array().unwrap().iter().enumerate() {
        assert_eq!(got, &json!([format!("hello {i}")]), "stream {i}");
    }
    // The publishes went over HTTP/2 too.
    let protocols = browser.js(
        "return performance.getEntriesByType('resource') \
           .filter(e => e.initiatorType === 'fetch' && e.name.includes('/topics/tls')) \
           .map(e => e.nextHopProtocol)",
        json!([]),
    );
    assert_eq!(
        protocols,
        json!(vec!["h2"; STREAMS]),
        "the publishes' protocol"
    );
    let errors = browser.js("return window.coopErrors", json!([]));
    assert_eq!(errors, json!([]), "the page recorded errors");
}

#[test]
fn ui_is_served_from_the_binary_with_a_strict_policy() {
    let server = Server::start(&["--delay", "0s"]);
    let client = http();
    let page = client.get(server.url("/ui")).send().unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    let html = page.text().unwrap();
    assert!(html.contains(r#"<script src="/ui/app.js""#));
    for (path, kind) in [
        ("/ui/app.js", "text/javascript"),
        ("/ui/style.css", "text/css"),
    ] {
        let res = client.get(server.url(path)).send().unwrap();
        assert_eq!(res.status(), 200, "{path}");
        let ct = res.headers()["content-type"].to_str().unwrap().to_string();
        assert!(ct.starts_with(kind), "{path}: {ct}");
    }
    // Nothing outside the page's own files is served under /ui.
    let missing = client.get(server.url("/ui/nope.js")).send().unwrap();
    assert_eq!(missing.status(), 404);
}

#[test]
fn kitchen_endpoint_answers_the_talks_totals_and_refuses_bad_modes() {
    let server = Server::start(&["--delay", "0s"]);
    let client = http();
    let total = |mode: &str| -> u64 {
        let v: Value = client
            .get(server.url(&format!("/api/kitchen?mode={mode}&format=json")))
            .send()
            .unwrap()
            .json()
            .unwrap();
        v["total_ms"].as_u64().unwrap()
    };
    assert_eq!(total("sequential"), 56 * 60_000);
    assert_eq!(total("concurrent"), 30 * 60_000 + 30_000);
    assert_eq!(total("cooks2"), 30 * 60_000);

    let svg = client
        .get(server.url("/api/kitchen?mode=cooks2&format=svg"))
        .send()
        .unwrap();
    assert_eq!(
        svg.headers()["content-type"],
        "image/svg+xml; charset=utf-8"
    );
    assert!(svg.text().unwrap().contains("<svg"));

    for bad in ["mode=fast", "format=png"] {
        let res = client
            .get(server.url(&format!("/api/kitchen?{bad}")))
            .send()
            .unwrap();
        assert_eq!(res.status(), 400, "{bad}");
        let body = res.text().unwrap();
        assert!(body.starts_with("unknown"), "{bad}: {body}");
    }
}

#[test]
fn race_endpoint_times_real_requests_and_refuses_bad_input() {
    let server = Server::start(&["--delay", "5s"]);
    let client = http();
    let race = |q: &str| -> Value {
        let res = client
            .get(server.url(&format!("/api/race?{q}")))
            .send()
            .unwrap();
        assert_eq!(res.status(), 200, "{q}");
        res.json().unwrap()
    };
    // The race's own delay (200 ms) replaces the server's 5 s.
    let seq = race("mode=sequential&n=3&delay_ms=200");
    let conc = race("mode=concurrent&n=3&delay_ms=200");
    let reqs = seq["requests"].as_array().unwrap();
    let names: Vec<_> = reqs.iter().map(|r| r["animal"].as_str().unwrap()).collect();
    assert_eq!(names, ["cow", "pig", "sheep"]);
    assert_eq!(reqs[0]["sound"], "Moo!");
    // One after the other: each starts after the one before has ended.
    for w in reqs.windows(2) {
        assert!(w[1]["start_ms"].as_f64() >= w[0]["end_ms"].as_f64());
    }
    assert!(seq["total_ms"].as_f64().unwrap() >= 600.0);
    // All at once: every request starts before any has ended.
    let creqs = conc["requests"].as_array().unwrap();
    let first_end = creqs
        .iter()
        .map(|r| r["end_ms"].as_f64().unwrap())
        .fold(f64::MAX, f64::min);
    for r in creqs {
        assert!(r["start_ms"].as_f64().unwrap() < first_end, "{r}");
    }
    let (c, s) = (
        conc["total_ms"].as_f64().unwrap(),
        seq["total_ms"].as_f64().unwrap(),
    );
    // (The overlap above is what says "concurrent"; the totals only
    // agree with it, far from any boundary: 600 ms at least against one
    // 200 ms delay.)
    assert!(c >= 200.0 && c < s, "concurrent {c} ms, sequential {s} ms");

    // Faults with retries: every attempt is reset, each animal is tried
    // three times, and the report says so.
    let faulty = race("mode=concurrent&n=4&delay_ms=0&faults=fault%3Dreset&retries=2");
    for r in faulty["requests"].as_array().unwrap() {
        assert_eq!(r["attempts"], 3, "{r}");
        assert_eq!(r["mishaps"]["resets"], 3, "{r}");
        assert_eq!(r["mishaps"]["retries"], 2, "{r}");
        assert!(
            r["error"].as_str().unwrap().starts_with("connection reset"),
            "{r}"
        );
    }
    // Without retries, a black hole is a timeout in the timeline.
    let stalled = race("mode=concurrent&n=2&delay_ms=0&faults=fault%3Dblackhole&timeout_ms=300");
    for r in stalled["requests"].as_array().unwrap() {
        assert_eq!(r["mishaps"]["timeouts"], 1, "{r}");
        assert!(r["error"].as_str().unwrap().contains("timed out"), "{r}");
    }

    for bad in [
        "n=0",
        "n=51",
        "n=two",
        "delay_ms=5001",
        "mode=parallel",
        "mode=sequential&n=50&delay_ms=5000",
        "faults=fault%3Dboom",
        "retries=6",
        "timeout_ms=5",
    ] {
        let res = client
            .get(server.url(&format!("/api/race?{bad}")))
            .send()
            .unwrap();
        assert_eq!(res.status(), 400, "{bad}");
        assert!(!res.text().unwrap().trim().is_empty(), "{bad}: a reason");
    }
}
