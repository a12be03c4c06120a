//! Tamper evidence: the hash chains every stored event is linked into, and the backfill
//! that links the events of a file written before the chains existed.
//!
//! Two chains, both SHA-256, both starting from 32 zero bytes ([`GENESIS`]):
//!
//! ```text
//! stream_hash(e) = SHA-256("troved/stream/v1" || stream_hash(previous event of e's stream)
//!                          || canonical(e))
//! all_hash(p)    = SHA-256("troved/all/v1" || all_hash(p - 1) || stream_hash(event at p)
//!                          || u64_be(p))
//! canonical(e)   = field(stream) || field(u64_be(revision)) || field(id, 16 raw bytes)
//!                  || field(event_type) || field(data) || field(metadata)
//!                  || field(i64_be(recorded_at))
//! field(bytes)   = u64_be(len(bytes)) || bytes
//! ```
//!
//! Every field is length-prefixed, so no two different events share a canonical form.
//! The stream chain makes an edit, removal or reordering inside a stream visible; the
//! `$all` chain covers the position and commits to each event's stream hash, so a
//! reordering across streams, or an event whose stream hash was recomputed after an
//! edit, breaks it. Neither chain is keyed: someone who can write the file and
//! recomputes every hash from the edit to the end is only caught against a digest kept
//! elsewhere (docs/operations.md, "Tamper evidence").
//!
//! This module only defines and computes the chains; checking them is [`super::verify`].
//! Changing the definition breaks every stored chain: it needs a new schema version and
//! a migration, and the `v1` tags say which definition a digest follows.

use std::collections::HashMap;

use rusqlite::Connection;
use sha2::{Digest as _, Sha256};

use super::sql::{from_sql_int, sql_err, to_sql_int};
use crate::store::StoreError;

/// A SHA-256 value as stored in the `stream_hash` and `all_hash` columns.
pub type Digest = [u8; 32];

/// The "previous hash" of the first event of every stream and of position 1.
pub const GENESIS: Digest = [0; 32];

/// Domain separation: a stream hash can never be mistaken for an `$all` hash.
const STREAM_TAG: &[u8] = b"troved/stream/v1";
const ALL_TAG: &[u8] = b"troved/all/v1";

/// Events the migration reads per query while backfilling: bounds its memory and never
/// updates rows under a running SELECT.
const BACKFILL_PAGE: i64 = 1000;

/// The stored fields of one event that its stream hash covers (everything in its row
/// but the position, which the `$all` chain covers, and the hashes themselves).
pub(super) struct EventFields<'a> {
    pub(super) stream: &'a str,
    pub(super) revision: u64,
    /// The stored id bytes (16 for every row we write); hashed as stored, so a verifier
    /// never has to decode a value before it can tell whether it was changed.
    pub(super) id: &'a [u8],
    pub(super) event_type: &'a str,
    pub(super) data: &'a [u8],
    pub(super) metadata: &'a [u8],
    pub(super) recorded_at: i64,
}

/// The stream hash of `event`, whose stream predecessor has stream hash `prev`
/// ([`GENESIS`] for revision 0).
pub(super) fn stream_hash(prev: &Digest, event: &EventFields<'_>) -> Digest {
    let mut h = Sha256::new();
    h.update(STREAM_TAG);
    h.update(prev);
    field(&mut h, event.stream.as_bytes());
    field(&mut h, &event.revision.to_be_bytes());
    field(&mut h, event.id);
    field(&mut h, event.event_type.as_bytes());
    field(&mut h, event.data);
    field(&mut h, event.metadata);
    field(&mut h, &event.recorded_at.to_be_bytes());
    h.finalize().into()
}

/// The `$all` hash at `position`, after `prev` (the `$all` hash at `position - 1`,
/// [`GENESIS`] for position 1), for an event with stream hash `stream_hash`.
pub(super) fn all_hash(prev: &Digest, stream_hash: &Digest, position: u64) -> Digest {
    let mut h = Sha256::new();
    h.update(ALL_TAG);
    h.update(prev);
    h.update(stream_hash);
    h.update(position.to_be_bytes());
    h.finalize().into()
}

fn field(h: &mut Sha256, bytes: &[u8]) {
    // usize -> u64 is lossless on every platform Rust supports.
    h.update((bytes.len() as u64).to_be_bytes());
    h.update(bytes);
}

