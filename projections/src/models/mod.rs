//! [`InstanceModels`]: the in-memory read side of troved, built only by [`InstanceModels::apply`]
//! and read concurrently by the HTTP handlers.
//!
//! Models (each keyed so a query touches only what it returns):
//! - records: instance id → the folded [`Instance`] (plus the position of its last
//!   event and whether its quota was released). Views are rendered from it on read;
//!   no rendered JSON is stored, which keeps memory per instance small.
//! - [`list`]: project → ascending ids of its non-deleted instances (keyset paging).
//! - [`mgmt`]: all instances, live and soft-deleted, by `updated` desc (offset paging).
//! - [`replicas`]: primary → live replica ids.
//! - [`quota`]: project → instances, RAM and volume GB in use.
//!
//! Concurrency: one writer (the projector task) applies events in global order; any
//! number of readers query at the same time. Readers never hold a guard of one map while
//! taking another, and the writer updates one map at a time, so there is no lock-order
//! deadlock. A reader may see an event applied to one model and not yet to another;
//! [`InstanceModels::position`] only advances once every model has applied the event, which
//! is what read-your-writes waits rely on.
//!
//! Nothing here does I/O, reads a clock or spawns: it is pure state plus locks.

mod footprint;
mod id_hash;
mod list;
mod mgmt;
mod persist;
mod quota;
mod replicas;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use aggregates::instance::{evolve, evolve_in_place, Instance, InstanceEvent};
use chrono::{DateTime, Utc};
use dashmap::DashMap;
use uuid::Uuid;

use crate::event::{ApplyOutcome, ProjectedEvent};
use crate::Position;
use footprint::Footprint;
use id_hash::IdHashBuilder;
use list::ListModel;
use mgmt::MgmtModel;
use quota::QuotaModel;
use replicas::ReplicaIndex;

pub use mgmt::MgmtFilter;
pub use persist::{InstancesImage, RecordImage};
pub use quota::QuotaInUse;

/// `instances_page_size`: the hard cap (and default) of a `GET /instances` page.
pub const LIST_PAGE_MAX: usize = 20;

/// One instance in the records model.
#[derive(Clone, Debug, Default, PartialEq)]
struct Record {
    /// The folded state, except `access`, which is always `None` here and kept in
    /// `access_json` instead.
    folded: Instance,
    /// The stored `access` object as compact JSON text. A `serde_json::Value` object is
    /// a B-tree node of ~650 bytes even for `{"is_public": false}` (which every CLI
    /// create sends); the text is ~20 bytes. With it an instance costs ~1.7 KiB across
    /// all models (measured by RSS over 200k provisioned instances), under the 2 KiB
    /// budget; without it ~2.2 KiB.
    access_json: Option<Box<str>>,
    /// Position of the last event folded into `folded`: the per-instance idempotence
    /// key.
    position: Position,
    /// Set by the first `InstanceDeletionRequested` and never cleared: the quota stays
    /// released even if a late report moves the task away from DELETING.
    quota_released: bool,
}

impl Record {
    /// The full instance, `access` included.
    fn instance(&self) -> Instance {
        let mut instance = self.folded.clone();
        instance.access = self.access();
        instance
    }

    /// Moves the full instance out (for `evolve`), leaving a default behind.
    fn take_instance(&mut self) -> Instance {
        let mut instance = std::mem::take(&mut self.folded);
        instance.access = self.access();
        instance
    }

    /// Stores a full instance, compacting its `access`.
    fn put_instance(&mut self, mut instance: Instance) {
        // Serializing a `Value` cannot fail: its map keys are strings.
        self.access_json = instance
            .access
            .take()
            .and_then(|v| serde_json::to_string(&v).ok())
            .map(String::into_boxed_str);
        self.folded = instance;
    }

