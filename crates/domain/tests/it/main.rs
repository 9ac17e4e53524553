//! Integration tests of the domain crate's boundaries.

mod fuzz;
mod purity;
mod workflow_doc;
mod yaml;
