//! End-to-end tests: animals.
