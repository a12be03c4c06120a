//! MariaDB: `mariadb-install-db` templates, `mariadbd`, and administration through the
//! `mariadb` client.
//!
//! Authentication: `mariadb-install-db` creates an account named after the database user
//! that logs in through the Unix socket by OS identity (`unix_socket`); the socket lives in
//! the instance's private `run/` directory, so this is troved's administration path, with
//! no password to keep. Network logins need a password. Options go to `my.cnf` in the
//! instance directory (memory sizing, the binary log and server id that replication
//! needs, then the configuration group's values); the addresses, port, socket and data
//! directory are on the command line, which wins.

mod backup;
mod replica;
mod switchover;

mod accounts;
mod config;
mod guestdb;

use std::time::Duration;

use async_trait::async_trait;
use tokio::process::Command;
use tokio::sync::Mutex;

use super::quote::{
    config_name, config_value, mariadb_account, mariadb_grant_db, mariadb_ident, mariadb_literal,
};
use super::{
    adopt_unrecorded, copy_data, prepare_dirs, proc, running, spawn_server, stop_server,
    template_once, ConfigOutcome, Engine, EngineOptions, Health, Installation, Instance,
    LocalError, ServerRecord, UserSpec,
};

/// The superuser account [`Engine::set_admin_password`] sets: `root@'%'`, as upstream
/// Trove's "root enable" does for MySQL-family datastores.
pub const ADMIN: &str = "root";

/// Every script starts with this: string literals then treat a backslash as an ordinary
/// character, which [`mariadb_literal`] relies on, whatever the server's `sql_mode`. The
/// server's own modes are kept (replacing them dropped `NO_AUTO_CREATE_USER`, so a GRANT
/// to a missing account created it without a password).
const SESSION: &str =
    "SET SESSION sql_mode = CONCAT_WS(',', NULLIF(@@sql_mode, ''), 'NO_BACKSLASH_ESCAPES');\n";

/// `innodb_buffer_pool_size` = RAM/2, between 32 MB and 16 GB.
pub fn memory_settings(ram_mb: u32) -> Vec<(String, String)> {
    let pool = (ram_mb / 2).clamp(32, 16384);
    vec![("innodb_buffer_pool_size".into(), format!("{pool}M"))]
}

/// `my.cnf`: a `[mariadbd]` group with memory sizing, then the given values.
pub fn option_file(
    memory: &[(String, String)],
    values: &[(String, String)],
) -> Result<String, LocalError> {
    let mut text = String::from("# Written by troved; replaced on each change.\n[mariadbd]\n");
    for (name, value) in memory.iter().chain(values) {
        text.push_str(&format!(
            "{} = {}\n",
            config_name(name)?,
            config_value(value)?
        ));
    }
    Ok(text)
}

/// The right-hand side of `SET GLOBAL name = …`: numbers bare (`SET` refuses a quoted
/// `'2.5'` for `long_query_time`), anything else quoted.
fn global_value(value: &str) -> Result<String, LocalError> {
    let numeric = value
        .chars()
        .all(|c| c.is_ascii_digit() || c == '.' || c == '-')
        && value.parse::<f64>().is_ok_and(f64::is_finite);
    if numeric {
        return Ok(value.to_string());
    }
    mariadb_literal(value)
}

/// A MariaDB series' engine.
pub struct Mariadb {
    install: Installation,
    opts: EngineOptions,
    template_lock: Mutex<()>,
}

impl Mariadb {
    pub fn new(install: Installation, opts: EngineOptions) -> Mariadb {
        Mariadb {
            install,
            opts,
            template_lock: Mutex::new(()),
        }
    }

    pub(crate) fn socket(inst: &Instance) -> std::path::PathBuf {
        inst.run_dir().join("mariadb.sock")
    }

