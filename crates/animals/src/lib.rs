//! The `animals` library of coop (being built).
