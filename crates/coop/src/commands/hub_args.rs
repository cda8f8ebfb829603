//! The hub's flags on `coop serve`, and the glue that turns them into the
//! hub's router. (Owned by the hub work; `serve.rs` only flattens `HubArgs`,
//! calls `build` once at start and merges what it returns.)

use std::sync::Arc;

use clap::Args;
use tokio_util::sync::CancellationToken;

/// Flags of the pub/sub hub.
#[derive(Debug, Args)]
pub struct HubArgs {}

/// What the hub hands to `serve.rs`.
pub struct HubParts {
    /// Routes of the hub (`/`, `/topics/...`, `/api/...`), merged with the
    /// Animals API's router.
    pub router: axum::Router,
    /// Health of the hub's backends for `/healthz`: `Err(reason)` when, say,
    /// Redis is unreachable.
    pub health: Arc<dyn Fn() -> Result<(), String> + Send + Sync>,
}

/// Builds the hub from its flags. `shutdown` is cancelled on SIGINT/SIGTERM;
/// long-lived streams must watch it and end themselves.
pub async fn build(args: &HubArgs, shutdown: CancellationToken) -> anyhow::Result<HubParts> {
    let _ = (args, shutdown);
    Ok(HubParts {
        router: axum::Router::new(),
        health: Arc::new(|| Ok(())),
    })
}
