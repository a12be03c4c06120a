//! An instance's timeline for auditors, built from its stream alone: who did what, when,
//! in one readable line per event, and the instance as it was at a moment. It is served
//! as the instance's *history* by `troved history` ([`crate::cli::history`]) and the HTTP
//! extension ([`crate::http::history`]), so both answer the same; this module is the one
//! place that builds it.
//!
//! Pure: callers read the records (the CLI from a read-only connection to the store
//! file, the server through its store) and pass them in.
//!
//! Secrets: an entry's `data` is the event's body with every sealed secret and every
//! `*password*` key removed ([`public_data`]); summaries name users, never passwords.
//!
//! Time: entries show the event's metadata time to the second (`%Y-%m-%dT%H:%M:%SZ`).
//! An as-of time written to the second covers that whole second ([`cutoff`]), so
//! "as of the time the table shows for an event" includes that event.

use std::fmt::Write as _;

use aggregates::configuration::{self, ConfigurationEvent};
use aggregates::instance::{evolve, Access, Address, DatastoreRef, Instance, InstanceEvent};
use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use projections::views::{self, Lookup, ViewCtx};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::runtime::codec::{self, CodecError, EventMetadata};
use crate::runtime::unreadable::UnreadableEvent;
use crate::store::RecordedEvent;

/// How entries show times: UTC, to the second.
pub const TIME_FORMAT: &str = "%Y-%m-%dT%H:%M:%SZ";

/// One event of an instance's timeline.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HistoryEntry {
    /// Position in `$all` (the paging marker of the HTTP extension).
    pub position: u64,
    /// Revision within the instance's stream, from 0.
    pub revision: u64,
    pub event_id: Uuid,
    /// The event's metadata time, [`TIME_FORMAT`].
    pub time: String,
    pub event_type: String,
    /// `user@project` of the caller whose command produced the event (the lifecycle
    /// saga runner is `troved-saga@service`).
    pub actor: String,
    /// The request's `x-openstack-request-id`, or `saga:<Command>` for saga steps.
    pub request_id: String,
    /// Groups the events of one workflow (a request and the steps it started).
    pub correlation_id: Uuid,
    /// What changed, in one line.
    pub summary: String,
    /// The event's body in today's shape (old versions upcast), secrets removed; null
    /// for an unreadable event.
    pub data: Value,
    /// Only for an event that does not decode (a damaged or edited log): why. Its
    /// entry keeps what its envelope still tells, and the fold goes on without it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<String>,
}

/// The timeline of one instance stream, oldest first. An event that does not decode
/// gets an entry marked [`HistoryEntry::unreadable`] in its place, so the readable
/// ones are still shown around it.
pub fn timeline(records: &[RecordedEvent]) -> Vec<HistoryEntry> {
    let mut state = Instance::default();
    let mut entries = Vec::with_capacity(records.len());
    for r in records {
        match codec::decode(r) {
            Ok((event, meta)) => {
                entries.push(entry(r, &event, &meta, &state));
                state = evolve(state, &event);
            }
            Err(e) => entries.push(unreadable_entry(r, &e)),
        }
    }
    entries
}

/// The entry of an event that does not decode: position, revision, id and stored type,
/// and from its envelope what still decodes of it; no body (it might hold a secret
/// [`public_data`] can no longer recognize).
fn unreadable_entry(r: &RecordedEvent, error: &CodecError) -> HistoryEntry {
    let meta = serde_json::from_slice::<EventMetadata>(&r.metadata).ok();
    HistoryEntry {
        position: r.position.commit,
        revision: r.revision,
        event_id: r.id,
        time: meta
            .as_ref()
            .map(|m| m.time.format(TIME_FORMAT).to_string())
            .unwrap_or_default(),
        event_type: r.event_type.clone(),
        actor: meta
            .as_ref()
            .map(|m| format!("{}@{}", m.actor.user_id, m.actor.project_id))
            .unwrap_or_default(),
        request_id: meta
            .as_ref()
            .map(|m| m.request_id.clone())
            .unwrap_or_default(),
        correlation_id: meta.as_ref().map_or(Uuid::nil(), |m| m.correlation_id),
        summary: format!("UNREADABLE: {error}; run `troved audit verify`"),
        data: Value::Null,
        unreadable: Some(error.to_string()),
    }
}

