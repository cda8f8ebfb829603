//! Pictures of a [`Timeline`]: an ASCII chart for the terminal and an SVG
//! (one lane per recipe, then one per cook). Both are pure functions of the
//! timeline, so the web page can serve the same SVG the CLI writes.
//!
//! In both, a recipe's lane shows what the recipe is doing: the cook's hands
//! on it, an appliance working on it, or waiting for a cook. A cook's lane
//! shows which recipe the cook is working on; its blank stretches are the
//! point of the talk: the cook is mostly idle.

use std::fmt::Write as _;

use crate::sim::{mmss, Kind, StepRun, Timeline};

/// What a recipe's lane shows at a moment. Declared in the order used to
/// break ties when a chart cell covers more than one state: the cook's work
/// wins, because it is the scarce thing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum State {
    HandsOn,
    Appliance,
    Queued,
}

/// One letter per recipe for the cook lanes of the ASCII chart: the first
/// letter of its name that no earlier recipe took, else a digit or symbol.
pub fn recipe_letters(names: &[String]) -> Vec<char> {
    let mut taken = Vec::new();
    for name in names {
        let pick = name
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .map(|c| c.to_ascii_uppercase())
            .chain("123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz@$%&*+=".chars())
            .find(|c| !taken.contains(c))
            .unwrap_or('?');
        taken.push(pick);
    }
    taken
}

/// Seconds per column and minutes per axis label for a chart `total_ms`
/// long, at most `max_cols` wide: round numbers, so that a talk-sized
/// dinner gets 30 seconds per column.
fn scale(total_ms: u64, max_cols: usize) -> (u64, u64) {
    const STEPS: [u64; 12] = [1, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600];
    let total_s = total_ms.div_ceil(1000).max(1);
    let max_cols = max_cols.max(10) as u64;
    let per_col = STEPS
        .iter()
        .copied()
        .find(|s| total_s.div_ceil(*s) <= max_cols)
        .unwrap_or_else(|| total_s.div_ceil(max_cols));
    // An axis label at least every 6 columns.
    let tick_min = [1u64, 2, 5, 10, 15, 30, 60, 120, 300, 600]
        .iter()
        .copied()
        .find(|m| m * 60 / per_col >= 6 && (m * 60) % per_col == 0)
        // Very long dinners: a label every 6 columns, whatever that is.
        .unwrap_or_else(|| (per_col * 6).div_ceil(60));
    (per_col, tick_min)
}

/// How long `[a, b)` overlaps `[c, d)`.
fn overlap(a: u64, b: u64, c: u64, d: u64) -> u64 {
    b.min(d).saturating_sub(a.max(c))
}

