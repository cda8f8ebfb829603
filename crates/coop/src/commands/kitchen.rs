//! `coop kitchen`: cooks a menu (the talk's dinner, or `--menu FILE`) with
//! the `kitchen` library and prints the timeline, a summary and an ASCII
//! chart; optionally writes an SVG chart or prints the timeline as JSON.
//!
//! This command builds its own runtime instead of using the binary's shared
//! multi-threaded one: a single-threaded runtime with its clock paused
//! (virtual time: instant, exact, deterministic), or for `--real-time` a
//! single-threaded runtime on the wall clock, running the same recipes.
//! The comparisons in the summary (sequential, other numbers of cooks) are
//! always cooked on virtual time, so they cost nothing.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use kitchen::{Event, Kind, Menu, Mode, Options, Pace, StepRun, Timeline};

use super::ConfigError;

/// The most cooks `--cooks` accepts: enough to show that more do not help.
const MAX_COOKS: u8 = 16;

/// Waits shorter than this (virtual ms) are not reported: on the wall clock,
/// timer jitter times the speedup shows up as waits of a few virtual
/// milliseconds that no one queued for. They would print as `00:00` anyway.
const MIN_REPORTED_WAIT_MS: u64 = 500;

/// Width of the ASCII chart, in columns.
const CHART_WIDTH: usize = 80;

/// Flags of `coop kitchen`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    coop kitchen                         # the talk's dinner, one cook: 30:30\n  \
    coop kitchen --sequential            # one recipe after the other: 56:00\n  \
    coop kitchen --cooks 2               # parallelism: 30:00, barely better\n  \
    coop kitchen --real-time             # watch it, a minute per second\n  \
    coop kitchen --chart dinner.svg      # and draw it\n  \
    coop kitchen --menu my-dinner.toml   # your own menu (format: crates/kitchen/src/recipe.rs)")]
pub struct KitchenArgs {
    /// Cook one recipe after the other, like the talk's first
    /// `make_salmon_dinner()`: the cook stands by while the oven bakes.
    #[arg(long)]
    pub sequential: bool,

    /// How many cooks share the kitchen. Each does one thing at a time.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=MAX_COOKS as i64))]
    pub cooks: u8,

    /// Cook this TOML menu instead of the talk's salmon, rice and beans.
    #[arg(long, value_name = "FILE")]
    pub menu: Option<PathBuf>,

    /// Run on the wall clock (sped up by --speedup) instead of virtual time,
    /// printing each step as it starts.
    #[arg(long)]
    pub real_time: bool,

    /// With --real-time: how many times faster than life (60 = a minute
    /// per second).
    #[arg(long, default_value_t = 60.0, requires = "real_time", value_parser = parse_speedup)]
    pub speedup: f64,

    /// Also draw the timeline as an SVG chart into FILE (one lane per recipe
    /// and one per cook).
    #[arg(long, value_name = "FILE.svg")]
    pub chart: Option<PathBuf>,

    /// Print the timeline as JSON instead of text (the web page's format).
    #[arg(long)]
    pub json: bool,
}

fn parse_speedup(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    if v.is_finite() && v > 0.0 && v <= 1e9 {
        Ok(v)
    } else {
        Err(format!("{s} is out of range (more than 0, at most 1e9)"))
    }
}

pub fn run(args: KitchenArgs) -> anyhow::Result<ExitCode> {
    let menu = match &args.menu {
        None => Menu::builtin(),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| ConfigError(format!("cannot read menu {}: {e}", path.display())))?;
            Menu::from_toml(&text).map_err(|e| ConfigError(format!("{}: {e}", path.display())))?
        }
    };
    let mode = if args.sequential {
        Mode::Sequential
    } else {
        Mode::Interleaved
    };
    let cooks = usize::from(args.cooks);

    let timeline = if args.real_time {
        real_time(&menu, mode, cooks, args.speedup, !args.json)?
    } else {
        kitchen::cook_virtual(&menu, mode, cooks)
    };

    if let Some(path) = &args.chart {
        std::fs::write(path, kitchen::svg(&timeline))
            .with_context(|| format!("cannot write chart {}", path.display()))?;
    }

    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &timeline).context("writing JSON")?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
    let widths = Widths::of(&menu);
    if !args.real_time {
        writeln!(out, "{}", header(&menu, &timeline))?;
        writeln!(out, "{}", widths.heading())?;
        for line in timeline_lines(&timeline, &widths) {
            writeln!(out, "{line}")?;
        }
    }
    writeln!(out)?;
    for line in summary(&menu, &timeline) {
        writeln!(out, "{line}")?;
    }
    writeln!(out)?;
    write!(out, "{}", kitchen::ascii(&timeline, CHART_WIDTH))?;
    if let Some(path) = &args.chart {
        writeln!(out, "\nchart: {}", path.display())?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// Cooks on the wall clock, printing each step as it starts (unless the
/// output is JSON). Same recipes, same resources; only the clock differs.
fn real_time(
    menu: &Menu,
    mode: Mode,
    cooks: usize,
    speedup: f64,
    live: bool,
) -> anyhow::Result<Timeline> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .context("building the runtime")?;
    let widths = Widths::of(menu);
    let observer: Option<kitchen::Observer> = live.then(|| {
        // Printing from inside a recipe task: one short line, and a closed
        // pipe is ignored here (the final summary write reports it).
        let w = widths.clone();
        Arc::new(move |event: Event<'_>| {
            let line = match event {
                Event::Started(step) => w.step_line(step),
                Event::Ready { recipe, at_ms } => w.ready_line(recipe, at_ms),
            };
            let _ = writeln!(std::io::stdout().lock(), "{line}");
        }) as kitchen::Observer
    });
    if live {
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "cooking {} on the wall clock, {speedup}x faster than life",
            names(menu)
        )?;
        writeln!(out, "{}", widths.heading())?;
    }
    let opts = Options {
        mode,
        cooks,
        pace: Pace::RealTime { speedup },
    };
    Ok(rt.block_on(kitchen::cook(menu, opts, observer)))
}

