//! Read models of backups: the records behind `GET /backups`, `GET /backups/{id}` and
//! `GET /instances/{id}/backups` (spec `supporting-resources.md` §4), and the backup
//! view they render.
//!
//! The projector feeds [`BackupModels::apply`] with the events of the `backup-<uuid>`
//! streams: each backup's state is folded with the aggregate's `evolve`, and its record
//! (what the views render) derived from it. The rendering is here, beside the record,
//! because it is a pure function of it. Besides the lists, the models answer what the
//! command path and the views ask of backups: which instances have one running (their
//! status is `BACKUP`), the live children of a backup, the last completed backup of an
//! instance, and the chain of artifacts a restore reads.
//!
//! Indexes: all live backups, per project and per instance, each ordered by `updated`
//! descending (offset paging, scheme B), so a query walks only what it may return.
//! Deleted records stay in the record map (a later "deleted" view may need them) but
//! leave every index. What it must not do: decide visibility for a caller (the handler
//! passes the project filter) or build links.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{PoisonError, RwLock};

use aggregates::backup::{self as backup, Backup, BackupEvent};
use aggregates::Position;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use uuid::Uuid;

pub use crate::running::RunningBackups;
use crate::views::timestamp;

pub use aggregates::backup::BackupStatus;

/// The datastore version a backup was taken from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupDatastore {
    /// Datastore id: the `datastore` filter of `GET /backups` matches on it.
    pub datastore_id: Uuid,
    /// Datastore name (`datastore.type`).
    pub name: String,
    /// Version name (`datastore.version`).
    pub version: String,
    /// Version id (`datastore.version_id`).
    pub version_id: Uuid,
}

/// One backup, as the views need it (spec §4.2).
#[derive(Clone, Debug, PartialEq)]
pub struct BackupRecord {
    /// The backup id.
    pub id: Uuid,
    /// Display name.
    pub name: String,
    /// Free text, or `None` (rendered `null`).
    pub description: Option<String>,
    /// Storage URL of the backup object (`locationRef`).
    pub location_ref: Option<String>,
    /// The source instance.
    pub instance_id: Option<Uuid>,
    /// When the backup was requested.
    pub created: DateTime<Utc>,
    /// The ordering key of every list.
    pub updated: DateTime<Utc>,
    /// GB.
    pub size: Option<f64>,
    /// State (spec §4.1).
    pub status: BackupStatus,
    /// Parent of an incremental backup.
    pub parent_id: Option<Uuid>,
    /// Owner.
    pub project_id: String,
    /// The datastore version it was taken from, if known.
    pub datastore: Option<BackupDatastore>,
    /// Soft-deleted: invisible everywhere.
    pub deleted: bool,
    /// Lower-case hex SHA-256 of the stored artifact, once completed.
    pub checksum: Option<String>,
}

/// What `GET /backups` and `GET /instances/{id}/backups` select (all conditions
/// must hold). Deleted backups are never selected.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackupFilter {
    /// Only this project's backups; `None` = every project (admins only).
    pub project_id: Option<String>,
    /// Only backups of this instance.
    pub instance_id: Option<Uuid>,
    /// Only backups taken from this datastore (by id).
    pub datastore_id: Option<Uuid>,
}

impl BackupFilter {
    fn matches(&self, r: &BackupRecord) -> bool {
        !r.deleted
            && self.project_id.as_ref().is_none_or(|p| *p == r.project_id)
            && self.instance_id.is_none_or(|i| r.instance_id == Some(i))
            && self
                .datastore_id
                .is_none_or(|d| r.datastore.as_ref().map(|x| x.datastore_id) == Some(d))
    }
}

/// Order key of the indexes: newest `updated` first, ties by id (stable pages).
type OrderKey = (Reverse<DateTime<Utc>>, Uuid);

#[derive(Debug, Default)]
struct Inner {
    /// Each backup's folded state and the position of the last event applied to it.
    states: HashMap<Uuid, (Backup, Position)>,
    /// Live backups by parent.
    children: HashMap<Uuid, BTreeSet<Uuid>>,
    records: HashMap<Uuid, BackupRecord>,
    all: BTreeSet<OrderKey>,
    by_project: HashMap<String, BTreeSet<OrderKey>>,
    by_instance: HashMap<Uuid, BTreeSet<OrderKey>>,
}

impl Inner {
    fn key(r: &BackupRecord) -> OrderKey {
        (Reverse(r.updated), r.id)
    }

