//! Integration tests of the hub: a real server on 127.0.0.1:0 (the hub's
//! router served by axum in-process), real clients over TCP.

mod support;

mod api;
mod auth_limits;
mod bounds;
mod cluster;
mod durable;
mod resume;
mod slow;
mod talk;
mod transports;
mod websocket;
