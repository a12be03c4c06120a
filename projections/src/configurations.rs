//! Read models of configuration groups, built only by applying recorded events, and
//! the pure rendering of their Trove views (spec `supporting-resources.md` §3.2).
//!
//! Models:
//! - records: group id → the folded [`Configuration`] (deleted ones kept, so an
//!   instance that still references one can show its name) and the position of its
//!   last event.
//! - lists: project → ascending ids of its live groups, plus one set of every live
//!   group for admins (keyset paging, spec `instances-api.md` §3.4 A).
//! - usage: group → the live instances that have it attached (with their project),
//!   and instance → group. Fed from *instance* events by the projector through
//!   [`ConfigurationModels::instance_changed`]; an instance whose deletion was
//!   requested no longer uses its group (the instance's state clears it).
//!
//! Concurrency as in [`crate::InstanceModels`]: one writer (the projector), any number of
//! readers; readers never hold a guard of one map while taking another.
//!
//! No I/O, no clock, no logging.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Bound;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use aggregates::configuration::parameters::{self, Parameter, ParameterType};
use aggregates::configuration::{evolve, Configuration, ConfigurationEvent};
use dashmap::DashMap;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::views::timestamp;
use crate::{ApplyOutcome, Position};

/// `configurations_page_size`: the hard cap (and default) of a list page.
pub const PAGE_MAX: usize = 20;

/// One configuration event as the projector hands it to [`ConfigurationModels::apply`].
#[derive(Clone, Debug, PartialEq)]
pub struct ProjectedConfigurationEvent {
    /// Position in `$all`: the idempotence key.
    pub position: Position,
    /// The group (from the stream name `configuration-<uuid>`).
    pub configuration_id: Uuid,
    /// Revision within the group's stream, from 0.
    pub revision: u64,
    /// The decoded (and upcast) event.
    pub event: ConfigurationEvent,
}

/// A page of groups: cut and shown in ascending id order (upstream does not re-sort
/// configuration lists).
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigurationPage {
    pub configurations: Vec<Configuration>,
    /// `Some(id)` when more rows exist: the last id of this page, the next `marker`.
    pub next_marker: Option<Uuid>,
}

/// A page of instance ids using a group, ascending.
#[derive(Clone, Debug, PartialEq)]
pub struct InstanceIdPage {
    pub ids: Vec<Uuid>,
    /// `Some(id)` when more rows exist.
    pub next_marker: Option<Uuid>,
}

/// A deterministic copy of every model: incremental == rebuilt from the log.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigurationSnapshot {
    pub records: BTreeMap<Uuid, (Configuration, Position)>,
    pub lists: BTreeMap<String, Vec<Uuid>>,
    pub all: Vec<Uuid>,
    /// Group → instances using it.
    pub usage: BTreeMap<Uuid, Vec<(Uuid, String)>>,
}

#[derive(Debug, Default)]
struct Record {
    state: Configuration,
    position: Position,
}

#[derive(Debug, Default)]
struct Inner {
    /// Serializes writers (one projector: never contended; makes misuse harmless).
    writer: Mutex<()>,
    records: DashMap<Uuid, Record>,
    /// Project → its live groups. Empty sets are removed.
    by_project: DashMap<String, BTreeSet<Uuid>>,
    /// Every live group (admin lists).
    all: RwLock<BTreeSet<Uuid>>,
    /// Group → instance → the instance's project. Empty maps are removed.
    usage: DashMap<Uuid, BTreeMap<Uuid, String>>,
    /// Instance → the group it uses.
    attached: DashMap<Uuid, Uuid>,
}

type NameFn = dyn Fn(Uuid) -> Option<String> + Send + Sync;

/// Configuration group read models. `Send + Sync`; share as `Arc`.
pub struct ConfigurationModels {
    inner: Arc<Inner>,
    /// Group id → name as a plain function, for the instance views' `ModelLookup`
    /// (which takes `&dyn Fn`); it holds its own handle on the same models.
    names: Box<NameFn>,
}

impl Default for ConfigurationModels {
    fn default() -> Self {
        let inner = Arc::new(Inner::default());
        let handle = inner.clone();
        ConfigurationModels {
            inner,
            names: Box::new(move |id| handle.records.get(&id).map(|r| r.state.name.clone())),
        }
    }
}

