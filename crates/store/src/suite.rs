//! Behaviour suite (filled in below).
