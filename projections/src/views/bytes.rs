//! The hot read paths (`GET /instances`, `GET /instances/detail`, `GET /instances/{id}`)
//! rendered straight to JSON bytes.
//!
//! Why: building a `serde_json::Value` per item (a B-tree map per object, a `String` per
//! key and value) and serializing it afterwards cost ~80,000 instructions per list item,
//! most of it in `malloc`/`free`; writing the bytes directly from the folded record,
//! borrowed under its map guard (no clone), costs a few thousand. Typed
//! `#[derive(Serialize)]` view structs borrowing the record were measured too, and take
//! 3.4-3.9 times the instructions of this writer, most of it in `serde_json`'s per-byte
//! string escaping (docs/performance.md, "JSON views").
//!
//! Compatibility: the output is byte for byte what serializing the [`super::basic_view`],
//! [`super::detail_view`] and [`super::show_view`] values gives (those stay the reference
//! and serve the other callers): keys in the byte order of a `serde_json::Map` (a
//! `BTreeMap`: this crate does not enable `preserve_order`), strings escaped as
//! `serde_json` escapes them, numbers formatted by `serde_json`. The tests in
//! `bytes_tests.rs` compare both renderers over generated instances.
//!
//! Locking: the same rule as the models (readers never hold a guard of one map while
//! taking another). The facts that live outside the record (replicas, the primary's
//! locality, the configuration group's name) are looked up before the record's guard is
//! taken; if the record changed in between so that they no longer apply, the lookup is
//! repeated.

use aggregates::instance::{
    Address, DatastoreRef, Fault, Instance, StatusInputs, Viewer, VolumeSpec,
};
use chrono::{DateTime, Datelike, Timelike, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::{round2, timestamp, visible_addresses, Lookup, ViewCtx};
use crate::models::ModelSet;
use crate::{InstanceModels, LIST_PAGE_MAX};

/// Which representation to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ItemKind {
    /// `GET /instances` item ([`super::basic_view`]).
    Basic,
    /// `GET /instances/detail` item ([`super::detail_view`]).
    Detail,
    /// `GET /instances/{id}` ([`super::show_view`]).
    Show,
}

impl ItemKind {
    fn viewer(self) -> Viewer {
        match self {
            ItemKind::Basic | ItemKind::Detail => Viewer::List,
            ItemKind::Show => Viewer::Show,
        }
    }

    fn detail(self) -> bool {
        !matches!(self, ItemKind::Basic)
    }
}

/// The request-dependent parts of every link, JSON-escaped once per request: the
/// versioned prefix `https://host/v1.0/<caller project>/` and the bookmark prefix
/// `https://host/` (spec §3.3).
pub struct LinkPrefixes {
    versioned: Vec<u8>,
    bookmark: Vec<u8>,
}

impl LinkPrefixes {
    /// The prefixes of `ctx` (as [`ViewCtx::links`] builds them).
    pub fn new(ctx: &ViewCtx) -> LinkPrefixes {
        let base = ctx.base_url.trim_end_matches('/');
        let mut bookmark = Vec::with_capacity(base.len() + 1);
        escape_into(&mut bookmark, base);
        bookmark.push(b'/');
        let mut versioned = Vec::with_capacity(bookmark.len() + 48);
        escape_into(&mut versioned, base);
        versioned.extend_from_slice(b"/v");
        escape_into(&mut versioned, &ctx.api_version);
        versioned.push(b'/');
        escape_into(&mut versioned, &ctx.caller_project);
        versioned.push(b'/');
        LinkPrefixes {
            versioned,
            bookmark,
        }
    }

    /// `[{"href": self, "rel": "self"}, {"href": bookmark, "rel": "bookmark"}]` of
    /// `collection/id`; `collection` must need no escaping (a static name).
    fn write(&self, out: &mut Vec<u8>, collection: &str, id: &str) {
        self.write_with(out, collection, |out| escape_into(out, id));
    }

    /// [`LinkPrefixes::write`] for an id that needs no escaping (a UUID's text).
    fn write_uuid(&self, out: &mut Vec<u8>, collection: &str, id: &str) {
        self.write_with(out, collection, |out| out.extend_from_slice(id.as_bytes()));
    }

