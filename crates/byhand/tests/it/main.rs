//! Integration tests of the byhand executor (one test binary for the crate):
//! ordering and timing of the executor, and the hand-driven `manual_sleep`.

mod executor;
mod manual;
