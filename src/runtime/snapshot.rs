//! Read-model snapshots: the read models and the log position they reflect, saved in
//! the data directory so a restart loads them and replays only the events after that
//! position instead of the whole log (with 1,000,000 events the replay alone is several
//! seconds on 2 cores).
//!
//! A snapshot is only a cache of the log: it is written atomically (temporary file,
//! fsync, rename; mode 0600) and a start uses it only if all of these hold, otherwise it
//! logs why and replays the log from the start:
//! - the file is complete and undamaged (its length and SHA-256 are in its header);
//! - it was written by this very build (the executable's SHA-256 is in its header: a
//!   build whose `evolve` or models differ must not trust another build's folds);
//! - the log still holds, at the snapshot's position, the event with the id recorded
//!   there (read as "the first event after the one before it", positions every store
//!   adapter knows): a replaced, restored-from-backup or migrated log is noticed.
//!
//! File format (`read-models.snapshot`), three parts separated by newlines: the line
//! `troved read-model snapshot`, a JSON [`Header`] on one line, and the JSON [`Body`]
//! (instance records and configuration groups; the indexes are derived again at load,
//! see `projections::models::persist`). JSON because serde_json is already a dependency
//! and loading 100,000 instances (~110 MB) takes ~0.4 s, well inside the start-up budget;
//! a binary encoding would be smaller and faster but is one more dependency.
//!
//! The server writes one at a clean shutdown (if the models moved since the last one) and
//! every [`EVERY_EVENTS`] applied events (checked every [`CHECK_EVERY`]); taking it holds
//! the projector's gate while the records are copied (tens of milliseconds per 100,000
//! instances), the encoding and writing happen after.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use projections::configurations::ConfigurationImage;
use projections::models::InstancesImage;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tokio::sync::watch;
use uuid::Uuid;

use super::projector::{Cursor, ReadModels};
use crate::store::{EventStore, Position};

/// The snapshot's file name in the data directory.
pub const FILE: &str = "read-models.snapshot";

/// First line of every snapshot file.
const MAGIC: &str = "troved read-model snapshot";

/// Version of the file layout (header and body). Bump it when either changes shape.
const FORMAT: u32 = 1;

/// A new snapshot is written once this many events were applied since the last one.
pub const EVERY_EVENTS: u64 = 100_000;

/// How often the server checks whether a new snapshot is due.
pub const CHECK_EVERY: Duration = Duration::from_secs(60);

/// The snapshot's second line.
#[derive(Debug, Serialize, Deserialize)]
struct Header {
    format: u32,
    /// Which build wrote it ([`build_stamp`]).
    build: String,
    /// The position the models reflect: the last event applied.
    position: Position,
    /// The id of the event at `position`.
    event_id: Uuid,
    /// The position of the event before it (`START` for the first event).
    before: Position,
    written: DateTime<Utc>,
    instances: usize,
    configurations: usize,
    /// Length and SHA-256 (hex) of the body that follows the header line.
    body_len: u64,
    body_sha256: String,
}

/// The models.
#[derive(Debug, Serialize, Deserialize)]
struct Body {
    instances: InstancesImage,
    configurations: Vec<ConfigurationImage>,
    /// Each backup's state and the position of its last event.
    #[serde(default)]
    backups: Vec<(aggregates::backup::Backup, Position)>,
    /// Each project's quota overrides (none in a snapshot of an older build).
    #[serde(default)]
    quotas: std::collections::BTreeMap<String, aggregates::quota::Quota>,
}

/// Where the snapshot of the data directory `dir` lives.
pub fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// Where a snapshot is written before it is renamed into place.
fn temporary_path(dir: &Path) -> PathBuf {
    dir.join(format!("{FILE}.tmp"))
}

