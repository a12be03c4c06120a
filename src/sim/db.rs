//! `cloud.db`: the simulated cloud's own SQLite file, its schema, and the blocking
//! operations that read and change it.
//!
//! Every mutation is one `BEGIN IMMEDIATE` transaction that looks up the idempotency
//! key, checks capacity and writes the resource and the key together, so a crash leaves
//! either both or neither, and two concurrent creates with one key cannot both insert.
//! Deleted resources stay as tombstones (`deleted_ms` set): they free capacity and are
//! hidden from listings, but their keys keep pointing at them, so a key is never reused.
//! Nothing here sleeps or injects faults; `super` does that around these calls.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use rusqlite::{
    params, Connection, OpenFlags, OptionalExtension, Row, Transaction, TransactionBehavior,
};
use uuid::Uuid;

use super::ZoneCapacity;
use crate::saga::ports::{
    PrepareRequest, ProviderError, Server, ServerAddress, ServerSpec, Volume, VolumeSpec,
    VolumeUsage,
};

/// Schema version written to `meta`; bump it together with a migration in [`init_schema`].
const SCHEMA_VERSION: i64 = 1;
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// The network of private addresses when the server spec names none.
pub const DEFAULT_NETWORK: &str = "sim-private";
/// The network public (floating) addresses are on.
pub const PUBLIC_NETWORK: &str = "sim-public";

