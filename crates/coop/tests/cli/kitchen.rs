//! End-to-end tests: kitchen. The real `coop kitchen` binary: the talk's
//! totals in its output, the timeline and chart, `--chart` writing an SVG,
//! `--json`, bad menus and flags refused with exit 2 and a message naming
//! the problem, and `--real-time` on the wall clock.

use std::process::Output;
use std::time::{Duration, Instant};

use crate::support::{coop, example};

fn kitchen(args: &[&str]) -> Output {
    coop()
        .arg("kitchen")
        .args(args)
        .output()
        .expect("run coop kitchen")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(args: &[&str]) -> String {
    let o = kitchen(args);
    assert!(
        o.status.success(),
        "coop kitchen {args:?} failed: {}",
        stderr(&o)
    );
    stdout(&o)
}

#[test]
fn default_dinner_one_cook_interleaved() {
    let out = ok(&[]);
    assert!(
        out.contains("total: 30.5 min (30:30), 1 cook, interleaved"),
        "{out}"
    );
    assert!(out.contains("sequential: 56 min (56:00)"), "{out}");
    assert!(
        out.contains("with 2 cooks: 30 min (30:00): a second cook saves 30 s"),
        "{out}"
    );
    assert!(
        out.contains("cook 1: busy 04:00, idle 26:30 (13% busy)"),
        "{out}"
    );
    // The why: the rice waited for the cook, who was busy with the salmon.
    assert!(out.contains("why 30:30: rice is ready last"), "{out}");
    assert!(
        out.contains(r#"cook 1 was on salmon ("arrange the filets on a baking sheet")"#),
        "{out}"
    );
    // Timeline lines: virtual time, recipe, step, who, and waits.
    let line = out
        .lines()
        .find(|l| l.starts_with("02:30  rice"))
        .unwrap_or_else(|| panic!("no 02:30 rice line in {out}"));
    assert!(line.contains("stir in spices and rice"), "{line}");
    assert!(line.contains("cook 1"), "{line}");
    assert!(line.contains("(waited 00:30 for a cook)"), "{line}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("30:30  rice") && l.ends_with("ready")),
        "{out}"
    );
    // The ASCII chart with its cook lane.
    assert!(
        out.lines().any(|l| l.starts_with("cook 1  RBBSSRS")),
        "{out}"
    );
}

#[test]
fn sequential_is_56_minutes() {
    let out = ok(&["--sequential"]);
    assert!(
        out.contains("total: 56 min (56:00), 1 cook, sequential"),
        "{out}"
    );
    assert!(
        out.contains("interleaved, 1 cook: 30.5 min (30:30): the same cook, 25.5 min sooner"),
        "{out}"
    );
    assert!(out.contains("cook 1: busy 04:00, idle 52:00"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("56:00  beans") && l.ends_with("ready")),
        "{out}"
    );
}

#[test]
fn two_cooks_barely_help() {
    let out = ok(&["--cooks", "2"]);
    assert!(
        out.contains("total: 30 min (30:00), 2 cooks, interleaved"),
        "{out}"
    );
    assert!(
        out.contains("with 1 cook: 30.5 min (30:30): a second cook saves 30 s"),
        "{out}"
    );
    assert!(out.contains("cook 2: busy"), "{out}");
    assert!(out.contains("it never waited"), "{out}");
}

#[test]
fn chart_writes_an_svg() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dinner.svg");
    let out = ok(&["--chart", path.to_str().unwrap()]);
    assert!(out.contains("chart: "), "{out}");
    let svg = std::fs::read_to_string(&path).unwrap();
    assert!(
        svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""),
        "{svg}"
    );
    assert!(svg.trim_end().ends_with("</svg>"));
    assert!(svg.contains("Dinner in 30:30 (1 cook, interleaved)"));
    for lane in ["salmon", "rice", "beans", "cook 1"] {
        assert!(svg.contains(&format!(">{lane}</text>")), "no lane {lane}");
    }
    // As many opening as closing rect/text/svg tags: nothing left open.
    for tag in ["svg", "text", "rect", "title"] {
        let open =
            svg.matches(&format!("<{tag} ")).count() + svg.matches(&format!("<{tag}>")).count();
        let self_closed = svg
            .split(&format!("<{tag} "))
            .skip(1)
            .filter(|rest| rest.split('>').next().is_some_and(|t| t.ends_with('/')))
            .count();
        let close = svg.matches(&format!("</{tag}>")).count();
        assert_eq!(open - self_closed, close, "<{tag}> unbalanced");
    }
}