/// `troved <version> <SHA-256 of the running executable>`; `None` if the executable
/// cannot be read (then snapshots are neither trusted nor written). Computed once per
/// process (~0.1 s for the release binary).
fn build_stamp() -> Option<&'static str> {
    static STAMP: OnceLock<Option<String>> = OnceLock::new();
    STAMP
        .get_or_init(|| {
            let exe = std::env::current_exe().ok()?;
            let mut file = std::fs::File::open(exe).ok()?;
            let mut hasher = Sha256::new();
            std::io::copy(&mut file, &mut hasher).ok()?;
            Some(format!(
                "troved {} {}",
                env!("CARGO_PKG_VERSION"),
                hex::encode(hasher.finalize())
            ))
        })
        .as_deref()
}

/// Why a snapshot was not used.
#[derive(Debug, thiserror::Error)]
enum Unusable {
    #[error("cannot read it: {0}")]
    Io(std::io::Error),
    #[error("it is not a read-model snapshot, or it is truncated or damaged: {0}")]
    Damaged(String),
    #[error("it has format version {0}, this build reads version {FORMAT}")]
    Format(u32),
    #[error("it was written by another build of troved ({0})")]
    OtherBuild(String),
    #[error("this executable cannot be read to identify the build")]
    NoBuildStamp,
    #[error(
        "the event log does not hold event {id} at position {position} (another or rewritten log)"
    )]
    OtherLog { id: Uuid, position: Position },
    #[error("the event store cannot be read to check it: {0}")]
    Store(String),
}

/// Loads the snapshot of `dir` into `models` (which must be empty) if it is valid for
/// this build and this log, and returns the cursor the models are then at;
/// `Cursor::default()` (replay everything) when there is none or it is not usable,
/// after logging why. Never fails: a snapshot is only a cache of the log.
pub async fn restore(store: &dyn EventStore, dir: &Path, models: &ReadModels) -> Cursor {
    let file = path(dir);
    // What an interrupted write (a crash, a kill) left; this process owns the data
    // directory (its lock), so no write is in progress.
    let _ = std::fs::remove_file(temporary_path(dir));
    let started = Instant::now();
    match try_restore(store, &file, models).await {
        Ok(Some(cursor)) => {
            tracing::info!(
                snapshot = %file.display(),
                position = %cursor.position,
                instances = models.instances.len(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "read models loaded from the snapshot; replaying the log after it"
            );
            cursor
        }
        Ok(None) => {
            tracing::info!(snapshot = %file.display(), "no read-model snapshot: replaying the whole log");
            Cursor::default()
        }
        Err(why) => {
            tracing::warn!(snapshot = %file.display(), reason = %why, "read-model snapshot ignored: replaying the whole log");
            Cursor::default()
        }
    }
}

async fn try_restore(
    store: &dyn EventStore,
    file: &Path,
    models: &ReadModels,
) -> Result<Option<Cursor>, Unusable> {
    let read = {
        let file = file.to_path_buf();
        // The build stamp hashes the executable: on the other core while the file loads.
        let stamp = tokio::task::spawn_blocking(build_stamp);
        let bytes = tokio::task::spawn_blocking(move || std::fs::read(file))
            .await
            .map_err(|e| Unusable::Io(std::io::Error::other(e)))?;
        let stamp = stamp.await.ok().flatten();
        (bytes, stamp)
    };
    let bytes = match read.0 {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Unusable::Io(e)),
    };
    let (header, body_at) = split(&bytes)?;
    match read.1 {
        None => return Err(Unusable::NoBuildStamp),
        Some(stamp) if stamp != header.build => return Err(Unusable::OtherBuild(header.build)),
        Some(_) => {}
    }
    // The log must hold the snapshot's last event where the snapshot says.
    let next = store
        .read_all(header.before, 1)
        .await
        .map_err(|e| Unusable::Store(e.to_string()))?;
    match next.first() {
        Some(e) if e.position == header.position && e.id == header.event_id => {}
        _ => {
            return Err(Unusable::OtherLog {
                id: header.event_id,
                position: header.position,
            })
        }
    }
    let cursor = Cursor {
        position: header.position,
        id: header.event_id,
        before: header.before,
    };
    let models = models.clone();
    tokio::task::spawn_blocking(move || load(&models, &bytes[body_at..], cursor))
        .await
        .map_err(|e| Unusable::Damaged(e.to_string()))??;
    Ok(Some(cursor))
}