fn entry(
    r: &RecordedEvent,
    event: &InstanceEvent,
    meta: &EventMetadata,
    before: &Instance,
) -> HistoryEntry {
    HistoryEntry {
        position: r.position.commit,
        revision: r.revision,
        event_id: r.id,
        time: meta.time.format(TIME_FORMAT).to_string(),
        event_type: event.event_type().to_string(),
        actor: format!("{}@{}", meta.actor.user_id, meta.actor.project_id),
        request_id: meta.request_id.clone(),
        correlation_id: meta.correlation_id,
        summary: summarize(before, event),
        data: public_data(event),
        unreadable: None,
    }
}

/// The event's body in today's shape without secrets: every key whose name contains
/// `password` or `secret`, and every value shaped like a sealed secret (an object with
/// a `ciphertext`), is removed, at any depth. Generic on purpose, so a secret in a
/// future event type is dropped without anyone remembering to.
pub fn public_data(event: &InstanceEvent) -> Value {
    let (_, _, mut data) = event.encode();
    strip_secrets(&mut data);
    data
}

fn strip_secrets(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|k, v| !is_secret(k, v));
            m.values_mut().for_each(strip_secrets);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_secrets),
        _ => {}
    }
}

fn is_secret(key: &str, value: &Value) -> bool {
    let key = key.to_ascii_lowercase();
    key.contains("password")
        || key.contains("secret")
        || value
            .as_object()
            .is_some_and(|o| o.contains_key("ciphertext"))
}

/// Blanks `fault.details` (diagnostic text, admins only, as in the instance views).
pub fn hide_fault_details(entry: &mut HistoryEntry) {
    if let Some(details) = entry
        .data
        .get_mut("fault")
        .and_then(Value::as_object_mut)
        .and_then(|f| f.get_mut("details"))
    {
        *details = Value::Null;
    }
}

/// One readable line about `event`, given the state `before` it (for what it changed
/// from). Routes each event to the function for its family; the match stays exhaustive,
/// so a new type does not compile until it has a summary.
pub fn summarize(before: &Instance, event: &InstanceEvent) -> String {
    use InstanceEvent::*;
    match event {
        InstanceCreated(c) => created_summary(c),
        InstanceRenamed { name, .. } => {
            if before.exists() {
                format!("renamed to {name:?} (was {:?})", before.name)
            } else {
                format!("renamed to {name:?}")
            }
        }
        ConfigurationAttached { .. }
        | ConfigurationRevisionApplied { .. }
        | ConfigurationDetached { .. } => configuration_summary(event),
        DatastoreVersionUpgradeRequested { .. }
        | DatastoreVersionUpgraded { .. }
        | DatastoreVersionUpgradeFailed { .. } => upgrade_summary(before, event),
        ReplicaDetachRequested { .. } | ReplicaDetached { .. } | ReplicaDetachFailed { .. } => {
            replica_detach_summary(before, event)
        }
        AccessUpdateRequested { .. } | AccessUpdated { .. } | AccessUpdateFailed { .. } => {
            access_update_summary(event)
        }
        InstanceDeletionRequested { .. } => "deletion requested".to_string(),
        InstanceDeleted { .. } => "deleted (secret key shredded)".to_string(),
        VolumeCreated { .. }
        | ServerCreated { .. }
        | GuestPrepared { .. }
        | ServerDeleted { .. }
        | VolumeDeleted { .. }
        | ResourcesReleased { .. } => resource_summary(event),
        VolumeUsageReported { .. }
        | GuestConfigurationApplied { .. }
        | ComputeStatusChanged { .. }
        | GuestStatusReported { .. }
        | AddressesAssigned { .. } => live_status_summary(event),
        ProvisioningCompleted { .. } => "provisioning completed".to_string(),
        ProvisioningFailed { task, fault, .. } => format!(
            "build failed: {} (task {})",
            one_line(&fault.message),
            name_of(task)
        ),
        InstanceSecretsLost { reason, .. } => {
            format!("sealed passwords lost: {}", one_line(reason))
        }
        GuestConfigurationRefused { fault, .. } => {
            format!("configuration refused: {}", one_line(&fault.message))
        }
        GuestFailed { fault, .. } => format!(
            "database server given up on: {} (compute ERROR)",
            one_line(&fault.message)
        ),
        InstanceResourcesLost {
            server_id,
            volume_id,
            ..
        } => {
            let gone: Vec<String> = [("server", server_id), ("volume", volume_id)]
                .into_iter()
                .filter_map(|(kind, id)| id.as_ref().map(|id| format!("{kind} {id}")))
                .collect();
            format!("lost: the cloud no longer has {}", gone.join(" and "))
        }
        _ => workflow_summary(event),
    }
}