    fn write_with(&self, out: &mut Vec<u8>, collection: &str, id: impl Fn(&mut Vec<u8>)) {
        out.extend_from_slice(b"[{\"href\":\"");
        out.extend_from_slice(&self.versioned);
        out.extend_from_slice(collection.as_bytes());
        out.push(b'/');
        id(out);
        out.extend_from_slice(b"\",\"rel\":\"self\"},{\"href\":\"");
        out.extend_from_slice(&self.bookmark);
        out.extend_from_slice(collection.as_bytes());
        out.push(b'/');
        id(out);
        out.extend_from_slice(b"\",\"rel\":\"bookmark\"}]");
    }
}

/// Facts of a view that are not in the instance's own record, looked up beforehand.
#[derive(Debug, Default)]
pub(crate) struct Related {
    /// Live replicas of the instance, ascending.
    pub replicas: Vec<Uuid>,
    /// The configuration group's name, if the instance has one attached (detail views).
    pub configuration_name: Option<String>,
    /// Show view of a replica: its primary's locality.
    pub primary_locality: Option<String>,
}

/// The stored `access` of an instance: the compact JSON text the records keep, or the
/// value of an [`Instance`] that has it inline.
#[derive(Clone, Copy, Debug)]
pub(crate) enum StoredAccess<'a> {
    Text(Option<&'a str>),
    Value(Option<&'a Value>),
}

/// Writes one instance view (an object) to `out`: its keys in byte order, as a
/// `serde_json::Map` serializes them, `access` to `id` and `ip` first, then `links` to
/// `volume_id`.
pub(crate) fn write_instance(
    out: &mut Vec<u8>,
    inst: &Instance,
    access: StoredAccess<'_>,
    ctx: &ViewCtx,
    links: &LinkPrefixes,
    related: &Related,
    kind: ItemKind,
) {
    let viewer = kind.viewer();
    let inputs = ctx.status_inputs(inst);
    let mut id_buf = Uuid::encode_buffer();
    let v = Facts {
        viewer,
        kind,
        detail: kind.detail(),
        admin: ctx.caller_is_admin,
        status: inputs.status(viewer, false),
        inputs,
        addresses: visible_addresses(inst, viewer),
        id: inst.id_or_nil().hyphenated().encode_lower(&mut id_buf),
    };
    write_access_to_ip(out, inst, access, links, related, &v);
    write_links_to_volume(out, inst, ctx, links, related, &v);
    out.push(b'}');
}

/// What both halves of an instance view need, worked out once.
struct Facts<'a> {
    viewer: Viewer,
    kind: ItemKind,
    detail: bool,
    admin: bool,
    status: &'static str,
    inputs: StatusInputs,
    addresses: &'a [Address],
    id: &'a str,
}

/// The keys `access` to `ip`, opening the object.
fn write_access_to_ip(
    out: &mut Vec<u8>,
    inst: &Instance,
    access: StoredAccess<'_>,
    links: &LinkPrefixes,
    related: &Related,
    v: &Facts<'_>,
) {
    out.extend_from_slice(b"{\"access\":");
    write_access(out, access, v.addresses);
    if !v.addresses.is_empty() {
        write_array(out, b",\"addresses\":[", v.addresses, write_address);
    }
    if v.detail {
        if let Some(cfg) = inst.configuration_id {
            write_configuration(out, cfg, links, related.configuration_name.as_deref());
        }
        out.extend_from_slice(b",\"created\":");
        write_timestamp(out, &inst.created);
    }
    out.extend_from_slice(b",\"datastore\":");
    write_datastore(out, inst.datastore.as_ref(), v.detail);
    if v.detail && v.admin {
        out.extend_from_slice(b",\"encrypted_rpc_messaging\":true");
    }
    if v.detail {
        if let Some(fault) = &inst.fault {
            write_fault(out, fault, v.admin);
        }
    }
    out.extend_from_slice(b",\"flavor\":{\"id\":");
    write_str(out, &inst.flavor.id);
    out.extend_from_slice(b",\"links\":");
    links.write(out, "flavors", &inst.flavor.id);
    out.extend_from_slice(b"},\"id\":\"");
    out.extend_from_slice(v.id.as_bytes());
    out.push(b'"');
    if !v.addresses.is_empty() {
        write_array(out, b",\"ip\":[", v.addresses, |out, a| {
            write_str(out, &a.address)
        });
    }
}