/// The ASCII chart, about `width` columns wide (clamped to a useful range).
///
/// ```text
///          0         5         10        15        20        25        30 min
///          |         |         |         |         |         |         |
/// salmon   =##.#====================================
/// ```
pub fn ascii(t: &Timeline, width: usize) -> String {
    let names: Vec<String> = t.recipes.iter().map(|r| r.name.clone()).collect();
    let letters = recipe_letters(&names);
    let cook_names: Vec<String> = (1..=t.cooks).map(|n| format!("cook {n}")).collect();
    let label_w = names
        .iter()
        .chain(&cook_names)
        .map(|n| n.chars().count())
        .max()
        .unwrap_or(4)
        .min(20)
        + 2;
    let (per_col, tick_min) = scale(t.total_ms, width.clamp(40, 200).saturating_sub(label_w));
    let cols = (t.total_ms.div_ceil(per_col * 1000)).max(1) as usize;
    let cell = |i: usize| (i as u64 * per_col * 1000, (i as u64 + 1) * per_col * 1000);

    let mut out = String::new();
    // Axis: minute labels over tick marks.
    // At least 6 by the choice of `tick_min`; never 0, or the loop below
    // would not end.
    let tick_cols = ((tick_min * 60 / per_col) as usize).max(1);
    let mut labels = " ".repeat(label_w);
    let mut marks = " ".repeat(label_w);
    let mut col = 0;
    while col <= cols {
        let text = (col as u64 * per_col / 60).to_string();
        let used = labels.chars().count();
        // A label goes over its mark only if it leaves a space after the
        // previous one; huge numbers (dinners of many days) skip some.
        if col == 0 || used < label_w + col {
            labels.push_str(&" ".repeat(label_w + col - used.min(label_w + col)));
            labels.push_str(&text);
        }
        marks.push_str(&" ".repeat((label_w + col).saturating_sub(marks.chars().count())));
        marks.push('|');
        col += tick_cols;
    }
    labels.push_str(" min");
    let _ = writeln!(out, "{}", labels.trim_end());
    let _ = writeln!(out, "{}", marks.trim_end());

    for (ri, name) in names.iter().enumerate() {
        let steps: Vec<&StepRun> = t.steps.iter().filter(|s| s.recipe_index == ri).collect();
        let mut line = String::new();
        for i in 0..cols {
            let (a, b) = cell(i);
            let mut best: Option<(u64, State)> = None;
            for s in &steps {
                let parts = [
                    (s.asked_ms, s.start_ms, State::Queued),
                    (
                        s.start_ms,
                        s.end_ms,
                        if s.kind == Kind::HandsOn {
                            State::HandsOn
                        } else {
                            State::Appliance
                        },
                    ),
                ];
                for (c, d, state) in parts {
                    let o = overlap(a, b, c, d);
                    if o > 0 && best.is_none_or(|(bo, bs)| o > bo || (o == bo && state < bs)) {
                        best = Some((o, state));
                    }
                }
            }
            line.push(match best.map(|(_, s)| s) {
                Some(State::HandsOn) => '#',
                Some(State::Appliance) => '=',
                Some(State::Queued) => '.',
                None => ' ',
            });
        }
        let _ = writeln!(
            out,
            "{:<label_w$}{}",
            clip(name, label_w - 2),
            line.trim_end()
        );
    }
    for (ci, cname) in cook_names.iter().enumerate() {
        let n = ci + 1;
        let mut line = String::new();
        for i in 0..cols {
            let (a, b) = cell(i);
            let best = t
                .steps
                .iter()
                .filter(|s| s.cook == Some(n))
                .map(|s| (overlap(a, b, s.start_ms, s.end_ms), s.recipe_index))
                .filter(|(o, _)| *o > 0)
                .max_by(|x, y| x.0.cmp(&y.0).then(y.1.cmp(&x.1)));
            line.push(best.map_or(' ', |(_, ri)| letters[ri]));
        }
        let _ = writeln!(out, "{:<label_w$}{}", cname, line.trim_end());
    }
    let legend: Vec<String> = names
        .iter()
        .zip(&letters)
        .map(|(n, l)| format!("{l}={n}"))
        .collect();
    let _ = writeln!(
        out,
        "{:<label_w$}# cook working  = appliance working  . waiting for a cook or appliance",
        ""
    );
    let _ = writeln!(
        out,
        "{:<label_w$}cook lanes: {}; one column = {}",
        "",
        legend.join(" "),
        if per_col % 60 == 0 {
            format!("{} min", per_col / 60)
        } else {
            format!("{per_col} s")
        }
    );
    out
}

fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut c: String = s.chars().take(max.saturating_sub(1)).collect();
        c.push('~');
        c
    }
}

/// Colours for recipes, in menu order (then repeating). Picked to stay
/// distinguishable on white and in their light "waiting" tint.
const PALETTE: [&str; 8] = [
    "#e4572e", "#d69e00", "#2e9e5b", "#2f6fb5", "#8e44ad", "#16a2b8", "#b03a48", "#6d7b8d",
];

fn xml(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            _ => o.push(c),
        }
    }
    o
}