/// Checks the magic line, the header, the format and the body's length and digest;
/// returns the header and where the body starts.
fn split(bytes: &[u8]) -> Result<(Header, usize), Unusable> {
    let damaged = |what: &str| Unusable::Damaged(what.to_string());
    let rest = bytes
        .strip_prefix(MAGIC.as_bytes())
        .and_then(|r| r.strip_prefix(b"\n"))
        .ok_or_else(|| damaged("no snapshot header"))?;
    let end = rest
        .iter()
        .position(|&b| b == b'\n')
        .ok_or_else(|| damaged("truncated header"))?;
    let header: Header =
        serde_json::from_slice(&rest[..end]).map_err(|e| Unusable::Damaged(e.to_string()))?;
    if header.format != FORMAT {
        return Err(Unusable::Format(header.format));
    }
    let body = &rest[end + 1..];
    if body.len() as u64 != header.body_len {
        return Err(Unusable::Damaged(format!(
            "the body has {} bytes, the header says {}",
            body.len(),
            header.body_len
        )));
    }
    if hex::encode(Sha256::digest(body)) != header.body_sha256 {
        return Err(damaged("the body's SHA-256 does not match the header"));
    }
    Ok((header, bytes.len() - body.len()))
}

/// Parses the body and loads it into the (empty) models; on any refusal the models are
/// left empty.
fn load(models: &ReadModels, body: &[u8], cursor: Cursor) -> Result<(), Unusable> {
    let body: Body = serde_json::from_slice(body).map_err(|e| Unusable::Damaged(e.to_string()))?;
    if body.instances.position != cursor.position {
        return Err(Unusable::Damaged(format!(
            "the instance models are at {}, the header says {}",
            body.instances.position, cursor.position
        )));
    }
    // The configuration usage index follows the instances: derived like the projector's
    // `sync_configuration_usage` does after each event that can change it.
    let usage: Vec<(Uuid, String, Uuid)> = body
        .instances
        .records
        .iter()
        .filter_map(|r| {
            let i = &r.instance;
            let group = i.configuration_id.filter(|_| i.is_live())?;
            Some((i.id?, i.project_id.clone(), group))
        })
        .collect();
    models
        .instances
        .restore(body.instances)
        .map_err(Unusable::Damaged)?;
    if let Err(e) = models.configurations.restore(body.configurations) {
        // Leave nothing half-loaded behind.
        let _ = models.instances.restore(InstancesImage::default());
        return Err(Unusable::Damaged(e));
    }
    models.backups.restore(body.backups);
    models.quotas.restore(body.quotas);
    for (id, project, group) in usage {
        models
            .configurations
            .instance_changed(id, &project, Some(group));
    }
    models.applied.set(cursor);
    Ok(())
}

/// A consistent copy of the models, with the cursor it reflects. `gate` is the
/// projector's: while it is held no event is applied.
async fn take(models: &ReadModels, gate: &tokio::sync::Mutex<()>) -> (Cursor, Body) {
    let _held = gate.lock().await;
    let (cursor, _) = models.applied.get();
    let body = Body {
        instances: models.instances.image(),
        configurations: models.configurations.image(),
        backups: models.backups.image(),
        quotas: models.quotas.image(),
    };
    (cursor, body)
}