    /// `mariadb-install-db` into `data`, as the database user.
    /// Its temporary tables go to a private directory beside `data`: in the shared
    /// `/tmp` a concurrent bootstrap (or a cleaner) made it fail now and then ("Error on
    /// delete of '/tmp/#sql-temptable-….MAI'").
    async fn install_db(&self, data: &std::path::Path) -> Result<(), LocalError> {
        let cwd = data.parent().unwrap_or(data);
        let tmp = data.with_extension("tmp");
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir(&tmp).map_err(|e| LocalError::io("create the bootstrap tmpdir", e))?;
        self.opts.user.own(&tmp)?;
        let mut cmd = self
            .opts
            .user
            .command(&self.install.tool("mariadb-install-db"), cwd);
        cmd.arg("--no-defaults")
            .arg(format!("--user={}", self.opts.user.name))
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .args([
                "--auth-root-authentication-method=socket",
                "--skip-test-db",
                "--skip-name-resolve",
            ]);
        let result = proc::run(cmd, None, &[], self.opts.timeout * 4).await;
        let _ = std::fs::remove_dir_all(&tmp);
        result.map(drop)
    }

    async fn template(&self) -> Result<std::path::PathBuf, LocalError> {
        let name = format!("mariadb-{}-{}", self.install.version, self.opts.user.name);
        let dir = self.opts.templates.join(name);
        template_once(
            &self.opts,
            &self.template_lock,
            &dir,
            "mysql",
            |data| async move { self.install_db(&data).await },
        )
        .await
    }

    /// Initializes `inst` with `mariadb-install-db` directly, without the template (for
    /// comparison: `docs/performance.md`).
    pub async fn init_fresh(&self, inst: &Instance) -> Result<(), LocalError> {
        prepare_dirs(&self.opts.user, inst)?;
        self.install_db(&inst.data_dir()).await
    }

    /// The `mariadb` client as the administration account over the private socket.
    fn client(&self, inst: &Instance) -> Command {
        let mut cmd = self
            .opts
            .user
            .command(&self.install.tool("mariadb"), &inst.dir);
        cmd.arg("--no-defaults")
            .arg(format!("--socket={}", Self::socket(inst).display()))
            .arg(format!("--user={}", self.opts.user.name))
            .args(["--batch", "--skip-column-names", "--connect-timeout=5"]);
        cmd
    }

    async fn sql(
        &self,
        inst: &Instance,
        sql: &str,
        secrets: &[&str],
    ) -> Result<String, LocalError> {
        let script = format!("{SESSION}{sql}\n");
        proc::run(self.client(inst), Some(&script), secrets, self.opts.timeout).await
    }

    async fn is_ready(&self, inst: &Instance) -> bool {
        let mut cmd = self
            .opts
            .user
            .command(&self.install.tool("mariadb-admin"), &inst.dir);
        cmd.arg("--no-defaults")
            .arg(format!("--socket={}", Self::socket(inst).display()))
            .arg(format!("--user={}", self.opts.user.name))
            .args(["--connect-timeout=2", "ping"]);
        proc::run(cmd, None, &[], Duration::from_secs(5))
            .await
            .is_ok()
    }

    fn my_cnf(inst: &Instance) -> std::path::PathBuf {
        inst.dir.join("my.cnf")
    }

    /// The configuration group's values as last written (the lines after the memory).
    fn write_options(
        &self,
        inst: &Instance,
        values: &[(String, String)],
    ) -> Result<(), LocalError> {
        let mut memory = inst.ram_mb.map(memory_settings).unwrap_or_default();
        memory.extend(replica::server_options(inst));
        let path = Self::my_cnf(inst);
        std::fs::write(&path, option_file(&memory, values)?)
            .map_err(|e| LocalError::io("write my.cnf", e))?;
        // Values are kept apart too, so that a start can rewrite the memory part alone.
        let json = serde_json::to_vec(values).map_err(|e| LocalError::io("values", e.into()))?;
        std::fs::write(inst.dir.join("config.json"), json)
            .map_err(|e| LocalError::io("write config.json", e))?;
        self.opts.user.own(&path)
    }

