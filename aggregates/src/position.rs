//! The global position of an event in `$all`, shared by the store port (which assigns
//! it) and the read models (which record the last one they applied).

use std::fmt;

/// A global position in `$all`. Ordered; [`Position::START`] is before every event.
///
/// Two numbers because EventStoreDB positions are (commit, prepare) pairs; the embedded
/// store uses its dense sequence number for both. Never do arithmetic on positions.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct Position {
    /// Commit position (EventStoreDB) or the dense sequence number (embedded store).
    pub commit: u64,
    /// Prepare position (EventStoreDB) or the same sequence number (embedded store).
    pub prepare: u64,
}

impl Position {
    /// Before the first event: reading from here (exclusive) yields everything.
    pub const START: Position = Position {
        commit: 0,
        prepare: 0,
    };
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.commit == self.prepare {
            write!(f, "{}", self.commit)
        } else {
            write!(f, "{}/{}", self.commit, self.prepare)
        }
    }
}
