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
use kitchen::report::{header, names, summary, timeline_lines, Widths};
use kitchen::{Event, Menu, Mode, Options, Pace, Timeline};

use super::ConfigError;

/// The most cooks `--cooks` accepts: enough to show that more do not help.
const MAX_COOKS: u8 = 16;

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
