//! End-to-end tests: `coop byhand` through the real binary (the talk's exact
//! lines, and 6 time units instead of 9 when the futures run together), and
//! the output of every `gettoknow_*` example.
//!
//! Everything runs sped up (`--speed` / `COOP_SPEED`), so the talk's seconds
//! take milliseconds. Elapsed times are printed in talk seconds; the bounds
//! below are generous on the slow side (a loaded machine only makes things
//! later) and strict on the fast side (a sleep never ends early).

use std::collections::BTreeMap;
use std::process::{Command, Output};

use crate::support::{coop, example};

/// Runs `cmd`, asserts success, returns stdout's lines.
fn lines_of(cmd: &mut Command) -> Vec<String> {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("run command");
    let stdout = String::from_utf8(stdout).expect("utf-8 stdout");
    assert!(
        status.success(),
        "{cmd:?} failed with {status}\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&stderr)
    );
    stdout.lines().map(str::to_owned).collect()
}

fn byhand(args: &[&str]) -> Vec<String> {
    lines_of(coop().arg("byhand").args(args))
}

fn run_example(name: &str, speed: &str) -> Vec<String> {
    lines_of(example(name).env("COOP_SPEED", speed))
}

/// Lines as a multiset, for output whose order the scheduler may vary.
fn bag<S: AsRef<str>>(lines: &[S]) -> BTreeMap<String, usize> {
    let mut bag = BTreeMap::new();
    for line in lines {
        *bag.entry(line.as_ref().to_owned()).or_insert(0) += 1;
    }
    bag
}

/// Splits `lines` at every line starting with `prefix`; the first element is
/// what came before the first such line.
fn sections<'a>(lines: &'a [String], prefix: &str) -> Vec<&'a [String]> {
    let mut cuts: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.starts_with(prefix))
        .map(|(i, _)| i)
        .collect();
    cuts.insert(0, 0);
    cuts.push(lines.len());
    cuts.windows(2).map(|w| &lines[w[0]..w[1]]).collect()
}

/// Removes the `elapsed: X s...` line and returns X.
fn take_elapsed(lines: &mut Vec<String>) -> f64 {
    let at = lines
        .iter()
        .position(|l| l.starts_with("elapsed: "))
        .unwrap_or_else(|| panic!("no elapsed line in {lines:#?}"));
    let line = lines.remove(at);
    line["elapsed: ".len()..]
        .split(' ')
        .next()
        .and_then(|x| x.parse().ok())
        .unwrap_or_else(|| panic!("unreadable elapsed line {line:?}"))
}

fn assert_between(what: &str, value: f64, low: f64, high: f64) {
    assert!(
        (low..high).contains(&value),
        "{what}: {value} not in [{low}, {high})"
    );
}

const CUBE_2_THEN_SQUARE_3: [&str; 6] = [
    "Starting cube with argument 2!",
    "Starting square with argument 2!",
    "Finishing square with argument 2!",
    "Finishing cube with argument 2!",
    "Starting square with argument 3!",
    "Finishing square with argument 3!",
];

#[test]
fn step1_plain_functions_run_one_after_the_other_in_9_seconds() {
    let mut lines = byhand(&["--step", "1", "--speed", "20"]);
    let elapsed = take_elapsed(&mut lines);
    assert_eq!(
        lines,
        [
            "== Step 1: plain functions with a blocking sleep ==",
            CUBE_2_THEN_SQUARE_3[0],
            CUBE_2_THEN_SQUARE_3[1],
            CUBE_2_THEN_SQUARE_3[2],
            CUBE_2_THEN_SQUARE_3[3],
            "cube(2) = 8",
            CUBE_2_THEN_SQUARE_3[4],
            CUBE_2_THEN_SQUARE_3[5],
            "square(3) = 9",
        ]
    );
    assert_between("step 1 elapsed", elapsed, 9.0, 15.0);
}

