//! Tamper evidence of the embedded event store: a store written through the store API
//! verifies, and edits made directly to its SQLite file (as someone with access to the
//! file would make them) are found, with the first bad position, both by
//! `troved::store::sqlite::verify` and by the real `troved audit verify` binary.
//!
//! The chain definition is implemented a second time here, from docs/operations.md,
//! so the stored hashes are checked against the documented definition and not only
//! against the code that wrote them; the "attacker" tests use it to recompute hashes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use rusqlite::{params, Connection};
use sha2::{Digest as _, Sha256};
use troved::store::sqlite::{self, Problem, SqliteStore, VerifyReport};
use troved::store::{EventStore, ExpectedRevision, NewEvent, StoreError};
use uuid::Uuid;

// ---------------------------------------------------------------------------------------
// A store with a known layout
// ---------------------------------------------------------------------------------------

const A: &str = "instance-a";
const B: &str = "instance-b";
const C: &str = "instance-c";
const D: &str = "instance-d";

/// Events at fixed positions, then concurrent appends (group commit, with conflicts):
///
/// | position | 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9 | 10 |
/// |----------|---|---|---|---|---|---|---|---|---|----|
/// | stream   | A | A | A | B | C | A | B | B | C | D  |
/// | revision | 0 | 1 | 2 | 0 | 0 | 3 | 1 | 2 | 1 | 0  |
const FIXED: u64 = 10;

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    /// A data directory whose `events.db` holds the layout above plus the concurrent
    /// tail, closed again.
    async fn populated() -> Fixture {
        let fx = Fixture {
            dir: tempfile::tempdir().unwrap(),
        };
        let store = SqliteStore::open(&fx.path()).unwrap();
        write_fixed(&store).await;
        write_concurrently(&store).await;
        store.shutdown().await;
        fx
    }

    fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("events.db")
    }

    fn verify(&self) -> VerifyReport {
        sqlite::verify(&self.path()).unwrap()
    }

    /// A read-write connection for the "attacker"; closing it checkpoints the WAL.
    fn edit(&self) -> Connection {
        Connection::open(self.path()).unwrap()
    }

    fn cli(&self) -> Output {
        run_cli(self.data_dir())
    }
}

