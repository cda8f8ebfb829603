//! Load generators behind `coop bench`.
//!
//! Layout:
//! - `fanout`: hub fan-out (subscribers over real TCP, publishers, latency).
//! - `hold`: many requests held in flight against the slow Animals API.

pub mod fanout;
pub mod hold;