    /// Folds one event. Only `InstanceCreated` and `AccessUpdated` write `access`, and
    /// no event reads it, so every other event folds without turning `access_json` into
    /// a `Value` and back (that round trip was a third of the cost of a replay's apply).
    fn fold(&mut self, event: &InstanceEvent) {
        if matches!(
            event,
            InstanceEvent::InstanceCreated(_) | InstanceEvent::AccessUpdated { .. }
        ) {
            let folded = evolve(self.take_instance(), event);
            self.put_instance(folded);
        } else {
            evolve_in_place(&mut self.folded, event);
        }
    }

    fn access(&self) -> Option<serde_json::Value> {
        // The text was produced by `serde_json::to_string` above, so it parses.
        self.access_json
            .as_deref()
            .and_then(|s| serde_json::from_str(s).ok())
    }
}

/// The last position each model has applied.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ModelPositions {
    /// Instance records.
    pub records: Position,
    /// Per-project list model.
    pub lists: Position,
    /// Admin (mgmt) model.
    pub mgmt: Position,
    /// Replicas index.
    pub replicas: Position,
    /// Quota usage.
    pub quota: Position,
}

impl ModelPositions {
    /// The position every model has reached.
    pub fn min(&self) -> Position {
        [self.lists, self.mgmt, self.replicas, self.quota]
            .into_iter()
            .fold(self.records, Position::min)
    }
}

/// One page of `GET /instances` (keyset paging, spec `instances-api.md` §3.4 A).
#[derive(Clone, Debug, PartialEq)]
pub struct ListPage {
    /// The page, cut in ascending id order and then re-sorted by `created` descending
    /// for output (stable, so equal `created` keep id order), as upstream does.
    pub instances: Vec<Instance>,
    /// `Some(id)` when more rows exist: the highest id of this page, to be put as
    /// `marker` into the `next` link. `None`: last page, no `links` key.
    pub next_marker: Option<Uuid>,
}

impl ListPage {
    /// Whether a next page exists.
    pub fn has_more(&self) -> bool {
        self.next_marker.is_some()
    }
}

/// A record as [`Snapshot`] shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordSnapshot {
    /// The folded instance.
    pub instance: Instance,
    /// Position of its last applied event.
    pub position: Position,
    /// Whether its quota was released by a deletion request.
    pub quota_released: bool,
}

/// An entry of the mgmt order: `updated`, id, deleted.
pub type MgmtEntry = (DateTime<Utc>, Uuid, bool);

/// A deterministic, comparable copy of every model: the rebuild invariant is
/// `incremental.snapshot() == InstanceModels::from_events(log).snapshot()`.
///
/// Take it while no event is being applied (tests, the operator's verify command);
/// during an apply the models may be one event apart.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    /// [`InstanceModels::position`].
    pub position: Position,
    /// Every record by id.
    pub records: BTreeMap<Uuid, RecordSnapshot>,
    /// Project → listed ids, ascending.
    pub lists: BTreeMap<String, Vec<Uuid>>,
    /// The global mgmt order (newest `updated` first).
    pub mgmt: Vec<MgmtEntry>,
    /// Project → its mgmt order.
    pub mgmt_by_project: BTreeMap<String, Vec<MgmtEntry>>,
    /// Primary → live replicas, ascending.
    pub replicas: BTreeMap<Uuid, Vec<Uuid>>,
    /// Project → usage.
    pub quota: BTreeMap<String, QuotaInUse>,
}

/// One complete set of the read models (what [`InstanceModels`] serves, and what a live
/// rebuild builds beside it before swapping it in).
#[derive(Debug, Default)]
pub(crate) struct ModelSet {
    /// Serializes writers. `apply` reads the old footprint, folds, then updates the
    /// indexes; two concurrent applies to one instance would interleave those steps.
    /// One projector means this lock is never contended; it makes misuse harmless.
    writer: Mutex<()>,
    /// Boxed: a record is ~800 bytes inline, and hash tables keep up to half their slots
    /// empty after growing; boxing makes an empty slot cost 24 bytes instead.
    records: DashMap<Uuid, Box<Record>, IdHashBuilder>,
    lists: ListModel,
    mgmt: MgmtModel,
    replicas: ReplicaIndex,
    quota: QuotaModel,
    positions: Mutex<ModelPositions>,
}

