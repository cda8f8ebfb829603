//! A std-only executor for teaching (being built).
