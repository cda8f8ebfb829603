//! Integration tests of the kitchen library (one test binary, so it links
//! once): exact schedules on tokio's paused clock, menu validation, charts.

mod charts;
mod menus;
mod schedules;
