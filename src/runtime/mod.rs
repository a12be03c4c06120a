//! The runtime: the command path ([`commands`]), the projector ([`projector`]) and the
//! store codec ([`codec`]).

pub mod codec;
pub mod commands;
pub mod configurations;
pub mod lookups;
pub mod projector;
pub mod rebuild;
pub mod snapshot;
