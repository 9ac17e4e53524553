//! Integration tests of the domain crate's boundaries.

mod calibration;
mod diag;
mod expr;
mod fuzz;
mod purity;
mod steps;
mod url;
mod workflow;
mod workflow_doc;
mod yaml;