// `seq` orders listings by creation. Ids are random v4 UUIDs, as a real cloud's are,
// so a saga cannot get away with guessing them instead of recording them.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS idempotency_keys (
    key         TEXT PRIMARY KEY NOT NULL,
    kind        TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    created_ms  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS volumes (
    seq               INTEGER PRIMARY KEY,
    id                TEXT NOT NULL UNIQUE,
    idempotency_key   TEXT NOT NULL,
    instance_id       TEXT NOT NULL,
    instance_name     TEXT NOT NULL,
    size_gb           INTEGER NOT NULL,
    volume_type       TEXT,
    availability_zone TEXT NOT NULL,
    attached_to       TEXT,
    created_ms        INTEGER NOT NULL,
    deleted_ms        INTEGER
);
CREATE TABLE IF NOT EXISTS servers (
    seq               INTEGER PRIMARY KEY,
    id                TEXT NOT NULL UNIQUE,
    idempotency_key   TEXT NOT NULL,
    instance_id       TEXT NOT NULL,
    instance_name     TEXT NOT NULL,
    flavor_id         TEXT NOT NULL,
    vcpus             INTEGER NOT NULL,
    ram_mb            INTEGER NOT NULL,
    availability_zone TEXT NOT NULL,
    network_id        TEXT NOT NULL,
    private_ip        TEXT NOT NULL,
    public_ip         TEXT,
    created_ms        INTEGER NOT NULL,
    ready_ms          INTEGER NOT NULL,
    deleted_ms        INTEGER
);
CREATE TABLE IF NOT EXISTS guests (
    server_id         TEXT PRIMARY KEY NOT NULL,
    idempotency_key   TEXT NOT NULL,
    datastore_manager TEXT NOT NULL,
    datastore_version TEXT NOT NULL,
    databases         TEXT NOT NULL,
    users             TEXT NOT NULL,
    configuration     TEXT,
    replica_of        TEXT,
    phase             TEXT NOT NULL,
    phase_until_ms    INTEGER NOT NULL,
    prepared_ms       INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS guest_operations (
    seq       INTEGER PRIMARY KEY,
    key       TEXT NOT NULL UNIQUE,
    server_id TEXT NOT NULL,
    kind      TEXT NOT NULL,
    detail    TEXT NOT NULL,
    at_ms     INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS volumes_live_by_zone
    ON volumes (availability_zone) WHERE deleted_ms IS NULL;
CREATE INDEX IF NOT EXISTS servers_live_by_zone
    ON servers (availability_zone) WHERE deleted_ms IS NULL;
CREATE INDEX IF NOT EXISTS guest_operations_by_server ON guest_operations (server_id);
CREATE INDEX IF NOT EXISTS volumes_by_attachment
    ON volumes (attached_to) WHERE attached_to IS NOT NULL;
-- What each zone's live servers and volumes use, kept by triggers so a capacity check
-- costs one row, not a sum over every resource ever created (recomputed at open).
CREATE TABLE IF NOT EXISTS zone_usage (
    zone      TEXT PRIMARY KEY NOT NULL,
    vcpus     INTEGER NOT NULL DEFAULT 0,
    ram_mb    INTEGER NOT NULL DEFAULT 0,
    volume_gb INTEGER NOT NULL DEFAULT 0
);
CREATE TRIGGER IF NOT EXISTS zone_usage_volume_created AFTER INSERT ON volumes
    WHEN NEW.deleted_ms IS NULL
BEGIN
    INSERT INTO zone_usage (zone, volume_gb) VALUES (NEW.availability_zone, NEW.size_gb)
        ON CONFLICT (zone) DO UPDATE SET volume_gb = volume_gb + excluded.volume_gb;
END;
CREATE TRIGGER IF NOT EXISTS zone_usage_volume_deleted AFTER UPDATE OF deleted_ms ON volumes
    WHEN OLD.deleted_ms IS NULL AND NEW.deleted_ms IS NOT NULL
BEGIN
    UPDATE zone_usage SET volume_gb = volume_gb - OLD.size_gb
        WHERE zone = OLD.availability_zone;
END;
CREATE TRIGGER IF NOT EXISTS zone_usage_server_created AFTER INSERT ON servers
    WHEN NEW.deleted_ms IS NULL
BEGIN
    INSERT INTO zone_usage (zone, vcpus, ram_mb)
        VALUES (NEW.availability_zone, NEW.vcpus, NEW.ram_mb)
        ON CONFLICT (zone) DO UPDATE SET vcpus = vcpus + excluded.vcpus,
                                         ram_mb = ram_mb + excluded.ram_mb;
END;
CREATE TRIGGER IF NOT EXISTS zone_usage_server_deleted AFTER UPDATE OF deleted_ms ON servers
    WHEN OLD.deleted_ms IS NULL AND NEW.deleted_ms IS NOT NULL
BEGIN
    UPDATE zone_usage SET vcpus = vcpus - OLD.vcpus, ram_mb = ram_mb - OLD.ram_mb
        WHERE zone = OLD.availability_zone;
END;
CREATE TRIGGER IF NOT EXISTS zone_usage_volume_resized AFTER UPDATE OF size_gb ON volumes
    WHEN NEW.deleted_ms IS NULL
BEGIN
    UPDATE zone_usage SET volume_gb = volume_gb - OLD.size_gb + NEW.size_gb
        WHERE zone = NEW.availability_zone;
END;
CREATE TRIGGER IF NOT EXISTS zone_usage_server_resized AFTER UPDATE OF ram_mb, vcpus ON servers
    WHEN NEW.deleted_ms IS NULL
BEGIN
    UPDATE zone_usage SET vcpus = vcpus - OLD.vcpus + NEW.vcpus,
                          ram_mb = ram_mb - OLD.ram_mb + NEW.ram_mb
        WHERE zone = NEW.availability_zone;
END;
";

/// What each zone's live resources use, computed from the resources themselves.
const LIVE_USAGE: &str = "
    SELECT zone, SUM(vcpus) AS vcpus, SUM(ram_mb) AS ram_mb, SUM(volume_gb) AS volume_gb
    FROM (
        SELECT availability_zone AS zone, vcpus, ram_mb, 0 AS volume_gb
            FROM servers WHERE deleted_ms IS NULL
        UNION ALL
        SELECT availability_zone, 0, 0, size_gb FROM volumes WHERE deleted_ms IS NULL
    ) GROUP BY zone
";

/// Recomputes `zone_usage` from the live resources (at open: a file from before the
/// table existed, or any drift, is corrected once).
fn recompute_usage_sql() -> String {
    format!(
        "DELETE FROM zone_usage;
         INSERT INTO zone_usage (zone, vcpus, ram_mb, volume_gb) {LIVE_USAGE};"
    )
}

/// Whether `zone_usage` differs from [`LIVE_USAGE`] (rows of zeros, left by triggers
/// after the last resource of a zone went, count as absent). Checked before
/// recomputing, so an open writes nothing when nothing drifted: a start on a full disk
/// must not fail on a rewrite of the same numbers.
fn usage_drifted(tx: &Transaction<'_>) -> OpResult<bool> {
    let sql = format!(
        "WITH live AS ({LIVE_USAGE}),
              kept AS (SELECT zone, vcpus, ram_mb, volume_gb FROM zone_usage
                       WHERE vcpus <> 0 OR ram_mb <> 0 OR volume_gb <> 0)
         SELECT EXISTS (SELECT * FROM live EXCEPT SELECT * FROM kept)
             OR EXISTS (SELECT * FROM kept EXCEPT SELECT * FROM live)"
    );
    Ok(tx.query_row(&sql, [], |r| r.get(0))?)
}

/// Why a blocking operation failed: a provider answer, or the file itself.
#[derive(Debug)]
pub(super) enum OpError {
    Provider(ProviderError),
    Db(rusqlite::Error),
    Corrupt(String),
    /// The blocking task running the operation panicked or was cancelled.
    Worker(String),
}

impl From<rusqlite::Error> for OpError {
    fn from(e: rusqlite::Error) -> OpError {
        OpError::Db(e)
    }
}

impl From<ProviderError> for OpError {
    fn from(e: ProviderError) -> OpError {
        OpError::Provider(e)
    }
}

impl From<serde_json::Error> for OpError {
    fn from(e: serde_json::Error) -> OpError {
        OpError::Corrupt(format!("undecodable JSON column: {e}"))
    }
}

impl OpError {
    /// A storage failure of the simulated cloud looks to its callers like an outage of
    /// a real one: worth retrying.
    pub(super) fn into_provider(self) -> ProviderError {
        match self {
            OpError::Provider(e) => e,
            OpError::Db(e) => {
                tracing::error!(error = %e, "simulated cloud storage error");
                ProviderError::Transient(format!("simulated cloud storage error: {e}"))
            }
            OpError::Corrupt(e) => {
                tracing::error!(error = %e, "simulated cloud data is corrupt");
                ProviderError::Transient(format!("simulated cloud data is corrupt: {e}"))
            }
            OpError::Worker(e) => {
                tracing::error!(error = %e, "simulated cloud worker failed");
                ProviderError::Transient(format!("simulated cloud worker failed: {e}"))
            }
        }
    }
}

pub(super) type OpResult<T> = Result<T, OpError>;

/// What the operations need from the configuration.
pub(super) struct Settings {
    pub zones: BTreeMap<String, ZoneCapacity>,
    pub default_zone: String,
    /// How long a new server stays `BUILD` and a guest `BUILDING`/`UPGRADING`.
    pub settle_ms: i64,
}

impl Settings {
    fn zone(&self, requested: Option<&str>) -> Result<(String, ZoneCapacity), ProviderError> {
        let name = requested.unwrap_or(&self.default_zone);
        match self.zones.get(name) {
            Some(cap) => Ok((name.to_string(), *cap)),
            None => Err(ProviderError::Permanent(format!(
                "Availability zone '{name}' is not available."
            ))),
        }
    }
}

/// Opens (creating if missing) the file for the cloud's own use: WAL so listings from
/// another process never block it, `synchronous=NORMAL` so an answered create survives
/// SIGKILL (the crash test counts resources after kills: a committed WAL frame is in the
/// kernel's hands when the call answers). Not power loss: the simulated cloud stands for
/// a remote one, whose durability is not this machine's, and an fsync per call made the
/// simulator, not troved, the limit of every provisioning benchmark.
pub(super) fn open_writer(path: &Path) -> OpResult<Connection> {
    let mut conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(OpError::Corrupt(format!(
            "cannot switch {} to WAL journal mode (still {mode})",
            path.display()
        )));
    }
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    init_schema(&mut conn)?;
    Ok(conn)
}

/// Opens an existing file for listing only. Read-write at the file level with
/// `query_only` (as the event store's readers): a truly read-only connection cannot run
/// WAL recovery after a crash. Falls back to a read-only open when the file or its
/// directory is not writable.
pub(super) fn open_reader(path: &Path) -> OpResult<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = match Connection::open_with_flags(path, flags) {
        Ok(conn) => conn,
        Err(_) => Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?,
    };
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "query_only", "ON")?;
    Ok(conn)
}