#[test]
fn step2_async_functions_that_block_gain_nothing() {
    let mut lines = byhand(&["--step", "2", "--speed", "20"]);
    let elapsed = take_elapsed(&mut lines);
    // Spawned together, yet strictly one after the other.
    assert_eq!(
        lines[..2],
        [
            "== Step 2: async functions that still block ==",
            "cube(2) and square(3) spawned together on the byhand executor:"
        ]
    );
    assert_eq!(lines[2..8], CUBE_2_THEN_SQUARE_3);
    assert_eq!(lines[8], "cube(2) = 8, square(3) = 9");
    assert!(lines[9].starts_with("Nothing was gained."), "{lines:#?}");
    assert_between("step 2 elapsed", elapsed, 9.0, 15.0);
}

#[test]
fn step3_polls_by_hand_and_shows_each_request_and_result() {
    let mut lines = byhand(&["--step", "3", "--speed", "20"]);
    let elapsed = take_elapsed(&mut lines);
    let request = "  -> Pending: \"Please do not continue until 3 seconds have elapsed.\"";
    assert_eq!(
        lines[3..],
        [
            "poll cube(2):",
            "Starting cube with argument 2!",
            request,
            "poll square(3):",
            "Starting square with argument 3!",
            request,
            "(we wait 3 s, as cube(2) and square(3) asked)",
            "poll cube(2):",
            "Starting square with argument 2!",
            request,
            "poll square(3):",
            "Finishing square with argument 3!",
            "  -> Ready(9)",
            "(we wait 3 s, as cube(2) asked)",
            "poll cube(2):",
            "Finishing square with argument 2!",
            "Finishing cube with argument 2!",
            "  -> Ready(8)",
            "Two futures, one thread, 6 s: while one waited we ran the other.",
            "Keeping track of who asked to wait how long is exactly an executor's job.",
        ]
    );
    assert_eq!(
        lines[0],
        "== Step 3: a hand-written sleep future, polled by hand =="
    );
    // We honoured both requests, but overlapped them.
    assert_between("step 3 elapsed", elapsed, 6.0, 8.5);
}

#[test]
fn step4_runs_together_in_6_seconds_on_byhand_and_on_tokio() {
    let lines = byhand(&["--step", "4", "--speed", "20"]);
    assert_eq!(
        lines[0],
        "== Step 4: the same async functions on a real scheduler =="
    );
    let runs = sections(&lines, "On ");
    assert_eq!(runs.len(), 3, "{lines:#?}");
    assert_eq!(
        runs[1][0],
        "On the byhand executor (crates/byhand, std only), spawned together:"
    );
    assert_eq!(runs[2][0], "On tokio, spawned together:");
    for run in &runs[1..] {
        let header = &run[0];
        let mut run = run[1..].to_vec();
        let elapsed = take_elapsed(&mut run);
        assert_eq!(run.len(), 7, "{run:#?}");
        // Both start at once; cube(2) finishes last; at the 3 s mark the
        // scheduler may resume either first, so the middle is a set.
        assert_eq!(
            run[..2],
            [
                "Starting cube with argument 2!",
                "Starting square with argument 3!"
            ]
        );
        assert_eq!(bag(&run[..6]), bag(&CUBE_2_THEN_SQUARE_3));
        assert_eq!(run[5], "Finishing cube with argument 2!");
        assert_eq!(run[6], "cube(2) = 8, square(3) = 9");
        // 6 talk seconds, not 9: the sleeps overlapped.
        assert_between(header, elapsed, 6.0, 8.5);
    }
}

#[test]
fn all_four_steps_run_by_default() {
    let lines = byhand(&["--speed", "200"]);
    let headers: Vec<_> = lines.iter().filter(|l| l.starts_with("== Step")).collect();
    assert_eq!(headers.len(), 4, "{headers:#?}");
    for (i, header) in headers.iter().enumerate() {
        assert!(
            header.starts_with(&format!("== Step {}:", i + 1)),
            "{header}"
        );
    }
}

#[test]
fn bad_flags_are_refused_with_a_reason() {
    let range = "--speed must be between 0.01 and 1000000";
    for (args, needle) in [
        (&["--speed", "0"][..], range),
        (&["--speed=-3"][..], range),
        (&["--speed", "NaN"][..], range),
        (&["--speed", "inf"][..], range),
        (&["--speed", "1e-300"][..], range),
        (&["--speed", "1e9"][..], range),
        (&["--speed", "fast"][..], "--speed"),
        (&["--step", "5"][..], "--step"),
        (&["--step", "0"][..], "--step"),
    ] {
        let out = coop().arg("byhand").args(args).output().expect("run coop");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?} printed to stdout");
    }
}