impl fmt::Debug for ConfigurationModels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigurationModels")
            .field("groups", &self.inner.records.len())
            .field("instances_using_groups", &self.inner.attached.len())
            .finish()
    }
}

impl ConfigurationModels {
    /// Empty models.
    pub fn new() -> ConfigurationModels {
        ConfigurationModels::default()
    }

    /// Applies one configuration event. Idempotent: an event at or below the group's
    /// last applied position, or of a revision already folded, changes nothing.
    pub fn apply(&self, ev: &ProjectedConfigurationEvent) -> ApplyOutcome {
        let inner = &self.inner;
        let _writer = inner.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let id = ev.configuration_id;
        let (outcome, before, after) = {
            let mut rec = inner.records.entry(id).or_default();
            let expected = rec.state.version;
            if ev.position <= rec.position {
                return ApplyOutcome::AlreadyApplied;
            }
            if ev.revision < expected {
                return ApplyOutcome::StaleRevision {
                    expected,
                    actual: ev.revision,
                };
            }
            let before = listing(&rec.state);
            rec.state = evolve(std::mem::take(&mut rec.state), &ev.event);
            rec.position = ev.position;
            let outcome = if ev.revision == expected {
                ApplyOutcome::Applied
            } else {
                ApplyOutcome::AppliedAfterGap {
                    expected,
                    actual: ev.revision,
                }
            };
            (outcome, before, listing(&rec.state))
        };
        if !inner.records.get(&id).is_some_and(|r| r.state.exists()) {
            // An event of a group whose creation was never seen: keep nothing.
            inner.records.remove(&id);
        }
        if before != after {
            if let Some(project) = before {
                remove_from(&inner.by_project, &project, id);
                write(&inner.all).remove(&id);
            }
            if let Some(project) = after {
                inner.by_project.entry(project).or_default().insert(id);
                write(&inner.all).insert(id);
            }
        }
        outcome
    }

    /// Records which group instance `instance_id` (of `project`) uses now: `None` when
    /// it has none, or is deleted or being deleted. Idempotent (a state, not a delta).
    pub fn instance_changed(&self, instance_id: Uuid, project: &str, group: Option<Uuid>) {
        let inner = &self.inner;
        let _writer = inner.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let old = inner.attached.get(&instance_id).map(|g| *g);
        if old == group {
            return;
        }
        if let Some(old) = old {
            let now_empty = inner.usage.get_mut(&old).is_some_and(|mut m| {
                m.remove(&instance_id);
                m.is_empty()
            });
            if now_empty {
                inner.usage.remove_if(&old, |_, m| m.is_empty());
            }
            inner.attached.remove(&instance_id);
        }
        if let Some(new) = group {
            inner
                .usage
                .entry(new)
                .or_default()
                .insert(instance_id, project.to_string());
            inner.attached.insert(instance_id, new);
        }
    }

    /// A group's folded state, deleted or not (`None` if never created).
    pub fn configuration(&self, id: Uuid) -> Option<Configuration> {
        self.inner.records.get(&id).map(|r| r.state.clone())
    }

    /// The group as `GET /configurations/{id}` may show it: live, and the caller's
    /// project's unless the caller is admin. `None` = the same 404 for every reason.
    pub fn visible_to(&self, id: Uuid, project: &str, is_admin: bool) -> Option<Configuration> {
        self.inner
            .records
            .get(&id)
            .filter(|r| r.state.is_live() && (is_admin || r.state.project_id == project))
            .map(|r| r.state.clone())
    }

    /// A group's name (deleted groups included: an instance may still reference one).
    pub fn name(&self, id: Uuid) -> Option<String> {
        (self.names)(id)
    }

    /// [`ConfigurationModels::name`] as a function reference, for
    /// `projections::views::ModelLookup::configuration_name`.
    pub fn names(&self) -> &(dyn Fn(Uuid) -> Option<String> + Send + Sync) {
        &*self.names
    }