    fn unindex(&mut self, r: &BackupRecord) {
        let key = Inner::key(r);
        self.all.remove(&key);
        if let Some(set) = self.by_project.get_mut(&r.project_id) {
            set.remove(&key);
            if set.is_empty() {
                self.by_project.remove(&r.project_id);
            }
        }
        if let Some(i) = r.instance_id {
            if let Some(set) = self.by_instance.get_mut(&i) {
                set.remove(&key);
                if set.is_empty() {
                    self.by_instance.remove(&i);
                }
            }
        }
    }

    fn index(&mut self, r: &BackupRecord) {
        if r.deleted {
            return;
        }
        let key = Inner::key(r);
        self.all.insert(key);
        self.by_project
            .entry(r.project_id.clone())
            .or_default()
            .insert(key);
        if let Some(i) = r.instance_id {
            self.by_instance.entry(i).or_default().insert(key);
        }
    }
}

/// Backup read models. One writer (the projector), any number of readers.
#[derive(Debug, Default)]
pub struct BackupModels {
    // One lock over records and indexes: backups are few (50 per project by quota) and
    // change rarely, so a reader never sees a record without its index entry.
    inner: RwLock<Inner>,
    /// Instances with a running backup (shared with the views).
    running: RunningBackups,
}

/// A backup event as the projector hands it over.
#[derive(Clone, Debug, PartialEq)]
pub struct ProjectedBackupEvent {
    /// Global position in `$all`.
    pub position: Position,
    pub backup_id: Uuid,
    pub event: BackupEvent,
}

/// The record the views render, derived from a backup's state.
pub fn record_of(b: &Backup) -> BackupRecord {
    let artifact = b.artifact.as_ref();
    BackupRecord {
        id: b.id.unwrap_or_default(),
        name: b.name.clone(),
        description: b.description.clone(),
        location_ref: artifact.map(|a| a.location.clone()),
        instance_id: Some(b.instance_id),
        created: b.created,
        updated: b.updated,
        size: b.size_gb(),
        status: b.status,
        parent_id: b.parent_id,
        project_id: b.project_id.clone(),
        datastore: Some(BackupDatastore {
            datastore_id: b.datastore.datastore_id,
            name: b.datastore.datastore_name.clone(),
            version: b.datastore.version_name.clone(),
            version_id: b.datastore.version_id,
        }),
        deleted: b.deleted,
        checksum: artifact.map(|a| a.checksum.clone()),
    }
}

impl BackupModels {
    /// Empty models.
    pub fn new() -> BackupModels {
        BackupModels::default()
    }

    /// Applies one backup event: folds it into the backup's state and moves its record
    /// in every index. Idempotent per position: an event at or before the last one
    /// applied to that backup changes nothing.
    pub fn apply(&self, ev: &ProjectedBackupEvent) {
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        let (old, last) = inner.states.remove(&ev.backup_id).unwrap_or_default();
        if ev.position <= last && old.exists() {
            inner.states.insert(ev.backup_id, (old, last));
            return;
        }
        let new = backup::evolve(old.clone(), &ev.event);
        if let Some(parent) = old.parent_id.filter(|_| old.is_live()) {
            if let Some(set) = inner.children.get_mut(&parent) {
                set.remove(&ev.backup_id);
            }
        }
        if let Some(parent) = new.parent_id.filter(|_| new.is_live()) {
            inner
                .children
                .entry(parent)
                .or_default()
                .insert(ev.backup_id);
        }
        self.running.set(
            new.instance_id,
            ev.backup_id,
            new.is_live() && new.status.is_running(),
        );
        let record = record_of(&new);
        inner.states.insert(ev.backup_id, (new, ev.position));
        if let Some(old) = inner.records.remove(&record.id) {
            inner.unindex(&old);
        }
        inner.index(&record);
        inner.records.insert(record.id, record);
    }

    /// The shared set of instances with a running backup, for the views.
    pub fn running(&self) -> RunningBackups {
        self.running.clone()
    }

    /// A backup's folded state, deleted or not.
    pub fn state(&self, id: Uuid) -> Option<Backup> {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        inner.states.get(&id).map(|(b, _)| b.clone())
    }

    /// Backup `id` and its ancestors, the full backup first: what a restore of it reads.
    /// Deleted ones are included (the caller decides); the walk stops at a backup this
    /// model does not know or at a loop, so a chain whose first element still has a
    /// parent is broken.
    pub fn chain(&self, id: Uuid) -> Vec<Backup> {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        let mut chain: Vec<Backup> = Vec::new();
        let mut next = Some(id);
        while let Some(b) = next {
            if chain.iter().any(|c| c.id == Some(b)) {
                break;
            }
            let Some((state, _)) = inner.states.get(&b) else {
                break;
            };
            next = state.parent_id;
            chain.push(state.clone());
        }
        chain.reverse();
        chain
    }

