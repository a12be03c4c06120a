//! Rendering of the Trove instance representation (spec `instances-api.md` §5) from a
//! folded [`Instance`]: the basic, detail, create, show and admin views.
//!
//! Pure: everything request-dependent (host, caller, clock, heartbeat expiry) comes in
//! a [`ViewCtx`], and facts outside the instance record (configuration group names,
//! replicas, the primary's locality) through a [`Lookup`]. Views are rendered on every
//! read and never stored: `status` and `operating_status` depend on the caller's view
//! and on `now` (lifecycle §3-§4), and stored JSON would cost memory per instance.
//!
//! Two renderers of the same representation: the functions here build a
//! `serde_json::Value` (the reference, used by the admin views, history and tests), and
//! [`bytes`] writes the basic, detail and show views straight to JSON bytes from the
//! records, for the hot read endpoints. `bytes_tests.rs` holds them byte-equal; a change
//! to one needs the same change to the other.
//!
//! What the views must not do: decide visibility (the handler checks project, deletion
//! and admin rights before rendering) or build the list envelope and `next` link (the
//! handler owns the request URL).

mod admin;
pub mod bytes;

use std::sync::Arc;

use aggregates::instance::{Address, Instance, StatusInputs, Viewer};
use chrono::{DateTime, Duration, Utc};
use dashmap::DashMap;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::InstanceModels;

pub use admin::{mgmt_list_item, mgmt_show};
pub use bytes::{write_list_items, write_show, write_view, ItemKind};

/// Everything a view needs from the request and the service configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct ViewCtx {
    /// `https://<Host header>`, e.g. `https://127.0.0.1:8779` (spec §3.3: the scheme is
    /// always https, whatever the request used). A trailing `/` is ignored.
    pub base_url: String,
    /// The version found in the request path, without the `v`: `1.0`.
    pub api_version: String,
    /// The project in the request URL: self links use it, not the owner's project.
    pub caller_project: String,
    /// Whether the token carries the `admin` role: adds `tenant_id`, `server_id`,
    /// `volume_id`, `encrypted_rpc_messaging` and fault details.
    pub caller_is_admin: bool,
    /// The clock reading for this request (heartbeat expiry rule, lifecycle §4).
    pub now: DateTime<Utc>,
    /// `agent_heartbeat_expiry`; `None` disables the rule (no guest sends heartbeats).
    pub heartbeat_expiry: Option<Duration>,
    /// The last good heartbeat of each instance, kept in memory (not in the log): it
    /// stands for `service_status_updated` when newer than the last recorded status.
    pub heartbeats: Heartbeats,
    /// The instances with a backup running: their status is `BACKUP`.
    pub running_backups: crate::running::RunningBackups,
}

/// When each instance's guest last answered a heartbeat check, and the volume usage
/// that check measured. Only changes of the guest status are events; the heartbeats in
/// between only move this time and this usage (docs/providers.md "Heartbeats"): a
/// database that fills its volume is shown filling it without an event per heartbeat.
/// Cheap to clone (shared); empty where no supervisor runs.
#[derive(Clone, Default)]
pub struct Heartbeats(
    Arc<DashMap<Uuid, DateTime<Utc>>>,
    Arc<DashMap<Uuid, (f64, f64)>>,
);

impl Heartbeats {
    pub fn new() -> Heartbeats {
        Heartbeats::default()
    }

    /// Records a heartbeat of `id` at `at` (an older time never replaces a newer one).
    pub fn beat(&self, id: Uuid, at: DateTime<Utc>) {
        let mut entry = self.0.entry(id).or_insert(at);
        if *entry < at {
            *entry = at;
        }
    }

    /// The last heartbeat of `id`, if one arrived since this process started.
    pub fn last(&self, id: Uuid) -> Option<DateTime<Utc>> {
        self.0.get(&id).map(|t| *t)
    }

    /// Records the volume usage (used, total GB) a heartbeat of `id` measured.
    pub fn measured(&self, id: Uuid, used: f64, total: f64) {
        self.1.insert(id, (used, total));
    }

    /// The volume usage the last heartbeat of `id` measured, if any.
    pub fn usage(&self, id: Uuid) -> Option<(f64, f64)> {
        self.1.get(&id).map(|u| *u)
    }

    /// Keeps only the instances `keep` says (the others are gone).
    pub fn retain(&self, keep: impl Fn(Uuid) -> bool) {
        self.0.retain(|id, _| keep(*id));
        self.1.retain(|id, _| keep(*id));
    }
}