/// Writes the snapshot file of `dir` atomically: a temporary file (mode 0600) written
/// and fsynced, renamed over the old one, and the directory fsynced. Returns its size.
fn write(dir: &Path, cursor: Cursor, body: &Body) -> std::io::Result<u64> {
    let build = build_stamp().ok_or_else(|| {
        std::io::Error::other("this executable cannot be read to identify the build")
    })?;
    let encoded = serde_json::to_vec(body).map_err(std::io::Error::other)?;
    let header = Header {
        format: FORMAT,
        build: build.to_string(),
        position: cursor.position,
        event_id: cursor.id,
        before: cursor.before,
        written: Utc::now(),
        instances: body.instances.records.len(),
        configurations: body.configurations.len(),
        body_len: encoded.len() as u64,
        body_sha256: hex::encode(Sha256::digest(&encoded)),
    };
    let header = serde_json::to_vec(&header).map_err(std::io::Error::other)?;
    let target = path(dir);
    let temporary = temporary_path(dir);
    // A leftover of an interrupted write may have other permissions: start afresh, so
    // the mode below applies.
    let _ = std::fs::remove_file(&temporary);
    let written = write_temporary(
        &temporary,
        &[MAGIC.as_bytes(), b"\n", &header, b"\n", &encoded],
    )
    .and_then(|()| std::fs::rename(&temporary, &target));
    if let Err(e) = written {
        // A full disk (or any failure) must not leave a partial or empty file behind:
        // it would hold space and look like a snapshot in progress.
        let _ = std::fs::remove_file(&temporary);
        return Err(e);
    }
    // The rename is durable once the directory is.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok((MAGIC.len() + header.len() + encoded.len() + 2) as u64)
}

/// Creates `temporary` (mode 0600), writes `parts` and fsyncs it.
fn write_temporary(temporary: &Path, parts: &[&[u8]]) -> std::io::Result<()> {
    let mut options = std::fs::File::options();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = std::io::BufWriter::new(options.open(temporary)?);
    for part in parts {
        file.write_all(part)?;
    }
    let file = file.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()
}

/// Takes and writes a snapshot now; logs the outcome. Returns the cursor written, if any.
pub async fn save(
    dir: &Path,
    models: &ReadModels,
    gate: &tokio::sync::Mutex<()>,
) -> Option<Cursor> {
    let started = Instant::now();
    let (cursor, body) = take(models, gate).await;
    if cursor.position == Position::START {
        return None; // nothing applied: nothing worth saving
    }
    let copied_ms = started.elapsed().as_millis() as u64;
    let dir_owned = dir.to_path_buf();
    let written = tokio::task::spawn_blocking(move || write(&dir_owned, cursor, &body))
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r);
    match written {
        Ok(bytes) => {
            tracing::info!(
                position = %cursor.position,
                bytes,
                copied_ms,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "read-model snapshot written"
            );
            Some(cursor)
        }
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "could not write the read-model snapshot");
            None
        }
    }
}