    fn saved_values(inst: &Instance) -> Vec<(String, String)> {
        std::fs::read(inst.dir.join("config.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }
}

#[async_trait]
impl Engine for Mariadb {
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
        if inst.data_dir().join("mysql").exists() {
            return Ok(());
        }
        let template = self.template().await?;
        copy_data(&template, &inst.data_dir(), self.opts.timeout).await
    }

    async fn start(&self, inst: &Instance) -> Result<ServerRecord, LocalError> {
        if let Some(record) = running(inst) {
            return Ok(record);
        }
        let me = ("mariadb", self.install.version.as_str());
        let ready = || self.is_ready(inst);
        if let Some(record) = adopt_unrecorded(inst, me, self.opts.timeout, ready).await? {
            return Ok(record);
        }
        // The run directory again: a moved one (`sockets`) lives under /run, which a
        // reboot empties.
        super::prepare_dirs(&self.opts.user, inst)?;
        self.write_options(inst, &Self::saved_values(inst))?;
        let data = inst.data_dir();
        let mut cmd = self
            .opts
            .user
            .command(&self.install.tool("mariadbd"), &inst.dir);
        // `--defaults-file` must come first; it makes mariadbd read that file only.
        cmd.arg(format!("--defaults-file={}", Self::my_cnf(inst).display()))
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--port={}", inst.port))
            .arg(format!("--bind-address={}", inst.bind))
            .arg(format!("--socket={}", Self::socket(inst).display()))
            .arg(format!(
                "--pid-file={}",
                inst.run_dir().join("mariadbd.pid").display()
            ))
            .arg("--skip-name-resolve");
        let user = &self.opts.user;
        let pid = spawn_server(cmd, inst, user, self.opts.timeout, || self.is_ready(inst)).await?;
        let record = ServerRecord {
            datastore: "mariadb".into(),
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
        // SIGTERM is mariadbd's normal shutdown (as `mariadb-admin shutdown`).
        let log_start = std::fs::metadata(inst.log_path()).map_or(0, |m| m.len());
        let stop = stop_server(inst, rustix::process::Signal::TERM, self.opts.timeout);
        tokio::pin!(stop);
        tokio::select! {
            done = &mut stop => done,
            () = kill_if_waiting_for_space(inst, log_start) => stop.await,
        }
    }

    async fn health(&self, inst: &Instance) -> Health {
        if running(inst).is_none() {
            return Health::Down;
        }
        match self.sql(inst, "SELECT 1;", &[]).await {
            Ok(_) => Health::Healthy,
            Err(e) => Health::Unresponsive(e.to_string()),
        }
    }

    async fn create_database(&self, inst: &Instance, name: &str) -> Result<(), LocalError> {
        let sql = format!("CREATE DATABASE IF NOT EXISTS {};", mariadb_ident(name)?);
        self.sql(inst, &sql, &[]).await.map(drop)
    }

    async fn create_user(&self, inst: &Instance, user: &UserSpec) -> Result<(), LocalError> {
        // The account troved administers the server with (`unix_socket`, named after
        // the OS user): the ALTER below would give it a password login.
        if user.name == self.opts.user.name {
            return Err(LocalError::invalid(
                "user",
                format!("{} is the server's administration account", user.name),
            ));
        }
        let account = mariadb_account(&user.name, &user.host)?;
        let password = mariadb_literal(&user.password)?;
        let mut sql = format!(
            "CREATE USER IF NOT EXISTS {account} IDENTIFIED BY {password};\n\
             ALTER USER {account} IDENTIFIED BY {password};\n"
        );
        for db in &user.databases {
            let db = mariadb_grant_db(db)?;
            sql.push_str(&format!("GRANT ALL PRIVILEGES ON {db}.* TO {account};\n"));
        }
        self.sql(inst, &sql, &[&user.password]).await.map(drop)
    }

    async fn set_admin_password(&self, inst: &Instance, password: &str) -> Result<(), LocalError> {
        let account = mariadb_account(ADMIN, "%")?;
        let password_lit = mariadb_literal(password)?;
        let sql = format!(
            "CREATE USER IF NOT EXISTS {account} IDENTIFIED BY {password_lit};\n\
             ALTER USER {account} IDENTIFIED BY {password_lit};\n\
             GRANT ALL PRIVILEGES ON *.* TO {account} WITH GRANT OPTION;\n"
        );
        self.sql(inst, &sql, &[password]).await.map(drop)
    }

    async fn restrict_network(
        &self,
        inst: &Instance,
        allowed: &[super::access::Cidr],
        users: &[(String, String)],
    ) -> Result<(), LocalError> {
        if running(inst).is_none() {
            return Ok(());
        }
        let admin = (ADMIN.to_string(), "%".to_string());
        for (name, host) in users.iter().chain([&admin]) {
            let own: Vec<&str> = users
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, h)| h.as_str())
                .collect();
            accounts::restrict_account(self, inst, (name, host), &own, allowed).await?;
        }
        Ok(())
    }

    async fn apply_config(
        &self,
        inst: &Instance,
        values: &[(String, String)],
    ) -> Result<ConfigOutcome, LocalError> {
        option_file(&[], values)?;
        if running(inst).is_none() {
            self.write_options(inst, values)?;
            return Ok(ConfigOutcome::Applied);
        }
        // `SET GLOBAL` checks each name and value while the server runs (`config`).
        self.apply_running(inst, values).await
    }
}

/// What mariadbd logs when a write finds its file system full: it then waits (retrying
/// every minute) until someone frees space, also during a shutdown (Aria's and MyISAM's
/// writes), which would never end on a full volume.
const WAITING_FOR_SPACE: &str = "Waiting for someone to free space";

/// Kills the server of `inst` once its log, past `from`, says it waits for disk space
/// (it cannot shut down cleanly then: InnoDB and Aria recover at the next start, as
/// after a crash), and returns; until then it waits (the caller's stop decides).
async fn kill_if_waiting_for_space(inst: &Instance, from: u64) {
    use std::io::{Read, Seek, SeekFrom};
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut tail = String::new();
        let read = std::fs::File::open(inst.log_path()).and_then(|mut f| {
            f.seek(SeekFrom::Start(from))?;
            f.take(1 << 20).read_to_string(&mut tail)
        });
        if read.is_ok() && tail.contains(WAITING_FOR_SPACE) {
            if let Some(rec) = running(inst) {
                tracing::warn!(
                    pid = rec.pid,
                    "mariadbd waits for disk space to shut down; killing it"
                );
                proc::signal(rec.pid, rustix::process::Signal::KILL);
            }
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_follows_ram_within_bounds() {
        assert_eq!(memory_settings(2048)[0].1, "1024M");
        assert_eq!(memory_settings(16)[0].1, "32M");
        assert_eq!(memory_settings(1 << 20)[0].1, "16384M");
    }

    #[test]
    fn option_files_have_one_group_and_refuse_injected_lines() {
        let text = option_file(
            &memory_settings(512),
            &[("max-connections".into(), "42".into())],
        )
        .unwrap();
        assert!(text.contains("[mariadbd]\ninnodb_buffer_pool_size = 256M\nmax_connections = 42\n"));
        assert!(option_file(&[], &[("a".into(), "1\n[client]".into())]).is_err());
        assert_eq!(global_value("42").unwrap(), "42");
        assert_eq!(global_value("ON").unwrap(), "'ON'");
        assert_eq!(global_value("2.5").unwrap(), "2.5");
        assert_eq!(global_value("-1").unwrap(), "-1");
        assert_eq!(global_value("128M").unwrap(), "'128M'");
        assert_eq!(global_value("1e5").unwrap(), "'1e5'");
        assert_eq!(global_value(".").unwrap(), "'.'");
    }
}