// ---------------------------------------------------------------------------
// The gettoknow_* examples.

fn starting_and_finishing(kind: &str, xs: &[u64]) -> Vec<String> {
    xs.iter()
        .flat_map(|x| {
            [
                format!("Starting {kind} with argument {x}!"),
                format!("Finishing {kind} with argument {x}!"),
            ]
        })
        .collect()
}

#[test]
fn example_gather_returns_results_in_argument_order() {
    let lines = run_example("gettoknow_gather", "50");
    let parts = sections(&lines, "-- ");
    assert_eq!(parts.len(), 3, "{lines:#?}");
    let mut cube_lines = starting_and_finishing("cube", &[3, 4, 5]);
    cube_lines.extend(starting_and_finishing("square", &[3, 4, 5]));

    let join_all = parts[1];
    assert_eq!(join_all[0], "-- join_all: results in argument order --");
    // join_all polls in order, so the three cubes start in order.
    assert_eq!(
        join_all[1..4],
        [
            "Starting cube with argument 3!",
            "Starting cube with argument 4!",
            "Starting cube with argument 5!"
        ]
    );
    assert_eq!(bag(&join_all[1..13]), bag(&cube_lines));
    assert_eq!(join_all[13], "results: [27, 64, 125]");
    assert_eq!(join_all.len(), 14);

    let join_set = parts[2];
    assert_eq!(
        join_set[0],
        "-- JoinSet: results in the order the tasks finish --"
    );
    cube_lines.extend(["cube(3) = 27", "cube(4) = 64", "cube(5) = 125"].map(String::from));
    assert_eq!(bag(&join_set[1..]), bag(&cube_lines));
}

#[test]
fn example_run_until_complete_prints_the_results() {
    let lines = run_example("gettoknow_run_until_complete", "50");
    assert_eq!(
        lines,
        [
            "cube(5) is a future; nothing has run yet",
            "Starting cube with argument 5!",
            "Starting square with argument 5!",
            "Finishing square with argument 5!",
            "Finishing cube with argument 5!",
            "result: 125",
            "Starting square with argument 6!",
            "Finishing square with argument 6!",
            "result: 36",
        ]
    );
}

#[test]
fn example_run_forever_stops_after_the_countdown() {
    let lines = run_example("gettoknow_run_forever", "50");
    assert_eq!(
        lines,
        [
            "running until a task stops us",
            "Shutdown in 3...",
            "Shutdown in 2...",
            "Shutdown in 1...",
            "stopped by the countdown task",
        ]
    );
}

#[test]
fn example_poll_task_waits_until_the_task_is_done() {
    let lines = run_example("gettoknow_poll_task", "20");
    let waiting = "waiting for square(4)...";
    // Checks at 0, 1, 2 s and maybe 3 s, depending on which 3 s timer fires
    // first: the task's or the poller's.
    let polls = lines.iter().filter(|l| *l == waiting).count();
    assert!((3..=4).contains(&polls), "{lines:#?}");
    assert_eq!(
        lines[0], waiting,
        "the task has not started at the first check"
    );
    let rest: Vec<_> = lines.iter().filter(|l| *l != waiting).collect();
    assert_eq!(
        rest,
        [
            "Starting square with argument 4!",
            "Finishing square with argument 4!",
            "square(4) = 16",
        ]
    );
}

#[test]
fn example_errors_are_values_and_square_7_fails() {
    let lines = run_example("gettoknow_errors", "50");
    let parts = sections(&lines, "-- ");
    assert_eq!(parts.len(), 3, "{lines:#?}");

    let gather = parts[1];
    assert_eq!(gather[0], "-- join_all: every result, errors included --");
    let starting: Vec<String> = (0..10)
        .map(|x| format!("Starting square with argument {x}!"))
        .collect();
    assert_eq!(gather[1..11], starting);
    let finishing: Vec<String> = (0..10)
        .filter(|x| *x != 7)
        .map(|x| format!("Finishing square with argument {x}!"))
        .collect();
    assert_eq!(bag(&gather[11..20]), bag(&finishing));
    let results: Vec<String> = (0..10u64)
        .map(|x| match x {
            7 => "square(7) failed: Can't square 7 - I'm not very good at this :(".to_owned(),
            x => format!("square({x}) = {}", x * x),
        })
        .collect();
    assert_eq!(gather[20..], results);

    let first_error = parts[2];
    assert_eq!(
        first_error[0],
        "-- try_join_all: the first error, the rest cancelled --"
    );
    // 8 and 9 never start: the first error drops every other future.
    assert_eq!(first_error[1..9], starting[..8]);
    assert_eq!(
        first_error[9..],
        ["gave up: Can't square 7 - I'm not very good at this :("]
    );
}

