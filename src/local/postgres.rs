//! PostgreSQL: `initdb` templates, the postmaster, and administration through `psql`.
//!
//! Authentication: the Unix socket lives in the instance's private `run/` directory, which
//! only the database user and root can reach, so `local` connections are trusted (this is
//! how troved administers the server, with no password to keep); every TCP connection
//! needs a SCRAM password. Configuration values go to `data/troved.conf` (included by
//! `postgresql.conf`), memory sizing to `data/troved-memory.conf`.

mod backup;
mod config;
mod guestdb;
mod replica;
mod switchover;

use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Mutex;

use super::quote::{config_name, config_value, pg_conninfo_value, pg_ident, pg_literal};
use super::{
    adopt_unrecorded, copy_data, prepare_dirs, proc, running, spawn_server, stop_server,
    template_once, ConfigOutcome, Engine, EngineOptions, Health, Installation, Instance,
    LocalError, ServerRecord, UserSpec,
};

/// The superuser `initdb` creates.
pub const ADMIN: &str = "postgres";

const HBA: &str = "\
# Written by troved. The socket directory is private to the database user (0700), so
# local connections are trusted; every network connection needs a SCRAM password.
local all all trust
local replication all trust
host all all all scram-sha-256
";

const INCLUDES: &str = "
# troved: memory sizing from the flavor, then the configuration group's values.
include_if_exists = 'troved-memory.conf'
include_if_exists = 'troved.conf'
";

/// `shared_buffers` = RAM/4 (PostgreSQL's own advice), between 16 MB and 8 GB; the
/// planner's `effective_cache_size` = RAM*3/4.
pub fn memory_settings(ram_mb: u32) -> Vec<(String, String)> {
    let shared = (ram_mb / 4).clamp(16, 8192);
    let cache = (u64::from(ram_mb) * 3 / 4).max(u64::from(shared));
    vec![
        ("shared_buffers".into(), format!("{shared}MB")),
        ("effective_cache_size".into(), format!("{cache}MB")),
    ]
}

/// A `postgresql.conf` fragment: `name = 'value'` lines.
pub fn config_file(values: &[(String, String)]) -> Result<String, LocalError> {
    let mut text = String::from("# Written by troved; replaced on each change.\n");
    for (name, value) in values {
        let value = pg_literal(config_value(value)?)?;
        text.push_str(&format!("{} = {value}\n", config_name(name)?));
    }
    Ok(text)
}

/// A PostgreSQL major's engine.
pub struct Postgres {
    install: Installation,
    opts: EngineOptions,
    /// One template initialization at a time in this process (others wait and copy it).
    template_lock: Mutex<()>,
}

impl Postgres {
    pub fn new(install: Installation, opts: EngineOptions) -> Postgres {
        Postgres {
            install,
            opts,
            template_lock: Mutex::new(()),
        }
    }

    /// The template's directory: one per version and user (files belong to the user).
    fn template_dir(&self) -> std::path::PathBuf {
        let name = format!(
            "postgresql-{}-{}",
            self.install.version, self.opts.user.name
        );
        self.opts.templates.join(name)
    }

