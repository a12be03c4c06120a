//! The admin ("mgmt") views: `GET /mgmt/instances` items and `GET /mgmt/instances/{id}`
//! (spec `instances-api.md` §5.2, §10).
//!
//! Upstream fills part of these views from the compute and block-storage services.
//! troved has no such services, so those fields are simulated from the instance record,
//! deterministically (a re-read gives the same JSON). Each simulated value is named by
//! a constant or a function below with the reason for its choice.

use aggregates::instance::{Instance, Viewer};
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::{render, timestamp, Lookup, Shape, ViewCtx};

/// `server.tenant_id`: upstream shows the compute server's owner, which is Trove's
/// service project, never the instance's project. We have no real one; `service` is
/// the conventional name of that project in OpenStack deployments.
pub const SERVER_TENANT_ID: &str = "service";

/// `server.host` when the instance asked for no availability zone. Upstream shows
/// Nova's opaque `hostId`; we show the zone the instance was placed in, or this.
pub const SIMULATED_HOST: &str = "sim-host";

/// `volume.availability_zone` when none was requested: Cinder's default zone name.
pub const DEFAULT_VOLUME_ZONE: &str = "nova";

/// `volume.attachments[].device`: the first extra disk of a KVM guest, where upstream
/// attaches the data volume (its `device_path` default).
pub const VOLUME_DEVICE: &str = "/dev/vdb";

/// `GET /mgmt/instances` item: the detail view (with every admin-only field, as the
/// caller is admin), status rule 0 (soft-deleted → `SHUTDOWN`), plus `server`,
/// `service_status`, `tenant_id`, `deleted`, `deleted_at`, `task_description`.
pub fn mgmt_list_item(instance: &Instance, ctx: &ViewCtx, lookup: &dyn Lookup) -> Value {
    let shape = Shape {
        viewer: Viewer::List,
        detail: true,
        admin: true,
        admin_view: true,
    };
    let mut m = render(instance, ctx, lookup, shape);
    admin_fields(&mut m, instance, ctx);
    m.insert(
        "server".into(),
        server(instance).map_or(Value::Null, Value::Object),
    );
    Value::Object(m)
}

/// `GET /mgmt/instances/{id}`: the list item with the show viewer's status rules, plus
/// `server.addresses`, `volume` replaced by a block-storage style object (or
/// `{"id"}` / `null`), and `guest_status`. Deliberately no `locality` and no
/// `volume.used` layout (spec §5.2).
pub fn mgmt_show(instance: &Instance, ctx: &ViewCtx, lookup: &dyn Lookup) -> Value {
    let shape = Shape {
        viewer: Viewer::Show,
        detail: true,
        admin: true,
        admin_view: true,
    };
    let mut m = render(instance, ctx, lookup, shape);
    admin_fields(&mut m, instance, ctx);
    let server = match (server(instance), &instance.server_id) {
        (Some(mut s), _) => {
            s.insert("addresses".into(), server_addresses(instance));
            Value::Object(s)
        }
        // The server is gone (deleted instance) but its id is recorded (spec §5.2).
        (None, Some(id)) => json!({"id": id}),
        (None, None) => Value::Null,
    };
    m.insert("server".into(), server);
    m.insert("volume".into(), volume(instance));
    let service = ctx
        .status_inputs(instance)
        .effective_service(ctx.now, ctx.heartbeat_expiry);
    m.insert(
        "guest_status".into(),
        json!({"state_description": service.description()}),
    );
    // Upstream's root history: only once root was ever enabled.
    if let Some((at, by)) = instance.root_enabled_history.as_deref() {
        m.insert("root_enabled".into(), json!(timestamp(at)));
        m.insert("root_enabled_by".into(), json!(by));
    }
    Value::Object(m)
}

/// The fields both admin views add to the detail view.
fn admin_fields(m: &mut Map<String, Value>, inst: &Instance, ctx: &ViewCtx) {
    // After the heartbeat rule, like `operating_status` (lifecycle §4).
    let service = ctx
        .status_inputs(inst)
        .effective_service(ctx.now, ctx.heartbeat_expiry);
    m.insert("service_status".into(), json!(service.api_status()));
    m.insert("tenant_id".into(), json!(inst.project_id));
    m.insert("deleted".into(), json!(inst.deleted));
    m.insert(
        "deleted_at".into(),
        json!(inst.deleted_at.as_ref().map(timestamp)),
    );
    m.insert("task_description".into(), json!(inst.task.description()));
}

