//! The guide's shown output: every program whose listing the guide
//! (`docs/src/`) shows is run here, and what it prints must equal the file
//! the guide shows under the listing (`docs/src/output/NAME.txt`). Nobody
//! writes those files by hand: when a program's output changes on purpose,
//!
//! ```sh
//! COOP_BLESS=1 cargo test -p coop --test cli guide
//! ```
//!
//! rewrites them from the programs' real output, and the diff is reviewed
//! like any other change.
//!
//! Three things vary from run to run, and are normalised, never ignored:
//!
//! - **Measured times.** A line `elapsed: X s...` matches the shown
//!   `elapsed: Y s...` when the rest of the line is equal and `Y <= X <
//!   1.3 Y + 0.5` (a sleep never ends early; a loaded machine only makes
//!   things later, but not so much later that 9 s could pass for 6). Programs run sped up (`--speed`, `COOP_SPEED`), and print times
//!   in the talk's seconds, so the figures are those of a run at full speed.
//!   Blessing writes the measured figure rounded down to a whole second.
//! - **Threads printing at the same moment.** In a few sections two threads
//!   (tokio's workers, or the blocking pool) print at once; there the lines
//!   are compared as a multiset: the same lines, the same number of times,
//!   in any order. Headers, results and every other section stay exact.
//! - **Ports and one known race**: servers listen on port 0 here and the
//!   guide shows 8080; `gettoknow_poll_task` may print a fourth `waiting`
//!   line when its two 3-second timers fire in the other order (the example
//!   says why).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::support::{announced_addr, coop, coop_clean_env, example, Server};

/// A program the guide shows, how to run it, and how to compare.
struct Listing {
    /// `docs/src/output/{name}.txt`.
    name: &'static str,
    /// Headers (line prefixes) of the sections whose lines may come in any
    /// order; a section ends at the next line starting with `-- `.
    unordered: &'static [&'static str],
    run: fn() -> String,
}

const LISTINGS: &[Listing] = &[
    Listing {
        name: "byhand-step1",
        unordered: &[],
        run: || byhand_step("1"),
    },
    Listing {
        name: "byhand-step2",
        unordered: &[],
        run: || byhand_step("2"),
    },
    Listing {
        name: "byhand-step3",
        unordered: &[],
        run: || byhand_step("3"),
    },
    Listing {
        name: "byhand-step4",
        unordered: &[],
        run: || byhand_step("4"),
    },
    Listing {
        name: "byhand_executor",
        unordered: &[],
        // Slow speed: 10,000 spawns take real time in a debug build, and the
        // printed figure multiplies that by the speed.
        run: || run_example("byhand_executor", "2"),
    },
    Listing {
        name: "gettoknow_run_until_complete",
        unordered: &[],
        run: || run_example("gettoknow_run_until_complete", "50"),
    },
    Listing {
        name: "gettoknow_gather",
        // The JoinSet's tasks run on tokio's worker threads, side by side.
        unordered: &["-- JoinSet"],
        run: || run_example("gettoknow_gather", "50"),
    },
    Listing {
        name: "gettoknow_run_forever",
        unordered: &[],
        run: || run_example("gettoknow_run_forever", "50"),
    },
    Listing {
        name: "gettoknow_poll_task",
        unordered: &[],
        run: || without_the_fourth_check(&run_example("gettoknow_poll_task", "20")),
    },
    Listing {
        name: "gettoknow_errors",
        unordered: &[],
        run: || run_example("gettoknow_errors", "50"),
    },
    Listing {
        name: "gettoknow_blocking",
        // blocking_square prints from the blocking pool's thread while the
        // runtime's thread prints the other squares.
        unordered: &["-- blocking call on the blocking pool"],
        run: || run_example("gettoknow_blocking", "20"),
    },
    Listing {
        name: "gettoknow_stream",
        unordered: &[],
        run: || run_example("gettoknow_stream", "50"),
    },
    Listing {
        name: "gettoknow_cleanup",
        unordered: &[],
        run: || run_example("gettoknow_cleanup", "50"),
    },
    Listing {
        name: "kitchen_dinner",
        unordered: &[],
        run: || stdout_of(&mut example("kitchen_dinner")),
    },
    Listing {
        name: "coop-kitchen",
        unordered: &[],
        run: || stdout_of(coop().arg("kitchen")),
    },
    Listing {
        name: "animals_sequential",
        unordered: &[],
        run: || {
            against_a_farm(|url| {
                let mut cmd = example("animals_sequential");
                cmd.arg(url);
                cmd
            })
        },
    },
    Listing {
        name: "animals_concurrent",
        unordered: &[],
        run: || {
            against_a_farm(|url| {
                let mut cmd = example("animals_concurrent");
                cmd.arg(url);
                cmd
            })
        },
    },
    Listing {
        name: "coop-serve-print-config",
        unordered: &[],
        // From the repository's root, so the file's name reads as in the
        // guide; no COOP_* variable of the test's environment.
        run: || {
            let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
            stdout_of(coop_clean_env().current_dir(root).args([
                "serve",
                "--config",
                "deploy/coop.toml",
                "--print-config",
            ]))
        },
    },
    Listing {
        name: "coop-speak",
        unordered: &[],
        run: || {
            against_a_farm(|url| {
                let mut cmd = coop();
                cmd.args(["speak", "--url", url, "cow", "pig", "chicken"]);
                cmd
            })
        },
    },
    Listing {
        name: "webservice_animals",
        unordered: &[],
        run: || first_line_of_server(example("webservice_animals").args(["0", "5"])),
    },
    Listing {
        name: "pubsub",
        unordered: &[],
        run: || first_line_of_server(example("pubsub").arg("0")),
    },
];

