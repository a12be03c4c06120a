//! Trove's fault classes: the HTTP status and body key every refusal maps to.
//!
//! Upstream maps exception classes to statuses (spec `instances-api.md` §4.2); we map
//! each domain refusal to one of these explicitly, so the HTTP layer never guesses.

use serde::{Deserialize, Serialize};

/// A Trove fault class.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Fault {
    /// 400 `badRequest`.
    BadRequest,
    /// 401 `unauthorized` (upstream's `Forbidden` class maps here).
    Unauthorized,
    /// 403 `forbidden`.
    Forbidden,
    /// 404 `itemNotFound`.
    ItemNotFound,
    /// 409 `conflict`.
    Conflict,
    /// 413 `overLimit`.
    OverLimit,
    /// 422 `unprocessableEntity`.
    UnprocessableEntity,
    /// 501 `notImplemented`.
    NotImplemented,
}

impl Fault {
    /// The HTTP status code.
    pub fn status(self) -> u16 {
        match self {
            Fault::BadRequest => 400,
            Fault::Unauthorized => 401,
            Fault::Forbidden => 403,
            Fault::ItemNotFound => 404,
            Fault::Conflict => 409,
            Fault::OverLimit => 413,
            Fault::UnprocessableEntity => 422,
            Fault::NotImplemented => 501,
        }
    }

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