fn run_cli(data_dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_troved"))
        .args(["audit", "verify", "--data-dir"])
        .arg(data_dir)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn event(event_type: &str, n: u64) -> NewEvent {
    NewEvent {
        id: Uuid::new_v4(),
        event_type: event_type.to_string(),
        data: format!(r#"{{"n":{n},"name":"orders-{n}"}}"#).into_bytes(),
        metadata: format!(r#"{{"actor":"alice@p1","n":{n}}}"#).into_bytes(),
    }
}

async fn write_fixed(store: &SqliteStore) {
    use ExpectedRevision::{Exact, NoStream};
    let steps: [(&str, ExpectedRevision, u64); 7] = [
        (A, NoStream, 3),
        (B, NoStream, 1),
        (C, NoStream, 1),
        (A, Exact(2), 1),
        (B, Exact(0), 2),
        (C, Exact(0), 1),
        (D, NoStream, 1),
    ];
    let mut n = 0;
    for (stream, expected, count) in steps {
        let events = (0..count)
            .map(|k| event("InstanceRenamed", n + k))
            .collect();
        n += count;
        store.append(stream, expected, events).await.unwrap();
    }
    assert_eq!(store.head().await.unwrap().commit, FIXED);
}

/// 16 writers on their own streams and 8 racing on one shared stream with exact
/// revisions (so batches mix successes and conflicts), all queued at once so the writer
/// batches them.
async fn write_concurrently(store: &SqliteStore) {
    let store = Arc::new(store.clone());
    let mut tasks = Vec::new();
    for w in 0..16u64 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let stream = format!("instance-w{w}");
            let mut expected = ExpectedRevision::NoStream;
            for n in 0..5 {
                let o = store
                    .append(&stream, expected, vec![event("Tested", n)])
                    .await
                    .unwrap();
                expected = ExpectedRevision::Exact(o.next_revision);
            }
        }));
    }
    for w in 0..8u64 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            for n in 0..5 {
                loop {
                    let current = store.read_stream("instance-shared").await.unwrap();
                    let expected = match current.last() {
                        Some(e) => ExpectedRevision::Exact(e.revision),
                        None => ExpectedRevision::NoStream,
                    };
                    let events = vec![event("Tested", w * 10 + n), event("Tested", n)];
                    match store.append("instance-shared", expected, events).await {
                        Ok(_) => break,
                        Err(StoreError::WrongExpectedVersion { .. }) => continue,
                        Err(e) => panic!("{e}"),
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

// ---------------------------------------------------------------------------------------
// The chain definition, implemented again from docs/operations.md
// ---------------------------------------------------------------------------------------

struct StoredRow {
    position: u64,
    stream: String,
    revision: u64,
    id: Vec<u8>,
    event_type: String,
    data: Vec<u8>,
    metadata: Vec<u8>,
    recorded_at: i64,
    stream_hash: Vec<u8>,
    all_hash: Vec<u8>,
}

fn rows(conn: &Connection) -> Vec<StoredRow> {
    let mut stmt = conn
        .prepare(
            "SELECT position, stream, revision, id, event_type, data, metadata, recorded_at, \
             stream_hash, all_hash FROM events ORDER BY position",
        )
        .unwrap();
    stmt.query_map([], |r| {
        Ok(StoredRow {
            position: r.get::<_, i64>(0)? as u64,
            stream: r.get(1)?,
            revision: r.get::<_, i64>(2)? as u64,
            id: r.get(3)?,
            event_type: r.get(4)?,
            data: r.get(5)?,
            metadata: r.get(6)?,
            recorded_at: r.get(7)?,
            stream_hash: r.get(8)?,
            all_hash: r.get(9)?,
        })
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

fn row_at(conn: &Connection, position: u64) -> StoredRow {
    rows(conn)
        .into_iter()
        .find(|r| r.position == position)
        .unwrap()
}

fn field(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_be_bytes());
    h.update(bytes);
}

fn stream_link(prev: &[u8], row: &StoredRow) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(b"troved/stream/v1");
    h.update(prev);
    field(&mut h, row.stream.as_bytes());
    field(&mut h, &row.revision.to_be_bytes());
    field(&mut h, &row.id);
    field(&mut h, row.event_type.as_bytes());
    field(&mut h, &row.data);
    field(&mut h, &row.metadata);
    field(&mut h, &row.recorded_at.to_be_bytes());
    h.finalize().to_vec()
}

fn all_link(prev: &[u8], stream_hash: &[u8], position: u64) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(b"troved/all/v1");
    h.update(prev);
    h.update(stream_hash);
    h.update(position.to_be_bytes());
    h.finalize().to_vec()
}

/// The stream hash of the event before `row` in its stream (zeros for revision 0).
fn stream_prev(conn: &Connection, row: &StoredRow) -> Vec<u8> {
    rows(conn)
        .into_iter()
        .rfind(|r| r.stream == row.stream && r.position < row.position)
        .map_or(vec![0; 32], |r| r.stream_hash)
}

fn all_prev(conn: &Connection, position: u64) -> Vec<u8> {
    match position {
        1 => vec![0; 32],
        p => row_at(conn, p - 1).all_hash,
    }
}

/// Flips one bit of one byte of the event's data.
fn flip_data_byte(conn: &Connection, position: u64) {
    let mut data: Vec<u8> = conn
        .query_row(
            "SELECT data FROM events WHERE position = ?1",
            [position],
            |r| r.get(0),
        )
        .unwrap();
    data[3] ^= 0x01;
    conn.execute(
        "UPDATE events SET data = ?1 WHERE position = ?2",
        params![data, position],
    )
    .unwrap();
}

fn assert_finding(report: &VerifyReport, position: u64, problem: Problem) {
    let finding = report.finding.as_ref().expect("tampering must be found");
    assert_eq!(
        (finding.position, &finding.problem),
        (position, &problem),
        "{finding}"
    );
    assert_eq!(report.last_position, position - 1);
    assert_eq!(report.events, position - 1);
}

fn assert_cli_names(fx: &Fixture, first_bad: &str) {
    let out = fx.cli();
    let text = stdout(&out);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("result: TAMPERED\n"), "{text}");
    assert!(
        text.contains(&format!("first bad position: {first_bad}\n")),
        "{text}"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tampered with"), "{err}");
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clean_store_verifies_ok_through_the_api_and_the_cli() {
    let fx = Fixture::populated().await;
    let report = fx.verify();
    // 10 fixed, 16 × 5 own streams, 8 × 5 appends of 2 to the shared one.
    let events = FIXED + 80 + 80;
    assert!(report.is_intact(), "{:?}", report.finding);
    assert_eq!(
        (report.events, report.streams, report.last_position),
        (events, 4 + 16 + 1, events)
    );

    let out = fx.cli();
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{:?}", out.stderr);
    assert!(text.contains("result: OK\n"), "{text}");
    assert!(
        text.contains(&format!(
            "events: {events} events in 21 streams (positions 1..{events})\n"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "$all digest at position {events}: {}\n",
            hex::encode(report.digest)
        )),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stored_hashes_follow_the_documented_chain_definition() {
    let fx = Fixture::populated().await;
    let conn = fx.edit();
    let mut all = vec![0; 32];
    let mut streams = std::collections::HashMap::<String, Vec<u8>>::new();
    for row in rows(&conn) {
        let prev = streams.get(&row.stream).cloned().unwrap_or(vec![0; 32]);
        let sh = stream_link(&prev, &row);
        assert_eq!(sh, row.stream_hash, "stream hash at {}", row.position);
        all = all_link(&all, &sh, row.position);
        assert_eq!(all, row.all_hash, "$all hash at {}", row.position);
        streams.insert(row.stream.clone(), sh);
    }
    assert_eq!(all, fx.verify().digest.to_vec());
}

/// (a) One byte of one event's data changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn edited_byte_is_found_at_its_position() {
    let fx = Fixture::populated().await;
    flip_data_byte(&fx.edit(), 6);
    let report = fx.verify();
    assert_finding(&report, 6, Problem::StreamHashMismatch);
    let finding = report.finding.unwrap();
    assert_eq!(
        (finding.stream.as_deref(), finding.revision),
        (Some(A), Some(3))
    );
    assert_cli_names(&fx, "6 (instance-a, revision 3)");
}

/// (b) One event deleted: the gap in positions names it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn removed_event_is_found_at_its_position() {
    let fx = Fixture::populated().await;
    fx.edit()
        .execute("DELETE FROM events WHERE position = 4", [])
        .unwrap();
    assert_finding(&fx.verify(), 4, Problem::Missing { next: 5 });
    assert_cli_names(&fx, "4");
}

/// (b) One event deleted and the later positions closed up to hide the gap: the `$all`
/// chain (which covers positions) breaks where the event was.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn removed_event_with_positions_closed_up_is_found_at_its_position() {
    let fx = Fixture::populated().await;
    let conn = fx.edit();
    conn.execute_batch(
        "DELETE FROM events WHERE position = 4;
         UPDATE events SET position = position + 999999 WHERE position > 4;
         UPDATE events SET position = position - 1000000 WHERE position > 1000000;",
    )
    .unwrap();
    drop(conn);
    assert_finding(&fx.verify(), 4, Problem::AllHashMismatch);
}

/// (b) The same within one stream: removing B's revision 1 (position 7) leaves B
/// jumping from revision 0 to 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn removed_event_of_a_stream_with_positions_closed_up_breaks_the_revisions() {
    let fx = Fixture::populated().await;
    fx.edit()
        .execute_batch(
            "DELETE FROM events WHERE position = 7;
             UPDATE events SET position = position + 999999 WHERE position > 7;
             UPDATE events SET position = position - 1000000 WHERE position > 1000000;",
        )
        .unwrap();
    assert_finding(
        &fx.verify(),
        7,
        Problem::RevisionOutOfOrder {
            expected: 1,
            found: 2,
        },
    );
    assert_cli_names(&fx, "7 (instance-b, revision 2)");
}

/// (c) Two events swapped: their ids, types and data trade places between positions 3
/// and 7 (stream, revision and hashes stay with the position).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn swapped_events_are_found_at_the_first_swapped_position() {
    let fx = Fixture::populated().await;
    fx.edit()
        .execute_batch(
            "CREATE TEMP TABLE t AS SELECT position, id, event_type, data FROM events \
                 WHERE position IN (3, 7);
             UPDATE events SET id = randomblob(16) WHERE position IN (3, 7);
             UPDATE events SET (id, event_type, data) = \
                 (SELECT id, event_type, data FROM t WHERE t.position = 10 - events.position) \
                 WHERE position IN (3, 7);",
        )
        .unwrap();
    assert_finding(&fx.verify(), 3, Problem::StreamHashMismatch);
    assert_cli_names(&fx, "3 (instance-a, revision 2)");
}

/// (c) Two whole rows of different streams swapped, hashes included: each stream's
/// chain is still fine, the `$all` chain is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn swapped_rows_with_their_hashes_are_found_by_the_all_chain() {
    let fx = Fixture::populated().await;
    fx.edit()
        .execute_batch(
            "UPDATE events SET position = 1000004 WHERE position = 4;
             UPDATE events SET position = 4 WHERE position = 5;
             UPDATE events SET position = 5 WHERE position = 1000004;",
        )
        .unwrap();
    assert_finding(&fx.verify(), 4, Problem::AllHashMismatch);
    assert_cli_names(&fx, "4 (instance-c, revision 0)");
}