/// The keys `links` to `volume_id` (the object is closed by the caller).
fn write_links_to_volume(
    out: &mut Vec<u8>,
    inst: &Instance,
    ctx: &ViewCtx,
    links: &LinkPrefixes,
    related: &Related,
    v: &Facts<'_>,
) {
    out.extend_from_slice(b",\"links\":");
    links.write_uuid(out, "instances", v.id);
    if v.kind == ItemKind::Show {
        // A replica reports its primary's, as it was scheduled into its server group.
        let locality = match inst.replica_of {
            Some(_) => related.primary_locality.as_deref(),
            None => inst.locality.as_deref(),
        };
        write_opt_key(out, b",\"locality\":", locality);
    }
    out.extend_from_slice(b",\"name\":");
    write_str(out, &inst.name);
    out.extend_from_slice(b",\"operating_status\":");
    write_str(
        out,
        v.inputs
            .operating_status(v.viewer, ctx.now, ctx.heartbeat_expiry),
    );
    out.extend_from_slice(b",\"region\":");
    write_str(out, &inst.region);
    if let Some(primary) = inst.replica_of {
        out.extend_from_slice(b",\"replica_of\":");
        write_reference(out, links, primary);
    }
    if inst.id.is_some() && !related.replicas.is_empty() {
        write_array(out, b",\"replicas\":[", &related.replicas, |out, r| {
            write_reference(out, links, *r);
        });
    }
    if v.detail && v.admin {
        out.extend_from_slice(b",\"server_id\":");
        write_opt_str(out, inst.server_id.as_deref());
    }
    if v.detail {
        out.extend_from_slice(b",\"service_status_updated\":");
        write_timestamp(out, &v.inputs.service_updated);
    }
    out.extend_from_slice(b",\"status\":");
    write_str(out, v.status);
    if v.admin {
        out.extend_from_slice(b",\"tenant_id\":");
        write_str(out, &inst.project_id);
    }
    if v.detail {
        out.extend_from_slice(b",\"updated\":");
        write_timestamp(out, &inst.updated);
    }
    // Volume support is a property of the datastore version; a soft-deleted instance
    // has none recorded, so upstream shows no `volume` key for it (spec §10.1).
    if let (Some(volume), Some(_)) = (&inst.volume, &inst.datastore) {
        let usage = if v.kind == ItemKind::Show {
            ctx.volume_usage(inst)
        } else {
            None
        };
        write_volume(out, volume, usage, v.status);
    }
    if v.detail && v.admin {
        out.extend_from_slice(b",\"volume_id\":");
        write_opt_str(out, inst.volume_id.as_deref());
    }
}

/// `key` (written with its leading comma and opening bracket) and the items, each
/// written by `item`, up to the closing bracket.
fn write_array<T>(out: &mut Vec<u8>, key: &[u8], items: &[T], item: impl Fn(&mut Vec<u8>, &T)) {
    out.extend_from_slice(key);
    for (i, x) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        item(out, x);
    }
    out.push(b']');
}

/// `key` (with its leading comma and colon) and the string, when there is one.
fn write_opt_key(out: &mut Vec<u8>, key: &[u8], value: Option<&str>) {
    if let Some(value) = value {
        out.extend_from_slice(key);
        write_str(out, value);
    }
}

/// `"configuration": {"id", "links", "name"}` of a detail view.
fn write_configuration(out: &mut Vec<u8>, cfg: Uuid, links: &LinkPrefixes, name: Option<&str>) {
    let mut cfg_buf = Uuid::encode_buffer();
    let cfg = cfg.hyphenated().encode_lower(&mut cfg_buf);
    out.extend_from_slice(b",\"configuration\":{\"id\":\"");
    out.extend_from_slice(cfg.as_bytes());
    out.extend_from_slice(b"\",\"links\":");
    links.write_uuid(out, "configurations", cfg);
    out.extend_from_slice(b",\"name\":");
    write_opt_str(out, name);
    out.push(b'}');
}

/// The `datastore` object: type and version, and the version number in detail views.
fn write_datastore(out: &mut Vec<u8>, datastore: Option<&DatastoreRef>, detail: bool) {
    match datastore {
        Some(ds) => {
            out.extend_from_slice(b"{\"type\":");
            write_str(out, &ds.datastore_name);
            out.extend_from_slice(b",\"version\":");
            write_str(out, &ds.version_name);
            if detail {
                out.extend_from_slice(b",\"version_number\":");
                write_str(out, &ds.version_number);
            }
            out.push(b'}');
        }
        None => out.extend_from_slice(b"{\"type\":null,\"version\":null}"),
    }
}

