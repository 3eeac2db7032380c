#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod api;
pub mod bundle;
pub mod cases;
pub mod cli;
pub mod config;
pub mod diagnostics;
pub mod engine;
pub mod relations;
pub mod reload;
pub mod server;
pub mod telemetry;