fn stdout_of(cmd: &mut Command) -> String {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("run the program");
    let stdout = String::from_utf8(stdout).expect("utf-8 stdout");
    assert!(
        status.success(),
        "{cmd:?} failed with {status}\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&stderr)
    );
    stdout
}

fn byhand_step(step: &str) -> String {
    stdout_of(coop().args(["byhand", "--step", step, "--speed", "20"]))
}

fn run_example(name: &str, speed: &str) -> String {
    stdout_of(example(name).env("COOP_SPEED", speed))
}

/// Runs a client against a fresh farm with a short delay; `cmd` builds the
/// command from the farm's `/animals` URL.
fn against_a_farm(cmd: fn(&str) -> Command) -> String {
    let server = Server::start(&["--delay", "100ms"]);
    stdout_of(&mut cmd(&server.url("/animals")))
}

/// A server's first line (`listening on http://ADDR`), with the port the
/// guide's command line asks for.
fn first_line_of_server(cmd: &mut Command) -> String {
    let mut child = cmd.stdout(Stdio::piped()).spawn().expect("start server");
    let addr = announced_addr(&mut child);
    let _ = child.kill();
    let _ = child.wait();
    assert!(addr.ip().is_loopback(), "{addr}");
    format!("listening on http://{}:8080\n", addr.ip())
}

/// `gettoknow_poll_task` without the fourth `waiting` line that the 3 s
/// timer race may add (see the example's comment): three checks are shown.
fn without_the_fourth_check(out: &str) -> String {
    let waiting = "waiting for square(4)...";
    let mut lines: Vec<&str> = out.lines().collect();
    if lines.iter().filter(|l| **l == waiting).count() == 4 {
        let fourth = lines
            .iter()
            .rposition(|l| *l == waiting)
            .expect("counted four");
        if lines.get(fourth + 1) == Some(&"Finishing square with argument 4!") {
            lines.remove(fourth);
        }
    }
    lines.iter().map(|l| format!("{l}\n")).collect()
}

fn output_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/src/output")
}

fn blessing() -> bool {
    std::env::var_os("COOP_BLESS").is_some_and(|v| v == "1")
}

/// `elapsed: X s...` as (X, the rest of the line).
fn elapsed(line: &str) -> Option<(f64, &str)> {
    let rest = line.strip_prefix("elapsed: ")?;
    let (number, tail) = rest.split_once(' ')?;
    Some((number.parse().ok()?, tail))
}

