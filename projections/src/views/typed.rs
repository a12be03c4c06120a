//! The hot read views (`GET /instances`, `GET /instances/detail`, `GET /instances/{id}`)
//! as typed view structs that borrow the folded record, serialized by `serde_json`.
//!
//! Compatibility: the output is byte for byte what serializing the [`super::basic_view`],
//! [`super::detail_view`] and [`super::show_view`] values gives: the fields are declared
//! in the byte order of a `serde_json::Map`'s keys (a `BTreeMap`: this crate does not
//! enable `preserve_order`), and strings and numbers go through `serde_json` itself.

use std::fmt;

use aggregates::instance::{Address, Instance, Viewer};
use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::Value;
use uuid::Uuid;

use super::bytes::{ItemKind, Related, RelatedKeys, StoredAccess};
use super::{round2, timestamp, visible_addresses, Lookup, ViewCtx};
use crate::models::ModelSet;
use crate::{ReadModels, LIST_PAGE_MAX};

/// The request-dependent parts of every link: the versioned prefix
/// `https://host/v1.0/<caller project>/` and the bookmark prefix `https://host/`
/// (spec §3.3), built once per request.
pub struct LinkPrefixes {
    versioned: String,
    bookmark: String,
}

impl LinkPrefixes {
    /// The prefixes of `ctx` (as [`ViewCtx::links`] builds them).
    pub fn new(ctx: &ViewCtx) -> LinkPrefixes {
        let base = ctx.base_url.trim_end_matches('/');
        LinkPrefixes {
            versioned: format!("{base}/v{}/{}/", ctx.api_version, ctx.caller_project),
            bookmark: format!("{base}/"),
        }
    }
}

/// `[{"href": self, "rel": "self"}, {"href": bookmark, "rel": "bookmark"}]` of
/// `collection/id`.
struct Links<'a, I> {
    prefixes: &'a LinkPrefixes,
    collection: &'static str,
    id: I,
}

impl<I: fmt::Display> Serialize for Links<'_, I> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let href = |prefix| Href {
            prefix,
            collection: self.collection,
            id: &self.id,
        };
        [
            Link {
                href: href(&self.prefixes.versioned),
                rel: "self",
            },
            Link {
                href: href(&self.prefixes.bookmark),
                rel: "bookmark",
            },
        ]
        .serialize(s)
    }
}

#[derive(Serialize)]
#[serde(bound(serialize = "I: fmt::Display"))]
struct Link<'a, I> {
    href: Href<'a, I>,
    rel: &'static str,
}

/// `<prefix><collection>/<id>`, escaped by `collect_str` as it is written: no string is
/// built.
struct Href<'a, I> {
    prefix: &'a str,
    collection: &'static str,
    id: &'a I,
}

impl<I: fmt::Display> Serialize for Href<'_, I> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<I: fmt::Display> fmt::Display for Href<'_, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}/{}", self.prefix, self.collection, self.id)
    }
}

/// [`timestamp`], written without allocating for the usual years.
struct Timestamp<'a>(&'a DateTime<Utc>);

impl Serialize for Timestamp<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl fmt::Display for Timestamp<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = self.0;
        let year = at.year();
        if !(0..=9999).contains(&year) {
            // chrono adds a sign and more digits; let it.
            return f.write_str(&timestamp(at));
        }
        // chrono's `%S` shows a leap second as 60.
        let second = at.second() + at.nanosecond() / 1_000_000_000;
        let y = year as u32;
        let digits = |n: u32| [b'0' + (n / 10 % 10) as u8, b'0' + (n % 10) as u8];
        let [y1, y2] = digits(y / 100);
        let [y3, y4] = digits(y % 100);
        let [mo1, mo2] = digits(at.month());
        let [d1, d2] = digits(at.day());
        let [h1, h2] = digits(at.hour());
        let [mi1, mi2] = digits(at.minute());
        let [s1, s2] = digits(second);
        let text = [
            y1, y2, y3, y4, b'-', mo1, mo2, b'-', d1, d2, b'T', h1, h2, b':', mi1, mi2, b':', s1,
            s2,
        ];
        // ASCII digits and separators only.
        f.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)
    }
}

/// One instance view. Fields in the byte order of their keys; `None` fields are left
/// out (`Some(None)` is a `null`).
#[derive(Serialize)]
struct InstanceView<'a> {
    access: AccessView<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    addresses: Option<Addresses<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    configuration: Option<ConfigurationView<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    created: Option<Timestamp<'a>>,
    datastore: DatastoreView<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    encrypted_rpc_messaging: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fault: Option<FaultView<'a>>,
    flavor: FlavorView<'a>,
    id: Uuid,
    #[serde(skip_serializing_if = "Option::is_none")]
    ip: Option<Ips<'a>>,
    links: Links<'a, Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    locality: Option<&'a str>,
    name: &'a str,
    operating_status: &'static str,
    region: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    replica_of: Option<Reference<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    replicas: Option<References<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    server_id: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    service_status_updated: Option<Timestamp<'a>>,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    tenant_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    updated: Option<Timestamp<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    volume: Option<VolumeView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    volume_id: Option<Option<&'a str>>,
}

