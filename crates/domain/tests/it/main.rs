//! Integration tests of the domain crate's boundaries.

mod expr;
mod fuzz;
mod purity;
mod url;
mod workflow_doc;
mod yaml;