impl std::fmt::Debug for Heartbeats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Heartbeats({} instances)", self.0.len())
    }
}

/// Two contexts are equal when they share the same map (it is live data).
impl PartialEq for Heartbeats {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl ViewCtx {
    /// The instance's status inputs, with the last heartbeat as the service status time
    /// when it is newer than the recorded one (lifecycle §4's rule then uses it too).
    pub fn status_inputs(&self, inst: &Instance) -> StatusInputs {
        let mut inputs = inst.status_inputs();
        inputs.backup_running = inst.id.is_some_and(|id| self.running_backups.any(id));
        if let Some(beat) = inst.id.and_then(|id| self.heartbeats.last(id)) {
            inputs.service_updated = inputs.service_updated.max(beat);
        }
        inputs
    }

    /// The instance's volume usage (used, total GB): the last heartbeat's measure, else
    /// the one recorded at the end of its build.
    pub fn volume_usage(&self, inst: &Instance) -> Option<(f64, f64)> {
        inst.id
            .and_then(|id| self.heartbeats.usage(id))
            .or(inst.volume_usage)
    }

    /// The two links of a resource reference (spec §3.3): `self` with version and
    /// caller project, `bookmark` without either.
    pub fn links(&self, collection: &str, id: &str) -> Value {
        let base = self.base_url.trim_end_matches('/');
        json!([
            {
                "href": format!(
                    "{base}/v{}/{}/{collection}/{id}",
                    self.api_version, self.caller_project
                ),
                "rel": "self"
            },
            {"href": format!("{base}/{collection}/{id}"), "rel": "bookmark"}
        ])
    }
}

/// Facts a view needs that are not in the instance's own record.
pub trait Lookup {
    /// The name of a configuration group; `None` renders `"name": null` (a group in use
    /// cannot be deleted upstream, so this only happens if the catalog lost it).
    fn configuration_name(&self, id: Uuid) -> Option<String>;
    /// Ids of the live (not soft-deleted) replicas of `primary`, ascending.
    fn live_replicas(&self, primary: Uuid) -> Vec<Uuid>;
    /// The locality recorded on instance `id` at its creation.
    fn locality(&self, id: Uuid) -> Option<String>;
}

/// The usual [`Lookup`]: replicas and localities from the read models, configuration
/// group names from whatever the shell keeps them in.
pub struct ModelLookup<'a> {
    /// The read models.
    pub models: &'a InstanceModels,
    /// Configuration group id → name.
    pub configuration_name: &'a dyn Fn(Uuid) -> Option<String>,
}

impl Lookup for ModelLookup<'_> {
    fn configuration_name(&self, id: Uuid) -> Option<String> {
        (self.configuration_name)(id)
    }

    fn live_replicas(&self, primary: Uuid) -> Vec<Uuid> {
        self.models.live_replicas(primary)
    }

    fn locality(&self, id: Uuid) -> Option<String> {
        self.models.locality(id)
    }
}

/// A timestamp as Trove renders its own (spec §3.2): naive UTC, no fraction, no zone.
pub fn timestamp(at: &DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S").to_string()
}

/// Which variant of the representation to build.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Shape {
    /// Lists see the synthetic `BUILD` only for the exact BUILDING task, show views for
    /// every BUILDING action (lifecycle §1).
    pub viewer: Viewer,
    /// Detail fields (timestamps, fault, configuration, `version_number`).
    pub detail: bool,
    /// Admin-only fields; forced on in the mgmt views (the endpoint is admin-only).
    pub admin: bool,
    /// Status rule 0 (soft-deleted → `SHUTDOWN`), admin views only.
    pub admin_view: bool,
}

/// `GET /instances` item (spec §5.1 "basic").
pub fn basic_view(instance: &Instance, ctx: &ViewCtx, lookup: &dyn Lookup) -> Value {
    let shape = Shape {
        viewer: Viewer::List,
        detail: false,
        admin: ctx.caller_is_admin,
        admin_view: false,
    };
    Value::Object(render(instance, ctx, lookup, shape))
}