/// The SVG chart as a standalone document: a title, a minute axis, one lane
/// per recipe and one per cook, a legend. Every bar has a `<title>` tooltip
/// with its times.
pub fn svg(t: &Timeline) -> String {
    const WIDTH: f64 = 960.0;
    const LEFT: f64 = 110.0;
    const RIGHT: f64 = 30.0;
    const TOP: f64 = 70.0;
    const LANE: f64 = 36.0;
    const BAR: f64 = 24.0;
    // Roughly the width of one character of the 11px sans-serif label font.
    const CHAR_W: f64 = 6.2;

    let lanes = t.recipes.len() + t.cooks;
    let gap = 14.0; // between the recipe lanes and the cook lanes
    let plot_h = lanes as f64 * LANE + gap;
    let height = TOP + plot_h + 80.0;
    let span_ms = t.total_ms.max(1) as f64;
    let plot_w = WIDTH - LEFT - RIGHT;
    let x = |ms: u64| LEFT + ms as f64 / span_ms * plot_w;
    let lane_y = |i: usize| TOP + i as f64 * LANE + if i >= t.recipes.len() { gap } else { 0.0 };
    let colour = |ri: usize| PALETTE[ri % PALETTE.len()];

    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="Helvetica, Arial, sans-serif" font-size="11">"#
    );
    let cooks = if t.cooks == 1 {
        "1 cook".to_string()
    } else {
        format!("{} cooks", t.cooks)
    };
    let mode = match t.mode {
        crate::sim::Mode::Interleaved => "interleaved",
        crate::sim::Mode::Sequential => "sequential",
    };
    let _ = writeln!(
        o,
        r##"<defs><pattern id="queued" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="6" height="6" fill="#ffffff"/><line x1="0" y1="0" x2="0" y2="6" stroke="#9a9a9a" stroke-width="2"/></pattern></defs>
<rect width="100%" height="100%" fill="#ffffff"/>
<text x="{LEFT}" y="24" font-size="16" font-weight="bold">Dinner in {total} ({cooks}, {mode})</text>"##,
        total = mmss(t.total_ms),
    );

    // Axis and grid.
    // A grid line every 1, 2, 5, 10... minutes: at most a dozen.
    let tick_min = [1u64, 2, 5, 10, 15, 30, 60, 120, 300, 600]
        .into_iter()
        .find(|m| t.total_ms / (m * 60_000) <= 12)
        .unwrap_or_else(|| (t.total_ms / 60_000).div_ceil(12).max(1));
    let axis_y = TOP - 10.0;
    let mut m = 0;
    while m * 60_000 <= t.total_ms {
        let gx = x(m * 60_000);
        let _ = writeln!(
            o,
            r##"<line x1="{gx:.1}" y1="{axis_y}" x2="{gx:.1}" y2="{bottom:.1}" stroke="#e3e3e3"/><text x="{gx:.1}" y="{ty}" text-anchor="middle" fill="#555">{m}</text>"##,
            bottom = TOP + plot_h,
            ty = axis_y - 4.0,
        );
        m += tick_min;
    }
    let _ = writeln!(
        o,
        r##"<text x="{ex:.1}" y="{ty}" text-anchor="end" fill="#555">min</text><line x1="{LEFT}" y1="{axis_y}" x2="{rx:.1}" y2="{axis_y}" stroke="#999"/>"##,
        ex = LEFT - 10.0,
        ty = axis_y - 4.0,
        rx = x(t.total_ms),
    );

    // Lane labels and backgrounds.
    for (i, r) in t.recipes.iter().enumerate() {
        lane_frame(&mut o, lane_y(i), &r.name, LANE, LEFT, plot_w, i % 2 == 0);
    }
    for c in 0..t.cooks {
        let i = t.recipes.len() + c;
        lane_frame(
            &mut o,
            lane_y(i),
            &format!("cook {}", c + 1),
            LANE,
            LEFT,
            plot_w,
            true,
        );
    }

    let fits = |w: f64, text: &str| (text.chars().count() as f64) * CHAR_W + 8.0 <= w;
    for s in &t.steps {
        let y = lane_y(s.recipe_index) + (LANE - BAR) / 2.0;
        let col = colour(s.recipe_index);
        // Waiting for a cook or appliance: hatched.
        if s.queued_ms() > 0 {
            let (qx, qw) = (x(s.asked_ms), x(s.start_ms) - x(s.asked_ms));
            let _ = writeln!(
                o,
                r##"<rect x="{qx:.1}" y="{y:.1}" width="{qw:.1}" height="{BAR}" fill="url(#queued)" stroke="#9a9a9a"><title>{r}: waits for {what} before "{st}" ({a}–{b})</title></rect>"##,
                r = xml(&s.recipe),
                what = if s.kind == Kind::HandsOn {
                    "a cook"
                } else {
                    "an appliance"
                },
                st = xml(&s.step),
                a = mmss(s.asked_ms),
                b = mmss(s.start_ms),
            );
        }
        let (bx, bw) = (x(s.start_ms), (x(s.end_ms) - x(s.start_ms)).max(1.0));
        // Hands-on bars get a white outline so that two in a row (arrange,
        // then slather) read as two steps.
        let (fill, opacity, text_fill, stroke) = match s.kind {
            Kind::HandsOn => (col, 1.0, "#ffffff", "#ffffff"),
            Kind::Wait => (col, 0.28, "#222222", col),
        };
        let tip = format!(
            "{}: {} ({}) {}–{}",
            s.recipe,
            s.step,
            s.who,
            mmss(s.start_ms),
            mmss(s.end_ms)
        );
        let _ = writeln!(
            o,
            r##"<rect x="{bx:.1}" y="{y:.1}" width="{bw:.1}" height="{BAR}" rx="3" fill="{fill}" fill-opacity="{opacity}" stroke="{stroke}"><title>{tip}</title></rect>"##,
            tip = xml(&tip),
        );
        let label = match s.kind {
            Kind::HandsOn => s.step.clone(),
            Kind::Wait => format!("{} ({})", s.step, s.who),
        };
        if let Some(text) = [label, s.step.clone()].into_iter().find(|l| fits(bw, l)) {
            let _ = writeln!(
                o,
                r#"<text x="{tx:.1}" y="{ty:.1}" fill="{text_fill}" pointer-events="none">{text}</text>"#,
                tx = bx + 4.0,
                ty = y + BAR / 2.0 + 4.0,
                text = xml(&text),
            );
        }
        // The cook's lane: the same hands-on step, in the recipe's colour.
        if let Some(n) = s.cook {
            let cy = lane_y(t.recipes.len() + n - 1) + (LANE - BAR) / 2.0;
            let _ = writeln!(
                o,
                r##"<rect x="{bx:.1}" y="{cy:.1}" width="{bw:.1}" height="{BAR}" rx="3" fill="{col}" stroke="#ffffff"><title>{tip}</title></rect>"##,
                tip = xml(&tip),
            );
            let initial = s
                .recipe
                .chars()
                .take(1)
                .flat_map(char::to_uppercase)
                .collect::<String>();
            let tight = |text: &str| (text.chars().count() as f64) * CHAR_W + 3.0 <= bw;
            if let Some(text) = [s.recipe.clone(), initial].into_iter().find(|l| tight(l)) {
                let _ = writeln!(
                    o,
                    r##"<text x="{tx:.1}" y="{ty:.1}" fill="#ffffff" pointer-events="none">{r}</text>"##,
                    tx = bx + 2.0,
                    ty = cy + BAR / 2.0 + 4.0,
                    r = xml(&text),
                );
            }
        }
    }
    // Ready markers at the end of each recipe lane.
    for (i, r) in t.recipes.iter().enumerate() {
        let rx = x(r.ready_ms);
        let y = lane_y(i);
        let _ = writeln!(
            o,
            r##"<line x1="{rx:.1}" y1="{y1:.1}" x2="{rx:.1}" y2="{y2:.1}" stroke="#222" stroke-width="2"><title>{n} ready at {at}</title></line>"##,
            y1 = y + 3.0,
            y2 = y + LANE - 3.0,
            n = xml(&r.name),
            at = mmss(r.ready_ms),
        );
    }

    // Cook summary under the lanes, then the legend.
    let sy = TOP + plot_h + 22.0;
    let busy: Vec<String> = (1..=t.cooks)
        .map(|n| {
            let b = t.cook_busy_ms(n);
            format!("cook {n} busy {} of {}", mmss(b), mmss(t.total_ms))
        })
        .collect();
    let _ = writeln!(
        o,
        r##"<text x="{LEFT}" y="{sy:.1}" fill="#333">{}</text>"##,
        xml(&busy.join("; "))
    );
    let ly = sy + 24.0;
    let _ = writeln!(
        o,
        r##"<rect x="{LEFT}" y="{a:.1}" width="18" height="12" fill="#555"/><text x="{b:.1}" y="{ty:.1}">hands-on (a cook)</text>
<rect x="{c:.1}" y="{a:.1}" width="18" height="12" fill="#555" fill-opacity="0.28" stroke="#555"/><text x="{d:.1}" y="{ty:.1}">waiting on an appliance (the cook is free)</text>
<rect x="{e:.1}" y="{a:.1}" width="18" height="12" fill="url(#queued)" stroke="#9a9a9a"/><text x="{f:.1}" y="{ty:.1}">waiting for a cook or appliance</text>
<line x1="{g:.1}" y1="{a:.1}" x2="{g:.1}" y2="{h:.1}" stroke="#222" stroke-width="2"/><text x="{i:.1}" y="{ty:.1}">ready</text>"##,
        a = ly - 10.0,
        ty = ly,
        b = LEFT + 24.0,
        c = LEFT + 140.0,
        d = LEFT + 164.0,
        e = LEFT + 420.0,
        f = LEFT + 444.0,
        g = LEFT + 640.0,
        h = ly + 2.0,
        i = LEFT + 648.0,
    );
    o.push_str("</svg>\n");
    o
}