impl ModelSet {
    /// Applies one event to every model. Idempotent: an event at or below the last
    /// applied position (globally or for its instance) changes nothing, so the projector
    /// may resume from an older checkpoint and redeliver freely.
    fn apply(&self, ev: &ProjectedEvent) -> ApplyOutcome {
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        if ev.position <= self.position() {
            return ApplyOutcome::AlreadyApplied;
        }
        let id = ev.instance_id;
        let (outcome, old, new) = self.fold_record(ev);
        self.mark(ev.position, |p| &mut p.records);
        if outcome == ApplyOutcome::Applied
            || matches!(outcome, ApplyOutcome::AppliedAfterGap { .. })
        {
            let (old, new) = (old.as_ref(), new.as_ref());
            self.lists.update(id, old, new);
            self.mark(ev.position, |p| &mut p.lists);
            self.mgmt.update(id, old, new);
            self.mark(ev.position, |p| &mut p.mgmt);
            self.replicas.update(id, old, new);
            self.mark(ev.position, |p| &mut p.replicas);
            self.quota.update(id, old, new);
            self.mark(ev.position, |p| &mut p.quota);
        }
        // Set last: `position()` is the minimum, so it moves only now, after every model.
        self.advance_all(ev.position);
        outcome
    }

    /// Folds the event into its record; returns the outcome and the footprints before
    /// and after. The record's guard is released before returning.
    fn fold_record(
        &self,
        ev: &ProjectedEvent,
    ) -> (ApplyOutcome, Option<Footprint>, Option<Footprint>) {
        let (outcome, old, new, exists) = {
            let mut rec = self.records.entry(ev.instance_id).or_default();
            let expected = rec.folded.version;
            if ev.position <= rec.position {
                (
                    ApplyOutcome::AlreadyApplied,
                    None,
                    None,
                    rec.folded.exists(),
                )
            } else if ev.revision < expected {
                let stale = ApplyOutcome::StaleRevision {
                    expected,
                    actual: ev.revision,
                };
                (stale, None, None, rec.folded.exists())
            } else {
                let old = Footprint::of(&rec.folded, rec.quota_released);
                rec.fold(&ev.event);
                rec.position = ev.position;
                match ev.event {
                    InstanceEvent::InstanceDeletionRequested { .. } => rec.quota_released = true,
                    // Logs written before a reset was refused while DELETING: the reset
                    // brought the instance back live, so it is charged again (and the
                    // next DELETE releases it once more).
                    InstanceEvent::InstanceStatusReset { .. } => rec.quota_released = false,
                    _ => {}
                }
                let new = Footprint::of(&rec.folded, rec.quota_released);
                let outcome = if ev.revision == expected {
                    ApplyOutcome::Applied
                } else {
                    ApplyOutcome::AppliedAfterGap {
                        expected,
                        actual: ev.revision,
                    }
                };
                (outcome, old, new, rec.folded.exists())
            }
        };
        if !exists {
            // An event for a stream whose creation was never seen folds into "does not
            // exist"; keep no record for it (views would have nothing to show).
            self.records
                .remove_if(&ev.instance_id, |_, r| !r.folded.exists());
        }
        (outcome, old, new)
    }

    /// Marks `position` as processed without an instance event (another stream, or a
    /// record the projector could not decode and logged), so read-your-writes waits on
    /// later positions still progress. Never moves backwards.
    fn advance_to(&self, position: Position) {
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        self.advance_all(position);
    }

    fn mark(&self, position: Position, model: impl FnOnce(&mut ModelPositions) -> &mut Position) {
        let mut positions = self
            .positions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let p = model(&mut positions);
        *p = (*p).max(position);
    }