    /// `initdb` into `data`, then troved's `pg_hba.conf` and includes.
    async fn initdb(&self, data: &std::path::Path) -> Result<(), LocalError> {
        let cwd = data.parent().unwrap_or(data);
        let mut cmd = self.opts.user.command(&self.install.tool("initdb"), cwd);
        cmd.arg("-D").arg(data).args([
            "-U",
            ADMIN,
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
            "--no-locale",
            // No fsync per file: a template is re-made if lost; each copy is synced by
            // the checkpoint of its first start anyway.
            "-N",
        ]);
        proc::run(cmd, None, &[], self.opts.timeout * 4).await?;
        std::fs::write(data.join("pg_hba.conf"), HBA)
            .map_err(|e| LocalError::io("write pg_hba.conf", e))?;
        let conf = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf)
            .map_err(|e| LocalError::io("read postgresql.conf", e))?;
        text.push_str(INCLUDES);
        std::fs::write(&conf, text).map_err(|e| LocalError::io("write postgresql.conf", e))
    }

    /// The template's data directory, initialized on first use.
    async fn template(&self) -> Result<std::path::PathBuf, LocalError> {
        let dir = self.template_dir();
        template_once(
            &self.opts,
            &self.template_lock,
            &dir,
            "PG_VERSION",
            |data| async move { self.initdb(&data).await },
        )
        .await
    }

    /// Initializes `inst` with `initdb` directly, without the template (for comparison:
    /// `docs/performance.md`).
    pub async fn init_fresh(&self, inst: &Instance) -> Result<(), LocalError> {
        prepare_dirs(&self.opts.user, inst)?;
        self.initdb(&inst.data_dir()).await
    }

    /// `psql` as the superuser over the private socket, running `sql` from stdin with
    /// errors stopping the script and reported without the statement's text.
    async fn psql(
        &self,
        inst: &Instance,
        db: &str,
        sql: &str,
        secrets: &[&str],
    ) -> Result<String, LocalError> {
        let conninfo = format!(
            "host={} port={} user={ADMIN} dbname={} connect_timeout=5",
            pg_conninfo_value(&inst.run_dir().to_string_lossy())?,
            inst.port,
            pg_conninfo_value(db)?,
        );
        let mut cmd = self
            .opts
            .user
            .command(&self.install.tool("psql"), &inst.dir);
        cmd.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args(["-v", "VERBOSITY=terse", "-v", "SHOW_CONTEXT=never"])
            .arg("-d")
            .arg(conninfo);
        let script = format!("SET standard_conforming_strings = on;\n{sql}\n");
        proc::run(cmd, Some(&script), secrets, self.opts.timeout).await
    }

    async fn is_ready(&self, inst: &Instance) -> bool {
        let mut cmd = self
            .opts
            .user
            .command(&self.install.tool("pg_isready"), &inst.dir);
        cmd.arg("-q")
            .arg("-h")
            .arg(inst.run_dir())
            .arg("-p")
            .arg(inst.port.to_string())
            .args(["-t", "2"]);
        proc::run(cmd, None, &[], Duration::from_secs(5))
            .await
            .is_ok()
    }

    fn write_memory(&self, inst: &Instance) -> Result<(), LocalError> {
        let values = inst.ram_mb.map(memory_settings).unwrap_or_default();
        let path = inst.data_dir().join("troved-memory.conf");
        std::fs::write(&path, config_file(&values)?)
            .map_err(|e| LocalError::io("write troved-memory.conf", e))?;
        self.opts.user.own(&path)
    }

    /// Configuration entries the server cannot take from `troved.conf` as it is on disk,
    /// each with its parameter's context (`None`: no such parameter).
    async fn file_errors(&self, inst: &Instance) -> Result<Vec<(String, String)>, LocalError> {
        let sql = "SELECT f.name || '|' || coalesce(s.context, '') FROM pg_file_settings f \
                   LEFT JOIN pg_settings s USING (name) \
                   WHERE f.error IS NOT NULL AND f.sourcefile LIKE '%/troved.conf';";
        let out = self.psql(inst, ADMIN, sql, &[]).await?;
        Ok(out
            .lines()
            .filter_map(|l| l.split_once('|'))
            .map(|(n, c)| (n.to_string(), c.to_string()))
            .collect())
    }

    /// Whether a value the previous `troved.conf` set and `values` no longer sets (a
    /// detach) can only change at a restart: the running server keeps it until then.
    async fn removed_need_restart(
        &self,
        inst: &Instance,
        previous: Option<&str>,
        values: &[(String, String)],
    ) -> Result<bool, LocalError> {
        let removed: Vec<String> = previous
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once(" = ").map(|(name, _)| name.trim()))
            .filter(|name| !values.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)))
            .map(pg_literal)
            .collect::<Result<_, _>>()?;
        if removed.is_empty() {
            return Ok(false);
        }
        let sql = format!(
            "SELECT count(*) FROM pg_settings WHERE context = 'postmaster' AND name IN ({});",
            removed.join(",")
        );
        let out = self.psql(inst, ADMIN, &sql, &[]).await?;
        Ok(out.trim() != "0")
    }
}

