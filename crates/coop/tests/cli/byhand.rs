//! End-to-end tests: byhand.