fn init_schema(conn: &mut Connection) -> OpResult<()> {
    // IMMEDIATE so two processes creating the same file cannot interleave.
    let tx = immediate(conn)?;
    tx.execute_batch(SCHEMA)?;
    if usage_drifted(&tx)? {
        tx.execute_batch(&recompute_usage_sql())?;
    }
    let version: Option<String> = tx
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    match version {
        None => {
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?1)",
                [SCHEMA_VERSION.to_string()],
            )?;
        }
        Some(v) if v.parse::<i64>().ok() == Some(SCHEMA_VERSION) => {}
        Some(v) => {
            return Err(OpError::Corrupt(format!(
                "cloud.db schema version {v} is not the supported {SCHEMA_VERSION}"
            )))
        }
    }
    tx.commit()?;
    Ok(())
}

fn immediate(conn: &mut Connection) -> OpResult<Transaction<'_>> {
    Ok(conn.transaction_with_behavior(TransactionBehavior::Immediate)?)
}

fn parse_uuid(s: &str) -> OpResult<Uuid> {
    Uuid::parse_str(s).map_err(|_| OpError::Corrupt(format!("{s:?} is not a UUID")))
}

fn to_u64(v: i64, what: &str) -> OpResult<u64> {
    u64::try_from(v).map_err(|_| OpError::Corrupt(format!("negative {what} {v}")))
}

fn to_i64(v: u64, what: &str) -> Result<i64, ProviderError> {
    i64::try_from(v).map_err(|_| ProviderError::Permanent(format!("{what} {v} is too large")))
}

// ---------------------------------------------------------------------------------------
// Idempotency keys.

/// What a key was used for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Volume,
    Server,
    Prepare,
    Upgrade,
    Configuration,
    DetachReplica,
    // instance actions
    Restart,
    Resize,
    GuestChange,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Volume => "volume",
            Kind::Server => "server",
            Kind::Prepare => "prepare",
            Kind::Upgrade => "upgrade",
            Kind::Configuration => "configuration",
            Kind::DetachReplica => "detach_replica",
            Kind::Restart => "restart",
            Kind::Resize => "resize",
            Kind::GuestChange => "guest_change",
        }
    }
}

/// The resource id recorded under `key`, if it was used for `kind`; a key used for
/// another kind of effect is a caller bug and fails permanently.
fn lookup_key(tx: &Transaction<'_>, key: &str, kind: Kind) -> OpResult<Option<String>> {
    let found: Option<(String, String)> = tx
        .query_row(
            "SELECT kind, resource_id FROM idempotency_keys WHERE key = ?1",
            [key],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    match found {
        None => Ok(None),
        Some((k, id)) if k == kind.as_str() => Ok(Some(id)),
        Some((k, _)) => Err(ProviderError::Permanent(format!(
            "Idempotency key '{key}' was already used for a {k}, not a {}.",
            kind.as_str()
        ))
        .into()),
    }
}

fn record_key(tx: &Transaction<'_>, key: &str, kind: Kind, id: &str, now: i64) -> OpResult<()> {
    tx.execute(
        "INSERT INTO idempotency_keys (key, kind, resource_id, created_ms) VALUES (?1, ?2, ?3, ?4)",
        params![key, kind.as_str(), id, now],
    )?;
    Ok(())
}

fn deleted_under_key(what: &str, id: &str, key: &str) -> OpError {
    ProviderError::Permanent(format!(
        "The {what} {id} created with idempotency key '{key}' has been deleted; \
         a deleted resource is never recreated."
    ))
    .into()
}

// ---------------------------------------------------------------------------------------
// Volumes.

/// A row of `volumes`, tombstones included.
pub(super) struct VolumeRow {
    pub id: String,
    pub idempotency_key: String,
    pub instance_id: Uuid,
    pub instance_name: String,
    pub size_gb: u64,
    pub volume_type: Option<String>,
    pub availability_zone: String,
    pub attached_to: Option<String>,
    pub created_ms: i64,
    pub deleted_ms: Option<i64>,
}

pub(super) const VOLUME_COLUMNS: &str = "id, idempotency_key, instance_id, instance_name, \
     size_gb, volume_type, availability_zone, attached_to, created_ms, deleted_ms";

impl VolumeRow {
    pub(super) fn from_row(r: &Row<'_>) -> OpResult<VolumeRow> {
        Ok(VolumeRow {
            id: r.get(0)?,
            idempotency_key: r.get(1)?,
            instance_id: parse_uuid(&r.get::<_, String>(2)?)?,
            instance_name: r.get(3)?,
            size_gb: to_u64(r.get(4)?, "volume size")?,
            volume_type: r.get(5)?,
            availability_zone: r.get(6)?,
            attached_to: r.get(7)?,
            created_ms: r.get(8)?,
            deleted_ms: r.get(9)?,
        })
    }

    /// `available` or `in-use` (Cinder's names); tombstones are never reported.
    pub(super) fn status(&self) -> &'static str {
        if self.attached_to.is_some() {
            "in-use"
        } else {
            "available"
        }
    }

    fn to_port(&self) -> Volume {
        Volume {
            id: self.id.clone(),
            instance_id: self.instance_id,
            size: self.size_gb,
            volume_type: self.volume_type.clone(),
            availability_zone: self.availability_zone.clone(),
            status: self.status().to_string(),
            attached_to: self.attached_to.clone(),
        }
    }
}

fn load_volume(conn: &Connection, id: &str) -> OpResult<Option<VolumeRow>> {
    let sql = format!("SELECT {VOLUME_COLUMNS} FROM volumes WHERE id = ?1");
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query([id])?;
    match rows.next()? {
        Some(row) => Ok(Some(VolumeRow::from_row(row)?)),
        None => Ok(None),
    }
}

fn live_volume(conn: &Connection, id: &str) -> OpResult<VolumeRow> {
    match load_volume(conn, id)? {
        Some(v) if v.deleted_ms.is_none() => Ok(v),
        _ => Err(ProviderError::NotFound(format!("volume {id}")).into()),
    }
}

/// The instance (id, name) a volume belongs to, tombstones included, for fault targeting.
pub(super) fn volume_subject(conn: &mut Connection, id: &str) -> OpResult<Option<(Uuid, String)>> {
    Ok(load_volume(conn, id)?.map(|v| (v.instance_id, v.instance_name)))
}