/// `access` (spec §5.1): the stored object when non-empty; else, with visible
/// addresses, whether any is public; else `{}`.
#[derive(Serialize)]
#[serde(untagged)]
enum AccessView<'a> {
    Stored(&'a Value),
    /// The records' compact text of the stored value, as is.
    Raw(&'a RawValue),
    /// The records' text parsed again (it has a float: see [`AccessView::of`]).
    Parsed(Value),
    Computed {
        is_public: bool,
    },
    Empty {},
}

impl<'a> AccessView<'a> {
    fn of(access: StoredAccess<'a>, addresses: &[Address]) -> AccessView<'a> {
        match access {
            StoredAccess::Value(Some(v @ Value::Object(m))) if !m.is_empty() => {
                AccessView::Stored(v)
            }
            // The text is `serde_json`'s compact output of the stored value: an object
            // starts with `{` and the empty one is exactly `{}`.
            StoredAccess::Text(Some(text)) if text.starts_with('{') && text != "{}" => {
                // Parsing a float may land one unit in the last place away from the
                // text; re-serialize what a parse gives, as the value renderer does.
                let raw = (!has_number_with_fraction(text))
                    .then(|| serde_json::from_str::<&RawValue>(text).ok())
                    .flatten();
                match raw {
                    Some(raw) => AccessView::Raw(raw),
                    None => {
                        serde_json::from_str(text).map_or(AccessView::Empty {}, AccessView::Parsed)
                    }
                }
            }
            _ if !addresses.is_empty() => AccessView::Computed {
                is_public: addresses.iter().any(|a| a.kind == "public"),
            },
            _ => AccessView::Empty {},
        }
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

/// `addresses`: floating (public) addresses carry no `network` key.
struct Addresses<'a>(&'a [Address]);

impl Serialize for Addresses<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|a| AddressView {
            address: &a.address,
            network: a.network.as_deref(),
            kind: &a.kind,
        }))
    }
}

#[derive(Serialize)]
struct AddressView<'a> {
    address: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    network: Option<&'a str>,
    #[serde(rename = "type")]
    kind: &'a str,
}

/// `ip`: the visible addresses' text.
struct Ips<'a>(&'a [Address]);

impl Serialize for Ips<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|a| &a.address))
    }
}

#[derive(Serialize)]
struct ConfigurationView<'a> {
    id: Uuid,
    links: Links<'a, Uuid>,
    name: Option<&'a str>,
}

/// `{type, version}` (+ `version_number` in detail views), or nulls when the version
/// reference was cleared by deletion.
#[derive(Serialize)]
struct DatastoreView<'a> {
    #[serde(rename = "type")]
    kind: Option<&'a str>,
    version: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version_number: Option<&'a str>,
}

#[derive(Serialize)]
struct FaultView<'a> {
    created: Timestamp<'a>,
    /// Diagnostic text (upstream: a traceback): admins only.
    details: Option<&'a str>,
    message: &'a str,
}

#[derive(Serialize)]
struct FlavorView<'a> {
    id: &'a str,
    links: Links<'a, &'a str>,
}

/// `{id, links}` of another instance (`replica_of`, `replicas[]`).
#[derive(Serialize)]
struct Reference<'a> {
    id: Uuid,
    links: Links<'a, Uuid>,
}

impl<'a> Reference<'a> {
    fn new(prefixes: &'a LinkPrefixes, id: Uuid) -> Reference<'a> {
        Reference {
            id,
            links: Links {
                prefixes,
                collection: "instances",
                id,
            },
        }
    }
}

struct References<'a> {
    prefixes: &'a LinkPrefixes,
    ids: &'a [Uuid],
}

impl Serialize for References<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.ids.iter().map(|&id| Reference::new(self.prefixes, id)))
    }
}

#[derive(Serialize)]
struct VolumeView {
    size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    used: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    used_percent: Option<f64>,
}