/// Compares a program's output with what the guide shows; `Err` says where
/// they part.
fn compare(shown: &str, actual: &str, unordered: &[&str]) -> Result<(), String> {
    let shown: Vec<&str> = shown.lines().collect();
    let mut actual: Vec<String> = actual.lines().map(str::to_owned).collect();
    if shown.len() != actual.len() {
        return Err(format!(
            "the guide shows {} lines, the program printed {}",
            shown.len(),
            actual.len()
        ));
    }
    // Measured times: within bounds, then taken as shown.
    for (i, line) in actual.iter_mut().enumerate() {
        if let (Some((want, want_tail)), Some((got, got_tail))) = (elapsed(shown[i]), elapsed(line))
        {
            if want_tail == got_tail {
                let most = 1.3 * want + 0.5;
                if !(want <= got + 1e-9 && got < most) {
                    return Err(format!(
                        "line {}: measured {got} s, the guide shows {want} s (allowed: {want} to {most:.2})",
                        i + 1,
                    ));
                }
                *line = shown[i].to_owned();
            }
        }
    }
    let mut i = 0;
    while i < shown.len() {
        if unordered.iter().any(|h| shown[i].starts_with(h)) && actual[i] == shown[i] {
            let end = (i + 1..shown.len())
                .find(|&j| shown[j].starts_with("-- "))
                .unwrap_or(shown.len());
            let bag = |lines: Vec<&str>| {
                let mut bag = BTreeMap::new();
                for l in lines {
                    *bag.entry(l.to_owned()).or_insert(0) += 1;
                }
                bag
            };
            let want = bag(shown[i + 1..end].to_vec());
            let got = bag(actual[i + 1..end].iter().map(String::as_str).collect());
            if want != got {
                return Err(format!(
                    "the section {:?} (any order) differs:\nshown:  {want:?}\nprinted: {got:?}",
                    shown[i]
                ));
            }
            i = end;
            continue;
        }
        if shown[i] != actual[i] {
            return Err(format!(
                "line {} differs:\nshown:   {:?}\nprinted: {:?}",
                i + 1,
                shown[i],
                actual[i]
            ));
        }
        i += 1;
    }
    Ok(())
}

/// What blessing writes: the output with measured times rounded down to a
/// whole second.
fn blessed(actual: &str) -> String {
    actual
        .lines()
        .map(|line| match elapsed(line) {
            Some((x, tail)) => format!("elapsed: {:.1} {tail}\n", x.floor()),
            None => format!("{line}\n"),
        })
        .collect()
}

/// Every listing's program prints what the guide shows under it.
#[test]
fn guide_every_listing_prints_what_the_guide_shows() {
    let dir = output_dir();
    let results: Vec<(&Listing, String)> = std::thread::scope(|scope| {
        let handles: Vec<_> = LISTINGS
            .iter()
            .map(|listing| (listing, scope.spawn(|| (listing.run)())))
            .collect();
        handles
            .into_iter()
            .map(|(listing, h)| {
                let out = h
                    .join()
                    .unwrap_or_else(|_| panic!("running {} failed", listing.name));
                (listing, out)
            })
            .collect()
    });
    let mut failures = Vec::new();
    for (listing, actual) in results {
        let path = dir.join(format!("{}.txt", listing.name));
        if blessing() {
            std::fs::write(&path, blessed(&actual))
                .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
            eprintln!("blessed {}", path.display());
            continue;
        }
        let shown = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}\nCreate it from the program's output: COOP_BLESS=1 cargo test -p coop --test cli guide",
                path.display()
            )
        });
        if let Err(why) = compare(&shown, &actual, listing.unordered) {
            failures.push(format!(
                "docs/src/output/{}.txt is not what the program prints: {why}\n--- shown\n{shown}--- printed\n{actual}",
                listing.name
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{}\n\nIf the output changed on purpose, regenerate the files with\n  \
         COOP_BLESS=1 cargo test -p coop --test cli guide\nand review their diff.",
        failures.join("\n\n")
    );
}

/// Every file in `docs/src/output/` is checked above and shown in a chapter,
/// and the four steps of `coop byhand` are in the byhand chapter.
#[test]
fn guide_every_shown_output_is_checked_and_included() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/src");
    let chapters: String = std::fs::read_dir(&src)
        .expect("docs/src")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "md"))
        .map(|e| std::fs::read_to_string(e.path()).expect("read a chapter"))
        .collect();
    let mut files: Vec<String> = std::fs::read_dir(output_dir())
        .expect("docs/src/output")
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            Some(name.strip_suffix(".txt")?.to_owned())
        })
        .collect();
    files.sort();
    let mut checked: Vec<String> = LISTINGS.iter().map(|l| l.name.to_owned()).collect();
    checked.sort();
    assert_eq!(
        files, checked,
        "docs/src/output/ and the LISTINGS in crates/coop/tests/cli/guide.rs must name the same programs"
    );
    for name in &files {
        assert!(
            chapters.contains(&format!("{{{{#include output/{name}.txt}}}}")),
            "no chapter shows output/{name}.txt"
        );
    }
    let byhand = std::fs::read_to_string(src.join("byhand.md")).expect("byhand.md");
    for step in 1..=4 {
        assert!(
            byhand.contains(&format!("{{{{#include output/byhand-step{step}.txt}}}}")),
            "byhand.md does not show step {step}'s transcript"
        );
    }
}

