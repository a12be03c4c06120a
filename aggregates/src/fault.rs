//! Trove's fault classes: the class (and error body key) every refusal maps to.
//!
//! Upstream maps exception classes to statuses (spec `instances-api.md` §4.2); we map
//! each domain refusal to one of these explicitly, so the HTTP layer never guesses.
//! Which status each class answers is the HTTP layer's business (`src/http/error.rs`).

use serde::{Deserialize, Serialize};

/// A Trove fault class.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Fault {
    /// `badRequest` (400).
    BadRequest,
    /// `unauthorized` (401; upstream's `Forbidden` class maps here).
    Unauthorized,
    /// `forbidden` (403).
    Forbidden,
    /// `itemNotFound` (404).
    ItemNotFound,
    /// `conflict` (409).
    Conflict,
    /// `overLimit` (413).
    OverLimit,
    /// `unprocessableEntity` (422).
    UnprocessableEntity,
    /// `notImplemented` (501).
    NotImplemented,
}

impl Fault {
    /// The key of the error body, e.g. `badRequest`.
    pub fn name(self) -> &'static str {
        match self {
            Fault::BadRequest => "badRequest",
            Fault::Unauthorized => "unauthorized",
            Fault::Forbidden => "forbidden",
            Fault::ItemNotFound => "itemNotFound",
            Fault::Conflict => "conflict",
            Fault::OverLimit => "overLimit",
            Fault::UnprocessableEntity => "unprocessableEntity",
            Fault::NotImplemented => "notImplemented",
        }
    }
}
