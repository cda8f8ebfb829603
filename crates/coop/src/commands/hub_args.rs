//! The hub's flags on `coop serve`, and the glue that turns them into the
//! hub's router. (Owned by the hub work; `serve.rs` only flattens `HubArgs`
//! and merges what `build` returns.)

use clap::Args;

/// Flags of the pub/sub hub.
#[derive(Debug, Args)]
pub struct HubArgs {}
