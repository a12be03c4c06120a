//! Given/when/then tests of the Instance aggregate (STYLE §9): `decide` against the
//! spec's order of checks and messages (`instances-api.md` §8, §11, §12), `evolve` and
//! the status model (`instance-lifecycle.md` §2-§5), and the event codec.

pub(crate) mod support;

mod actions;
mod codec;
mod create;
mod delete;
mod errors;
mod evolve;
mod guestdb;
mod lost;
mod replica_set;
mod reports;
mod status;
mod supervision;
mod update;
