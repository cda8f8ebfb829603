//! End-to-end tests that run the real `coop` binary (one test binary for the
//! whole crate, so it links once). Each module covers one command.

mod support;

mod abuse_front_door;
mod abuse_memory;
mod abuse_ops;
mod abuse_origin;
mod abuse_patterns;
mod abuse_time;
mod animals;
mod bench;
mod byhand;
mod chaos;
mod cluster;
mod deploy;
mod durable;
mod examples;
mod faults;
mod guide;
mod hub;
mod kitchen;
mod operators;
mod rig;
mod tls;
mod web;