/// The replica-set switches, instance actions and changes of databases, users and root
/// (the families `summarize` hands on).
fn workflow_summary(event: &InstanceEvent) -> String {
    use InstanceEvent::*;
    match event {
        ReplicaSourcePromotionRequested { .. }
        | ReplicaSourcePromoted { .. }
        | ReplicaSourcePromotionFailed { .. }
        | ReplicaSourceEjectionRequested { .. }
        | ReplicaSourceEjected { .. }
        | ReplicaSourceEjectionFailed { .. } => replica_switch_summary(event),
        // instance actions
        InstanceRestartRequested { .. }
        | InstanceRestarted { .. }
        | InstanceRestartFailed { .. }
        | FlavorResizeRequested { .. }
        | FlavorResized { .. }
        | FlavorResizeFailed { .. }
        | VolumeResizeRequested { .. }
        | VolumeResized { .. }
        | VolumeResizeFailed { .. }
        | InstanceStatusReset { .. } => action_summary(event),
        // ---- databases, users and root ----
        DatabasesCreated { .. }
        | DatabaseDeleted { .. }
        | UsersCreated { .. }
        | UserDeleted { .. }
        | UserAttributesUpdated { .. }
        | UserPasswordsChanged { .. }
        | UserAccessGranted { .. }
        | UserAccessRevoked { .. }
        | RootEnabled { .. }
        | RootDisabled { .. }
        | GuestChangeApplied { .. }
        | GuestChangeFailed { .. } => guest_summary(event),
        other => other.event_type().to_string(),
    }
}

/// A change of databases, users or root, or the guest's report on one. Names users and
/// databases, never passwords.
fn guest_summary(event: &InstanceEvent) -> String {
    use InstanceEvent::*;
    let names = |v: &[String]| v.join(" ");
    match event {
        DatabasesCreated { databases, .. } => {
            let n: Vec<String> = databases.iter().map(|d| d.name.clone()).collect();
            format!("databases created: {}", names(&n))
        }
        DatabaseDeleted { name, .. } => format!("database {name} dropped"),
        UsersCreated { users, .. } => {
            let n: Vec<String> = users
                .iter()
                .map(|u| format!("{}@{}", u.name, u.host))
                .collect();
            format!("users created: {}", names(&n))
        }
        UserDeleted { name, host, .. } => format!("user {name}@{host} dropped"),
        UserAttributesUpdated {
            name,
            host,
            new_name,
            new_host,
            password,
            ..
        } => {
            let mut s = format!("user {name}@{host} updated:");
            if let Some(n) = new_name {
                let _ = write!(s, " name {n}");
            }
            if let Some(h) = new_host {
                let _ = write!(s, " host {h}");
            }
            if password.is_some() {
                s.push_str(" password changed");
            }
            s
        }
        UserPasswordsChanged { users, .. } => {
            let n: Vec<String> = users
                .iter()
                .map(|u| format!("{}@{}", u.name, u.host))
                .collect();
            format!("passwords changed: {}", names(&n))
        }
        UserAccessGranted {
            name,
            host,
            databases,
            ..
        } => format!("user {name}@{host} granted {}", names(databases)),
        UserAccessRevoked {
            name,
            host,
            database,
            ..
        } => format!("user {name}@{host} revoked {database}"),
        RootEnabled { .. } => "root enabled".to_string(),
        RootDisabled { .. } => "root disabled".to_string(),
        GuestChangeApplied { seq, .. } => format!("guest applied change {seq}"),
        GuestChangeFailed { seq, fault, .. } => {
            format!("guest refused change {seq}: {}", one_line(&fault.message))
        }
        other => other.event_type().to_string(),
    }
}

