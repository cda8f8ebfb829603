//! Held-requests load generator for the slow Animals API (being built).
