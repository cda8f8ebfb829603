//! Hub fan-out load generator (being built).
