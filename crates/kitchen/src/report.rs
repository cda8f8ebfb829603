//! The timeline as text: the lines `coop kitchen` prints (a header, one
//! line per step, a summary with what interleaving saved) and the "why" of
//! the total, explained from the timeline itself.

use crate::{Kind, Menu, Mode, StepRun, Timeline};

/// Waits shorter than this (virtual ms) are not reported: on the wall clock,
/// timer jitter times the speedup shows up as waits of a few virtual
/// milliseconds that no one queued for. They would print as `00:00` anyway.
const MIN_REPORTED_WAIT_MS: u64 = 500;

pub fn names(menu: &Menu) -> String {
    menu.recipes
        .iter()
        .map(|r| r.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn cooks_text(n: usize) -> String {
    if n == 1 {
        "1 cook".into()
    } else {
        format!("{n} cooks")
    }
}

pub fn mode_text(mode: Mode) -> &'static str {
    match mode {
        Mode::Interleaved => "interleaved",
        Mode::Sequential => "sequential",
    }
}

pub fn header(menu: &Menu, t: &Timeline) -> String {
    format!(
        "cooking {}: {}, {}, virtual time",
        names(menu),
        cooks_text(t.cooks),
        mode_text(t.mode)
    )
}

/// Column widths of the timeline, from the menu (known before cooking, so
/// live lines line up too).
#[derive(Debug, Clone)]
pub struct Widths {
    recipe: usize,
    step: usize,
}

impl Widths {
    pub fn of(menu: &Menu) -> Widths {
        let recipe = menu
            .recipes
            .iter()
            .map(|r| r.name.chars().count())
            .max()
            .unwrap_or(0)
            .max("recipe".len());
        let step = menu
            .recipes
            .iter()
            .flat_map(|r| &r.steps)
            .map(|s| s.name.chars().count())
            .max()
            .unwrap_or(0)
            .clamp("step".len(), 50);
        Widths { recipe, step }
    }

    pub fn heading(&self) -> String {
        format!(
            "{:<5}  {:<rw$}  {:<sw$}  {:<9}  {}",
            "time",
            "recipe",
            "step",
            "who",
            "takes",
            rw = self.recipe,
            sw = self.step
        )
    }

    pub fn step_line(&self, s: &StepRun) -> String {
        let mut line = format!(
            "{}  {:<rw$}  {:<sw$}  {:<9}  {}",
            crate::mmss(s.start_ms),
            s.recipe,
            s.step,
            s.who,
            crate::mmss(s.end_ms - s.start_ms),
            rw = self.recipe,
            sw = self.step
        );
        if s.queued_ms() >= MIN_REPORTED_WAIT_MS {
            let what = match s.kind {
                Kind::HandsOn => "a cook",
                Kind::Wait => "the appliance",
            };
            line.push_str(&format!(
                "  (waited {} for {what})",
                crate::mmss(s.queued_ms())
            ));
        }
        line
    }

    pub fn ready_line(&self, recipe: &str, at_ms: u64) -> String {
        format!(
            "{}  {:<rw$}  ready",
            crate::mmss(at_ms),
            recipe,
            rw = self.recipe
        )
    }
}

/// Every step at its start and every recipe when ready, in time order
/// (a recipe that is ready sorts before a step starting at the same time).
pub fn timeline_lines(t: &Timeline, w: &Widths) -> Vec<String> {
    let mut lines: Vec<(u64, u8, usize, usize, String)> = t
        .steps
        .iter()
        .map(|s| (s.start_ms, 1, s.recipe_index, s.step_index, w.step_line(s)))
        .collect();
    for (i, r) in t.recipes.iter().enumerate() {
        lines.push((r.ready_ms, 0, i, 0, w.ready_line(&r.name, r.ready_ms)));
    }
    lines.sort_by_key(|l| (l.0, l.1, l.2, l.3));
    lines.into_iter().map(|l| l.4).collect()
}

pub fn total_line(label: &str, ms: u64) -> String {
    format!("{label}: {} ({})", crate::minutes(ms), crate::mmss(ms))
}

/// The summary: the total, the comparisons that make the talk's point, how
/// busy each cook was, and why the total is what it is.
pub fn summary(menu: &Menu, t: &Timeline) -> Vec<String> {
    let mut lines = Vec::new();
    let clock = match t.speedup {
        None => String::new(),
        Some(s) => format!(", wall clock at {s}x"),
    };
    lines.push(format!(
        "{}, {}, {}{clock}",
        total_line("total", t.total_ms),
        cooks_text(t.cooks),
        mode_text(t.mode)
    ));

    let sequential = menu.sequential_duration().as_millis() as u64;
    let one_cook = crate::cook_virtual(menu, Mode::Interleaved, 1).total_ms;
    match t.mode {
        Mode::Sequential => {
            lines.push(format!(
                "{}: the same cook, {} sooner",
                total_line("interleaved, 1 cook", one_cook),
                crate::minutes(sequential.saturating_sub(one_cook))
            ));
        }
        Mode::Interleaved => {
            lines.push(format!(
                "{}: one recipe after the other",
                total_line("sequential", sequential)
            ));
            if t.cooks == 1 {
                let two = crate::cook_virtual(menu, Mode::Interleaved, 2).total_ms;
                lines.push(format!(
                    "{}: a second cook saves {}",
                    total_line("with 2 cooks", two),
                    saved(one_cook, two)
                ));
            } else {
                lines.push(format!(
                    "{}: {} {}",
                    total_line("with 1 cook", one_cook),
                    if t.cooks == 2 {
                        "a second cook saves".to_string()
                    } else {
                        format!("{} more cooks save", t.cooks - 1)
                    },
                    saved(one_cook, t.total_ms)
                ));
            }
        }
    }
    let floor = menu.longest_recipe().as_millis() as u64;
    if let Some(longest) = menu
        .recipes
        .iter()
        .find(|r| r.own_duration().as_millis() as u64 == floor)
    {
        lines.push(format!(
            "no schedule beats {} ({} on its own)",
            crate::mmss(floor),
            longest.name
        ));
    }

    for n in 1..=t.cooks {
        let busy = t.cook_busy_ms(n);
        let pct = (busy * 100).checked_div(t.total_ms).unwrap_or(0);
        lines.push(format!(
            "cook {n}: busy {}, idle {} ({pct}% busy)",
            crate::mmss(busy),
            crate::mmss(t.total_ms.saturating_sub(busy))
        ));
    }
    lines.extend(why(t));
    lines
}

pub fn saved(from: u64, to: u64) -> String {
    let d = from.saturating_sub(to);
    if d == 0 {
        "nothing".into()
    } else if d < 60_000 {
        format!("{} s", (d + 500) / 1000)
    } else {
        crate::minutes(d)
    }
}

/// One sentence on why the total is what it is: which recipe finished last,
/// how long it takes on its own, and what it waited for (and who kept it
/// waiting).
pub fn why(t: &Timeline) -> Vec<String> {
    let Some((index, last)) = t.last_recipe() else {
        return vec!["why: nothing to cook".into()];
    };
    let mut text = format!(
        "why {}: {} is ready last; on its own it takes {}",
        crate::mmss(t.total_ms),
        last.name,
        crate::mmss(last.own_ms)
    );
    if t.mode == Mode::Sequential {
        let before: Vec<&str> = t.recipes[..index].iter().map(|r| r.name.as_str()).collect();
        if !before.is_empty() {
            text.push_str(&format!(
                ", and it only starts after {}",
                before.join(" and ")
            ));
        }
        return vec![text];
    }
    let waits: Vec<String> = t
        .queued_steps(index)
        .filter(|s| s.queued_ms() >= MIN_REPORTED_WAIT_MS)
        .map(|s| {
            let blocker = match s.kind {
                Kind::HandsOn => {
                    // Who had the cook(s) when this step asked.
                    let doing = (1..=t.cooks)
                        .filter_map(|n| t.cook_doing(n, s.asked_ms))
                        .map(|d| format!("{} was on {} ({:?})", d.who, d.recipe, d.step))
                        .collect::<Vec<_>>();
                    if doing.is_empty() {
                        "for a cook".to_string()
                    } else {
                        format!("for a cook: {}", doing.join(", "))
                    }
                }
                Kind::Wait => format!("for the {}", s.appliance.map_or("appliance", |a| a.name())),
            };
            format!(
                "  it waited {} ({}-{}) before {:?} {blocker}",
                crate::mmss(s.queued_ms()),
                crate::mmss(s.asked_ms),
                crate::mmss(s.start_ms),
                s.step,
            )
        })
        .collect();
    if waits.is_empty() {
        text.push_str(", and it never waited: the schedule is as short as it can be");
        return vec![text];
    }
    text.push_str(", but:");
    std::iter::once(text).chain(waits).collect()
}
