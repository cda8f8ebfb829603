//! Integration tests of the load generators: each runs a generator
//! in-process against a small real server on a real port-0 socket and
//! checks the counts it reports (and that it notices what went wrong).

mod fanout;
mod hold;
mod servers;
