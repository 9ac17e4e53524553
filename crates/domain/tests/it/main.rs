//! Integration tests of the domain crate's boundaries.

mod purity;
mod workflow_doc;