#[async_trait]
impl Engine for Postgres {
    fn installation(&self) -> &Installation {
        &self.install
    }

    fn admin_user(&self) -> &'static str {
        ADMIN
    }

    fn replication(&self) -> Option<&dyn super::replication::Replication> {
        Some(self)
    }

    fn guest_db(&self) -> Option<&dyn super::guestdb::GuestDb> {
        Some(self)
    }

    fn backups(&self) -> Option<&dyn super::backup::Backups> {
        Some(self)
    }

    async fn init(&self, inst: &Instance) -> Result<(), LocalError> {
        prepare_dirs(&self.opts.user, inst)?;
        if inst.data_dir().join("PG_VERSION").exists() {
            return Ok(());
        }
        let template = self.template().await?;
        copy_data(&template, &inst.data_dir(), self.opts.timeout).await
    }

    async fn start(&self, inst: &Instance) -> Result<ServerRecord, LocalError> {
        if let Some(record) = running(inst) {
            return Ok(record);
        }
        let me = ("postgresql", self.install.version.as_str());
        let ready = || self.is_ready(inst);
        if let Some(record) = adopt_unrecorded(inst, me, self.opts.timeout, ready).await? {
            return Ok(record);
        }
        // The run directory again: a moved one (`sockets`) lives under /run, which a
        // reboot empties.
        super::prepare_dirs(&self.opts.user, inst)?;
        self.write_memory(inst)?;
        let data = inst.data_dir();
        let mut cmd = self
            .opts
            .user
            .command(&self.install.tool("postgres"), &inst.dir);
        cmd.arg("-D")
            .arg(&data)
            .arg("-p")
            .arg(inst.port.to_string())
            .arg("-k")
            .arg(inst.run_dir())
            .arg("-c")
            .arg(format!("listen_addresses={}", inst.bind));
        let user = &self.opts.user;
        let pid = spawn_server(cmd, inst, user, self.opts.timeout, || self.is_ready(inst)).await?;
        let record = ServerRecord {
            datastore: "postgresql".into(),
            version: self.install.version.clone(),
            pid,
            port: inst.port,
            bind: inst.bind,
            data_dir: data,
        };
        record.save(inst)?;
        Ok(record)
    }

    async fn stop(&self, inst: &Instance) -> Result<(), LocalError> {
        // SIGINT is PostgreSQL's "fast" shutdown: sessions are ended, data is checkpointed.
        stop_server(inst, rustix::process::Signal::INT, self.opts.timeout).await
    }

    async fn health(&self, inst: &Instance) -> Health {
        if running(inst).is_none() {
            return Health::Down;
        }
        match self.psql(inst, ADMIN, "SELECT 1;", &[]).await {
            Ok(_) => Health::Healthy,
            Err(e) => Health::Unresponsive(e.to_string()),
        }
    }

    async fn create_database(&self, inst: &Instance, name: &str) -> Result<(), LocalError> {
        let (ident, lit) = (pg_ident(name)?, pg_literal(name)?);
        // PUBLIC may connect to a new database by default: only the users granted it may.
        let sql = format!(
            "SELECT 'CREATE DATABASE ' || {} WHERE NOT EXISTS \
             (SELECT FROM pg_database WHERE datname = {lit}) \\gexec\n\
             REVOKE CONNECT, TEMPORARY ON DATABASE {ident} FROM PUBLIC;",
            pg_literal(&ident)?
        );
        self.psql(inst, ADMIN, &sql, &[]).await.map(drop)
    }

    async fn create_user(&self, inst: &Instance, user: &UserSpec) -> Result<(), LocalError> {
        let (ident, lit) = (pg_ident(&user.name)?, pg_literal(&user.name)?);
        let mut sql = format!(
            "SELECT 'CREATE ROLE ' || {} WHERE NOT EXISTS \
             (SELECT FROM pg_roles WHERE rolname = {lit}) \\gexec\n\
             ALTER ROLE {ident} WITH LOGIN PASSWORD {};\n\
             REVOKE CONNECT, TEMPORARY ON DATABASE postgres, template1 FROM PUBLIC;\n",
            pg_literal(&ident)?,
            pg_literal(&user.password)?
        );
        for db in &user.databases {
            // ALL on a database: CONNECT, CREATE (schemas) and TEMPORARY.
            sql.push_str(&format!(
                "GRANT ALL PRIVILEGES ON DATABASE {} TO {ident};\n",
                pg_ident(db)?
            ));
        }
        self.psql(inst, ADMIN, &sql, &[&user.password]).await?;
        // Since PostgreSQL 15 only a database's owner may create in its `public` schema.
        for db in &user.databases {
            let grant = format!("GRANT ALL ON SCHEMA public TO {ident};");
            self.psql(inst, db, &grant, &[]).await?;
        }
        Ok(())
    }

    async fn set_admin_password(&self, inst: &Instance, password: &str) -> Result<(), LocalError> {
        let sql = format!(
            "ALTER ROLE {} WITH PASSWORD {};",
            pg_ident(ADMIN)?,
            pg_literal(password)?
        );
        self.psql(inst, ADMIN, &sql, &[password]).await.map(drop)
    }

    async fn restrict_network(
        &self,
        inst: &Instance,
        allowed: &[super::access::Cidr],
        _users: &[(String, String)],
    ) -> Result<(), LocalError> {
        // Every user (and the superuser) logs in through the same `host` lines.
        let path = inst.data_dir().join("pg_hba.conf");
        let text = super::access::pg_hba(allowed);
        if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            std::fs::write(&path, &text).map_err(|e| LocalError::io("write pg_hba.conf", e))?;
            self.opts.user.own(&path)?;
        }
        if running(inst).is_none() {
            return Ok(());
        }
        self.psql(inst, ADMIN, "SELECT pg_reload_conf();", &[])
            .await
            .map(drop)
    }

    async fn apply_config(
        &self,
        inst: &Instance,
        values: &[(String, String)],
    ) -> Result<ConfigOutcome, LocalError> {
        let text = config_file(values)?;
        let path = inst.data_dir().join("troved.conf");
        let previous = std::fs::read_to_string(&path).ok();
        std::fs::write(&path, text).map_err(|e| LocalError::io("write troved.conf", e))?;
        self.opts.user.own(&path)?;
        // A value no start would take is refused now, the server left as it is: a
        // restart for it (or the next start) would leave the server down.
        if let Err(e) = self.check_files(inst).await {
            let _ = std::fs::write(&path, previous.unwrap_or_default());
            return Err(e);
        }
        if running(inst).is_none() {
            return Ok(ConfigOutcome::Applied);
        }
        // The files are valid: an error left is a value that needs a restart
        // (postmaster context) or one the running server refuses otherwise.
        let errors = self.file_errors(inst).await?;
        if let Some((name, _)) = errors.iter().find(|(_, context)| context != "postmaster") {
            // Unknown, or a value the server refuses: put the previous file back.
            let _ = std::fs::write(&path, previous.unwrap_or_default());
            return Err(LocalError::invalid(
                "configuration",
                format!("{name} is refused"),
            ));
        }
        let removed = self
            .removed_need_restart(inst, previous.as_deref(), values)
            .await?;
        self.psql(inst, ADMIN, "SELECT pg_reload_conf();", &[])
            .await?;
        Ok(if errors.is_empty() && !removed {
            ConfigOutcome::Applied
        } else {
            ConfigOutcome::RestartRequired
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_follows_ram_within_bounds() {
        assert_eq!(
            memory_settings(2048),
            vec![
                ("shared_buffers".into(), "512MB".into()),
                ("effective_cache_size".into(), "1536MB".into())
            ]
        );
        assert_eq!(memory_settings(32)[0].1, "16MB");
        assert_eq!(memory_settings(1 << 20)[0].1, "8192MB");
    }

    #[test]
    fn config_files_quote_values_and_refuse_bad_names() {
        let text = config_file(&[("max_connections".into(), "42".into())]).unwrap();
        assert!(text.ends_with("max_connections = '42'\n"), "{text}");
        assert!(config_file(&[("x = 1\nfsync".into(), "off".into())]).is_err());
        assert!(config_file(&[("work_mem".into(), "1MB'\nfsync = 'off".into())]).is_err());
    }
}