pub(super) fn create_volume(
    conn: &mut Connection,
    s: &Settings,
    key: &str,
    spec: &VolumeSpec,
    now: i64,
) -> OpResult<Volume> {
    let tx = immediate(conn)?;
    if let Some(id) = lookup_key(&tx, key, Kind::Volume)? {
        let v = load_volume(&tx, &id)?
            .ok_or_else(|| OpError::Corrupt(format!("key '{key}' names missing volume {id}")))?;
        if v.deleted_ms.is_some() {
            return Err(deleted_under_key("volume", &id, key));
        }
        return Ok(v.to_port());
    }
    let (zone, cap) = s.zone(spec.availability_zone.as_deref())?;
    let used: i64 = tx.query_row(
        "SELECT COALESCE((SELECT volume_gb FROM zone_usage WHERE zone = ?1), 0)",
        [&zone],
        |r| r.get(0),
    )?;
    let free = cap
        .volume_gb
        .saturating_sub(to_u64(used, "used volume GB")?);
    if spec.size > free {
        return Err(ProviderError::Permanent(format!(
            "Insufficient capacity in availability zone '{zone}' for a {} GB volume \
             (free: {free} GB of {} GB).",
            spec.size, cap.volume_gb
        ))
        .into());
    }
    let row = VolumeRow {
        id: Uuid::new_v4().to_string(),
        idempotency_key: key.to_string(),
        instance_id: spec.instance_id,
        instance_name: spec.instance_name.clone(),
        size_gb: spec.size,
        volume_type: spec.volume_type.clone(),
        availability_zone: zone,
        attached_to: None,
        created_ms: now,
        deleted_ms: None,
    };
    tx.execute(
        "INSERT INTO volumes (id, idempotency_key, instance_id, instance_name, size_gb,
             volume_type, availability_zone, created_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            row.id,
            key,
            row.instance_id.to_string(),
            row.instance_name,
            to_i64(row.size_gb, "volume size")?,
            row.volume_type,
            row.availability_zone,
            now
        ],
    )?;
    record_key(&tx, key, Kind::Volume, &row.id, now)?;
    tx.commit()?;
    Ok(row.to_port())
}

/// Attaching a volume to the server it is already attached to succeeds (a retried
/// attach); attaching it to a second live server fails permanently, as in Cinder.
pub(super) fn attach_volume(
    conn: &mut Connection,
    volume_id: &str,
    server_id: &str,
) -> OpResult<()> {
    let tx = immediate(conn)?;
    let volume = live_volume(&tx, volume_id)?;
    live_server(&tx, server_id)?;
    match volume.attached_to.as_deref() {
        Some(current) if current == server_id => return Ok(()),
        Some(other) => {
            return Err(ProviderError::Permanent(format!(
                "Volume {volume_id} is already attached to server {other}."
            ))
            .into())
        }
        None => {}
    }
    tx.execute(
        "UPDATE volumes SET attached_to = ?2 WHERE id = ?1",
        params![volume_id, server_id],
    )?;
    tx.commit()?;
    Ok(())
}

/// Detaching a detached volume succeeds; detaching a deleted one is `NotFound`.
pub(super) fn detach_volume(conn: &mut Connection, volume_id: &str) -> OpResult<()> {
    let tx = immediate(conn)?;
    live_volume(&tx, volume_id)?;
    tx.execute(
        "UPDATE volumes SET attached_to = NULL WHERE id = ?1",
        [volume_id],
    )?;
    tx.commit()?;
    Ok(())
}

/// Deleting what is gone (or never existed) succeeds. An attached volume cannot be
/// deleted, as in Cinder: delete its server (which detaches it) or detach it first.
pub(super) fn delete_volume(conn: &mut Connection, volume_id: &str, now: i64) -> OpResult<()> {
    let tx = immediate(conn)?;
    let Some(volume) = load_volume(&tx, volume_id)? else {
        return Ok(());
    };
    if volume.deleted_ms.is_some() {
        return Ok(());
    }
    if let Some(server) = &volume.attached_to {
        return Err(ProviderError::Permanent(format!(
            "Volume {volume_id} is attached to server {server}; detach it or delete the \
             server first."
        ))
        .into());
    }
    tx.execute(
        "UPDATE volumes SET deleted_ms = ?2 WHERE id = ?1",
        params![volume_id, now],
    )?;
    tx.commit()?;
    Ok(())
}

/// A small used figure fixed by the volume id: 0.1 GB plus up to 0.099 GB, and never
/// more than half the volume.
pub(super) fn volume_usage(conn: &mut Connection, volume_id: &str) -> OpResult<VolumeUsage> {
    let volume = live_volume(conn, volume_id)?;
    let spread = volume
        .id
        .bytes()
        .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    let total = volume.size_gb as f64;
    let used = (0.1 + (spread % 100) as f64 / 1000.0).min(total / 2.0);
    Ok(VolumeUsage {
        used_gb: used,
        total_gb: total,
    })
}

// ---------------------------------------------------------------------------------------
// Servers.

/// A row of `servers`, tombstones included.
pub(super) struct ServerRow {
    pub id: String,
    pub idempotency_key: String,
    pub instance_id: Uuid,
    pub instance_name: String,
    pub flavor_id: String,
    pub vcpus: u32,
    pub ram_mb: u32,
    pub availability_zone: String,
    pub network_id: String,
    pub private_ip: String,
    pub public_ip: Option<String>,
    pub created_ms: i64,
    pub ready_ms: i64,
    pub deleted_ms: Option<i64>,
}

pub(super) const SERVER_COLUMNS: &str = "id, idempotency_key, instance_id, instance_name, \
     flavor_id, vcpus, ram_mb, availability_zone, network_id, private_ip, public_ip, \
     created_ms, ready_ms, deleted_ms";

