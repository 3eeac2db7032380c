//! Helpers shared by verdict-core's integration tests.

pub mod fga;