    /// One page of live groups with ids greater than `marker` (compared as strings, any
    /// text accepted): `project`'s, or every project's when `None` (admins). `limit` is
    /// capped at [`PAGE_MAX`]; 0 is treated as 1.
    pub fn page(
        &self,
        project: Option<&str>,
        marker: Option<&str>,
        limit: usize,
    ) -> ConfigurationPage {
        let limit = limit.clamp(1, PAGE_MAX);
        let mut ids = match project {
            Some(p) => self
                .inner
                .by_project
                .get(p)
                .map_or_else(Vec::new, |set| ids_after(&set, marker, limit + 1)),
            None => ids_after(&read(&self.inner.all), marker, limit + 1),
        };
        let has_more = ids.len() > limit;
        ids.truncate(limit);
        let next_marker = if has_more { ids.last().copied() } else { None };
        let configurations = ids
            .iter()
            .filter_map(|id| self.configuration(*id))
            // The writer may have deleted it between the two reads.
            .filter(|c| c.is_live() && project.is_none_or(|p| c.project_id == p))
            .collect();
        ConfigurationPage {
            configurations,
            next_marker,
        }
    }

    /// How many live instances use `group`: of `project`, or of every project.
    pub fn instance_count(&self, group: Uuid, project: Option<&str>) -> usize {
        self.inner.usage.get(&group).map_or(0, |m| {
            m.values()
                .filter(|p| project.is_none_or(|want| want == p.as_str()))
                .count()
        })
    }

    /// One page (ascending ids after `marker`, capped at [`PAGE_MAX`]) of the live
    /// instances using `group`: of `project`, or of every project.
    pub fn instances_using(
        &self,
        group: Uuid,
        project: Option<&str>,
        marker: Option<&str>,
        limit: usize,
    ) -> InstanceIdPage {
        let limit = limit.clamp(1, PAGE_MAX);
        let set: BTreeSet<Uuid> = self
            .inner
            .usage
            .get(&group)
            .map_or_else(BTreeSet::new, |m| {
                m.iter()
                    .filter(|(_, p)| project.is_none_or(|want| want == p.as_str()))
                    .map(|(id, _)| *id)
                    .collect()
            });
        let mut ids = ids_after(&set, marker, limit + 1);
        let has_more = ids.len() > limit;
        ids.truncate(limit);
        let next_marker = if has_more { ids.last().copied() } else { None };
        InstanceIdPage { ids, next_marker }
    }

    /// Every live instance using `group`, of every project (the saga runner applies
    /// a group's new revision to each).
    pub fn all_instances_using(&self, group: Uuid) -> Vec<Uuid> {
        self.inner
            .usage
            .get(&group)
            .map_or_else(Vec::new, |m| m.keys().copied().collect())
    }

    /// The group instance `instance_id` uses, if any.
    pub fn group_of(&self, instance_id: Uuid) -> Option<Uuid> {
        self.inner.attached.get(&instance_id).map(|g| *g)
    }

    /// A deterministic copy of every model (take it while nothing is applied).
    pub fn snapshot(&self) -> ConfigurationSnapshot {
        let inner = &self.inner;
        ConfigurationSnapshot {
            records: inner
                .records
                .iter()
                .map(|e| (*e.key(), (e.value().state.clone(), e.value().position)))
                .collect(),
            lists: inner
                .by_project
                .iter()
                .map(|e| (e.key().clone(), e.value().iter().copied().collect()))
                .collect(),
            all: read(&inner.all).iter().copied().collect(),
            usage: inner
                .usage
                .iter()
                .map(|e| {
                    let users = e.value().iter().map(|(i, p)| (*i, p.clone())).collect();
                    (*e.key(), users)
                })
                .collect(),
        }
    }
}

/// One configuration group as data, for the read-model snapshot.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ConfigurationImage {
    /// The folded group.
    pub state: Configuration,
    /// Position of its last applied event.
    pub position: Position,
}

impl ConfigurationModels {
    /// Copies every group, by ascending id. Take it while nothing is applied. The usage
    /// index is not included: it follows the instances (the projector restores it from
    /// the instance models).
    pub fn image(&self) -> Vec<ConfigurationImage> {
        let mut groups: Vec<ConfigurationImage> = self
            .inner
            .records
            .iter()
            .map(|e| ConfigurationImage {
                state: e.value().state.clone(),
                position: e.value().position,
            })
            .collect();
        groups.sort_unstable_by_key(|g| g.state.id);
        groups
    }

