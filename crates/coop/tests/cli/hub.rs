//! End-to-end tests: hub.
