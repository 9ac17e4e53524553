//! Integration tests of the domain crate's boundaries.

mod purity;