impl ServerRow {
    pub(super) fn from_row(r: &Row<'_>) -> OpResult<ServerRow> {
        let small = |i: usize, what: &str| -> OpResult<u32> {
            let v: i64 = r.get(i)?;
            u32::try_from(v).map_err(|_| OpError::Corrupt(format!("{what} {v} out of range")))
        };
        Ok(ServerRow {
            id: r.get(0)?,
            idempotency_key: r.get(1)?,
            instance_id: parse_uuid(&r.get::<_, String>(2)?)?,
            instance_name: r.get(3)?,
            flavor_id: r.get(4)?,
            vcpus: small(5, "vcpus")?,
            ram_mb: small(6, "ram")?,
            availability_zone: r.get(7)?,
            network_id: r.get(8)?,
            private_ip: r.get(9)?,
            public_ip: r.get(10)?,
            created_ms: r.get(11)?,
            ready_ms: r.get(12)?,
            deleted_ms: r.get(13)?,
        })
    }

    /// `BUILD` until the server has existed for one latency period, then `ACTIVE`.
    pub(super) fn status(&self, at_ms: i64) -> &'static str {
        if at_ms >= self.ready_ms {
            "ACTIVE"
        } else {
            "BUILD"
        }
    }

    pub(super) fn addresses(&self) -> Vec<ServerAddress> {
        let mut out = vec![ServerAddress {
            address: self.private_ip.clone(),
            kind: "private".into(),
            network: Some(self.network_id.clone()),
            port: None,
        }];
        if let Some(ip) = &self.public_ip {
            out.push(ServerAddress {
                address: ip.clone(),
                kind: "public".into(),
                network: Some(PUBLIC_NETWORK.into()),
                port: None,
            });
        }
        out
    }

    pub(super) fn to_port(&self, status: &str) -> Server {
        Server {
            id: self.id.clone(),
            instance_id: self.instance_id,
            status: status.to_string(),
            availability_zone: self.availability_zone.clone(),
            addresses: self.addresses(),
        }
    }
}

fn load_server(conn: &Connection, id: &str) -> OpResult<Option<ServerRow>> {
    let sql = format!("SELECT {SERVER_COLUMNS} FROM servers WHERE id = ?1");
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query([id])?;
    match rows.next()? {
        Some(row) => Ok(Some(ServerRow::from_row(row)?)),
        None => Ok(None),
    }
}

fn live_server(conn: &Connection, id: &str) -> OpResult<ServerRow> {
    match load_server(conn, id)? {
        Some(s) if s.deleted_ms.is_none() => Ok(s),
        _ => Err(ProviderError::NotFound(format!("server {id}")).into()),
    }
}

/// The instance (id, name) a server belongs to, tombstones included, for fault targeting.
pub(super) fn server_subject(conn: &mut Connection, id: &str) -> OpResult<Option<(Uuid, String)>> {
    Ok(load_server(conn, id)?.map(|s| (s.instance_id, s.instance_name)))
}

/// Takes the next number of a counter kept in `meta`.
fn next_counter(tx: &Transaction<'_>, name: &str) -> OpResult<u64> {
    let current: Option<String> = tx
        .query_row("SELECT value FROM meta WHERE key = ?1", [name], |r| {
            r.get(0)
        })
        .optional()?;
    let n: u64 = match current {
        None => 0,
        Some(v) => v
            .parse()
            .map_err(|_| OpError::Corrupt(format!("counter {name} = {v:?}")))?,
    };
    tx.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![name, (n + 1).to_string()],
    )?;
    Ok(n)
}

/// The n-th address of a /8-ish pool, skipping host numbers 0 and 255 in the last octet.
fn nth_address(first: u8, second_base: u8, second_span: u64, n: u64) -> String {
    let (q, r) = (n / 254, n % 254 + 1);
    let second = u64::from(second_base) + (q >> 8) % second_span;
    format!("{first}.{second}.{}.{r}", q & 0xff)
}

fn private_address(tx: &Transaction<'_>) -> OpResult<String> {
    Ok(nth_address(
        10,
        0,
        256,
        next_counter(tx, "next_private_ip")?,
    ))
}

fn public_address(tx: &Transaction<'_>) -> OpResult<String> {
    // 172.24.0.0/13: the range DevStack uses for floating addresses.
    Ok(nth_address(172, 24, 8, next_counter(tx, "next_public_ip")?))
}

pub(super) fn create_server(
    conn: &mut Connection,
    s: &Settings,
    key: &str,
    spec: &ServerSpec,
    now: i64,
) -> OpResult<Server> {
    let tx = immediate(conn)?;
    if let Some(id) = lookup_key(&tx, key, Kind::Server)? {
        let server = load_server(&tx, &id)?
            .ok_or_else(|| OpError::Corrupt(format!("key '{key}' names missing server {id}")))?;
        if server.deleted_ms.is_some() {
            return Err(deleted_under_key("server", &id, key));
        }
        let status = server.status(now);
        return Ok(server.to_port(status));
    }
    let (zone, cap) = s.zone(spec.availability_zone.as_deref())?;
    check_compute_capacity(&tx, &zone, &cap, spec)?;
    let volume = match &spec.volume_id {
        Some(id) => Some(attachable_volume(&tx, id)?),
        None => None,
    };
    let row = ServerRow {
        id: Uuid::new_v4().to_string(),
        idempotency_key: key.to_string(),
        instance_id: spec.instance_id,
        instance_name: spec.instance_name.clone(),
        flavor_id: spec.flavor_id.clone(),
        vcpus: spec.vcpus,
        ram_mb: spec.ram,
        availability_zone: zone,
        network_id: spec
            .network_id
            .clone()
            .unwrap_or_else(|| DEFAULT_NETWORK.into()),
        private_ip: private_address(&tx)?,
        public_ip: if spec.public {
            Some(public_address(&tx)?)
        } else {
            None
        },
        created_ms: now,
        ready_ms: now.saturating_add(s.settle_ms),
        deleted_ms: None,
    };
    insert_server(&tx, &row)?;
    if let Some(volume) = volume {
        tx.execute(
            "UPDATE volumes SET attached_to = ?2 WHERE id = ?1",
            params![volume.id, row.id],
        )?;
    }
    record_key(&tx, key, Kind::Server, &row.id, now)?;
    tx.commit()?;
    // A new server is always reported building, even when it settles at once.
    Ok(row.to_port("BUILD"))
}