/// The server's snapshot writer: every [`CHECK_EVERY`], a snapshot if [`EVERY_EVENTS`]
/// events were applied since the last one; at `stop`, a last one if the models moved
/// since the last one (or since `saved`, the position of the snapshot loaded at start).
/// Returns its name when stopped, like the server's other background tasks.
pub async fn keep(
    dir: PathBuf,
    models: ReadModels,
    gate: Arc<tokio::sync::Mutex<()>>,
    saved: Position,
    mut stop: watch::Receiver<bool>,
) -> &'static str {
    let mut saved = saved;
    let mut count_at_save = models.applied.get().1;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(CHECK_EVERY) => {
                let (_, count) = models.applied.get();
                if count.saturating_sub(count_at_save) >= EVERY_EVENTS {
                    if let Some(c) = save(&dir, &models, &gate).await {
                        saved = c.position;
                    }
                    count_at_save = count;
                }
            }
            _ = stop.changed() => {
                if models.applied.get().0.position != saved {
                    save(&dir, &models, &gate).await;
                }
                return "the read-model snapshot writer";
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use aggregates::instance::{Caller, InstanceEvent};
    use serde_json::json;

    use super::*;
    use crate::runtime::codec::{self, CommandMeta};
    use crate::runtime::projector;
    use crate::store::sqlite::SqliteStore;
    use crate::store::ExpectedRevision;

    fn meta() -> CommandMeta {
        let caller = Caller {
            user_id: "alice".into(),
            project_id: "p1".into(),
            roles: vec!["member".into()],
        };
        CommandMeta::for_request(&caller, "req")
    }

    fn created(id: Uuid, project: &str, group: Option<Uuid>) -> InstanceEvent {
        let body = json!({
            "instance_id": id, "project_id": project, "user_id": "alice",
            "name": format!("db-{id}"), "flavor": {"id": "7", "ram": 2048},
            "volume": {"size": 5, "volume_type": null},
            "datastore": {"datastore_id": Uuid::nil(), "datastore_name": "mysql",
                "version_id": Uuid::nil(), "version_name": "8.0",
                "version_number": "8.0.36", "manager": "mysql"},
            "databases": [], "users": [], "nics": [], "availability_zone": null,
            "region": "RegionOne", "modules": [], "restore_backup_id": null,
            "replica_of": null, "locality": null, "configuration_id": group,
            "configuration_revision": 1, "access": {"is_public": false},
            "root_password": null, "at": "2026-01-01T00:00:00Z"
        });
        aggregates::instance::decode("InstanceCreated", 1, body).unwrap()
    }

    /// Appends to `store`: a configuration group, then `instances` instances (every
    /// third using the group), each renamed, every fourth deleted.
    async fn fill(store: &SqliteStore, instances: usize) -> Vec<Uuid> {
        let group = Uuid::new_v4();
        let body = json!({
            "configuration_id": group, "project_id": "p1", "user_id": "alice",
            "name": "tuning", "description": null,
            "datastore": {"datastore_id": Uuid::nil(), "datastore_name": "mysql",
                "version_id": Uuid::nil(), "version_name": "8.0",
                "version_number": "8.0.36", "manager": "mysql"},
            "values": {"max_connections": 200}, "at": "2026-01-01T00:00:00Z"
        });
        let e = codec::encode_parts("ConfigurationCreated", 1, &body, Utc::now(), &meta());
        store
            .append(
                &format!("configuration-{group}"),
                ExpectedRevision::NoStream,
                vec![e],
            )
            .await
            .unwrap();
        let mut ids = Vec::new();
        for n in 0..instances {
            let id = Uuid::new_v4();
            let project = format!("p{}", n % 3);
            let mut events = vec![
                created(id, &project, (n % 3 == 0).then_some(group)),
                InstanceEvent::InstanceRenamed {
                    name: format!("renamed-{n}"),
                    at: Utc::now(),
                },
            ];
            if n % 4 == 1 {
                events.push(InstanceEvent::InstanceDeletionRequested { at: Utc::now() });
                events.push(InstanceEvent::InstanceDeleted { at: Utc::now() });
            }
            let m = meta();
            let encoded = events
                .iter()
                .enumerate()
                .map(|(i, e)| codec::encode(e, &m, i))
                .collect();
            store
                .append(
                    &format!("instance-{id}"),
                    ExpectedRevision::NoStream,
                    encoded,
                )
                .await
                .unwrap();
            ids.push(id);
        }
        ids
    }

    async fn replayed(store: &SqliteStore) -> ReadModels {
        let models = ReadModels::default();
        projector::catch_up(store, &models, Position::START)
            .await
            .unwrap();
        models
    }

    fn assert_same(a: &ReadModels, b: &ReadModels) {
        assert_eq!(a.instances.snapshot(), b.instances.snapshot());
        assert_eq!(a.configurations.snapshot(), b.configurations.snapshot());
    }

    #[tokio::test]
    async fn a_snapshot_and_the_events_after_it_give_the_models_of_a_full_replay() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("events.db")).unwrap();
        fill(&store, 30).await;
        let served = replayed(&store).await;
        let gate = tokio::sync::Mutex::new(());
        let saved = save(dir.path(), &served, &gate).await.expect("written");
        assert_eq!(saved.position, served.instances.position());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path(dir.path()))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // Restored as saved: the same models, at the same cursor.
        let restored = ReadModels::default();
        let cursor = restore(&store, dir.path(), &restored).await;
        assert_eq!(cursor, saved);
        assert_eq!(restored.applied.get().0, saved);
        assert_same(&restored, &served);
        // More events after the snapshot: restore + catch up == full replay.
        fill(&store, 20).await;
        let restored = ReadModels::default();
        let cursor = restore(&store, dir.path(), &restored).await;
        assert_eq!(cursor, saved);
        projector::catch_up(&store, &restored, cursor.position)
            .await
            .unwrap();
        let full = replayed(&store).await;
        assert_same(&restored, &full);
        assert_eq!(restored.applied.get().0, full.applied.get().0);
        store.shutdown().await;
    }

    #[tokio::test]
    async fn a_snapshot_of_another_log_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let other_dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("events.db")).unwrap();
        let other = SqliteStore::open(&other_dir.path().join("events.db")).unwrap();
        fill(&store, 5).await;
        fill(&other, 5).await; // same positions, other event ids
        let gate = tokio::sync::Mutex::new(());
        save(dir.path(), &replayed(&store).await, &gate)
            .await
            .unwrap();
        let models = ReadModels::default();
        let why = try_restore(&other, &path(dir.path()), &models)
            .await
            .unwrap_err();
        assert!(matches!(why, Unusable::OtherLog { .. }), "{why}");
        assert_eq!(
            restore(&other, dir.path(), &models).await,
            Cursor::default()
        );
        assert!(models.instances.is_empty());
        // A log that ends before the snapshot's position: ignored too.
        let short_dir = tempfile::tempdir().unwrap();
        let short = SqliteStore::open(&short_dir.path().join("events.db")).unwrap();
        fill(&short, 1).await;
        assert_eq!(
            restore(&short, dir.path(), &models).await,
            Cursor::default()
        );
        assert!(models.instances.is_empty());
        for s in [store, other, short] {
            s.shutdown().await;
        }
    }

    #[tokio::test]
    async fn a_damaged_or_foreign_snapshot_file_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("events.db")).unwrap();
        fill(&store, 5).await;
        let gate = tokio::sync::Mutex::new(());
        save(dir.path(), &replayed(&store).await, &gate)
            .await
            .unwrap();
        let file = path(dir.path());
        let good = std::fs::read(&file).unwrap();
        let text = String::from_utf8(good.clone()).unwrap();
        let stamp = build_stamp().unwrap();
        let mut flipped = good.clone();
        let last = flipped.len() - 10;
        flipped[last] ^= 0x01;
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("truncated", good[..good.len() / 2].to_vec()),
            ("cut in the header", good[..40].to_vec()),
            ("one bit flipped", flipped),
            ("empty", Vec::new()),
            ("not a snapshot", b"hello\nworld\n".to_vec()),
            (
                "another build",
                text.replacen(stamp, "troved 0.0.0 0000", 1).into_bytes(),
            ),
            (
                "another format",
                text.replacen("{\"format\":1,", "{\"format\":99,", 1)
                    .into_bytes(),
            ),
        ];
        for (what, bytes) in cases {
            std::fs::write(&file, &bytes).unwrap();
            let models = ReadModels::default();
            let why = try_restore(&store, &file, &models).await;
            assert!(why.is_err(), "{what}: used");
            assert_eq!(
                restore(&store, dir.path(), &models).await,
                Cursor::default(),
                "{what}"
            );
            assert!(models.instances.is_empty(), "{what}");
            assert!(models.configurations.image().is_empty(), "{what}");
        }
        // No file at all: nothing to say but "replay".
        std::fs::remove_file(&file).unwrap();
        let models = ReadModels::default();
        assert!(matches!(
            try_restore(&store, &file, &models).await,
            Ok(None)
        ));
        store.shutdown().await;
    }
}