    /// The live backups whose parent is `id`.
    pub fn children(&self, id: Uuid) -> Vec<Uuid> {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        inner
            .children
            .get(&id)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    /// The instance's live backup completed last (by `updated`), as upstream's
    /// `get_last_completed` picks the parent of an `incremental` create.
    pub fn last_completed(&self, instance: Uuid) -> Option<Backup> {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        inner
            .by_instance
            .get(&instance)?
            .iter()
            .filter_map(|(_, id)| inner.states.get(id))
            .map(|(b, _)| b)
            .find(|b| b.is_live() && b.status == BackupStatus::Completed)
            .cloned()
    }

    /// Backups with work left for the saga: running, or deleted with an artifact still
    /// stored.
    pub fn with_work(&self) -> Vec<Uuid> {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        inner
            .states
            .iter()
            .filter(|(_, (b, _))| (b.is_live() && b.status.is_running()) || b.artifact_to_remove())
            .map(|(id, _)| *id)
            .collect()
    }

    /// The live backups of `project` (the `backups` quota's usage).
    pub fn count_live(&self, project: &str) -> usize {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        inner.by_project.get(project).map_or(0, BTreeSet::len)
    }

    /// Every backup's state and position, for a read-model snapshot.
    pub fn image(&self) -> Vec<(Backup, Position)> {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        let mut all: Vec<(Backup, Position)> = inner.states.values().cloned().collect();
        all.sort_by_key(|(b, _)| b.id);
        all
    }

    /// Replaces the models with a snapshot's [`BackupModels::image`].
    pub fn restore(&self, image: Vec<(Backup, Position)>) {
        let mut fresh = Inner::default();
        self.running.clear();
        for (b, position) in image {
            let Some(id) = b.id else { continue };
            if let Some(parent) = b.parent_id.filter(|_| b.is_live()) {
                fresh.children.entry(parent).or_default().insert(id);
            }
            self.running
                .set(b.instance_id, id, b.is_live() && b.status.is_running());
            let record = record_of(&b);
            fresh.index(&record);
            fresh.records.insert(id, record);
            fresh.states.insert(id, (b, position));
        }
        *self.inner.write().unwrap_or_else(PoisonError::into_inner) = fresh;
    }

    /// Inserts or replaces the record with `record.id`, moving it in every index
    /// (its `updated`, project or instance may have changed; a deleted record leaves
    /// them). Idempotent: upserting the same record twice changes nothing.
    pub fn upsert(&self, record: BackupRecord) {
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(old) = inner.records.remove(&record.id) {
            inner.unindex(&old);
        }
        inner.index(&record);
        inner.records.insert(record.id, record);
    }

    /// Alias of [`BackupModels::upsert`] for a backup seen for the first time.
    pub fn insert(&self, record: BackupRecord) {
        self.upsert(record);
    }

    /// A backup by id, deleted or not.
    pub fn get(&self, id: Uuid) -> Option<BackupRecord> {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        inner.records.get(&id).cloned()
    }

    /// The backup as `GET /backups/{id}` may show it: `None` when missing, deleted, or
    /// another project's and the caller is not admin (all the same 404).
    pub fn visible_to(
        &self,
        id: Uuid,
        caller_project: &str,
        caller_is_admin: bool,
    ) -> Option<BackupRecord> {
        self.get(id)
            .filter(|r| !r.deleted && (caller_is_admin || r.project_id == caller_project))
    }

    /// Rows `offset..offset + limit` of the backups selected by `filter`, `updated`
    /// descending (spec §3.4 B: the caller emits `next` when the page is full).
    pub fn page(&self, filter: &BackupFilter, offset: usize, limit: usize) -> Vec<BackupRecord> {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        let empty = BTreeSet::new();
        // The narrowest index that the filter allows.
        let index = match (&filter.instance_id, &filter.project_id) {
            (Some(i), _) => inner.by_instance.get(i).unwrap_or(&empty),
            (None, Some(p)) => inner.by_project.get(p).unwrap_or(&empty),
            (None, None) => &inner.all,
        };
        index
            .iter()
            .filter_map(|(_, id)| inner.records.get(id))
            .filter(|r| filter.matches(r))
            .skip(offset)
            .take(limit)
            .cloned()
            .collect()
    }

    /// Number of live (not deleted) backups.
    pub fn len(&self) -> usize {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        inner.all.len()
    }

    /// Whether there is no live backup.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Live backups per project, in project order (for tests and operators).
    pub fn count_by_project(&self) -> BTreeMap<String, usize> {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        inner
            .by_project
            .iter()
            .map(|(p, s)| (p.clone(), s.len()))
            .collect()
    }
}

/// The backup view (spec §4.2), used by every backup list and by show. No `links`;
/// `datastore` only when the backup has a datastore version. Beyond upstream's keys:
/// `checksum`, the SHA-256 of the stored artifact (`null` until completed), so a user
/// can verify a downloaded artifact (upstream keeps its checksum in the database only).
pub fn backup_view(r: &BackupRecord) -> Value {
    let mut v = json!({
        "id": r.id,
        "name": r.name,
        "description": r.description,
        "locationRef": r.location_ref,
        "instance_id": r.instance_id,
        "created": timestamp(&r.created),
        "updated": timestamp(&r.updated),
        "size": r.size,
        "status": r.status.as_str(),
        "parent_id": r.parent_id,
        "project_id": r.project_id,
        "checksum": r.checksum,
    });
    if let Some(ds) = &r.datastore {
        v["datastore"] = json!({
            "type": ds.name,
            "version": ds.version,
            "version_id": ds.version_id,
        });
    }
    v
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + secs, 0).unwrap()
    }

    fn record(n: u128, project: &str, instance: Option<u128>, updated: i64) -> BackupRecord {
        BackupRecord {
            id: Uuid::from_u128(n),
            name: format!("b{n}"),
            description: None,
            location_ref: None,
            instance_id: instance.map(Uuid::from_u128),
            created: at(0),
            updated: at(updated),
            size: None,
            status: BackupStatus::Completed,
            parent_id: None,
            project_id: project.into(),
            datastore: None,
            deleted: false,
            checksum: None,
        }
    }

    /// `BackupCreated` of backup `n` (parent `parent`) at position `n`.
    fn created(n: u128, parent: Option<u128>) -> ProjectedBackupEvent {
        let event = BackupEvent::BackupCreated(Box::new(aggregates::backup::BackupCreated {
            backup_id: Uuid::from_u128(n),
            project_id: "p1".into(),
            user_id: "u".into(),
            instance_id: Uuid::from_u128(9),
            name: format!("b{n}"),
            description: None,
            parent_id: parent.map(Uuid::from_u128),
            datastore: Default::default(),
            container: "c".into(),
            at: at(n as i64),
        }));
        ProjectedBackupEvent {
            position: Position {
                commit: n as u64,
                prepare: n as u64,
            },
            backup_id: Uuid::from_u128(n),
            event,
        }
    }

    #[test]
    fn a_chain_runs_from_the_full_backup_to_the_one_asked_and_stops_where_it_breaks() {
        let m = BackupModels::new();
        m.apply(&created(1, None));
        m.apply(&created(2, Some(1)));
        m.apply(&created(3, Some(2)));
        m.apply(&created(5, Some(4))); // 4 is unknown: a broken chain
        let chain = |id| -> Vec<u128> {
            m.chain(Uuid::from_u128(id))
                .iter()
                .map(|b| b.id.unwrap().as_u128())
                .collect()
        };
        assert_eq!(chain(3), [1, 2, 3]);
        assert_eq!(chain(1), [1]);
        assert_eq!(chain(5), [5]);
        assert!(m.chain(Uuid::from_u128(5))[0].parent_id.is_some());
        assert!(chain(7).is_empty());
        assert_eq!(m.children(Uuid::from_u128(1)), [Uuid::from_u128(2)]);
    }

    fn ids(v: &[BackupRecord]) -> Vec<u128> {
        v.iter().map(|r| r.id.as_u128()).collect()
    }

    fn project(p: &str) -> BackupFilter {
        BackupFilter {
            project_id: Some(p.into()),
            ..BackupFilter::default()
        }
    }

    #[test]
    fn pages_are_ordered_by_updated_descending_per_project() {
        let m = BackupModels::new();
        m.insert(record(1, "p1", None, 10));
        m.insert(record(2, "p1", None, 30));
        m.insert(record(3, "p2", None, 20));
        m.insert(record(4, "p1", None, 20));
        assert_eq!(ids(&m.page(&project("p1"), 0, 20)), vec![2, 4, 1]);
        assert_eq!(ids(&m.page(&project("p1"), 1, 1)), vec![4]);
        assert_eq!(ids(&m.page(&project("p1"), 3, 5)), Vec::<u128>::new());
        assert_eq!(
            ids(&m.page(&BackupFilter::default(), 0, 20)),
            vec![2, 3, 4, 1]
        );
        assert_eq!(m.count_by_project()["p1"], 3);
    }

    #[test]
    fn upsert_moves_the_record_in_every_index() {
        let m = BackupModels::new();
        m.insert(record(1, "p1", Some(9), 10));
        m.insert(record(2, "p1", Some(9), 20));
        let mut newer = record(1, "p1", Some(9), 30);
        newer.status = BackupStatus::Failed;
        m.upsert(newer.clone());
        m.upsert(newer);
        let by_instance = BackupFilter {
            instance_id: Some(Uuid::from_u128(9)),
            ..BackupFilter::default()
        };
        assert_eq!(ids(&m.page(&by_instance, 0, 20)), vec![1, 2]);
        assert_eq!(m.len(), 2);
        assert_eq!(
            m.get(Uuid::from_u128(1)).unwrap().status,
            BackupStatus::Failed
        );
    }

    #[test]
    fn deleted_backups_leave_every_list_and_show() {
        let m = BackupModels::new();
        m.insert(record(1, "p1", Some(9), 10));
        let mut gone = record(1, "p1", Some(9), 11);
        gone.deleted = true;
        m.upsert(gone);
        assert!(m.page(&project("p1"), 0, 20).is_empty());
        assert!(m.is_empty());
        assert!(m.visible_to(Uuid::from_u128(1), "p1", true).is_none());
        assert!(m.get(Uuid::from_u128(1)).is_some_and(|r| r.deleted));
    }

    #[test]
    fn visibility_is_owner_or_admin() {
        let m = BackupModels::new();
        m.insert(record(1, "p1", None, 10));
        let id = Uuid::from_u128(1);
        assert!(m.visible_to(id, "p1", false).is_some());
        assert!(m.visible_to(id, "p2", false).is_none());
        assert!(m.visible_to(id, "p2", true).is_some());
        assert!(m.visible_to(Uuid::from_u128(2), "p1", true).is_none());
    }

    #[test]
    fn filters_combine_instance_project_and_datastore() {
        let m = BackupModels::new();
        let ds = Uuid::from_u128(77);
        let mut with_ds = record(1, "p1", Some(9), 10);
        with_ds.datastore = Some(BackupDatastore {
            datastore_id: ds,
            name: "mysql".into(),
            version: "8.0".into(),
            version_id: Uuid::from_u128(78),
        });
        m.insert(with_ds);
        m.insert(record(2, "p1", Some(9), 20));
        m.insert(record(3, "p2", Some(9), 30));
        let f = BackupFilter {
            project_id: Some("p1".into()),
            instance_id: Some(Uuid::from_u128(9)),
            datastore_id: None,
        };
        assert_eq!(ids(&m.page(&f, 0, 20)), vec![2, 1]);
        let f = BackupFilter {
            datastore_id: Some(ds),
            ..f
        };
        assert_eq!(ids(&m.page(&f, 0, 20)), vec![1]);
        let admin_instance = BackupFilter {
            instance_id: Some(Uuid::from_u128(9)),
            ..BackupFilter::default()
        };
        assert_eq!(ids(&m.page(&admin_instance, 0, 20)), vec![3, 2, 1]);
    }

    #[test]
    fn view_has_every_key_of_the_upstream_sample_but_storage_driver_and_a_checksum() {
        let mut r = record(1, "p1", Some(9), 10);
        r.size = Some(0.14);
        r.parent_id = Some(Uuid::from_u128(5));
        r.datastore = Some(BackupDatastore {
            datastore_id: Uuid::from_u128(77),
            name: "mysql".into(),
            version: "5.7".into(),
            version_id: Uuid::from_u128(78),
        });
        let v = backup_view(&r);
        let expected_keys = [
            "created",
            "datastore",
            "description",
            "id",
            "instance_id",
            "locationRef",
            "name",
            "parent_id",
            "project_id",
            "checksum",
            "size",
            "status",
            "updated",
        ];
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys.len(), expected_keys.len());
        for k in expected_keys {
            assert!(keys.contains(&k), "{k}");
        }
        assert_eq!(v["status"], "COMPLETED");
        assert_eq!(v["size"], json!(0.14));
        assert_eq!(v["updated"], json!(timestamp(&at(10))));
        assert_eq!(
            v["datastore"],
            json!({"type": "mysql", "version": "5.7", "version_id": Uuid::from_u128(78)})
        );
        r.datastore = None;
        assert!(backup_view(&r).get("datastore").is_none());
        assert!(BackupStatus::Saving.is_running() && !BackupStatus::Restored.is_running());
    }
}