/// (d) An edit whose stream hash was recomputed: the `$all` link of the row no longer
/// matches.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn edit_with_recomputed_stream_hash_is_found_by_the_all_chain() {
    let fx = Fixture::populated().await;
    let conn = fx.edit();
    flip_data_byte(&conn, 6);
    let row = row_at(&conn, 6);
    let sh = stream_link(&stream_prev(&conn, &row), &row);
    conn.execute(
        "UPDATE events SET stream_hash = ?1 WHERE position = 6",
        [sh],
    )
    .unwrap();
    drop(conn);
    assert_finding(&fx.verify(), 6, Problem::AllHashMismatch);
}

/// (d) An edit with both of its row's hashes recomputed: the row itself checks out, the
/// next row's `$all` link (chained on the old digest) does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn edit_with_both_hashes_recomputed_is_found_at_the_next_row() {
    let fx = Fixture::populated().await;
    let conn = fx.edit();
    flip_data_byte(&conn, 6);
    let row = row_at(&conn, 6);
    let sh = stream_link(&stream_prev(&conn, &row), &row);
    let all = all_link(&all_prev(&conn, 6), &sh, 6);
    conn.execute(
        "UPDATE events SET stream_hash = ?1, all_hash = ?2 WHERE position = 6",
        [sh, all],
    )
    .unwrap();
    drop(conn);
    assert_finding(&fx.verify(), 7, Problem::AllHashMismatch);
    assert_cli_names(&fx, "7 (instance-b, revision 1)");
}