/// An instance action (restart, resize, reset status) requested, done or failed.
fn action_summary(event: &InstanceEvent) -> String {
    use InstanceEvent::*;
    match event {
        InstanceRestartRequested { .. } => "restart requested".to_string(),
        InstanceRestarted { .. } => "restarted".to_string(),
        InstanceRestartFailed { fault, .. } => {
            format!("restart failed: {}", one_line(&fault.message))
        }
        FlavorResizeRequested { from, to, .. } => {
            format!("flavor resize requested: {} -> {}", from.id, to.id)
        }
        FlavorResized { flavor, .. } => format!("resized to flavor {}", flavor.id),
        FlavorResizeFailed { fault, .. } => {
            format!("flavor resize failed: {}", one_line(&fault.message))
        }
        VolumeResizeRequested { from, to, .. } => {
            format!("volume resize requested: {from} GB -> {to} GB")
        }
        VolumeResized { size, .. } => format!("volume resized to {size} GB"),
        VolumeResizeFailed { fault, .. } => {
            format!("volume resize failed: {}", one_line(&fault.message))
        }
        InstanceStatusReset { task, .. } => {
            format!("status reset (task was {})", name_of(task))
        }
        other => other.event_type().to_string(),
    }
}

// Each `*_summary` function below taking an `InstanceEvent` is called by `summarize`
// with events of its own family only; the catch-all arm that ends each match (the bare
// event type) is never taken.

/// A switch of the replica set's source (promote / eject) requested, done or failed.
fn replica_switch_summary(event: &InstanceEvent) -> String {
    use InstanceEvent::*;
    match event {
        ReplicaSourcePromotionRequested { switch, .. } => format!(
            "promotion of {} to replica source (from {}) requested",
            switch.coordinator(),
            switch.old_primary_id
        ),
        ReplicaSourcePromoted { new_primary_id, .. } => {
            format!("replica source is now {new_primary_id}")
        }
        ReplicaSourcePromotionFailed { fault, .. } => {
            format!("promotion failed: {}", one_line(&fault.message))
        }
        ReplicaSourceEjectionRequested { switch, .. } => {
            format!(
                "ejection of replica source {} requested",
                switch.old_primary_id
            )
        }
        ReplicaSourceEjected {
            new_primary_id,
            old_primary_id,
            ..
        } => format!("replica source {old_primary_id} ejected; {new_primary_id} took over"),
        ReplicaSourceEjectionFailed { fault, .. } => {
            format!("ejection failed: {}", one_line(&fault.message))
        }
        other => other.event_type().to_string(),
    }
}

// Each `*_summary` function below taking an `InstanceEvent` is called by `summarize`
// with events of its own family only; the catch-all arm that ends each match (the bare
// event type) is never taken.

/// The create: name, datastore, flavor, and whatever else the request set.
fn created_summary(c: &aggregates::instance::InstanceCreated) -> String {
    let mut s = format!("created {:?}: {}", c.name, datastore(&c.datastore));
    let _ = write!(s, ", flavor {}", c.flavor.id);
    if let Some(v) = &c.volume {
        let _ = write!(s, ", volume {} GB", v.size);
        if let Some(t) = &v.volume_type {
            let _ = write!(s, " ({t})");
        }
    }
    if !c.databases.is_empty() {
        let names: Vec<&str> = c.databases.iter().map(|d| d.name.as_str()).collect();
        let _ = write!(s, ", databases {}", names.join(" "));
    }
    if !c.users.is_empty() {
        let names: Vec<&str> = c.users.iter().map(|u| u.name.as_str()).collect();
        let _ = write!(s, ", users {}", names.join(" "));
    }
    if let Some(g) = c.configuration_id {
        let _ = write!(s, ", configuration {g}");
    }
    if let Some(p) = c.replica_of {
        let _ = write!(s, ", replica of {p}");
    }
    if let Some(b) = c.restore_backup_id {
        let _ = write!(s, ", restored from backup {b}");
    }
    if let Some(az) = &c.availability_zone {
        let _ = write!(s, ", zone {az}");
    }
    if c.root_password.is_some() {
        s.push_str(", root enabled");
    }
    s
}

/// A configuration group attached, detached, or a new revision of it applied.
fn configuration_summary(event: &InstanceEvent) -> String {
    use InstanceEvent::*;
    match event {
        ConfigurationAttached {
            configuration_id,
            restart_required,
            ..
        } => format!(
            "configuration {configuration_id} attached{}",
            restart(*restart_required)
        ),
        ConfigurationRevisionApplied {
            configuration_id,
            revision,
            restart_required,
            ..
        } => format!(
            "configuration {configuration_id} revision {revision} applied{}",
            restart(*restart_required)
        ),
        ConfigurationDetached {
            configuration_id,
            restart_required,
            ..
        } => format!(
            "configuration {configuration_id} detached{}",
            restart(*restart_required)
        ),
        other => other.event_type().to_string(),
    }
}