#[test]
fn json_timeline() {
    let out = ok(&["--json", "--cooks", "2"]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("stdout is JSON");
    assert_eq!(v["total_ms"], 30 * 60_000);
    assert_eq!(v["cooks"], 2);
    assert_eq!(v["mode"], "interleaved");
    assert_eq!(v["steps"].as_array().unwrap().len(), 12);
    assert_eq!(v["recipes"][1]["name"], "rice");
    assert_eq!(v["recipes"][1]["own_ms"], 30 * 60_000);
}

#[test]
fn own_menu_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tea.toml");
    std::fs::write(
        &path,
        r#"
[[recipe]]
name = "tea"
[[recipe.step]]
name = "boil the kettle"
kind = "wait"
appliance = "burner"
minutes = 4
[[recipe.step]]
name = "pour"
kind = "hands-on"
minutes = 0.5

[[recipe]]
name = "toast"
[[recipe.step]]
name = "slice bread"
kind = "hands-on"
minutes = 1
[[recipe.step]]
name = "toast"
kind = "wait"
appliance = "oven"
minutes = 3
"#,
    )
    .unwrap();
    let out = ok(&["--menu", path.to_str().unwrap()]);
    assert!(
        out.contains("total: 4.5 min (04:30), 1 cook, interleaved"),
        "{out}"
    );
    assert!(out.contains("sequential: 8.5 min (08:30)"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("04:00  tea") && l.contains("pour")),
        "{out}"
    );
}

#[test]
fn bad_menu_exits_2_naming_recipe_and_step() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[[recipe]]\nname = \"steak\"\n[[recipe.step]]\nname = \"sear\"\nkind = \"wait\"\nappliance = \"grill\"\nminutes = 4\n",
    )
    .unwrap();
    let o = kitchen(&["--menu", path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("bad.toml"), "{err}");
    assert!(
        err.contains(r#"recipe "steak", step 1 ("sear"): unknown appliance "grill""#),
        "{err}"
    );
    assert!(stdout(&o).is_empty(), "nothing cooked: {}", stdout(&o));

    std::fs::write(
        &path,
        "[[recipe]]\nname = \"steak\"\n[[recipe.step]]\nname = \"rest\"\nkind = \"hands-on\"\nminutes = -2\n",
    )
    .unwrap();
    let o = kitchen(&["--menu", path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o)
            .contains(r#"recipe "steak", step 1 ("rest"): minutes must be more than zero, got -2"#),
        "{}",
        stderr(&o)
    );
}

#[test]
fn missing_menu_file_exits_2() {
    let o = kitchen(&["--menu", "/nonexistent/menu.toml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("cannot read menu /nonexistent/menu.toml"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn bad_flags_exit_2() {
    for args in [
        &["--cooks", "0"][..],
        &["--cooks", "1000"],
        &["--speedup", "60"], // only with --real-time
        &["--real-time", "--speedup", "0"],
        &["--real-time", "--speedup", "-5"],
        &["--real-time", "--speedup", "fast"],
    ] {
        let o = kitchen(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
    }
}

#[test]
fn real_time_runs_the_same_dinner_on_the_wall_clock() {
    // 30.5 virtual minutes at 6000x is about 0.3 s of wall time: long enough
    // to show it really waits on the wall clock, short enough for a test.
    let started = Instant::now();
    let o = kitchen(&["--real-time", "--speedup", "6000", "--json"]);
    let wall = started.elapsed();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        wall >= Duration::from_millis(300),
        "too fast for the wall clock: {wall:?}"
    );
    assert!(wall < Duration::from_secs(30), "too slow: {wall:?}");
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["speedup"], 6000.0);
    // Sleeps never end early, and timer overshoot is multiplied by the
    // speedup: expect at least the virtual 30:30, and (generously) not
    // absurdly more.
    let total = v["total_ms"].as_u64().unwrap();
    assert!(
        (30 * 60_000 + 29_000..=45 * 60_000).contains(&total),
        "{total}"
    );
}

#[test]
fn real_time_with_a_huge_speedup_finishes_quickly_and_prints_live() {
    let started = Instant::now();
    let out = ok(&["--real-time", "--speedup", "1000000"]);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert!(
        out.starts_with("cooking salmon, rice, beans on the wall clock, 1000000x faster"),
        "{out}"
    );
    // Each step printed as it started, then each recipe as it was ready.
    assert_eq!(
        out.lines().filter(|l| l.ends_with("ready")).count(),
        3,
        "{out}"
    );
    assert!(out.contains("bring to a boil"), "{out}");
    assert!(out.contains("wall clock at 1000000x"), "{out}");
}

#[test]
fn example_kitchen_dinner_prints_the_same_schedule() {
    let o = example("kitchen_dinner")
        .output()
        .expect("run kitchen_dinner");
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "00:00  salmon  preheat the oven to 350 °F (the cook is free)",
            "00:00  rice    water and butter into the pot (the cook)",
            "00:30  rice    bring to a boil (the cook is free)",
            "00:30  beans   poke holes in the bag (the cook)",
            "01:30  beans   microwave 5 minutes (the cook is free)",
            "01:30  salmon  arrange the filets on a baking sheet (the cook)",
            "02:30  rice    stir in spices and rice, cover (the cook)",
            "03:00  rice    simmer 22 minutes (the cook is free)",
            "03:00  salmon  slather with orange-ginger dressing (the cook)",
            "03:30  salmon  bake 18 minutes (the cook is free)",
            "25:00  rice    fluff (the cook)",
            "25:30  rice    let stand 5 minutes (the cook is free)",
            "30:30  dinner: salmon, rice pilaf and green beans",
            "dinner in 30:30 (one after the other: 56:00)",
        ]
    );
    // The hand-written version and `coop kitchen` agree on the total.
    assert!(ok(&[]).contains("total: 30.5 min (30:30)"));
}
