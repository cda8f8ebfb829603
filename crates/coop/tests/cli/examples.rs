//! End-to-end tests: examples.