/// A datastore version upgrade requested, done or failed.
fn upgrade_summary(before: &Instance, event: &InstanceEvent) -> String {
    use InstanceEvent::*;
    match event {
        DatastoreVersionUpgradeRequested { from, to, .. } => format!(
            "upgrade to {} requested (from {})",
            datastore(to),
            from.version_name
        ),
        DatastoreVersionUpgraded { .. } => match &before.datastore {
            Some(ds) => format!("upgraded to {}", datastore(ds)),
            None => "upgraded".to_string(),
        },
        DatastoreVersionUpgradeFailed { fault, .. } => {
            format!("upgrade failed: {}", one_line(&fault.message))
        }
        other => other.event_type().to_string(),
    }
}

/// A replica's detach from its primary requested, done or failed.
fn replica_detach_summary(before: &Instance, event: &InstanceEvent) -> String {
    use InstanceEvent::*;
    match event {
        ReplicaDetachRequested { .. } => match before.replica_of {
            Some(p) => format!("detach from primary {p} requested"),
            None => "detach from primary requested".to_string(),
        },
        ReplicaDetached { primary_id, .. } => format!("detached from primary {primary_id}"),
        ReplicaDetachFailed { fault, .. } => {
            format!("detach from primary failed: {}", one_line(&fault.message))
        }
        other => other.event_type().to_string(),
    }
}

/// An access update requested, done or failed.
fn access_update_summary(event: &InstanceEvent) -> String {
    use InstanceEvent::*;
    match event {
        AccessUpdateRequested { access: a, .. } => {
            format!("access update requested ({})", access(a))
        }
        AccessUpdated { access: a, .. } => format!("access updated ({})", access(a)),
        AccessUpdateFailed { fault, .. } => {
            format!("access update failed: {}", one_line(&fault.message))
        }
        other => other.event_type().to_string(),
    }
}

/// A cloud resource created, prepared, deleted or released by the saga.
fn resource_summary(event: &InstanceEvent) -> String {
    use InstanceEvent::*;
    match event {
        VolumeCreated {
            volume_id,
            size,
            volume_type,
            ..
        } => match volume_type {
            Some(t) => format!("volume {volume_id} created ({size} GB, {t})"),
            None => format!("volume {volume_id} created ({size} GB)"),
        },
        ServerCreated { server_id, .. } => format!("server {server_id} created"),
        GuestPrepared { .. } => "guest prepared".to_string(),
        ServerDeleted { server_id, .. } => format!("server {server_id} deleted"),
        VolumeDeleted { volume_id, .. } => format!("volume {volume_id} deleted"),
        ResourcesReleased { .. } => "resources of the failed build released".to_string(),
        other => other.event_type().to_string(),
    }
}

/// Live data from the cloud and the guest: usage, configuration, statuses, addresses.
fn live_status_summary(event: &InstanceEvent) -> String {
    use InstanceEvent::*;
    match event {
        VolumeUsageReported { used, total, .. } => {
            format!("volume usage {used:.2} of {total:.2} GB")
        }
        GuestConfigurationApplied {
            configuration_id,
            revision,
            ..
        } => match configuration_id {
            Some(g) => format!("guest runs configuration {g} (revision {revision})"),
            None => "guest runs no configuration group".to_string(),
        },
        ComputeStatusChanged { status, .. } => format!("compute status {}", name_of(status)),
        GuestStatusReported { status, .. } => format!("guest status {}", name_of(status)),
        AddressesAssigned { addresses, .. } => {
            format!("addresses assigned: {}", address_list(addresses))
        }
        other => other.event_type().to_string(),
    }
}

fn restart(required: bool) -> &'static str {
    if required {
        " (restart required)"
    } else {
        ""
    }
}

fn datastore(ds: &DatastoreRef) -> String {
    format!("{} {}", ds.datastore_name, ds.version_name)
}

fn access(a: &Access) -> String {
    let cidrs = if a.allowed_cidrs.is_empty() {
        "any".to_string()
    } else {
        a.allowed_cidrs.join(" ")
    };
    let public = if a.is_public { "public" } else { "private" };
    format!("{public}, allowed {cidrs}")
}

