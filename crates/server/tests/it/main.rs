//! Integration tests of the HTTP API through `app().oneshot()` against a
//! real SQLite store and a running engine. One binary, modules by area.

mod auth;
mod browser;
mod browser_calibration;
mod browser_console;
mod browser_form;
mod calibration;
mod conn_limits;
mod console;
mod events;
mod identity;
mod inbox;
mod intake;
mod integrations;
mod misc;
mod reviews;
mod runs;
mod support;
mod tidy;
mod webhook;