/// (d) The limit, stated as a test: rewriting every hash from the edit to the end
/// passes the chain check, and only the `$all` digest kept from an earlier verify
/// shows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rewriting_every_later_hash_is_only_found_against_a_kept_digest() {
    let fx = Fixture::populated().await;
    let kept = fx.verify();
    let conn = fx.edit();
    flip_data_byte(&conn, 6);
    let mut all = all_prev(&conn, 6);
    let mut streams = std::collections::HashMap::<String, Vec<u8>>::new();
    for row in rows(&conn).into_iter().filter(|r| r.position >= 6) {
        let prev = match streams.get(&row.stream) {
            Some(h) => h.clone(),
            None => stream_prev(&conn, &row),
        };
        let sh = stream_link(&prev, &row);
        all = all_link(&all, &sh, row.position);
        conn.execute(
            "UPDATE events SET stream_hash = ?1, all_hash = ?2 WHERE position = ?3",
            params![sh, all, row.position],
        )
        .unwrap();
        streams.insert(row.stream.clone(), sh);
    }
    drop(conn);
    let forged = fx.verify();
    assert!(forged.is_intact());
    assert_eq!(forged.last_position, kept.last_position);
    assert_ne!(forged.digest, kept.digest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn missing_hash_is_found() {
    let fx = Fixture::populated().await;
    fx.edit()
        .execute("UPDATE events SET all_hash = NULL WHERE position = 9", [])
        .unwrap();
    assert_finding(&fx.verify(), 9, Problem::NoHash);
}

/// The writer refuses to extend a chain whose last link is gone instead of starting it
/// over (which would hide the damage from the next verify).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writer_refuses_to_chain_on_a_missing_hash() {
    let fx = Fixture::populated().await;
    fx.edit()
        .execute(
            "UPDATE events SET stream_hash = NULL WHERE position = 10",
            [],
        )
        .unwrap();
    let store = SqliteStore::open(&fx.path()).unwrap();
    let refused = store
        .append(D, ExpectedRevision::Exact(0), vec![event("Tested", 1)])
        .await;
    assert!(
        matches!(refused, Err(StoreError::Corrupt(_))),
        "{refused:?}"
    );
    // Other streams are unaffected.
    store
        .append(A, ExpectedRevision::Exact(3), vec![event("Tested", 2)])
        .await
        .unwrap();
    store.shutdown().await;
}

