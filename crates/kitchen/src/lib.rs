//! The `kitchen` library of coop (being built).