    fn advance_all(&self, position: Position) {
        let mut guard = self
            .positions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let p = &mut *guard;
        for slot in [
            &mut p.records,
            &mut p.lists,
            &mut p.mgmt,
            &mut p.replicas,
            &mut p.quota,
        ] {
            *slot = (*slot).max(position);
        }
    }

    /// The last global position every model has applied ([`Position::START`] when
    /// none). Handlers wait for it to reach their append's position before answering.
    fn position(&self) -> Position {
        self.positions().min()
    }

    /// The last position of each model (for per-model checkpoints and diagnostics).
    fn positions(&self) -> ModelPositions {
        *self
            .positions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Number of instances known, soft-deleted ones included.
    fn len(&self) -> usize {
        self.records.len()
    }

    /// True when no instance was ever created.
    fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// An instance's folded state, soft-deleted or not (`None` if never created).
    fn instance(&self, id: Uuid) -> Option<Instance> {
        self.records.get(&id).map(|r| r.instance())
    }

    /// See [`InstanceModels::configuration_usage`].
    fn configuration_usage(&self, id: Uuid) -> Option<(String, Option<Uuid>)> {
        self.records.get(&id).map(|r| {
            let i = &r.folded;
            (
                i.project_id.clone(),
                i.configuration_id.filter(|_| i.is_live()),
            )
        })
    }

    /// The instance as `GET /instances/{id}` may show it (spec §2): `None` when it does
    /// not exist, is soft-deleted, or belongs to another project and the caller is not
    /// admin — all of which answer the same 404.
    fn instance_visible_to(
        &self,
        id: Uuid,
        caller_project: &str,
        caller_is_admin: bool,
    ) -> Option<Instance> {
        self.records
            .get(&id)
            .filter(|r| {
                r.folded.is_live() && (caller_is_admin || r.folded.project_id == caller_project)
            })
            .map(|r| r.instance())
    }

    /// Runs `f` on an instance's folded state (without `access`) and its stored `access`
    /// as compact JSON text, under the record's read guard: no clone. `f` must not
    /// query the models (a guard of this map is held); `None` if never created.
    pub(crate) fn with_record<R>(
        &self,
        id: Uuid,
        f: impl FnOnce(&Instance, Option<&str>) -> R,
    ) -> Option<R> {
        self.records
            .get(&id)
            .map(|r| f(&r.folded, r.access_json.as_deref()))
    }

    /// Up to `take` listed ids of `project` after `marker`, ascending (see
    /// [`ModelSet::list_page`]).
    pub(crate) fn listed_ids_after(
        &self,
        project: &str,
        marker: Option<&str>,
        take: usize,
    ) -> Vec<Uuid> {
        self.lists.ids_after(project, marker, take)
    }

    /// One page of `project`'s non-deleted instances with ids greater than `marker`
    /// (compared as strings; any text is accepted). `limit` is capped at
    /// [`LIST_PAGE_MAX`]; the HTTP layer rejects a zero or negative limit (400), and a
    /// zero reaching here is treated as 1 so the function stays total.
    fn list_page(&self, project: &str, marker: Option<&str>, limit: usize) -> ListPage {
        let limit = limit.clamp(1, LIST_PAGE_MAX);
        // limit + 1 rows tell whether a next page exists without counting.
        let mut ids = self.lists.ids_after(project, marker, limit + 1);
        let has_more = ids.len() > limit;
        ids.truncate(limit);
        let next_marker = if has_more { ids.last().copied() } else { None };
        let mut instances: Vec<Instance> = ids
            .iter()
            .filter_map(|id| self.instance(*id))
            // The writer may have deleted it between the two reads.
            .filter(|i| i.is_live() && i.project_id == project)
            .collect();
        instances.sort_by_key(|i| std::cmp::Reverse(i.created));
        ListPage {
            instances,
            next_marker,
        }
    }

    /// One page of `GET /mgmt/instances`: rows `offset..offset + limit` of the filtered
    /// instances ordered by `updated` descending, then re-sorted by `created` descending
    /// for output (stable). `limit` is not capped (spec §3.4 B). The caller emits a
    /// `next` link (`marker = offset + limit`) when the page is full.
    fn mgmt_page(&self, filter: &MgmtFilter, offset: usize, limit: usize) -> Vec<Instance> {
        let mut instances: Vec<Instance> = self
            .mgmt
            .page(filter, offset, limit)
            .into_iter()
            .filter_map(|id| self.instance(id))
            .collect();
        instances.sort_by_key(|i| std::cmp::Reverse(i.created));
        instances
    }

    /// Ids of `primary`'s replicas that are not soft-deleted, ascending.
    pub(crate) fn live_replicas(&self, primary: Uuid) -> Vec<Uuid> {
        self.replicas.of(primary)
    }

    /// How many live replicas `primary` has (the catalog's `live_replicas`).
    fn live_replica_count(&self, primary: Uuid) -> usize {
        self.replicas.count(primary)
    }

    /// The `locality` recorded at create (replicas record none; views use the primary's).
    pub(crate) fn locality(&self, id: Uuid) -> Option<String> {
        self.records
            .get(&id)
            .and_then(|r| r.folded.locality.clone())
    }

    /// What `project`'s charged instances use (zero for an unknown project).
    fn quota_usage(&self, project: &str) -> QuotaInUse {
        self.quota.usage(project)
    }

    /// A deterministic copy of every model (see [`Snapshot`]).
    fn snapshot(&self) -> Snapshot {
        let records = self
            .records
            .iter()
            .map(|e| {
                let r = e.value();
                let snap = RecordSnapshot {
                    instance: r.instance(),
                    position: r.position,
                    quota_released: r.quota_released,
                };
                (*e.key(), snap)
            })
            .collect();
        let mgmt_entries = |sets: &mgmt::MgmtSets| -> Vec<MgmtEntry> {
            sets.entries()
                .into_iter()
                .map(|((updated, id), deleted)| (updated.0, id, deleted))
                .collect()
        };
        let (mgmt_all, mgmt_projects) = self.mgmt.entries();
        Snapshot {
            position: self.position(),
            records,
            lists: self.lists.entries().into_iter().collect(),
            mgmt: mgmt_entries(&mgmt_all),
            mgmt_by_project: mgmt_projects
                .iter()
                .map(|(p, s)| (p.clone(), mgmt_entries(s)))
                .collect(),
            replicas: self.replicas.entries().into_iter().collect(),
            quota: self.quota.entries().into_iter().collect(),
        }
    }
}

#[cfg(test)]
mod tests;

/// All read models. `Send + Sync`: share it as `Arc<InstanceModels>` between the projector
/// (the only caller of [`InstanceModels::apply`] / [`InstanceModels::advance_to`]) and the
/// handlers.
///
/// The models live in one [`ModelSet`] behind a pointer that a live rebuild replaces
/// atomically ([`InstanceModels::swap_in`]): each query works on the set current when it
/// starts, so a reader sees either the old set or the new one, never a mix or an empty
/// set.
#[derive(Debug, Default)]
pub struct InstanceModels {
    current: RwLock<Arc<ModelSet>>,
}

impl InstanceModels {
    /// Empty models at [`Position::START`].
    pub fn new() -> InstanceModels {
        InstanceModels::default()
    }