    /// Loads `groups` into these models, which must be empty, deriving the lists. Refuses
    /// (changing nothing) a group that does not exist or appears twice.
    pub fn restore(&self, groups: Vec<ConfigurationImage>) -> Result<(), String> {
        let inner = &self.inner;
        if !inner.records.is_empty() || !inner.attached.is_empty() {
            return Err("the configuration models are not empty".into());
        }
        let mut seen = BTreeSet::new();
        for g in &groups {
            match g.state.id {
                None => return Err("a group that was never created".into()),
                Some(id) if !seen.insert(id) => {
                    return Err(format!("configuration group {id} is recorded twice"))
                }
                Some(_) => {}
            }
        }
        let _writer = inner.writer.lock().unwrap_or_else(PoisonError::into_inner);
        for g in groups {
            let Some(id) = g.state.id else { continue };
            if let Some(project) = listing(&g.state) {
                inner.by_project.entry(project).or_default().insert(id);
                write(&inner.all).insert(id);
            }
            inner.records.insert(
                id,
                Record {
                    state: g.state,
                    position: g.position,
                },
            );
        }
        Ok(())
    }
}

/// The list a group belongs to: its project while live, none otherwise.
fn listing(c: &Configuration) -> Option<String> {
    c.is_live().then(|| c.project_id.clone())
}

fn remove_from(map: &DashMap<String, BTreeSet<Uuid>>, key: &str, id: Uuid) {
    let now_empty = map.get_mut(key).is_some_and(|mut set| {
        set.remove(&id);
        set.is_empty()
    });
    if now_empty {
        map.remove_if(key, |_, set| set.is_empty());
    }
}

fn read(lock: &RwLock<BTreeSet<Uuid>>) -> std::sync::RwLockReadGuard<'_, BTreeSet<Uuid>> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write(lock: &RwLock<BTreeSet<Uuid>>) -> std::sync::RwLockWriteGuard<'_, BTreeSet<Uuid>> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

/// Up to `take` ids of `set` whose canonical string is greater than `marker`.
///
/// Upstream compares the marker as a string and never validates it. Canonical ids sort
/// as strings in the same order as [`Uuid`]s, so a canonical marker is a range bound;
/// any other text falls back to comparing strings (groups per project are few).
fn ids_after(set: &BTreeSet<Uuid>, marker: Option<&str>, take: usize) -> Vec<Uuid> {
    match marker {
        None => set.iter().take(take).copied().collect(),
        Some(m) => match Uuid::parse_str(m) {
            Ok(id) if id.hyphenated().to_string() == m => set
                .range((Bound::Excluded(id), Bound::Unbounded))
                .take(take)
                .copied()
                .collect(),
            _ => set
                .iter()
                .filter(|id| id.hyphenated().to_string().as_str() > m)
                .take(take)
                .copied()
                .collect(),
        },
    }
}

// ---- views ---------------------------------------------------------------------------------

/// Substrings of a key name whose value is a secret (as upstream's password masking,
/// which works on names): such values are shown as `***`.
const SECRET_MARKERS: [&str; 7] = [
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "pwd",
    "private_key",
];

/// Whether `key` names a secret.
pub fn is_password_like(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    SECRET_MARKERS.iter().any(|m| k.contains(m))
}

/// A stored value as the detail view shows it: converted to the catalogue type of
/// `key` (integer → JSON integer, boolean → `true`/`false` (also from 0/1), float →
/// number, string → string); keys without a catalogue entry as stored; secrets masked.
pub fn render_value(manager: &str, key: &str, value: &Value) -> Value {
    if is_password_like(key) {
        return json!("***");
    }
    let Some(p) = parameters::parameter(manager, key) else {
        return value.clone();
    };
    let text = value.as_str().map(str::trim);
    let converted = match p.kind {
        ParameterType::Integer => value
            .as_i64()
            .map(Value::from)
            .or_else(|| text.and_then(|s| s.parse::<i64>().ok()).map(Value::from)),
        ParameterType::Float => value
            .is_number()
            .then(|| value.clone())
            .or_else(|| text.and_then(|s| s.parse::<f64>().ok()).map(Value::from)),
        ParameterType::Boolean => match value {
            Value::Bool(b) => Some(Value::Bool(*b)),
            Value::Number(n) => n.as_i64().map(|n| Value::Bool(n != 0)),
            Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "on" => Some(Value::Bool(true)),
                "0" | "false" | "off" => Some(Value::Bool(false)),
                _ => None,
            },
            _ => None,
        },
        ParameterType::String => Some(match value {
            Value::String(_) => value.clone(),
            other => Value::String(other.to_string()),
        }),
    };
    converted.unwrap_or_else(|| value.clone())
}