/// Likewise for the `$all` chain: without the newest event's `$all` hash nothing can be
/// appended (every batch is refused and rolled back), and verify names that event.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writer_refuses_to_append_after_a_missing_all_hash() {
    let fx = Fixture::populated().await;
    let head = fx.verify().last_position;
    fx.edit()
        .execute(
            "UPDATE events SET all_hash = NULL WHERE position = ?1",
            [head],
        )
        .unwrap();
    let store = SqliteStore::open(&fx.path()).unwrap();
    let refused = store
        .append(A, ExpectedRevision::Exact(3), vec![event("Tested", 2)])
        .await;
    match refused {
        Err(StoreError::Unavailable(m)) if m.contains("$all hash") => {}
        other => panic!("{other:?}"),
    }
    store.shutdown().await;
    assert_finding(&fx.verify(), head, Problem::NoHash);
}

/// The audit reads beside a running store (the writer holds the file and its WAL) and
/// leaves every byte of the file and the WAL as it found them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn verify_runs_beside_an_open_store_and_changes_nothing() {
    let fx = Fixture::populated().await;
    let store = SqliteStore::open(&fx.path()).unwrap();
    store
        .append(A, ExpectedRevision::Exact(3), vec![event("Tested", 1)])
        .await
        .unwrap();
    let wal = fx.dir.path().join("events.db-wal");
    let before = (
        std::fs::read(fx.path()).unwrap(),
        std::fs::read(&wal).unwrap(),
    );
    let report = fx.verify();
    let out = fx.cli();
    let after = (
        std::fs::read(fx.path()).unwrap(),
        std::fs::read(&wal).unwrap(),
    );
    assert!(report.is_intact(), "{:?}", report.finding);
    assert_eq!(report.last_position, FIXED + 160 + 1);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(before == after, "verify changed the store file or its WAL");
    store.shutdown().await;
}

/// A store written before tamper evidence (schema version 1: no hash columns) is
/// migrated when troved opens it, and gets exactly the chains the writer would have
/// written.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn version_1_store_is_migrated_on_open_and_verifies() {
    let fx = Fixture::populated().await;
    let original = fx.verify();
    fx.edit()
        .execute_batch(
            "ALTER TABLE events DROP COLUMN stream_hash;
             ALTER TABLE events DROP COLUMN all_hash;
             UPDATE meta SET value = '1' WHERE key = 'schema_version';",
        )
        .unwrap();
    let unmigrated = sqlite::verify(&fx.path()).unwrap_err().to_string();
    assert!(unmigrated.contains("schema version 1"), "{unmigrated}");
    let out = fx.cli();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("schema version 1"),
        "{out:?}"
    );

    let store = SqliteStore::open(&fx.path()).unwrap();
    assert_eq!(store.read_stream(A).await.unwrap().len(), 4);
    store
        .append(A, ExpectedRevision::Exact(3), vec![event("Tested", 1)])
        .await
        .unwrap();
    store.shutdown().await;

    let version: String = fx
        .edit()
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(version, "2");
    let migrated = fx.verify();
    assert!(migrated.is_intact(), "{:?}", migrated.finding);
    assert_eq!(migrated.events, original.events + 1);
    // The migration recomputed the same chains: the digest at the old head is the
    // one the writer had produced, so a kept digest still proves the old part.
    let conn = fx.edit();
    let at_old_head = row_at(&conn, original.last_position).all_hash;
    assert_eq!(at_old_head, original.digest.to_vec());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn newer_schema_still_fails_to_open_and_to_verify() {
    let fx = Fixture::populated().await;
    fx.edit()
        .execute(
            "UPDATE meta SET value = '3' WHERE key = 'schema_version'",
            [],
        )
        .unwrap();
    let open = SqliteStore::open(&fx.path()).err().unwrap().to_string();
    assert!(open.contains("newer"), "{open}");
    assert!(sqlite::verify(&fx.path()).is_err());
}

#[test]
fn missing_store_is_an_error_and_is_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_cli(dir.path());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no event store"), "{err}");
    assert!(!dir.path().join("events.db").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn empty_store_verifies_with_the_genesis_digest() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("events.db")).unwrap();
    store.shutdown().await;
    let out = run_cli(dir.path());
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("events: 0 events in 0 streams (no positions)\n"),
        "{text}"
    );
    assert!(
        text.contains(&format!("$all digest at position 0: {}\n", "0".repeat(64))),
        "{text}"
    );
}
