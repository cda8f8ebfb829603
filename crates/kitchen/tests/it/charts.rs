//! The charts: the ASCII chart's lanes for the talk's dinner, and the SVG
//! as a well-formed document with one lane per recipe and per cook.

use kitchen::{ascii, cook_virtual, svg, Menu, Mode, Timeline};

fn dinner(cooks: usize) -> Timeline {
    cook_virtual(&Menu::builtin(), Mode::Interleaved, cooks)
}

#[test]
fn ascii_chart_of_one_cook() {
    let chart = ascii(&dinner(1), 80);
    let lanes: Vec<&str> = chart.lines().skip(2).take(4).collect();
    // 30 s a column: the rice's stir waits one column for the cook.
    assert_eq!(
        lanes,
        [
            "salmon  =..##.#====================================",
            "rice    #===.#============================================#==========",
            "beans   .##==========",
            "cook 1  RBBSSRS                                           R",
        ]
    );
    assert!(chart.lines().next().unwrap().ends_with("30 min"), "{chart}");
}

#[test]
fn ascii_chart_has_a_lane_per_cook() {
    let chart = ascii(&dinner(2), 80);
    assert!(
        chart.lines().any(|l| l.starts_with("cook 2  BB")),
        "{chart}"
    );
}

#[test]
fn svg_is_well_formed_with_a_lane_per_recipe_and_cook() {
    let t = dinner(2);
    let doc = svg(&t);
    assert!(doc.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    assert!(doc.trim_end().ends_with("</svg>"));
    for label in ["salmon", "rice", "beans", "cook 1", "cook 2"] {
        assert!(
            doc.contains(&format!(">{label}</text>")),
            "lane {label} missing"
        );
    }
    // One bar per step, plus one per hands-on step in a cook lane.
    let hands_on = t.steps.iter().filter(|s| s.cook.is_some()).count();
    let titled_bars = doc.matches("rx=\"3\"").count();
    assert_eq!(titled_bars, t.steps.len() + hands_on);
    assert!(doc.contains("Dinner in 30:00 (2 cooks, interleaved)"));
    assert_balanced(&doc);
}

#[test]
fn svg_escapes_names() {
    let menu = Menu::from_toml(
        r#"
        [[recipe]]
        name = "mac & <cheese>"
        [[recipe.step]]
        name = "stir \"well\""
        kind = "hands-on"
        minutes = 10
        "#,
    )
    .unwrap();
    let doc = svg(&cook_virtual(&menu, Mode::Interleaved, 1));
    assert!(doc.contains("mac &amp; &lt;cheese&gt;"));
    assert!(!doc.contains("<cheese>"));
    assert_balanced(&doc);
}

#[test]
fn timeline_round_trips_through_json() {
    let t = dinner(1);
    let json = serde_json::to_string(&t).unwrap();
    assert!(json.contains(r#""mode":"interleaved""#), "{json}");
    assert!(json.contains(r#""kind":"hands-on""#), "{json}");
    assert!(json.contains(r#""total_ms":1830000"#), "{json}");
    let back: Timeline = serde_json::from_str(&json).unwrap();
    assert_eq!(back, t);
}

/// Every opened element is closed, in order (a small XML check: enough to
/// catch a broken tag, not a full parser).
fn assert_balanced(doc: &str) {
    let mut stack: Vec<String> = Vec::new();
    let mut rest = doc;
    while let Some(i) = rest.find('<') {
        let end = rest[i..].find('>').expect("unterminated tag") + i;
        let tag = &rest[i + 1..end];
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(stack.pop().as_deref(), Some(name), "mismatched </{name}>");
        } else if !tag.ends_with('/') && !tag.starts_with('?') && !tag.starts_with('!') {
            let name = tag.split_whitespace().next().unwrap_or("");
            stack.push(name.to_string());
        }
        rest = &rest[end + 1..];
    }
    assert!(stack.is_empty(), "unclosed: {stack:?}");
}

/// Regression: for dinners of many days the axis tick came out as 0
/// columns and `ascii` looped forever. Now it must end and stay narrow.
#[test]
fn ascii_chart_of_a_months_long_dinner_ends_and_fits() {
    let mut t = dinner(1);
    let scale = 64 * 256 * 24 * 60 / 30; // stretch 30 minutes to 64*256 days
    for s in &mut t.steps {
        s.asked_ms *= scale;
        s.start_ms *= scale;
        s.end_ms *= scale;
    }
    for r in &mut t.recipes {
        r.ready_ms *= scale;
    }
    t.total_ms *= scale;
    let chart = ascii(&t, 80);
    for line in chart.lines().take(6) {
        assert!(line.chars().count() <= 90, "too wide: {line}");
    }
    assert!(svg(&t).ends_with("</svg>\n"));
}
