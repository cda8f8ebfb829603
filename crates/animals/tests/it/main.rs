//! Integration tests of the `animals` library: the router served on a real
//! socket (127.0.0.1:0) in-process, and the client talking to it. One test
//! binary for the crate, so it links once.

mod client;
mod front_door;
mod support;
mod wire;