fn check_compute_capacity(
    tx: &Transaction<'_>,
    zone: &str,
    cap: &ZoneCapacity,
    spec: &ServerSpec,
) -> OpResult<()> {
    let (vcpus, ram): (i64, i64) = tx
        .query_row(
            "SELECT vcpus, ram_mb FROM zone_usage WHERE zone = ?1",
            [zone],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?
        .unwrap_or((0, 0));
    let free_vcpus = cap.vcpus.saturating_sub(to_u64(vcpus, "used vcpus")?);
    let free_ram = cap.ram_mb.saturating_sub(to_u64(ram, "used ram")?);
    if u64::from(spec.vcpus) > free_vcpus || u64::from(spec.ram) > free_ram {
        return Err(ProviderError::Permanent(format!(
            "Insufficient capacity in availability zone '{zone}' for {} vCPU / {} MB RAM \
             (free: {free_vcpus} vCPU / {free_ram} MB RAM).",
            spec.vcpus, spec.ram
        ))
        .into());
    }
    Ok(())
}

/// The volume a new server boots with must exist and be free.
fn attachable_volume(tx: &Transaction<'_>, id: &str) -> OpResult<VolumeRow> {
    let volume = match load_volume(tx, id)? {
        Some(v) if v.deleted_ms.is_none() => v,
        _ => {
            return Err(ProviderError::Permanent(format!(
                "Volume {id} does not exist and cannot be attached."
            ))
            .into())
        }
    };
    if let Some(other) = &volume.attached_to {
        return Err(ProviderError::Permanent(format!(
            "Volume {id} is already attached to server {other}."
        ))
        .into());
    }
    Ok(volume)
}

fn insert_server(tx: &Transaction<'_>, row: &ServerRow) -> OpResult<()> {
    tx.execute(
        "INSERT INTO servers (id, idempotency_key, instance_id, instance_name, flavor_id,
             vcpus, ram_mb, availability_zone, network_id, private_ip, public_ip,
             created_ms, ready_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        params![
            row.id,
            row.idempotency_key,
            row.instance_id.to_string(),
            row.instance_name,
            row.flavor_id,
            row.vcpus,
            row.ram_mb,
            row.availability_zone,
            row.network_id,
            row.private_ip,
            row.public_ip,
            row.created_ms,
            row.ready_ms
        ],
    )?;
    Ok(())
}

/// How a status query is to be answered besides the plain truth.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Report {
    Truth,
    /// Stuck in the in-progress status (an injected hang).
    Stuck,
    /// Broken (an injected permanent fault): `ERROR` / `FAILED`.
    Broken,
}

pub(super) fn server(
    conn: &mut Connection,
    id: &str,
    at_ms: i64,
    report: Report,
) -> OpResult<Server> {
    let server = live_server(conn, id)?;
    let status = match report {
        Report::Truth => server.status(at_ms),
        Report::Stuck => "BUILD",
        Report::Broken => "ERROR",
    };
    Ok(server.to_port(status))
}

pub(super) fn set_public(
    conn: &mut Connection,
    id: &str,
    public: bool,
    now: i64,
) -> OpResult<Server> {
    let tx = immediate(conn)?;
    let mut server = live_server(&tx, id)?;
    match (public, server.public_ip.is_some()) {
        (true, false) => server.public_ip = Some(public_address(&tx)?),
        (false, true) => server.public_ip = None,
        _ => {}
    }
    tx.execute(
        "UPDATE servers SET public_ip = ?2 WHERE id = ?1",
        params![id, server.public_ip],
    )?;
    tx.commit()?;
    let status = server.status(now);
    Ok(server.to_port(status))
}

/// Deleting what is gone succeeds. Volumes attached to the server are detached (Nova
/// does not delete data volumes with their server), so they can be deleted next.
pub(super) fn delete_server(conn: &mut Connection, id: &str, now: i64) -> OpResult<()> {
    let tx = immediate(conn)?;
    let changed = tx.execute(
        "UPDATE servers SET deleted_ms = ?2 WHERE id = ?1 AND deleted_ms IS NULL",
        params![id, now],
    )?;
    if changed > 0 {
        tx.execute(
            "UPDATE volumes SET attached_to = NULL WHERE attached_to = ?1",
            [id],
        )?;
    }
    tx.commit()?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Guests.

/// A row of `guests`: what the agent was asked to prepare (user names only, never
/// passwords) and its current phase.
pub(super) struct GuestRow {
    pub idempotency_key: String,
    pub datastore_manager: String,
    pub datastore_version: String,
    pub databases: Vec<String>,
    pub users: Vec<String>,
    pub configuration: Option<serde_json::Value>,
    pub replica_of: Option<Uuid>,
    /// `BUILDING` or `UPGRADING`: what the guest reports until `phase_until_ms`.
    pub phase: String,
    pub phase_until_ms: i64,
}

impl GuestRow {
    pub(super) fn status(&self, at_ms: i64, report: Report) -> String {
        match report {
            Report::Broken => "FAILED".into(),
            Report::Stuck => self.phase.clone(),
            Report::Truth if at_ms < self.phase_until_ms => self.phase.clone(),
            Report::Truth => "HEALTHY".into(),
        }
    }
}

pub(super) fn load_guest(conn: &Connection, server_id: &str) -> OpResult<Option<GuestRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT idempotency_key, datastore_manager, datastore_version, databases, users,
                configuration, replica_of, phase, phase_until_ms
         FROM guests WHERE server_id = ?1",
    )?;
    let mut rows = stmt.query([server_id])?;
    let Some(r) = rows.next()? else {
        return Ok(None);
    };
    let configuration: Option<String> = r.get(5)?;
    let replica_of: Option<String> = r.get(6)?;
    Ok(Some(GuestRow {
        idempotency_key: r.get(0)?,
        datastore_manager: r.get(1)?,
        datastore_version: r.get(2)?,
        databases: serde_json::from_str(&r.get::<_, String>(3)?)?,
        users: serde_json::from_str(&r.get::<_, String>(4)?)?,
        configuration: configuration
            .map(|c| serde_json::from_str(&c))
            .transpose()?,
        replica_of: replica_of.map(|id| parse_uuid(&id)).transpose()?,
        phase: r.get(7)?,
        phase_until_ms: r.get(8)?,
    }))
}

