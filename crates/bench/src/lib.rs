//! The `bench` library of coop (being built).