    /// Models built by applying `events` in order to fresh models: what a rebuild (or
    /// the `rebuild-projection` command) produces.
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a ProjectedEvent>) -> InstanceModels {
        let models = InstanceModels::new();
        for ev in events {
            models.apply(ev);
        }
        models
    }

    fn set(&self) -> Arc<ModelSet> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The model set served now: a query that takes it once sees one consistent set
    /// even if a live rebuild swaps another in meanwhile.
    pub(crate) fn current(&self) -> Arc<ModelSet> {
        self.set()
    }

    /// Replaces the served models with `fresh`'s if both have applied exactly the same
    /// position (a live rebuild that caught up); `false` (nothing changed) otherwise.
    /// Holding the write side of the pointer while comparing means the projector cannot
    /// apply an event in between: the swap loses nothing.
    pub fn swap_in(&self, fresh: &InstanceModels) -> bool {
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        let candidate = fresh.set();
        if candidate.position() != current.position() {
            return false;
        }
        *current = candidate;
        true
    }

    /// Applies one event to every model. Idempotent: an event at or below the last
    /// applied position (globally or for its instance) changes nothing, so the projector
    /// may resume from an older checkpoint and redeliver freely.
    pub fn apply(&self, ev: &ProjectedEvent) -> ApplyOutcome {
        // Held for the whole apply so a swap cannot slip between the event and the set.
        let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
        current.apply(ev)
    }

