//! What the simulated cloud holds, as operators and tests see it: the JSON of
//! `troved sim list` (`{"servers": [...], "volumes": [...]}`) and the per-zone usage.
//!
//! Listings show live resources only (deleted ones are tombstones kept for idempotency)
//! and the cloud's own state: injected faults change what a provider call reports, not
//! what is listed.

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::Connection;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::db::{self, OpResult, Report};
use super::ZoneCapacity;
use crate::saga::ports::ServerAddress;

/// Every live server and volume of the simulated cloud, oldest first.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SimInventory {
    pub servers: Vec<SimServer>,
    pub volumes: Vec<SimVolume>,
}

/// A live compute server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimServer {
    pub id: String,
    pub instance_id: Uuid,
    pub instance_name: String,
    /// `BUILD` or `ACTIVE`.
    pub status: String,
    pub flavor_id: String,
    pub vcpus: u32,
    /// MB.
    pub ram: u32,
    pub availability_zone: String,
    pub addresses: Vec<ServerAddress>,
    /// The key it was created with, so a test can tell which step made it.
    pub idempotency_key: String,
    /// RFC 3339.
    pub created_at: String,
    /// The database agent, once prepared.
    pub guest: Option<SimGuest>,
}

/// What a server's guest agent was asked to do (user names only, never passwords).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimGuest {
    /// `BUILDING`, `UPGRADING` or `HEALTHY`.
    pub status: String,
    pub datastore_manager: String,
    pub datastore_version: String,
    pub databases: Vec<String>,
    pub users: Vec<String>,
    pub configuration: Option<serde_json::Value>,
    pub replica_of: Option<Uuid>,
    /// Upgrades, configuration changes and replica detaches, oldest first.
    pub operations: Vec<SimGuestOperation>,
}

/// One guest operation after prepare.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimGuestOperation {
    /// `upgrade`, `configuration` or `detach_replica`.
    pub kind: String,
    pub idempotency_key: String,
    /// What changed, e.g. `{"from": "5.7", "to": "8.0"}` for an upgrade.
    pub detail: serde_json::Value,
    pub at: String,
}

/// A live data volume.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimVolume {
    pub id: String,
    pub instance_id: Uuid,
    pub instance_name: String,
    /// `available` or `in-use`.
    pub status: String,
    /// GB.
    pub size: u64,
    pub volume_type: Option<String>,
    pub availability_zone: String,
    pub attached_to: Option<String>,
    pub idempotency_key: String,
    pub created_at: String,
}

/// Capacity and use of one availability zone.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ZoneUsage {
    pub name: String,
    pub capacity: ZoneCapacity,
    /// What live resources take, in the same units.
    pub used: ZoneCapacity,
}

pub(super) fn inventory(conn: &Connection, at_ms: i64) -> OpResult<SimInventory> {
    let mut servers = Vec::new();
    for row in db::live_servers(conn)? {
        let guest = guest(conn, &row.id, at_ms)?;
        servers.push(SimServer {
            status: row.status(at_ms).to_string(),
            addresses: row.addresses(),
            created_at: timestamp(row.created_ms),
            id: row.id,
            instance_id: row.instance_id,
            instance_name: row.instance_name,
            flavor_id: row.flavor_id,
            vcpus: row.vcpus,
            ram: row.ram_mb,
            availability_zone: row.availability_zone,
            idempotency_key: row.idempotency_key,
            guest,
        });
    }
    let volumes = db::live_volumes(conn)?
        .into_iter()
        .map(|row| SimVolume {
            status: row.status().to_string(),
            created_at: timestamp(row.created_ms),
            id: row.id,
            instance_id: row.instance_id,
            instance_name: row.instance_name,
            size: row.size_gb,
            volume_type: row.volume_type,
            availability_zone: row.availability_zone,
            attached_to: row.attached_to,
            idempotency_key: row.idempotency_key,
        })
        .collect();
    Ok(SimInventory { servers, volumes })
}

fn guest(conn: &Connection, server_id: &str, at_ms: i64) -> OpResult<Option<SimGuest>> {
    let Some(row) = db::load_guest(conn, server_id)? else {
        return Ok(None);
    };
    let operations = db::guest_operations(conn, server_id)?
        .into_iter()
        .map(|op| SimGuestOperation {
            kind: op.kind,
            idempotency_key: op.key,
            detail: op.detail,
            at: timestamp(op.at_ms),
        })
        .collect();
    Ok(Some(SimGuest {
        status: row.status(at_ms, Report::Truth),
        datastore_manager: row.datastore_manager,
        datastore_version: row.datastore_version,
        databases: row.databases,
        users: row.users,
        configuration: row.configuration,
        replica_of: row.replica_of,
        operations,
    }))
}

pub(super) fn zones(
    conn: &Connection,
    zones: &std::collections::BTreeMap<String, ZoneCapacity>,
) -> OpResult<Vec<ZoneUsage>> {
    let used = db::usage_by_zone(conn)?;
    Ok(zones
        .iter()
        .map(|(name, cap)| {
            let (vcpus, ram_mb, volume_gb) = used.get(name).copied().unwrap_or_default();
            ZoneUsage {
                name: name.clone(),
                capacity: *cap,
                used: ZoneCapacity {
                    vcpus,
                    ram_mb,
                    volume_gb,
                },
            }
        })
        .collect())
}

fn timestamp(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}
