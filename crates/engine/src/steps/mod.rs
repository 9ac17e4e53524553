//! Built-in step kinds: `validate`, `rules`, `wait`, `http`, `review`.

pub mod http;
pub mod review;
pub mod rules;
pub mod validate;
pub mod wait;