/// Records the prepare request. The server must be live and `ACTIVE` (a real agent
/// only runs once its server has booted); a retried prepare with the same key
/// succeeds; a second prepare of one guest under another key fails permanently.
pub(super) fn prepare(
    conn: &mut Connection,
    s: &Settings,
    key: &str,
    req: &PrepareRequest,
    now: i64,
) -> OpResult<()> {
    let tx = immediate(conn)?;
    if let Some(server_id) = lookup_key(&tx, key, Kind::Prepare)? {
        return same_server(key, &server_id, &req.server_id);
    }
    let server = live_server(&tx, &req.server_id)?;
    if server.status(now) != "ACTIVE" {
        return Err(ProviderError::Transient(format!(
            "Server {} is not ACTIVE yet; the guest agent is not running.",
            req.server_id
        ))
        .into());
    }
    if let Some(guest) = load_guest(&tx, &req.server_id)? {
        return Err(ProviderError::Permanent(format!(
            "The guest on server {} was already prepared (key '{}').",
            req.server_id, guest.idempotency_key
        ))
        .into());
    }
    let users: Vec<&str> = req.users.iter().map(|u| u.name.as_str()).collect();
    tx.execute(
        "INSERT INTO guests (server_id, idempotency_key, datastore_manager, datastore_version,
             databases, users, configuration, replica_of, phase, phase_until_ms, prepared_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'BUILDING', ?9, ?10)",
        params![
            req.server_id,
            key,
            req.datastore_manager,
            req.datastore_version,
            serde_json::to_string(&req.databases).map_err(OpError::from)?,
            serde_json::to_string(&users).map_err(OpError::from)?,
            req.configuration.as_ref().map(|c| c.to_string()),
            req.replica_of.map(|id| id.to_string()),
            now.saturating_add(s.settle_ms),
            now
        ],
    )?;
    record_key(&tx, key, Kind::Prepare, &req.server_id, now)?;
    tx.commit()?;
    Ok(())
}

fn same_server(key: &str, recorded: &str, asked: &str) -> OpResult<()> {
    if recorded == asked {
        Ok(())
    } else {
        Err(ProviderError::Permanent(format!(
            "Idempotency key '{key}' was already used for server {recorded}, not {asked}."
        ))
        .into())
    }
}

/// `NEW` before prepare, then the guest's phase, `HEALTHY` once it has settled.
pub(super) fn guest_status(
    conn: &mut Connection,
    server_id: &str,
    at_ms: i64,
    report: Report,
) -> OpResult<String> {
    live_server(conn, server_id)?;
    Ok(match load_guest(conn, server_id)? {
        Some(guest) => guest.status(at_ms, report),
        None if report == Report::Broken => "FAILED".into(),
        None => "NEW".into(),
    })
}

/// A guest operation other than prepare.
pub(super) enum GuestOp {
    Upgrade(String),
    ApplyConfiguration(Option<serde_json::Value>),
    DetachReplica,
    // instance actions
    /// The database restarts: `RESTARTING` for one latency period.
    Restart,
    /// The server gets another flavor (and the database restarts on it).
    ResizeFlavor {
        flavor_id: String,
        vcpus: u32,
        ram_mb: u32,
    },
    /// The server's attached volume grows to `size_gb`.
    ResizeVolume {
        size_gb: u64,
    },
    /// A change of databases, users or root: its detail, without passwords.
    GuestChange(serde_json::Value),
}

impl GuestOp {
    fn kind(&self) -> Kind {
        match self {
            GuestOp::Upgrade(_) => Kind::Upgrade,
            GuestOp::ApplyConfiguration(_) => Kind::Configuration,
            GuestOp::DetachReplica => Kind::DetachReplica,
            GuestOp::Restart => Kind::Restart,
            GuestOp::ResizeFlavor { .. } | GuestOp::ResizeVolume { .. } => Kind::Resize,
            GuestOp::GuestChange(_) => Kind::GuestChange,
        }
    }
}

/// Applies `op` to a prepared guest once per key and records it in `guest_operations`.
/// An upgrade puts the guest in `UPGRADING` for one latency period.
pub(super) fn guest_operation(
    conn: &mut Connection,
    s: &Settings,
    key: &str,
    server_id: &str,
    op: GuestOp,
    now: i64,
) -> OpResult<()> {
    let tx = immediate(conn)?;
    let kind = op.kind();
    if let Some(recorded) = lookup_key(&tx, key, kind)? {
        return same_server(key, &recorded, server_id);
    }
    live_server(&tx, server_id)?;
    let guest = load_guest(&tx, server_id)?.ok_or_else(|| {
        ProviderError::Permanent(format!(
            "The guest on server {server_id} has not been prepared."
        ))
    })?;
    let detail = match op {
        GuestOp::Upgrade(version) => {
            tx.execute(
                "UPDATE guests SET datastore_version = ?2, phase = 'UPGRADING',
                     phase_until_ms = ?3
                 WHERE server_id = ?1",
                params![server_id, version, now.saturating_add(s.settle_ms)],
            )?;
            serde_json::json!({ "from": guest.datastore_version, "to": version })
        }
        GuestOp::ApplyConfiguration(values) => {
            tx.execute(
                "UPDATE guests SET configuration = ?2 WHERE server_id = ?1",
                params![server_id, values.as_ref().map(|v| v.to_string())],
            )?;
            serde_json::json!({ "values": values })
        }
        GuestOp::DetachReplica => {
            tx.execute(
                "UPDATE guests SET replica_of = NULL WHERE server_id = ?1",
                [server_id],
            )?;
            serde_json::json!({ "replica_of": guest.replica_of })
        }
        op @ (GuestOp::Restart | GuestOp::ResizeFlavor { .. } | GuestOp::ResizeVolume { .. }) => {
            action_effect(&tx, s, server_id, op, now)?
        }
        GuestOp::GuestChange(detail) => detail,
    };
    tx.execute(
        "INSERT INTO guest_operations (key, server_id, kind, detail, at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![key, server_id, kind.as_str(), detail.to_string(), now],
    )?;
    record_key(&tx, key, kind, server_id, now)?;
    tx.commit()?;
    Ok(())
}

