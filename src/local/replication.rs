//! Replication between two local servers of one datastore: a replica is a read-only copy
//! of its primary that follows its changes, until it is promoted (Trove's "detach
//! replica").
//!
//! PostgreSQL: the replica's data directory is a `pg_basebackup -R` of the primary's,
//! taken over the primary's private Unix socket as the superuser (`local replication all
//! trust`); it starts as a hot standby that streams from the same socket. Promotion is
//! `pg_promote()`, and `primary_conninfo` is reset so that nothing points at the old
//! primary any more.
//!
//! MariaDB: GTID replication. Every server writes a binary log with a server id derived
//! from its port (unique among live servers). The replica starts from a fresh data
//! directory with `read_only`, loads a consistent `mariadb-dump` of the primary (its
//! databases and accounts, `--single-transaction --master-data --gtid`, which sets
//! `gtid_slave_pos`), and replicates from the primary over TCP as an account of its own
//! (`troved_repl_<replica port>`, `REPLICATION SLAVE` only, a random password kept only in
//! the replica's `master.info`). Promotion is `STOP SLAVE; RESET SLAVE ALL` and
//! `read_only` off, also in its option file.
//!
//! The engines implement it ([`super::Engine::replication`]); the provider finds the
//! primary and holds both servers' locks (`crate::local::provider`).

use std::net::{IpAddr, Ipv4Addr};

use async_trait::async_trait;

use super::{Instance, LocalError};

/// A datastore's replication operations. Each is idempotent: a retried step finds its
/// work done.
#[async_trait]
pub trait Replication: Send + Sync {
    /// Makes `replica`'s data directory, from the running `primary` (PostgreSQL: a base
    /// backup that will follow it) or fresh and marked read-only (MariaDB, whose copy is
    /// loaded by [`Replication::follow`]). Data that exists already is kept.
    async fn init_replica(&self, replica: &Instance, primary: &Instance) -> Result<(), LocalError>;

    /// With both servers running: makes `replica` follow `primary` and waits until it
    /// does. A replica that follows already is left as it is.
    async fn follow(&self, replica: &Instance, primary: &Instance) -> Result<(), LocalError>;

    /// The running server stops following its primary and takes writes, also after a
    /// restart. Promoting a server that is no replica succeeds.
    async fn promote(&self, inst: &Instance) -> Result<(), LocalError>;

    // ---- switchover: promote / eject of a replica set (issue #15) -------------------
    // Engines without them refuse; each is idempotent like the rest of the trait. The
    // provider runs them in this order (`crate::local::provider::switchover`).

    /// Whether the running server follows a source (is not promoted yet).
    async fn is_replica(&self, _inst: &Instance) -> Result<bool, LocalError> {
        Err(unsupported())
    }

    /// Stops the running `primary` from taking writes and returns the position that
    /// holds every transaction it committed (PostgreSQL: its shut-down checkpoint's LSN,
    /// after a clean shutdown, which waits until the connected standbys have its WAL;
    /// MariaDB: its GTID position, under `read_only`).
    async fn freeze(&self, _primary: &Instance) -> Result<String, LocalError> {
        Err(unsupported())
    }

    /// Undoes [`Replication::freeze`] after a promote failed before the candidate was
    /// promoted: `primary` takes writes again (PostgreSQL: started again; MariaDB:
    /// `read_only` off). Nothing else changed, so it is still the set's source.
    async fn thaw(&self, _primary: &Instance) -> Result<(), LocalError> {
        Err(unsupported())
    }

    /// Waits until `replica` applied everything up to `position` (of [`Replication::freeze`]).
    async fn catch_up(&self, _replica: &Instance, _position: &str) -> Result<(), LocalError> {
        Err(unsupported())
    }

    /// How far `replica` has applied its source's changes, comparable among the replicas
    /// of one source (an eject elects the greatest).
    async fn applied(&self, _replica: &Instance) -> Result<u64, LocalError> {
        Err(unsupported())
    }

    /// After [`Replication::promote`]: the server can be a source for the others
    /// (MariaDB: a binary log that starts at the position it applied).
    async fn become_source(&self, _inst: &Instance) -> Result<(), LocalError> {
        Err(unsupported())
    }

    /// Makes the running `replica` of another source follow `source` instead.
    async fn repoint(&self, _replica: &Instance, _source: &Instance) -> Result<(), LocalError> {
        Err(unsupported())
    }

    /// Makes the frozen old source `old` a running read-only replica of `source`.
    async fn demote(&self, _old: &Instance, _source: &Instance) -> Result<(), LocalError> {
        Err(unsupported())
    }
}

fn unsupported() -> LocalError {
    LocalError::Unusable("this datastore cannot switch its replication source".into())
}

/// The address a replica on this machine reaches `primary` at over TCP: its bind
/// address, or loopback for a wildcard bind.
pub fn primary_host(primary: &Instance) -> IpAddr {
    if primary.bind.is_unspecified() {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        primary.bind
    }
}

/// A fresh password for a replication account: 128 random bits (UUIDv4 comes from the
/// OS generator).
pub fn generate_password() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wildcard_bind_is_reached_on_loopback() {
        let mut inst = Instance {
            dir: "/x".into(),
            port: 1,
            bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            ram_mb: None,
        };
        assert_eq!(primary_host(&inst), IpAddr::V4(Ipv4Addr::LOCALHOST));
        inst.bind = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));
        assert_eq!(primary_host(&inst), inst.bind);
        assert_ne!(generate_password(), generate_password());
    }
}
