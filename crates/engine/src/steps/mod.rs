//! Built-in step kinds: `validate`, `rules`, `wait`, `http`.

pub mod http;
pub mod rules;
pub mod validate;
pub mod wait;