/// The effect of an instance action on the server, its guest or its volume.
fn action_effect(
    tx: &Transaction<'_>,
    s: &Settings,
    server_id: &str,
    op: GuestOp,
    now: i64,
) -> OpResult<serde_json::Value> {
    let restarting = |tx: &Transaction<'_>| {
        tx.execute(
            "UPDATE guests SET phase = 'RESTARTING', phase_until_ms = ?2 WHERE server_id = ?1",
            params![server_id, now.saturating_add(s.settle_ms)],
        )
    };
    Ok(match op {
        GuestOp::Restart => {
            restarting(tx)?;
            serde_json::json!({ "restart": true })
        }
        GuestOp::ResizeFlavor {
            flavor_id,
            vcpus,
            ram_mb,
        } => {
            tx.execute(
                "UPDATE servers SET flavor_id = ?2, vcpus = ?3, ram_mb = ?4 WHERE id = ?1",
                params![server_id, flavor_id, vcpus, ram_mb],
            )?;
            restarting(tx)?;
            serde_json::json!({ "flavor_id": flavor_id, "ram_mb": ram_mb })
        }
        GuestOp::ResizeVolume { size_gb } => {
            let n = tx.execute(
                "UPDATE volumes SET size_gb = MAX(size_gb, ?2)
                 WHERE attached_to = ?1 AND deleted_ms IS NULL",
                params![server_id, size_gb as i64],
            )?;
            if n == 0 {
                return Err(ProviderError::Permanent(format!(
                    "server {server_id} has no volume attached"
                ))
                .into());
            }
            serde_json::json!({ "size_gb": size_gb })
        }
        _ => serde_json::Value::Null,
    })
}

/// One recorded guest operation, for listings.
pub(super) struct OperationRow {
    pub key: String,
    pub kind: String,
    pub detail: serde_json::Value,
    pub at_ms: i64,
}

pub(super) fn guest_operations(conn: &Connection, server_id: &str) -> OpResult<Vec<OperationRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT key, kind, detail, at_ms FROM guest_operations
         WHERE server_id = ?1 ORDER BY seq",
    )?;
    let mut rows = stmt.query([server_id])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(OperationRow {
            key: r.get(0)?,
            kind: r.get(1)?,
            detail: serde_json::from_str(&r.get::<_, String>(2)?)?,
            at_ms: r.get(3)?,
        });
    }
    Ok(out)
}

/// Every live server, oldest first.
pub(super) fn live_servers(conn: &Connection) -> OpResult<Vec<ServerRow>> {
    let sql = format!("SELECT {SERVER_COLUMNS} FROM servers WHERE deleted_ms IS NULL ORDER BY seq");
    let mut stmt = conn.prepare(&sql)?;
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(ServerRow::from_row(r)?);
    }
    Ok(out)
}

/// Every live volume, oldest first.
pub(super) fn live_volumes(conn: &Connection) -> OpResult<Vec<VolumeRow>> {
    let sql = format!("SELECT {VOLUME_COLUMNS} FROM volumes WHERE deleted_ms IS NULL ORDER BY seq");
    let mut stmt = conn.prepare(&sql)?;
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(VolumeRow::from_row(r)?);
    }
    Ok(out)
}

/// Which of `ids` is not a live row of `table` (`servers` or `volumes`): deleted, or
/// never in this file.
pub(super) fn not_live(conn: &Connection, table: Table, ids: &[String]) -> OpResult<Vec<String>> {
    let sql = match table {
        Table::Servers => "SELECT 1 FROM servers WHERE id = ?1 AND deleted_ms IS NULL",
        Table::Volumes => "SELECT 1 FROM volumes WHERE id = ?1 AND deleted_ms IS NULL",
    };
    let mut stmt = conn.prepare(sql)?;
    let mut out = Vec::new();
    for id in ids {
        if !stmt.exists([id])? {
            out.push(id.clone());
        }
    }
    Ok(out)
}

/// The tables [`not_live`] looks in.
#[derive(Clone, Copy)]
pub(super) enum Table {
    Servers,
    Volumes,
}

/// Whether the file ever held a server or a volume (tombstones count): a file without
/// them (or without the tables at all) was emptied or recreated.
pub(super) fn ever_held_resources(conn: &Connection) -> OpResult<bool> {
    let tables: i64 = conn.query_row(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN ('servers', 'volumes')",
        [],
        |r| r.get(0),
    )?;
    if tables < 2 {
        return Ok(false);
    }
    Ok(conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM servers) OR EXISTS (SELECT 1 FROM volumes)",
        [],
        |r| r.get(0),
    )?)
}

/// Capacity used per zone by live resources: (vcpus, ram MB, volume GB).
pub(super) fn usage_by_zone(conn: &Connection) -> OpResult<BTreeMap<String, (u64, u64, u64)>> {
    let mut out: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
    let mut stmt = conn.prepare(
        "SELECT availability_zone, SUM(vcpus), SUM(ram_mb) FROM servers
         WHERE deleted_ms IS NULL GROUP BY availability_zone",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let entry = out.entry(r.get(0)?).or_default();
        entry.0 = to_u64(r.get(1)?, "used vcpus")?;
        entry.1 = to_u64(r.get(2)?, "used ram")?;
    }
    let mut stmt = conn.prepare(
        "SELECT availability_zone, SUM(size_gb) FROM volumes
         WHERE deleted_ms IS NULL GROUP BY availability_zone",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        out.entry(r.get(0)?).or_default().2 = to_u64(r.get(1)?, "used volume GB")?;
    }
    Ok(out)
}

/// The live resource of `kind` (`volume` or `server`) created under `key`, if any.
pub(super) fn find_live_by_key(
    conn: &mut Connection,
    key: &str,
    server: bool,
) -> OpResult<Option<String>> {
    let tx = immediate(conn)?;
    let kind = if server { Kind::Server } else { Kind::Volume };
    let Some(id) = lookup_key(&tx, key, kind)? else {
        return Ok(None);
    };
    let live = if server {
        load_server(&tx, &id)?.is_some_and(|s| s.deleted_ms.is_none())
    } else {
        load_volume(&tx, &id)?.is_some_and(|v| v.deleted_ms.is_none())
    };
    tx.commit()?;
    Ok(live.then_some(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_skip_network_and_broadcast_numbers() {
        assert_eq!(nth_address(10, 0, 256, 0), "10.0.0.1");
        assert_eq!(nth_address(10, 0, 256, 253), "10.0.0.254");
        assert_eq!(nth_address(10, 0, 256, 254), "10.0.1.1");
        assert_eq!(nth_address(172, 24, 8, 254 * 256), "172.25.0.1");
    }
}