impl<'a> InstanceView<'a> {
    fn new(
        inst: &'a Instance,
        access: StoredAccess<'a>,
        ctx: &ViewCtx,
        prefixes: &'a LinkPrefixes,
        related: &'a Related,
        kind: ItemKind,
    ) -> InstanceView<'a> {
        let (viewer, detail) = match kind {
            ItemKind::Basic => (Viewer::List, false),
            ItemKind::Detail => (Viewer::List, true),
            ItemKind::Show => (Viewer::Show, true),
        };
        let admin = ctx.caller_is_admin;
        let inputs = inst.status_inputs();
        let status = inputs.status(viewer, false);
        let addresses = visible_addresses(inst, viewer);
        let id = inst.id_or_nil();
        let links = |collection, id| Links {
            prefixes,
            collection,
            id,
        };
        InstanceView {
            access: AccessView::of(access, addresses),
            addresses: (!addresses.is_empty()).then_some(Addresses(addresses)),
            configuration: inst
                .configuration_id
                .filter(|_| detail)
                .map(|cfg| ConfigurationView {
                    id: cfg,
                    links: links("configurations", cfg),
                    name: related.configuration_name.as_deref(),
                }),
            created: detail.then_some(Timestamp(&inst.created)),
            datastore: match &inst.datastore {
                Some(ds) => DatastoreView {
                    kind: Some(&ds.datastore_name),
                    version: Some(&ds.version_name),
                    version_number: detail.then_some(ds.version_number.as_str()),
                },
                None => DatastoreView {
                    kind: None,
                    version: None,
                    version_number: None,
                },
            },
            // Every instance gets a per-instance RPC key at create (upstream default on).
            encrypted_rpc_messaging: (detail && admin).then_some(true),
            fault: inst
                .fault
                .as_ref()
                .filter(|_| detail)
                .map(|fault| FaultView {
                    created: Timestamp(&fault.created),
                    details: admin.then_some(fault.details.as_str()),
                    message: &fault.message,
                }),
            flavor: FlavorView {
                id: &inst.flavor.id,
                links: Links {
                    prefixes,
                    collection: "flavors",
                    id: inst.flavor.id.as_str(),
                },
            },
            id,
            ip: (!addresses.is_empty()).then_some(Ips(addresses)),
            links: links("instances", id),
            // A replica reports its primary's, as it was scheduled into its server group.
            locality: match (kind, inst.replica_of) {
                (ItemKind::Show, Some(_)) => related.primary_locality.as_deref(),
                (ItemKind::Show, None) => inst.locality.as_deref(),
                _ => None,
            },
            name: &inst.name,
            operating_status: inputs.operating_status(viewer, ctx.now, ctx.heartbeat_expiry),
            region: &inst.region,
            replica_of: inst.replica_of.map(|p| Reference::new(prefixes, p)),
            replicas: (inst.id.is_some() && !related.replicas.is_empty()).then_some(References {
                prefixes,
                ids: &related.replicas,
            }),
            server_id: (detail && admin).then_some(inst.server_id.as_deref()),
            service_status_updated: detail.then_some(Timestamp(&inst.service_updated)),
            status,
            tenant_id: admin.then_some(inst.project_id.as_str()),
            updated: detail.then_some(Timestamp(&inst.updated)),
            volume: volume(inst, kind, status),
            volume_id: (detail && admin).then_some(inst.volume_id.as_deref()),
        }
    }
}

/// `volume`: the size; in the show view, the usage the guest last reported (spec §5.3).
/// Volume support is a property of the datastore version; a soft-deleted instance has
/// none recorded, so upstream shows no `volume` key for it (spec §10.1).
fn volume(inst: &Instance, kind: ItemKind, status: &str) -> Option<VolumeView> {
    let (volume, Some(_)) = (inst.volume.as_ref()?, &inst.datastore) else {
        return None;
    };
    let mut view = VolumeView {
        size: volume.size,
        used: None,
        used_percent: None,
    };
    if let (ItemKind::Show, Some((used, total))) = (kind, inst.volume_usage) {
        // Upstream asks the guest except in these states, and omits a zero usage.
        let asked = !matches!(
            status,
            "BUILD" | "REBOOT" | "RESIZE" | "PROMOTE" | "EJECT" | "UPGRADE" | "SHUTDOWN"
        );
        if asked && used > 0.0 && total > 0.0 {
            // At least 0.01 when non-zero, as upstream rounds.
            let used = round2(used).max(0.01);
            view.used = Some(used);
            view.used_percent = Some(round2(100.0 * used / total));
        }
    }
    Some(view)
}

/// Writes one instance view (an object) to `out`.
pub(crate) fn write_instance(
    out: &mut Vec<u8>,
    inst: &Instance,
    access: StoredAccess<'_>,
    ctx: &ViewCtx,
    links: &LinkPrefixes,
    related: &Related,
    kind: ItemKind,
) {
    let view = InstanceView::new(inst, access, ctx, links, related, kind);
    // Writing to a `Vec` cannot fail, and these values serialize infallibly.
    let _ = serde_json::to_writer(out, &view);
}

/// Writes the view of a folded instance that has its `access` inline (what
/// [`ReadModels::instance`] returns), looking related facts up through `lookup`.
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

/// How many record lookups a render may take when the record changes between the
/// lookup of its related facts and the render (a writer at the same instant).
const RETRIES: usize = 8;

/// The items of one `GET /instances` (or `/detail`) page, written to `out` as the
/// comma-separated elements of the `instances` array; the result is the page's next
/// marker (see [`super::bytes::write_list_items`]).
#[allow(clippy::too_many_arguments)]
pub fn write_list_items(
    models: &ReadModels,
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
            out.truncate(start);
        }
    }
    next_marker
}

/// `GET /instances/{id}` (see [`super::bytes::write_show`]).
pub fn write_show(
    models: &ReadModels,
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

enum Render {
    Written,
    Hidden,
    Needs(RelatedKeys),
}

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