#[test]
fn example_blocking_pool_keeps_async_tasks_running() {
    let lines = run_example("gettoknow_blocking", "20");
    let parts = sections(&lines, "-- ");
    assert_eq!(parts.len(), 3, "{lines:#?}");
    let mut expected = starting_and_finishing("square", &[0, 1, 2, 3, 4, 5, 6, 8, 9]);
    expected.extend(starting_and_finishing("blocking square", &[7]));
    expected.push("results: [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]".to_owned());
    let mut elapsed = Vec::new();
    for part in &parts[1..] {
        let mut part = part[1..].to_vec();
        elapsed.push(take_elapsed(&mut part));
        assert_eq!(bag(&part), bag(&expected));
    }
    // Blocking the runtime's thread stalls every task for 3 s; on the
    // blocking pool the squares and blocking_square overlap.
    assert_between("blocking inside async", elapsed[0], 6.0, 8.5);
    assert_between("spawn_blocking", elapsed[1], 3.0, 5.0);
}

#[test]
fn example_stream_mirrors_the_iterator() {
    let lines = run_example("gettoknow_stream", "50");
    assert_eq!(
        lines,
        [
            "-- for: an Iterator, every item at hand --",
            "iterator gave 1",
            "iterator gave 4",
            "iterator gave 9",
            "-- while let ... .next().await: a Stream, each item awaited --",
            "stream gave 1",
            "stream gave 4",
            "stream gave 9",
            "-- a hand-written Stream --",
            "countdown gave 3",
            "countdown gave 2",
            "countdown gave 1",
            "-- buffered(3): fetch three items at once, keep their order --",
            "buffered gave [1, 4, 9, 16, 25, 36]",
        ]
    );
}

#[test]
fn example_cleanup_runs_on_every_path_but_cannot_await_in_drop() {
    let lines = run_example("gettoknow_cleanup", "50");
    assert_eq!(
        lines,
        [
            "-- with: a guard closes on every path --",
            "open ledger",
            "ledger: cow says Moo!",
            "close ledger (Drop)",
            "record: Ok(())",
            "open ledger",
            "ledger: pig says Oink!",
            "close ledger (Drop)",
            "record: Err(DbError(\"empty line\"))",
            "-- async with: a scope function awaits close --",
            "connected to db://farm",
            "set cow = Moo!",
            "said goodbye to db://farm, closed",
            "with_connection: Ok(())",
            "connected to db://farm",
            "said goodbye to db://farm, closed",
            "with_connection: Err(DbError(\"empty key\"))",
            "-- cancelled: the future is dropped, close never runs --",
            "connected to db://farm",
            "dropped db://farm without a goodbye (Drop cannot await)",
            "timed out after 2 s",
        ]
    );
}

#[test]
fn example_byhand_executor_wakes_by_deadline_and_takes_turns() {
    // Slow speed: the 10,000 spawns take real time in a debug build, and
    // the printed figure multiplies that by the speed.
    let mut lines = run_example("byhand_executor", "5");
    let elapsed = take_elapsed(&mut lines);
    assert_eq!(
        lines,
        [
            "-- three sleepers, spawned as 3 s, 1 s, 2 s --",
            "woke after 1 s",
            "woke after 2 s",
            "woke after 3 s",
            "-- ten thousand sleepers, one thread --",
            "sum of 0..10000: 49995000",
            "-- two tasks that wake themselves take turns --",
            "ping 1",
            "pong 1",
            "ping 2",
            "pong 2",
            "ping 3",
            "pong 3",
        ]
    );
    // Ten thousand one-second sleeps, overlapped: about one second.
    assert_between("10,000 sleepers", elapsed, 1.0, 10.0);
}
