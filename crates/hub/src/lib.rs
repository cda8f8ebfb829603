//! The `hub` library of coop (being built).