fn address_list(addresses: &[Address]) -> String {
    if addresses.is_empty() {
        return "none".to_string();
    }
    addresses
        .iter()
        .map(|a| format!("{} ({})", a.address, a.kind))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The stored name of an enumeration value (`BUILDING_ERROR_SERVER`, `HEALTHY`, ...).
fn name_of<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => "?".to_string(),
    }
}

/// Free text (fault messages) on one line: control characters become spaces.
fn one_line(s: &str) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    flat.split_whitespace().collect::<Vec<_>>().join(" ")
}

// ---- time ------------------------------------------------------------------------

/// Parses an as-of time: RFC 3339 (`2026-11-26T14:02:00Z`, any offset, optional
/// fraction), or a time without zone taken as UTC (`2026-11-26T14:02:00`, also with a
/// space instead of `T`: the form of Trove's own `created`/`updated`).
pub fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    let t = s.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return Ok(dt.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(t, format) {
            return Ok(naive.and_utc());
        }
    }
    Err(format!(
        "invalid time {s:?}: expected RFC 3339, e.g. 2026-11-26T14:02:00Z (a time without \
         zone is UTC)"
    ))
}

/// The last instant an as-of time covers: a time given to the second covers the whole
/// second (entries show seconds), a time with a fraction is exact.
pub fn cutoff(as_of: DateTime<Utc>) -> DateTime<Utc> {
    if as_of.timestamp_subsec_nanos() == 0 {
        as_of + Duration::nanoseconds(999_999_999)
    } else {
        as_of
    }
}

// ---- as of -----------------------------------------------------------------------

/// An instance folded from the start of its stream up to a moment.
#[derive(Clone, Debug)]
pub struct AsOf {
    /// The state; `exists()` is false if it was not created by then.
    pub instance: Instance,
    /// How many events were folded.
    pub events: usize,
    /// The time of the first event of the stream (its creation), if any.
    pub created: Option<DateTime<Utc>>,
}

/// Folds the instance stream's events whose time is at most [`cutoff`]`(as_of)`. The
/// fold stops at the first later event: the state is always a prefix of the stream,
/// even if clocks stepped back.
///
/// Fails on an event that does not decode before the moment: the state would be wrong.
pub fn state_as_of(
    records: &[RecordedEvent],
    as_of: DateTime<Utc>,
) -> Result<AsOf, UnreadableEvent> {
    let until = cutoff(as_of);
    let mut instance = Instance::default();
    let mut events = 0;
    let mut created = None;
    for r in records {
        let (event, meta) = codec::decode(r).map_err(|e| UnreadableEvent::new(r, &e))?;
        created.get_or_insert(meta.time);
        if meta.time > until {
            break;
        }
        instance = evolve(instance, &event);
        events += 1;
    }
    Ok(AsOf {
        instance,
        events,
        created,
    })
}

/// The name a configuration group had at `as_of`, from its stream (`None` if it did
/// not exist yet). Deleted groups keep their name.
pub fn configuration_name_as_of(
    records: &[RecordedEvent],
    as_of: DateTime<Utc>,
) -> Result<Option<String>, CodecError> {
    let until = cutoff(as_of);
    let mut events: Vec<ConfigurationEvent> = Vec::new();
    for r in records {
        let (data, meta) = codec::decode_parts(r)?;
        if meta.time > until {
            break;
        }
        events.push(configuration::decode(
            &r.event_type,
            meta.schema_version,
            data,
        )?);
    }
    let group = configuration::fold(&events);
    Ok(group.exists().then_some(group.name))
}

/// What an as-of view looks up: the attached group's name as of then. Replicas and
/// localities live in other streams and are not shown (the view is the instance's own
/// record).
#[derive(Clone, Debug, Default)]
pub struct AsOfLookup {
    /// The attached group and its name at the time.
    pub configuration: Option<(Uuid, Option<String>)>,
}

impl Lookup for AsOfLookup {
    fn configuration_name(&self, id: Uuid) -> Option<String> {
        match &self.configuration {
            Some((g, name)) if *g == id => name.clone(),
            _ => None,
        }
    }

    fn live_replicas(&self, _primary: Uuid) -> Vec<Uuid> {
        Vec::new()
    }

    fn locality(&self, _id: Uuid) -> Option<String> {
        None
    }
}