    /// Marks `position` as processed without an instance event (another stream, or a
    /// record the projector could not decode and logged), so read-your-writes waits on
    /// later positions still progress. Never moves backwards.
    pub fn advance_to(&self, position: Position) {
        let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
        current.advance_to(position)
    }

    /// The last global position every model has applied ([`Position::START`] when
    /// none). Handlers wait for it to reach their append's position before answering.
    pub fn position(&self) -> Position {
        self.set().position()
    }

    /// The last position of each model (for per-model checkpoints and diagnostics).
    pub fn positions(&self) -> ModelPositions {
        self.set().positions()
    }

    /// Number of instances known, soft-deleted ones included.
    pub fn len(&self) -> usize {
        self.set().len()
    }

    /// True when no instance was ever created.
    pub fn is_empty(&self) -> bool {
        self.set().is_empty()
    }

    /// An instance's folded state, soft-deleted or not (`None` if never created).
    pub fn instance(&self, id: Uuid) -> Option<Instance> {
        self.set().instance(id)
    }

    /// The instance's project and the configuration group it uses (none once deleted or
    /// soft-deleted), `None` for an unknown instance:
    /// what the projector copies into the configuration models' usage index, without
    /// copying the whole instance.
    pub fn configuration_usage(&self, id: Uuid) -> Option<(String, Option<Uuid>)> {
        self.set().configuration_usage(id)
    }

    /// The instance as `GET /instances/{id}` may show it (spec §2): `None` when it does
    /// not exist, is soft-deleted, or belongs to another project and the caller is not
    /// admin — all of which answer the same 404.
    pub fn instance_visible_to(
        &self,
        id: Uuid,
        caller_project: &str,
        caller_is_admin: bool,
    ) -> Option<Instance> {
        self.set()
            .instance_visible_to(id, caller_project, caller_is_admin)
    }

    /// One page of `project`'s non-deleted instances (see `ModelSet::list_page`).
    pub fn list_page(&self, project: &str, marker: Option<&str>, limit: usize) -> ListPage {
        self.set().list_page(project, marker, limit)
    }

    /// One page of `GET /mgmt/instances` (see `ModelSet::mgmt_page`).
    pub fn mgmt_page(&self, filter: &MgmtFilter, offset: usize, limit: usize) -> Vec<Instance> {
        self.set().mgmt_page(filter, offset, limit)
    }

    /// Ids of `primary`'s replicas that are not soft-deleted, ascending.
    pub fn live_replicas(&self, primary: Uuid) -> Vec<Uuid> {
        self.set().live_replicas(primary)
    }

    /// How many live replicas `primary` has (the catalog's `live_replicas`).
    pub fn live_replica_count(&self, primary: Uuid) -> usize {
        self.set().live_replica_count(primary)
    }

    /// The `locality` recorded at create (replicas record none; views use the primary's).
    pub fn locality(&self, id: Uuid) -> Option<String> {
        self.set().locality(id)
    }

    /// What `project`'s charged instances use (zero for an unknown project).
    pub fn quota_usage(&self, project: &str) -> QuotaInUse {
        self.set().quota_usage(project)
    }

    /// A deterministic copy of every model (see [`Snapshot`]).
    pub fn snapshot(&self) -> Snapshot {
        self.set().snapshot()
    }
}