/// The compute server as the compute API would describe it, when one exists (a
/// server was created and the instance is not soft-deleted).
///
/// Simulated: `name` is the instance's current name (upstream names the server after
/// the instance at create); `status` is the recorded compute status (the real one, no
/// synthetic `BUILD`); `host` and `tenant_id` see [`SIMULATED_HOST`] and
/// [`SERVER_TENANT_ID`].
fn server(inst: &Instance) -> Option<Map<String, Value>> {
    let (Some(id), Some(status)) = (&inst.server_id, inst.compute) else {
        return None;
    };
    let mut m = Map::new();
    m.insert("id".into(), json!(id));
    m.insert("name".into(), json!(inst.name));
    m.insert("status".into(), json!(status.as_str()));
    m.insert("tenant_id".into(), json!(SERVER_TENANT_ID));
    m.insert("host".into(), json!(host(inst)));
    Some(m)
}

fn host(inst: &Instance) -> &str {
    inst.availability_zone.as_deref().unwrap_or(SIMULATED_HOST)
}

/// `server.addresses` in the compute API's shape: `{<network>: [{addr, version,
/// OS-EXT-IPS:type, OS-EXT-IPS-MAC:mac_addr}]}`.
///
/// Simulated: the network key is the network id (we know no network names); a
/// floating (public) address is listed under the network of the instance's first fixed
/// address, as Nova lists a floating IP with the port it is bound to (`private` if there
/// is none); the MAC is `fa:16:3e` (OpenStack's prefix) followed by the first three
/// bytes of the instance id, so it is stable. There is no management network.
fn server_addresses(inst: &Instance) -> Value {
    let mac = mac_address(inst.id_or_nil());
    let fixed_network = inst
        .addresses
        .iter()
        .find_map(|a| a.network.clone())
        .unwrap_or_else(|| "private".to_string());
    let mut by_network = Map::new();
    for a in &inst.addresses {
        let (network, kind) = match &a.network {
            Some(n) if a.kind != "public" => (n.clone(), "fixed"),
            _ => (fixed_network.clone(), "floating"),
        };
        let entry = json!({
            "addr": a.address,
            "version": 4,
            "OS-EXT-IPS:type": kind,
            "OS-EXT-IPS-MAC:mac_addr": mac,
        });
        if let Value::Array(list) = by_network
            .entry(network)
            .or_insert_with(|| Value::Array(Vec::new()))
        {
            list.push(entry);
        }
    }
    Value::Object(by_network)
}

fn mac_address(id: Uuid) -> String {
    let b = id.as_bytes();
    format!("fa:16:3e:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2])
}

/// The admin show's `volume` (spec §5.2): a block-storage style object while the
/// volume exists; `{"id"}` when its id is recorded but it is gone (soft-deleted
/// instance: teardown deleted it); `null` without a volume (none requested, or not
/// created yet).
///
/// Simulated: `status` is `in-use` while a server exists (it is attached) else
/// `available`; `created_at` and `attached_at` are the instance's creation time in the
/// block-storage format (microseconds); `attachment_id` is a v5 UUID of the instance
/// id (stable); `used`/`total` are `null` because no guest reports usage.
fn volume(inst: &Instance) -> Value {
    let Some(volume_id) = &inst.volume_id else {
        return Value::Null;
    };
    let (Some(spec), false) = (&inst.volume, inst.deleted) else {
        return json!({"id": volume_id});
    };
    let attachments = match (&inst.server_id, inst.compute) {
        (Some(server_id), Some(_)) => vec![json!({
            "attached_at": storage_timestamp(&inst.created),
            "attachment_id": Uuid::new_v5(&inst.id_or_nil(), b"volume-attachment").to_string(),
            "device": VOLUME_DEVICE,
            "host_name": host(inst),
            "id": volume_id,
            "server_id": server_id,
            "volume_id": volume_id,
        })],
        _ => Vec::new(),
    };
    let status = if attachments.is_empty() {
        "available"
    } else {
        "in-use"
    };
    json!({
        "attachments": attachments,
        "availability_zone": inst.availability_zone.as_deref().unwrap_or(DEFAULT_VOLUME_ZONE),
        "created_at": storage_timestamp(&inst.created),
        "id": volume_id,
        "size": spec.size,
        "status": status,
        "used": inst.volume_usage.map(|(used, _)| used),
        "total": inst.volume_usage.map(|(_, total)| total),
    })
}

/// Block-storage timestamps keep their own format (spec §3.2): microseconds, no zone.
fn storage_timestamp(at: &DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()
}