/// A stored hash column back as a digest; `None` when it is NULL or not 32 bytes.
pub(super) fn stored_digest(value: Option<Vec<u8>>) -> Option<Digest> {
    value.and_then(|v| Digest::try_from(v.as_slice()).ok())
}

/// One row as the backfill reads it.
struct Row {
    position: u64,
    stream: String,
    revision: u64,
    id: Vec<u8>,
    event_type: String,
    data: Vec<u8>,
    metadata: Vec<u8>,
    recorded_at: i64,
}

/// Computes and stores both chains for every row, in `$all` order; the schema
/// migration to version 2 calls it inside its transaction, after adding the columns.
/// Returns how many events it linked.
///
/// It trusts the rows as they are: a file edited before the migration gets chains
/// over the edited content. Tamper evidence starts at the migration.
pub(super) fn backfill(conn: &Connection) -> Result<u64, StoreError> {
    let mut select = conn
        .prepare(
            "SELECT position, stream, revision, id, event_type, data, metadata, recorded_at \
             FROM events WHERE position > ?1 ORDER BY position LIMIT ?2",
        )
        .map_err(sql_err)?;
    let mut update = conn
        .prepare("UPDATE events SET stream_hash = ?1, all_hash = ?2 WHERE position = ?3")
        .map_err(sql_err)?;
    let mut streams: HashMap<String, Digest> = HashMap::new();
    let mut all = GENESIS;
    let mut last = 0u64;
    let mut linked = 0u64;
    loop {
        let page = select
            .query_map((to_sql_int(last)?, BACKFILL_PAGE), |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                ))
            })
            .map_err(sql_err)?
            .map(|r| {
                let (position, stream, revision, id, event_type, data, metadata, recorded_at) =
                    r.map_err(sql_err)?;
                Ok(Row {
                    position: from_sql_int(position, "position")?,
                    stream,
                    revision: from_sql_int(revision, "revision")?,
                    id,
                    event_type,
                    data,
                    metadata,
                    recorded_at,
                })
            })
            .collect::<Result<Vec<Row>, StoreError>>()?;
        let Some(tail) = page.last() else {
            return Ok(linked);
        };
        last = tail.position;
        for row in &page {
            let prev = streams.get(&row.stream).unwrap_or(&GENESIS);
            let sh = stream_hash(
                prev,
                &EventFields {
                    stream: &row.stream,
                    revision: row.revision,
                    id: &row.id,
                    event_type: &row.event_type,
                    data: &row.data,
                    metadata: &row.metadata,
                    recorded_at: row.recorded_at,
                },
            );
            all = all_hash(&all, &sh, row.position);
            update
                .execute((&sh[..], &all[..], to_sql_int(row.position)?))
                .map_err(sql_err)?;
            streams.insert(row.stream.clone(), sh);
            linked += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event<'a>(data: &'a [u8]) -> EventFields<'a> {
        EventFields {
            stream: "instance-1",
            revision: 0,
            id: &[7; 16],
            event_type: "InstanceCreated",
            data,
            metadata: b"{}",
            recorded_at: 1,
        }
    }

    #[test]
    fn moving_bytes_between_fields_changes_the_hash() {
        // Without length prefixes these two would hash the same bytes.
        let a = EventFields {
            event_type: "InstanceCreatedx",
            data: b"y",
            ..event(b"")
        };
        let b = EventFields {
            event_type: "InstanceCreated",
            data: b"xy",
            ..event(b"")
        };
        assert_ne!(stream_hash(&GENESIS, &a), stream_hash(&GENESIS, &b));
    }

    #[test]
    fn every_input_of_a_link_changes_it() {
        let base = stream_hash(&GENESIS, &event(b"{}"));
        assert_ne!(base, stream_hash(&[1; 32], &event(b"{}")));
        assert_ne!(base, stream_hash(&GENESIS, &event(b"{ }")));
        let all = all_hash(&GENESIS, &base, 1);
        assert_ne!(all, all_hash(&GENESIS, &base, 2));
        assert_ne!(all, all_hash(&[1; 32], &base, 1));
        assert_ne!(all, all_hash(&GENESIS, &GENESIS, 1));
    }

    #[test]
    fn hex_is_lower_case_and_complete() {
        let mut d = GENESIS;
        d[0] = 0xab;
        d[31] = 0x01;
        let hex = hex::encode(d);
        assert_eq!(hex.len(), 64);
        assert!(hex.starts_with("ab00"));
        assert!(hex.ends_with("0001"));
    }
}
