//! End-to-end tests: kitchen.
