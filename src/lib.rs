#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod api;
pub mod cli;
pub mod config;
pub mod duration;
pub mod identity;
pub mod reload;
pub mod server;
pub mod serving;
pub mod store;
pub mod telemetry;