/// `"fault": {"created", "details", "message"}` of a detail view.
fn write_fault(out: &mut Vec<u8>, fault: &Fault, admin: bool) {
    out.extend_from_slice(b",\"fault\":{\"created\":");
    write_timestamp(out, &fault.created);
    out.extend_from_slice(b",\"details\":");
    // Details are diagnostic text (upstream: a traceback): admins only.
    write_opt_str(out, admin.then_some(fault.details.as_str()));
    out.extend_from_slice(b",\"message\":");
    write_str(out, &fault.message);
    out.push(b'}');
}

/// `"volume": {"size"}`, with `used` and `used_percent` from `usage` (show views only)
/// unless the instance is in a state upstream does not ask the guest in.
fn write_volume(out: &mut Vec<u8>, volume: &VolumeSpec, usage: Option<(f64, f64)>, status: &str) {
    out.extend_from_slice(b",\"volume\":{\"size\":");
    write_json(out, &volume.size);
    if let Some((used, total)) = usage {
        // Upstream asks the guest except in these states, and omits a zero usage.
        let asked = !matches!(
            status,
            "BUILD" | "REBOOT" | "RESIZE" | "PROMOTE" | "EJECT" | "UPGRADE" | "SHUTDOWN"
        );
        if asked && used > 0.0 && total > 0.0 {
            // At least 0.01 when non-zero, as upstream rounds.
            let used = round2(used).max(0.01);
            out.extend_from_slice(b",\"used\":");
            write_json(out, &used);
            out.extend_from_slice(b",\"used_percent\":");
            write_json(out, &round2(100.0 * used / total));
        }
    }
    out.push(b'}');
}

/// `access` (spec §5.1): the stored object when non-empty; else, with visible
/// addresses, whether any is public; else `{}`.
fn write_access(out: &mut Vec<u8>, access: StoredAccess<'_>, addresses: &[Address]) {
    match access {
        StoredAccess::Value(Some(v @ Value::Object(m))) if !m.is_empty() => write_json(out, v),
        // The text is `serde_json`'s compact output of the stored value: an object
        // starts with `{` and the empty one is exactly `{}`.
        StoredAccess::Text(Some(text)) if text.starts_with('{') && text != "{}" => {
            if has_number_with_fraction(text) {
                // Parsing a float may land one unit in the last place away from the
                // text; re-serialize what a parse gives, as the value renderer does.
                match serde_json::from_str::<Value>(text) {
                    Ok(v) => write_json(out, &v),
                    Err(_) => out.extend_from_slice(b"{}"),
                }
            } else {
                out.extend_from_slice(text.as_bytes());
            }
        }
        _ if !addresses.is_empty() => {
            if addresses.iter().any(|a| a.kind == "public") {
                out.extend_from_slice(b"{\"is_public\":true}");
            } else {
                out.extend_from_slice(b"{\"is_public\":false}");
            }
        }
        _ => out.extend_from_slice(b"{}"),
    }
}

/// Whether compact JSON `text` has a number outside strings that `serde_json` would
/// parse as a float (with `.`, `e` or `E`). Integers and everything else re-serialize
/// to the same text.
fn has_number_with_fraction(text: &str) -> bool {
    let mut in_string = false;
    let mut escaped = false;
    for b in text.bytes() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else {
            match b {
                b'"' => in_string = true,
                b'.' | b'e' | b'E' => return true,
                _ => {}
            }
        }
    }
    false
}

/// One `addresses` item: floating (public) addresses carry no `network` key.
fn write_address(out: &mut Vec<u8>, a: &Address) {
    out.extend_from_slice(b"{\"address\":");
    write_str(out, &a.address);
    if let Some(network) = &a.network {
        out.extend_from_slice(b",\"network\":");
        write_str(out, network);
    }
    if let Some(port) = a.port {
        out.extend_from_slice(b",\"port\":");
        out.extend_from_slice(port.to_string().as_bytes());
    }
    out.extend_from_slice(b",\"type\":");
    write_str(out, &a.kind);
    out.push(b'}');
}

/// `{id, links}` of another instance (`replica_of`, `replicas[]`).
fn write_reference(out: &mut Vec<u8>, links: &LinkPrefixes, id: Uuid) {
    let mut buf = Uuid::encode_buffer();
    let id = id.hyphenated().encode_lower(&mut buf);
    out.extend_from_slice(b"{\"id\":\"");
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(b"\",\"links\":");
    links.write_uuid(out, "instances", id);
    out.push(b'}');
}