/// A group as a list item (summary): no values, no count, no version number.
pub fn summary_view(c: &Configuration) -> Value {
    json!({
        "id": c.id.map(|id| id.to_string()),
        "name": c.name,
        "description": c.description,
        "created": timestamp(&c.created),
        "updated": timestamp(&c.updated),
        "datastore_version_id": c.datastore.version_id.to_string(),
        "datastore_name": c.datastore.datastore_name,
        "datastore_version_name": c.datastore.version_name,
    })
}

/// A group as `GET /configurations/{id}` (and the create response) shows it: the
/// summary plus typed, masked `values`, `instance_count` and
/// `datastore_version_number`.
pub fn detail_view(c: &Configuration, instance_count: usize) -> Value {
    let mut v = summary_view(c);
    let values: serde_json::Map<String, Value> = c
        .values
        .iter()
        .map(|(k, val)| (k.clone(), render_value(&c.datastore.manager, k, val)))
        .collect();
    v["values"] = Value::Object(values);
    v["instance_count"] = json!(instance_count);
    v["datastore_version_number"] = json!(c.datastore.version_number);
    v
}

/// One parameter of a datastore version's catalogue (`configuration parameter
/// list/show`): `min`/`max` only for numeric parameters, `restart_required` as a JSON
/// boolean.
pub fn parameter_view(p: &Parameter, version_id: Uuid) -> Value {
    let mut v = json!({
        "name": p.name,
        "datastore_version_id": version_id.to_string(),
        "restart_required": p.restart_required,
        "type": p.kind.as_str(),
    });
    if let Some(min) = p.min {
        v["min"] = json!(min);
    }
    if let Some(max) = p.max {
        v["max"] = json!(max);
    }
    v
}

