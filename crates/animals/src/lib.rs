//! The Animals API of the talk: a deliberately slow web service and the
//! clients that call it, sequentially or concurrently.
//!
//! Layout:
//! - [`catalog`]: the animals and their sounds (the talk's twelve built in,
//!   `--catalog FILE` to replace or extend), name rules.
//! - [`server`]: `router(Farm) -> axum::Router` for `/animals` and
//!   `/animals/{name}`: delay, fault injection, JSON, metrics.
//! - [`direct`]: the fast path of `coop serve` for plain animal requests,
//!   answered from the socket without hyper, and over HTTP/2 without the
//!   router (same answers, less memory and CPU).
//! - [`faults`]: the fault-injection fixture: parameters, scenario files,
//!   the seeded draw of one request's outcome, and its application on a
//!   raw socket (HTTP/1.1) or through hyper (HTTP/2).
//! - [`client`]: the ordered, bounded, retrying client behind `coop speak`,
//!   and the timing summary.
//! - `h1`: the client's HTTP/1.1 path for plain `http://` (a socket and a
//!   small buffer per connection, no task; heads and bodies decoded by the
//!   `http1` crate).
//! - [`error`]: the library's error type.
//!
//! The library never binds a socket or reads the process environment: the
//! binary (`coop serve`, `coop speak`) does that and hands in a config.

pub mod catalog;
pub mod client;
pub mod direct;
pub mod error;
pub mod faults;
mod h1;
pub mod race;
pub mod server;

pub use catalog::Catalog;
pub use client::{Client, ClientConfig, Mishaps, Outcome, Timing};
pub use direct::Direct;
pub use error::Error;
pub use server::{router, Config, Farm};
