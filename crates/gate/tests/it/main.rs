//! The gate attacked over real sockets, in-process: a small router and a
//! test-only fast path behind `gate::Gate`, spoken to in raw HTTP/1.1 and
//! HTTP/2. One test binary for the crate, so it links once.

mod limits;
mod protocol;
mod support;
mod timeouts;