/// The detail view of an instance as of a moment. `ctx.now` should be that moment.
pub fn as_of_view(instance: &Instance, ctx: &ViewCtx, lookup: &AsOfLookup) -> Value {
    views::detail_view(instance, ctx, lookup)
}

/// Why an instance has no state at `as_of`, for messages.
pub fn not_yet_message(id: Uuid, as_of: DateTime<Utc>, created: Option<DateTime<Utc>>) -> String {
    let at = as_of.format(TIME_FORMAT);
    match created {
        Some(c) => format!(
            "instance {id} did not exist yet at {at} (created {})",
            c.format(TIME_FORMAT)
        ),
        None => format!("instance {id} does not exist"),
    }
}

// ---- table -----------------------------------------------------------------------

/// The timeline as an aligned text table, one line per event, oldest first.
pub fn render_table(entries: &[HistoryEntry]) -> String {
    let header = [
        "POSITION",
        "TIME",
        "EVENT",
        "ACTOR",
        "REQUEST ID",
        "SUMMARY",
    ];
    let rows: Vec<[String; 6]> = entries
        .iter()
        .map(|e| {
            [
                e.position.to_string(),
                e.time.clone(),
                e.event_type.clone(),
                e.actor.clone(),
                e.request_id.clone(),
                e.summary.clone(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: [&str; 6]| {
        let mut l = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                l.push_str(cell);
            } else {
                let pad = widths[i].saturating_sub(cell.chars().count());
                l.push_str(cell);
                l.extend(std::iter::repeat_n(' ', pad + 2));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header);
    for row in &rows {
        line(row.each_ref().map(String::as_str));
    }
    out
}

#[cfg(test)]
mod tests {
    use aggregates::instance::{
        FaultInfo, FlavorRef, InstanceCreated, SealedSecret, Task, UserSpec, VolumeSpec,
    };
    use chrono::TimeZone;

    use super::*;

    fn at(s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 26, 14, 2, s).unwrap()
    }

    fn sealed() -> SealedSecret {
        SealedSecret {
            key_id: "k1".into(),
            nonce: "bm9uY2U=".into(),
            ciphertext: "Y2lwaGVydGV4dA==".into(),
        }
    }

    fn created(id: Uuid) -> InstanceEvent {
        InstanceEvent::InstanceCreated(Box::new(InstanceCreated {
            instance_id: id,
            project_id: "p1".into(),
            user_id: "alice".into(),
            name: "orders".into(),
            flavor: FlavorRef {
                id: "2".into(),
                ram: 2048,
            },
            volume: Some(VolumeSpec {
                size: 2,
                volume_type: None,
            }),
            datastore: DatastoreRef {
                datastore_name: "mysql".into(),
                version_name: "8.0".into(),
                version_number: "8.0.36".into(),
                manager: "mysql".into(),
                ..DatastoreRef::default()
            },
            databases: vec![],
            users: vec![UserSpec {
                name: "app".into(),
                host: "%".into(),
                password: sealed(),
                databases: vec![],
            }],
            nics: vec![],
            availability_zone: None,
            region: "RegionOne".into(),
            modules: vec![],
            restore_backup_id: None,
            replica_of: None,
            locality: None,
            configuration_id: None,
            configuration_revision: 0,
            access: None,
            root_password: Some(sealed()),
            at: at(0),
        }))
    }

    fn record(n: u64, id: Uuid, event: &InstanceEvent, user: &str) -> RecordedEvent {
        let caller = aggregates::instance::Caller {
            user_id: user.into(),
            project_id: "p1".into(),
            roles: vec!["member".into()],
        };
        let meta = codec::CommandMeta::for_request(&caller, &format!("req-{n}"));
        let e = codec::encode(event, &meta, 0);
        RecordedEvent {
            id: e.id,
            stream: aggregates::instance::stream_name(id),
            revision: n,
            position: crate::store::Position {
                commit: n + 10,
                prepare: n + 10,
            },
            event_type: e.event_type,
            data: e.data,
            metadata: e.metadata,
        }
    }

    fn life(id: Uuid) -> Vec<RecordedEvent> {
        let events = [
            created(id),
            InstanceEvent::InstanceRenamed {
                name: "orders-2".into(),
                at: at(1),
            },
            InstanceEvent::InstanceRenamed {
                name: "orders-3".into(),
                at: at(3),
            },
        ];
        events
            .iter()
            .enumerate()
            .map(|(n, e)| record(n as u64, id, e, "alice"))
            .collect()
    }

    #[test]
    fn timeline_names_actor_request_and_change_without_secrets() {
        let id = Uuid::new_v4();
        let entries = timeline(&life(id));
        let lines: Vec<(&str, &str, &str)> = entries
            .iter()
            .map(|e| (e.event_type.as_str(), e.actor.as_str(), e.summary.as_str()))
            .collect();
        assert_eq!(
            lines,
            [
                (
                    "InstanceCreated",
                    "alice@p1",
                    "created \"orders\": mysql 8.0, flavor 2, volume 2 GB, users app, root enabled"
                ),
                (
                    "InstanceRenamed",
                    "alice@p1",
                    "renamed to \"orders-2\" (was \"orders\")"
                ),
                (
                    "InstanceRenamed",
                    "alice@p1",
                    "renamed to \"orders-3\" (was \"orders-2\")"
                ),
            ]
        );
        assert_eq!(entries[0].position, 10);
        assert_eq!(entries[1].time, "2026-11-26T14:02:01Z");
        assert_eq!(entries[1].request_id, "req-1");
        let json = serde_json::to_string(&entries).unwrap();
        for secret in [
            "password",
            "ciphertext",
            "nonce",
            "key_id",
            "Y2lwaGVydGV4dA",
        ] {
            assert!(!json.contains(secret), "{secret} in {json}");
        }
        assert_eq!(entries[0].data["users"][0]["name"], "app");
    }

    #[test]
    fn as_of_covers_the_whole_second_and_stops_before_later_events() {
        let id = Uuid::new_v4();
        let records = life(id);
        let s = state_as_of(&records, at(2)).unwrap();
        assert_eq!((s.instance.name.as_str(), s.events), ("orders-2", 2));
        // The second of the first rename covers it (written to the second).
        assert_eq!(
            state_as_of(&records, at(1)).unwrap().instance.name,
            "orders-2"
        );
        // A fraction is exact.
        let just_before = at(1) - Duration::milliseconds(1);
        assert_eq!(
            state_as_of(&records, just_before).unwrap().instance.name,
            "orders"
        );
        let before = state_as_of(&records, at(0) - Duration::seconds(5)).unwrap();
        assert!(!before.instance.exists());
        assert_eq!(before.created, Some(at(0)));
        assert!(
            not_yet_message(id, at(0) - Duration::seconds(5), before.created)
                .contains("did not exist yet at 2026-11-26T14:01:55Z")
        );
    }

    #[test]
    fn times_parse_in_rfc3339_and_trove_forms() {
        let want = at(7);
        for s in [
            "2026-11-26T14:02:07Z",
            "2026-11-26T15:02:07+01:00",
            "2026-11-26T14:02:07",
            "2026-11-26 14:02:07",
            " 2026-11-26t14:02:07z ",
        ] {
            assert_eq!(parse_time(s), Ok(want), "{s}");
        }
        assert_eq!(
            parse_time("2026-11-26T14:02:07.250Z").unwrap(),
            want + Duration::milliseconds(250)
        );
        for bad in ["", "yesterday", "2026-11-26", "2026-13-01T00:00:00Z"] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn failures_read_as_one_line_and_details_can_be_hidden() {
        let fault = FaultInfo {
            message: "Failed to create server\nfor instance".into(),
            details: "Traceback ...".into(),
        };
        let e = InstanceEvent::ProvisioningFailed {
            task: Task::BuildingErrorServer,
            fault,
            at: at(0),
        };
        assert_eq!(
            summarize(&Instance::default(), &e),
            "build failed: Failed to create server for instance (task BUILDING_ERROR_SERVER)"
        );
        let id = Uuid::new_v4();
        let mut entries = timeline(&[record(0, id, &e, "troved-saga")]);
        assert_eq!(entries[0].data["fault"]["details"], "Traceback ...");
        hide_fault_details(&mut entries[0]);
        assert_eq!(entries[0].data["fault"]["details"], Value::Null);
    }

    #[test]
    fn the_table_is_aligned_with_the_summary_last() {
        let entries = timeline(&life(Uuid::new_v4()));
        let table = render_table(&entries);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[0].starts_with("POSITION  TIME"), "{table}");
        let col = lines[0].find("SUMMARY").unwrap();
        assert_eq!(&lines[2][col..], "renamed to \"orders-2\" (was \"orders\")");
    }
}