/// Anything through `serde_json` (numbers, stored values): its formatting is the
/// reference.
fn write_json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
    // Writing to a `Vec` cannot fail, and these values serialize infallibly.
    let _ = serde_json::to_writer(&mut *out, v);
}

fn write_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => write_str(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

/// A JSON string, quoted and escaped.
pub(crate) fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    escape_into(out, s);
    out.push(b'"');
}

/// `s` escaped as `serde_json` escapes strings: `"` and `\` with a backslash, the
/// control characters below U+0020 as `\b \t \n \f \r` or `\u00xx` (lower-case hex),
/// everything else as is.
#[inline]
pub(crate) fn escape_into(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    // No early exit: the compiler turns this into a few vector compares per 16 bytes,
    // and names, ids and hosts never need escaping.
    let special = bytes.iter().fold(false, |any, &b| {
        any | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if special {
        escape_slow(out, bytes);
    } else {
        out.extend_from_slice(bytes);
    }
}

#[cold]
#[inline(never)]
fn escape_slow(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x09 => b"\\t",
            0x0a => b"\\n",
            0x0c => b"\\f",
            0x0d => b"\\r",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if short.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(short);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// [`timestamp`] as a JSON string, without its allocations for the usual years.
fn write_timestamp(out: &mut Vec<u8>, at: &DateTime<Utc>) {
    let year = at.year();
    if !(0..=9999).contains(&year) {
        // chrono adds a sign and more digits; let it.
        return write_str(out, &timestamp(at));
    }
    // chrono's `%S` shows a leap second as 60.
    let second = at.second() + at.nanosecond() / 1_000_000_000;
    let two = |n: u32| [b'0' + (n / 10 % 10) as u8, b'0' + (n % 10) as u8];
    let y = year as u32;
    out.push(b'"');
    out.extend_from_slice(&two(y / 100));
    out.extend_from_slice(&two(y % 100));
    out.push(b'-');
    out.extend_from_slice(&two(at.month()));
    out.push(b'-');
    out.extend_from_slice(&two(at.day()));
    out.push(b'T');
    out.extend_from_slice(&two(at.hour()));
    out.push(b':');
    out.extend_from_slice(&two(at.minute()));
    out.push(b':');
    out.extend_from_slice(&two(second));
    out.push(b'"');
}

/// Writes the view of a folded instance that has its `access` inline (what
/// [`InstanceModels::instance`] returns), looking related facts up through `lookup`: the
/// byte twin of [`super::basic_view`], [`super::detail_view`] and [`super::show_view`].
pub fn write_view(
    out: &mut Vec<u8>,
    inst: &Instance,
    ctx: &ViewCtx,
    lookup: &dyn Lookup,
    kind: ItemKind,
) {
    let keys = RelatedKeys::of(inst, kind);
    let related = Related {
        replicas: inst
            .id
            .map(|me| lookup.live_replicas(me))
            .unwrap_or_default(),
        configuration_name: keys
            .configuration
            .and_then(|c| lookup.configuration_name(c)),
        primary_locality: keys.primary.and_then(|p| lookup.locality(p)),
    };
    let access = StoredAccess::Value(inst.access.as_ref());
    let links = LinkPrefixes::new(ctx);
    write_instance(out, inst, access, ctx, &links, &related, kind);
}

/// Roughly the bytes of one list item, to size buffers.
pub const ITEM_BYTES_HINT: usize = 900;

/// How many record lookups a render may take when the record changes between the
/// lookup of its related facts and the render (a writer at the same instant).
const RETRIES: usize = 8;

/// The items of one `GET /instances` (or `/detail`) page, written to `out` as the
/// comma-separated elements of the `instances` array; the result is the page's next
/// marker. Same rows, order and marker as [`InstanceModels::list_page`]: the ids after
/// `marker` in ascending order, cut at `limit` (capped at [`LIST_PAGE_MAX`]), then
/// sorted by `created` descending (stable).
///
/// Costs O(log n + page): a range scan of the project's ordered set and one record
/// lookup per row, whatever the other projects hold.
#[allow(clippy::too_many_arguments)]
pub fn write_list_items(
    models: &InstanceModels,
    project: &str,
    marker: Option<&str>,
    limit: usize,
    kind: ItemKind,
    ctx: &ViewCtx,
    configuration_name: &dyn Fn(Uuid) -> Option<String>,
    out: &mut Vec<u8>,
) -> Option<Uuid> {
    let set = models.current();
    let limit = limit.clamp(1, LIST_PAGE_MAX);
    let mut ids = set.listed_ids_after(project, marker, limit + 1);
    let has_more = ids.len() > limit;
    ids.truncate(limit);
    let next_marker = if has_more { ids.last().copied() } else { None };
    // (created, id) of the rows still listed; the order upstream shows them in.
    let mut rows: Vec<(DateTime<Utc>, Uuid)> = ids
        .iter()
        .filter_map(|&id| {
            set.with_record(id, |i, _| {
                (i.is_live() && i.project_id == project).then_some((i.created, id))
            })
            .flatten()
        })
        .collect();
    rows.sort_by_key(|(created, _)| std::cmp::Reverse(*created));
    let links = LinkPrefixes::new(ctx);
    let mut first = true;
    for (_, id) in rows {
        let start = out.len();
        if !first {
            out.push(b',');
        }
        let written = write_one(&set, id, kind, ctx, &links, configuration_name, out, &|i| {
            i.is_live() && i.project_id == project
        });
        if written {
            first = false;
        } else {
            // The writer deleted it meanwhile.
            out.truncate(start);
        }
    }
    next_marker
}

/// `GET /instances/{id}`: the show view written to `out`, or `false` (nothing written)
/// when the instance does not exist, is soft-deleted, or belongs to another project and
/// the caller is not admin, as [`InstanceModels::instance_visible_to`] decides.
pub fn write_show(
    models: &InstanceModels,
    id: Uuid,
    ctx: &ViewCtx,
    configuration_name: &dyn Fn(Uuid) -> Option<String>,
    out: &mut Vec<u8>,
) -> bool {
    let set = models.current();
    let links = LinkPrefixes::new(ctx);
    let (project, admin) = (ctx.caller_project.as_str(), ctx.caller_is_admin);
    write_one(
        &set,
        id,
        ItemKind::Show,
        ctx,
        &links,
        configuration_name,
        out,
        &|i| i.is_live() && (admin || i.project_id == project),
    )
}

/// What a render under the record's guard came to.
enum Render {
    /// Written to the buffer.
    Written,
    /// Not visible to this request: nothing written.
    Hidden,
    /// The record needs related facts other than those looked up: these.
    Needs(RelatedKeys),
}

/// The ids whose facts a view needs besides the instance's own id (its replicas): its
/// configuration group (detail views) and its primary (the show view's locality).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct RelatedKeys {
    configuration: Option<Uuid>,
    primary: Option<Uuid>,
}

impl RelatedKeys {
    fn of(inst: &Instance, kind: ItemKind) -> RelatedKeys {
        RelatedKeys {
            configuration: inst.configuration_id.filter(|_| kind.detail()),
            primary: inst.replica_of.filter(|_| kind == ItemKind::Show),
        }
    }
}

/// Writes the view of `id` under its record's guard if `visible` holds. The related
/// facts are looked up before taking the guard: the replicas always (another map), the
/// configuration name and the primary's locality once the record says it has them
/// (the usual instance has neither, so one record lookup suffices). `false`: nothing
/// written.
#[allow(clippy::too_many_arguments)]
fn write_one(
    set: &ModelSet,
    id: Uuid,
    kind: ItemKind,
    ctx: &ViewCtx,
    links: &LinkPrefixes,
    configuration_name: &dyn Fn(Uuid) -> Option<String>,
    out: &mut Vec<u8>,
    visible: &dyn Fn(&Instance) -> bool,
) -> bool {
    let mut keys = RelatedKeys::default();
    let mut related = Related {
        replicas: set.live_replicas(id),
        ..Related::default()
    };
    for attempt in 1..=RETRIES {
        let render = set.with_record(id, |inst, access| {
            if !visible(inst) {
                return Render::Hidden;
            }
            let needed = RelatedKeys::of(inst, kind);
            // After a few rounds (a writer changing this very record each time), render
            // with what was looked up: the value renderer has the same race.
            if needed != keys && attempt < RETRIES {
                return Render::Needs(needed);
            }
            let access = StoredAccess::Text(access);
            write_instance(out, inst, access, ctx, links, &related, kind);
            Render::Written
        });
        match render {
            None | Some(Render::Hidden) => return false,
            Some(Render::Written) => return true,
            Some(Render::Needs(needed)) => {
                keys = needed;
                related.configuration_name = needed.configuration.and_then(configuration_name);
                related.primary_locality = needed.primary.and_then(|p| set.locality(p));
            }
        }
    }
    false
}