#[test]
fn guide_comparison_allows_late_timings_and_nothing_else() {
    let shown = "== x ==\nelapsed: 6.0 s (one after the other: 9 s)\n";
    assert!(compare(
        shown,
        "== x ==\nelapsed: 6.3 s (one after the other: 9 s)\n",
        &[]
    )
    .is_ok());
    // Early, or far too late, or another line: all refused.
    assert!(compare(
        shown,
        "== x ==\nelapsed: 5.9 s (one after the other: 9 s)\n",
        &[]
    )
    .is_err());
    for late in ["8.4", "9.0"] {
        let printed = format!("== x ==\nelapsed: {late} s (one after the other: 9 s)\n");
        assert!(compare(shown, &printed, &[]).is_err(), "{late}");
    }
    assert!(compare(
        shown,
        "== y ==\nelapsed: 6.0 s (one after the other: 9 s)\n",
        &[]
    )
    .is_err());
    assert!(compare(shown, "== x ==\n", &[]).is_err());
    // Unordered sections: same lines in any order, but the same lines.
    let shown = "-- a --\n1\n2\n-- b --\n3\n";
    assert!(compare(shown, "-- a --\n2\n1\n-- b --\n3\n", &["-- a"]).is_ok());
    assert!(compare(shown, "-- a --\n2\n2\n-- b --\n3\n", &["-- a"]).is_err());
    assert!(compare(shown, "-- a --\n2\n1\n-- b --\n3\n", &[]).is_err());
    assert_eq!(
        blessed("elapsed: 6.37 s (x)\nok\n"),
        "elapsed: 6.0 s (x)\nok\n"
    );
}

/// `docs/build` refuses a listing whose file or anchor is missing (mdbook
/// alone would log it and exit 0). Run on a copy of the script beside a
/// one-chapter book, so the check is exercised without building the guide.
#[test]
fn guide_build_fails_on_a_missing_include_or_anchor() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/build");
    for (include, complaint) in [
        (
            "{{#include nowhere.rs}}",
            "includes nowhere.rs, which does not exist",
        ),
        (
            "{{#include listing.rs:nope}}",
            "the file has no ANCHOR: nope",
        ),
    ] {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::copy(&script, dir.path().join("build")).expect("copy docs/build");
        std::fs::create_dir(dir.path().join("src")).expect("src dir");
        std::fs::write(
            dir.path().join("src/listing.rs"),
            "// ANCHOR: here\nfn main() {}\n// ANCHOR_END: here\n",
        )
        .expect("write a listing");
        std::fs::write(
            dir.path().join("src/chapter.md"),
            format!("# A chapter\n\n{{{{#include listing.rs:here}}}}\n\n{include}\n"),
        )
        .expect("write a chapter");
        let out = Command::new("bash")
            .arg(dir.path().join("build"))
            .output()
            .expect("run docs/build");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{include}: docs/build passed");
        assert!(stderr.contains(complaint), "{include}: {stderr}");
    }
}

/// The Python transcripts beside `coop byhand` (`docs/src/talk/`) are what
/// Python prints: `docs/talk/byhand.py` runs the talk's four steps in a real
/// interpreter, sped up like `coop byhand --speed`. Skipped, saying so, on
/// a machine without `python3`.
#[test]
fn guide_python_transcripts_are_what_python_prints() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = tempfile::tempdir().expect("temp dir");
    let ran = Command::new("python3")
        .arg(root.join("docs/talk/byhand.py"))
        .arg(out.path())
        .env("TALK_SPEED", "20")
        .output();
    let ran = match ran {
        Ok(ran) => ran,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!(
                "SKIPPED: python3 is not installed, so the talk's transcripts cannot be rerun"
            );
            return;
        }
        Err(e) => panic!("run python3: {e}"),
    };
    assert!(
        ran.status.success(),
        "docs/talk/byhand.py failed: {}",
        String::from_utf8_lossy(&ran.stderr)
    );
    for step in 1..=4 {
        let name = format!("byhand-step{step}.txt");
        let actual = std::fs::read_to_string(out.path().join(&name)).expect("a transcript");
        let path = root.join("docs/src/talk").join(&name);
        if blessing() {
            std::fs::write(&path, blessed(&actual)).expect("write a transcript");
            continue;
        }
        let shown = std::fs::read_to_string(&path).expect("docs/src/talk transcript");
        if let Err(why) = compare(&shown, &actual, &[]) {
            panic!(
                "docs/src/talk/{name} is not what Python prints: {why}\n--- shown\n{shown}--- printed\n{actual}\n\
                 Regenerate with: COOP_BLESS=1 cargo test -p coop --test cli guide"
            );
        }
    }
}