#[cfg(test)]
mod tests {
    use aggregates::configuration::{ConfigurationCreated, Values};
    use aggregates::instance::DatastoreRef;
    use chrono::{DateTime, Utc};

    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_714_564_800 + secs, 0).unwrap_or_default()
    }

    fn mysql80() -> DatastoreRef {
        DatastoreRef {
            datastore_id: Uuid::from_u128(1),
            datastore_name: "mysql".into(),
            version_id: Uuid::from_u128(0x80),
            version_name: "8.0".into(),
            version_number: "8.0.36".into(),
            manager: "mysql".into(),
        }
    }

    fn values(v: Value) -> Values {
        serde_json::from_value(v).unwrap_or_default()
    }

    /// Numbers events like the store: global positions and per-stream revisions.
    #[derive(Default)]
    struct Script {
        next: u64,
        revisions: BTreeMap<Uuid, u64>,
        log: Vec<ProjectedConfigurationEvent>,
    }

    impl Script {
        fn push(&mut self, id: Uuid, event: ConfigurationEvent) -> ProjectedConfigurationEvent {
            self.next += 1;
            let rev = self.revisions.entry(id).or_insert(0);
            let ev = ProjectedConfigurationEvent {
                position: Position {
                    commit: self.next,
                    prepare: self.next,
                },
                configuration_id: id,
                revision: *rev,
                event,
            };
            *rev += 1;
            self.log.push(ev.clone());
            ev
        }
    }

    fn created(id: Uuid, project: &str, name: &str) -> ConfigurationEvent {
        ConfigurationEvent::ConfigurationCreated(Box::new(ConfigurationCreated {
            configuration_id: id,
            project_id: project.into(),
            user_id: "u".into(),
            name: name.into(),
            description: None,
            datastore: mysql80(),
            values: values(json!({"connect_timeout": 200})),
            at: at(0),
        }))
    }

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    #[test]
    fn created_updated_deleted_groups_are_listed_while_live() {
        let m = ConfigurationModels::new();
        let mut s = Script::default();
        m.apply(&s.push(id(1), created(id(1), "p1", "a")));
        m.apply(&s.push(id(2), created(id(2), "p1", "b")));
        m.apply(&s.push(id(3), created(id(3), "p2", "c")));
        let page = m.page(Some("p1"), None, 20);
        let names: Vec<_> = page.configurations.iter().map(|c| c.name.clone()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(page.next_marker, None);
        assert_eq!(
            m.page(None, None, 20).configurations.len(),
            3,
            "admin sees all"
        );

        m.apply(&s.push(
            id(2),
            ConfigurationEvent::ConfigurationUpdated {
                name: "b2".into(),
                description: Some("d".into()),
                values: values(json!({})),
                at: at(5),
            },
        ));
        assert_eq!(m.name(id(2)).as_deref(), Some("b2"));
        m.apply(&s.push(
            id(2),
            ConfigurationEvent::ConfigurationDeleted { at: at(9) },
        ));
        assert_eq!(m.page(Some("p1"), None, 20).configurations.len(), 1);
        assert_eq!(m.visible_to(id(2), "p1", false), None);
        assert_eq!(
            m.name(id(2)).as_deref(),
            Some("b2"),
            "names outlive deletion"
        );
        assert_eq!(m.visible_to(id(1), "p2", false), None, "other project");
        assert!(m.visible_to(id(1), "p2", true).is_some(), "admin");

        let rebuilt = ConfigurationModels::new();
        for ev in &s.log {
            rebuilt.apply(ev);
        }
        assert_eq!(rebuilt.snapshot(), m.snapshot(), "rebuild invariant");
    }

    #[test]
    fn redelivered_and_stale_events_change_nothing() {
        let m = ConfigurationModels::new();
        let mut s = Script::default();
        let first = s.push(id(1), created(id(1), "p1", "a"));
        assert_eq!(m.apply(&first), ApplyOutcome::Applied);
        let before = m.snapshot();
        assert_eq!(m.apply(&first), ApplyOutcome::AlreadyApplied);
        let mut stale = first.clone();
        stale.position = Position {
            commit: 99,
            prepare: 99,
        };
        assert!(matches!(
            m.apply(&stale),
            ApplyOutcome::StaleRevision { .. }
        ));
        assert_eq!(m.snapshot(), before);
    }

    #[test]
    fn pages_are_keyset_by_id_and_capped() {
        let m = ConfigurationModels::new();
        let mut s = Script::default();
        for n in 1..=25u128 {
            m.apply(&s.push(id(n), created(id(n), "p", &format!("g{n}"))));
        }
        let first = m.page(Some("p"), None, 100);
        assert_eq!(first.configurations.len(), PAGE_MAX);
        assert_eq!(first.next_marker, Some(id(20)));
        let marker = id(20).to_string();
        let second = m.page(Some("p"), Some(&marker), 100);
        assert_eq!(second.configurations.len(), 5);
        assert_eq!(second.next_marker, None);
        let two = m.page(Some("p"), None, 2);
        assert_eq!(two.next_marker, Some(id(2)));
        // Any text is a marker: compared as strings.
        assert_eq!(m.page(Some("p"), Some("zzz"), 20).configurations.len(), 0);
        assert_eq!(m.page(Some("p"), Some(""), 20).configurations.len(), 20);
        assert_eq!(m.page(Some("nobody"), None, 20).configurations.len(), 0);
    }

    #[test]
    fn instance_usage_follows_instance_states() {
        let m = ConfigurationModels::new();
        let (g1, g2) = (id(1), id(2));
        let (i1, i2, i3) = (id(0x11), id(0x12), id(0x13));
        m.instance_changed(i1, "p1", Some(g1));
        m.instance_changed(i2, "p1", Some(g1));
        m.instance_changed(i3, "p2", Some(g1));
        m.instance_changed(i3, "p2", Some(g1)); // idempotent
        assert_eq!(m.instance_count(g1, None), 3);
        assert_eq!(m.instance_count(g1, Some("p1")), 2);
        assert_eq!(m.instances_using(g1, Some("p2"), None, 20).ids, [i3]);
        let page = m.instances_using(g1, None, None, 2);
        assert_eq!(page.ids, [i1, i2]);
        assert_eq!(page.next_marker, Some(i2));
        m.instance_changed(i2, "p1", Some(g2));
        assert_eq!(m.instance_count(g1, None), 2);
        assert_eq!(m.group_of(i2), Some(g2));
        m.instance_changed(i1, "p1", None);
        m.instance_changed(i3, "p2", None);
        m.instance_changed(i2, "p1", None);
        assert_eq!(m.instance_count(g1, None), 0);
        assert!(m.snapshot().usage.is_empty(), "empty entries are removed");
    }

    #[test]
    fn names_function_sees_later_changes() {
        let m = ConfigurationModels::new();
        let f = m.names();
        assert_eq!(f(id(1)), None);
        let mut s = Script::default();
        m.apply(&s.push(id(1), created(id(1), "p", "late")));
        assert_eq!(f(id(1)).as_deref(), Some("late"));
    }

    fn group() -> Configuration {
        let mut s = Script::default();
        let m = ConfigurationModels::new();
        m.apply(&s.push(id(7), created(id(7), "p", "group1")));
        m.configuration(id(7)).unwrap_or_default()
    }

    #[test]
    fn summary_has_exactly_the_summary_keys() {
        let v = summary_view(&group());
        let keys: Vec<&str> = v
            .as_object()
            .map_or(vec![], |o| o.keys().map(String::as_str).collect());
        assert_eq!(
            keys,
            [
                "created",
                "datastore_name",
                "datastore_version_id",
                "datastore_version_name",
                "description",
                "id",
                "name",
                "updated"
            ]
        );
        assert_eq!(v["created"], "2024-05-01T12:00:00");
        assert_eq!(v["description"], Value::Null);
        assert_eq!(v["datastore_version_name"], "8.0");
    }

    #[test]
    fn detail_adds_values_count_and_version_number() {
        let v = detail_view(&group(), 3);
        assert_eq!(v["values"], json!({"connect_timeout": 200}));
        assert_eq!(v["instance_count"], 3);
        assert_eq!(v["datastore_version_number"], "8.0.36");
    }

    #[test]
    fn values_are_typed_by_the_catalogue_and_secrets_masked() {
        assert_eq!(
            render_value("mysql", "connect_timeout", &json!("15")),
            json!(15)
        );
        assert_eq!(
            render_value("mysql", "performance_schema", &json!(1)),
            json!(true)
        );
        assert_eq!(
            render_value("mysql", "performance_schema", &json!("0")),
            json!(false)
        );
        assert_eq!(
            render_value("mysql", "long_query_time", &json!("2.5")),
            json!(2.5)
        );
        assert_eq!(render_value("mysql", "sql_mode", &json!(5)), json!("5"));
        assert_eq!(
            render_value("mysql", "unknown_key", &json!([1])),
            json!([1])
        );
        assert_eq!(
            render_value("mysql", "repl_password", &json!("hunter2")),
            json!("***")
        );
        assert_eq!(
            render_value("postgresql", "auth_token", &json!(1)),
            json!("***")
        );
        assert!(!is_password_like("key_buffer_size"));
    }

    #[test]
    fn parameter_views_show_bounds_only_for_numbers() {
        let p = parameters::parameter("mysql", "autocommit").copied();
        let v = p.map(|p| parameter_view(&p, id(9))).unwrap_or_default();
        assert_eq!(
            v,
            json!({"name": "autocommit", "datastore_version_id": id(9).to_string(),
                   "restart_required": false, "type": "integer", "min": 0, "max": 1})
        );
        let s = parameters::parameter("mysql", "character_set_server").copied();
        let v = s.map(|p| parameter_view(&p, id(9))).unwrap_or_default();
        assert_eq!(v.get("min"), None);
        assert_eq!(v["restart_required"], true);
        assert_eq!(v["type"], "string");
    }
}