/// `GET /instances/detail` item (spec §5.1 "detail"): basic plus timestamps, fault,
/// configuration, `datastore.version_number` and, for admins, `server_id`,
/// `volume_id`, `encrypted_rpc_messaging`. No guest call: no `volume.used`, no
/// `locality`.
pub fn detail_view(instance: &Instance, ctx: &ViewCtx, lookup: &dyn Lookup) -> Value {
    let shape = Shape {
        viewer: Viewer::List,
        detail: true,
        admin: ctx.caller_is_admin,
        admin_view: false,
    };
    Value::Object(render(instance, ctx, lookup, shape))
}

/// The `POST /instances` response body's `instance` (spec §8.4): the detail view plus
/// the requested `locality`. The generated root `password` is not in the read model
/// (it is sealed in the event); the handler inserts it when it has one.
pub fn create_view(instance: &Instance, ctx: &ViewCtx, lookup: &dyn Lookup) -> Value {
    let shape = Shape {
        viewer: Viewer::Show,
        detail: true,
        admin: ctx.caller_is_admin,
        admin_view: false,
    };
    let mut m = render(instance, ctx, lookup, shape);
    if let Some(locality) = &instance.locality {
        m.insert("locality".into(), json!(locality));
    }
    Value::Object(m)
}

/// `GET /instances/{id}` (spec §5.1 "show", §9): the detail view with the show
/// viewer's status rules plus `locality` (a replica reports its primary's, as it was
/// scheduled into the primary's server group), and the volume usage the guest last
/// reported (spec §5.3).
pub fn show_view(instance: &Instance, ctx: &ViewCtx, lookup: &dyn Lookup) -> Value {
    let shape = Shape {
        viewer: Viewer::Show,
        detail: true,
        admin: ctx.caller_is_admin,
        admin_view: false,
    };
    let mut m = render(instance, ctx, lookup, shape);
    let status = instance.status_inputs().status(Viewer::Show, false);
    if let (Some(Value::Object(volume)), Some((used, total))) =
        (m.get_mut("volume"), ctx.volume_usage(instance))
    {
        // Upstream asks the guest except in these states, and omits a zero usage.
        let asked = !matches!(
            status,
            "BUILD" | "REBOOT" | "RESIZE" | "PROMOTE" | "EJECT" | "UPGRADE" | "SHUTDOWN"
        );
        if asked && used > 0.0 && total > 0.0 {
            // At least 0.01 when non-zero, as upstream rounds.
            let used = round2(used).max(0.01);
            volume.insert("used".into(), json!(used));
            volume.insert("used_percent".into(), json!(round2(100.0 * used / total)));
        }
    }
    let locality = match instance.replica_of {
        Some(primary) => lookup.locality(primary),
        None => instance.locality.clone(),
    };
    if let Some(locality) = locality {
        m.insert("locality".into(), json!(locality));
    }
    Value::Object(m)
}

/// Builds the fields every view shares, then the detail ones if asked for.
pub(crate) fn render(
    inst: &Instance,
    ctx: &ViewCtx,
    lookup: &dyn Lookup,
    shape: Shape,
) -> Map<String, Value> {
    let id = inst.id_or_nil().to_string();
    let inputs = ctx.status_inputs(inst);
    let mut m = Map::new();
    m.insert("id".into(), json!(id));
    m.insert("name".into(), json!(inst.name));
    m.insert(
        "status".into(),
        json!(inputs.status(shape.viewer, shape.admin_view)),
    );
    m.insert(
        "operating_status".into(),
        json!(inputs.operating_status(shape.viewer, ctx.now, ctx.heartbeat_expiry)),
    );
    m.insert("links".into(), ctx.links("instances", &id));
    m.insert(
        "flavor".into(),
        json!({"id": inst.flavor.id, "links": ctx.links("flavors", &inst.flavor.id)}),
    );
    m.insert("datastore".into(), datastore(inst, shape.detail));
    m.insert("region".into(), json!(inst.region));
    let addresses = visible_addresses(inst, shape.viewer);
    m.insert("access".into(), access(inst, addresses));
    if shape.admin {
        m.insert("tenant_id".into(), json!(inst.project_id));
    }
    // Volume support is a property of the datastore version; a soft-deleted instance
    // has none recorded, so upstream shows no `volume` key for it (spec §10.1).
    if let (Some(volume), Some(_)) = (&inst.volume, &inst.datastore) {
        m.insert("volume".into(), json!({"size": volume.size}));
    }
    if !addresses.is_empty() {
        m.insert(
            "addresses".into(),
            Value::Array(addresses.iter().map(address).collect()),
        );
        m.insert(
            "ip".into(),
            Value::Array(addresses.iter().map(|a| json!(a.address)).collect()),
        );
    }
    if let Some(primary) = inst.replica_of {
        m.insert("replica_of".into(), reference(ctx, primary));
    }
    if let Some(me) = inst.id {
        let replicas = lookup.live_replicas(me);
        if !replicas.is_empty() {
            let refs = replicas.into_iter().map(|r| reference(ctx, r)).collect();
            m.insert("replicas".into(), Value::Array(refs));
        }
    }
    if shape.detail {
        detail_fields(&mut m, inst, ctx, lookup, shape);
    }
    m
}