fn lane_frame(o: &mut String, y: f64, name: &str, lane: f64, left: f64, plot_w: f64, shade: bool) {
    if shade {
        let _ = writeln!(
            o,
            r##"<rect x="{left}" y="{y:.1}" width="{plot_w:.1}" height="{lane}" fill="#f7f7f7"/>"##
        );
    }
    let _ = writeln!(
        o,
        r##"<text x="{lx:.1}" y="{ty:.1}" text-anchor="end" font-size="12" fill="#222">{n}</text>"##,
        lx = left - 10.0,
        ty = y + lane / 2.0 + 4.0,
        n = xml(&clip(name, 16)),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters_are_unique() {
        let names: Vec<String> = ["salmon", "soup", "salad", "beans"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(recipe_letters(&names), vec!['S', 'O', 'A', 'B']);
    }

    #[test]
    fn scale_gives_the_talk_thirty_seconds_a_column() {
        assert_eq!(scale(30 * 60_000 + 30_000, 70), (30, 5));
        assert_eq!(scale(56 * 60_000, 70), (60, 10));
    }

    #[test]
    fn scale_copes_with_very_long_dinners() {
        // 64 recipes of 256 day-long steps, one after the other.
        let total = 64 * 256 * 24 * 3_600_000;
        let (per_col, tick_min) = scale(total, 70);
        assert!(total / 1000 / per_col <= 70);
        assert!(tick_min * 60 / per_col >= 6);
    }

    #[test]
    fn xml_escapes_markup() {
        assert_eq!(xml(r#"<a & "b">"#), "&lt;a &amp; &quot;b&quot;&gt;");
    }
}