fn names(menu: &Menu) -> String {
    menu.recipes
        .iter()
        .map(|r| r.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn cooks_text(n: usize) -> String {
    if n == 1 {
        "1 cook".into()
    } else {
        format!("{n} cooks")
    }
}

fn mode_text(mode: Mode) -> &'static str {
    match mode {
        Mode::Interleaved => "interleaved",
        Mode::Sequential => "sequential",
    }
}

fn header(menu: &Menu, t: &Timeline) -> String {
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
struct Widths {
    recipe: usize,
    step: usize,
}

impl Widths {
    fn of(menu: &Menu) -> Widths {
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

    fn heading(&self) -> String {
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

    fn step_line(&self, s: &StepRun) -> String {
        let mut line = format!(
            "{}  {:<rw$}  {:<sw$}  {:<9}  {}",
            kitchen::mmss(s.start_ms),
            s.recipe,
            s.step,
            s.who,
            kitchen::mmss(s.end_ms - s.start_ms),
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
                kitchen::mmss(s.queued_ms())
            ));
        }
        line
    }

    fn ready_line(&self, recipe: &str, at_ms: u64) -> String {
        format!(
            "{}  {:<rw$}  ready",
            kitchen::mmss(at_ms),
            recipe,
            rw = self.recipe
        )
    }
}

/// Every step at its start and every recipe when ready, in time order
/// (a recipe that is ready sorts before a step starting at the same time).
fn timeline_lines(t: &Timeline, w: &Widths) -> Vec<String> {
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

fn total_line(label: &str, ms: u64) -> String {
    format!("{label}: {} ({})", kitchen::minutes(ms), kitchen::mmss(ms))
}

/// The summary: the total, the comparisons that make the talk's point, how
/// busy each cook was, and why the total is what it is.
fn summary(menu: &Menu, t: &Timeline) -> Vec<String> {
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
    let one_cook = kitchen::cook_virtual(menu, Mode::Interleaved, 1).total_ms;
    match t.mode {
        Mode::Sequential => {
            lines.push(format!(
                "{}: the same cook, {} sooner",
                total_line("interleaved, 1 cook", one_cook),
                kitchen::minutes(sequential.saturating_sub(one_cook))
            ));
        }
        Mode::Interleaved => {
            lines.push(format!(
                "{}: one recipe after the other",
                total_line("sequential", sequential)
            ));
            if t.cooks == 1 {
                let two = kitchen::cook_virtual(menu, Mode::Interleaved, 2).total_ms;
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
            kitchen::mmss(floor),
            longest.name
        ));
    }

    for n in 1..=t.cooks {
        let busy = t.cook_busy_ms(n);
        let pct = (busy * 100).checked_div(t.total_ms).unwrap_or(0);
        lines.push(format!(
            "cook {n}: busy {}, idle {} ({pct}% busy)",
            kitchen::mmss(busy),
            kitchen::mmss(t.total_ms.saturating_sub(busy))
        ));
    }
    lines.extend(why(t));
    lines
}

fn saved(from: u64, to: u64) -> String {
    let d = from.saturating_sub(to);
    if d == 0 {
        "nothing".into()
    } else if d < 60_000 {
        format!("{} s", (d + 500) / 1000)
    } else {
        kitchen::minutes(d)
    }
}

/// One sentence on why the total is what it is: which recipe finished last,
/// how long it takes on its own, and what it waited for (and who kept it
/// waiting).
fn why(t: &Timeline) -> Vec<String> {
    let Some((index, last)) = t.last_recipe() else {
        return vec!["why: nothing to cook".into()];
    };
    let mut text = format!(
        "why {}: {} is ready last; on its own it takes {}",
        kitchen::mmss(t.total_ms),
        last.name,
        kitchen::mmss(last.own_ms)
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
                kitchen::mmss(s.queued_ms()),
                kitchen::mmss(s.asked_ms),
                kitchen::mmss(s.start_ms),
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
