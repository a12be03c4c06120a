//! Given/when/then tests of the ConfigurationGroup aggregate (STYLE §9): every command
//! and every refusal of `decide`, `evolve`, and the event codec.

mod support;

mod codec;
mod create;
mod delete;
mod update;