fn detail_fields(
    m: &mut Map<String, Value>,
    inst: &Instance,
    ctx: &ViewCtx,
    lookup: &dyn Lookup,
    shape: Shape,
) {
    m.insert("created".into(), json!(timestamp(&inst.created)));
    m.insert("updated".into(), json!(timestamp(&inst.updated)));
    m.insert(
        "service_status_updated".into(),
        json!(timestamp(&ctx.status_inputs(inst).service_updated)),
    );
    if let Some(fault) = &inst.fault {
        // Details are diagnostic text (upstream: a traceback): admins only.
        let details = if shape.admin {
            json!(fault.details)
        } else {
            Value::Null
        };
        m.insert(
            "fault".into(),
            json!({
                "message": fault.message,
                "created": timestamp(&fault.created),
                "details": details,
            }),
        );
    }
    if let Some(cfg) = inst.configuration_id {
        let cfg_id = cfg.to_string();
        m.insert(
            "configuration".into(),
            json!({
                "id": cfg_id,
                "name": lookup.configuration_name(cfg),
                "links": ctx.links("configurations", &cfg_id),
            }),
        );
    }
    if shape.admin {
        m.insert("server_id".into(), json!(inst.server_id));
        m.insert("volume_id".into(), json!(inst.volume_id));
        // Every instance gets a per-instance RPC key at create (upstream default on).
        m.insert("encrypted_rpc_messaging".into(), json!(true));
    }
}

/// `{type, version}` (+ `version_number` in detail views), or nulls when the version
/// reference was cleared by deletion.
fn datastore(inst: &Instance, detail: bool) -> Value {
    match &inst.datastore {
        Some(ds) if detail => json!({
            "type": ds.datastore_name,
            "version": ds.version_name,
            "version_number": ds.version_number,
        }),
        Some(ds) => json!({"type": ds.datastore_name, "version": ds.version_name}),
        None => json!({"type": null, "version": null}),
    }
}

/// The addresses a viewer sees (spec §5.1, §6; lifecycle §1): none while the viewer
/// sees the synthetic `BUILD` (upstream does not ask the network service then), none
/// without a compute server (reported as `SHUTDOWN` with no addresses).
pub(crate) fn visible_addresses(inst: &Instance, viewer: Viewer) -> &[Address] {
    let synthetic_build = match viewer {
        Viewer::List => inst.task == aggregates::instance::Task::Building,
        Viewer::Show | Viewer::Command => inst.task.action() == "BUILDING",
    };
    if synthetic_build || inst.compute.is_none() {
        &[]
    } else {
        &inst.addresses
    }
}

/// `access` (spec §5.1): the stored object when non-empty; else, with visible
/// addresses, whether any is public; else `{}`.
fn access(inst: &Instance, addresses: &[Address]) -> Value {
    match &inst.access {
        Some(Value::Object(stored)) if !stored.is_empty() => Value::Object(stored.clone()),
        _ if !addresses.is_empty() => {
            json!({"is_public": addresses.iter().any(|a| a.kind == "public")})
        }
        _ => json!({}),
    }
}

/// One `addresses` item: floating (public) addresses carry no `network` key.
fn address(a: &Address) -> Value {
    let mut m = Map::new();
    m.insert("address".into(), json!(a.address));
    m.insert("type".into(), json!(a.kind));
    if let Some(network) = &a.network {
        m.insert("network".into(), json!(network));
    }
    if let Some(port) = a.port {
        m.insert("port".into(), json!(port));
    }
    Value::Object(m)
}

/// `{id, links}` of another instance (`replica_of`, `replicas[]`).
fn reference(ctx: &ViewCtx, id: Uuid) -> Value {
    let id = id.to_string();
    json!({"id": id, "links": ctx.links("instances", &id)})
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod bytes_tests;

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
