//! The unprivileged user the database servers and their tools run as.
//!
//! Database servers never run as root (`initdb` and `postgres` refuse to; `mariadbd` only
//! with `--user`). When troved runs as root, every server, tool and client runs as a
//! dedicated system user ([`DEFAULT_LOCAL_USER`], created if missing) through
//! `CommandExt::uid/gid`, which also drops root's supplementary groups. A dedicated user
//! rather than Debian's `postgres`/`mysql`: those own the system clusters in
//! `/var/lib/postgresql` and `/var/lib/mysql`, which troved's servers must not be able to
//! read. When troved is not root, everything runs as the current user.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::process::Command;

use super::{proc, LocalError};

/// The user created (when troved runs as root) to run the database servers.
pub const DEFAULT_LOCAL_USER: &str = "troved-db";

/// An OS user to run database processes as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DbUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// Whether processes must switch to this user (troved runs as another one, root).
    switch: bool,
}

/// The uid, gid of a `getent passwd` line (`name:x:uid:gid:gecos:home:shell`).
pub fn parse_passwd_line(line: &str) -> Option<(String, u32, u32)> {
    let mut fields = line.trim_end().split(':');
    let name = fields.next().filter(|n| !n.is_empty())?.to_string();
    let _password = fields.next()?;
    let uid = fields.next()?.parse().ok()?;
    let gid = fields.next()?.parse().ok()?;
    Some((name, uid, gid))
}

impl DbUser {
    /// The user to run servers as: `name` (created as a system user if missing) when
    /// troved runs as root, else the current user (`name` is then ignored).
    pub async fn resolve(name: &str) -> Result<DbUser, LocalError> {
        let uid = rustix::process::getuid().as_raw();
        if uid != 0 {
            let gid = rustix::process::getgid().as_raw();
            let name = lookup(&uid.to_string())
                .await
                .map(|(n, ..)| n)
                .unwrap_or_else(|| uid.to_string());
            return Ok(DbUser {
                name,
                uid,
                gid,
                switch: false,
            });
        }
        if name.is_empty() || name == "root" || name.starts_with('-') {
            return Err(LocalError::Unusable(format!(
                "database servers cannot run as {name:?}: name an unprivileged user"
            )));
        }
        if lookup(name).await.is_none() {
            create(name).await?;
        }
        let (name, uid, gid) = lookup(name).await.ok_or_else(|| {
            LocalError::Unusable(format!("the database user {name} could not be created"))
        })?;
        Ok(DbUser {
            name,
            uid,
            gid,
            switch: true,
        })
    }

    /// A command for `program` that runs as this user, in `cwd`, with a minimal
    /// environment (no inherited secrets, `PGPASSWORD` or `MYSQL_PWD` of troved's own).
    pub fn command(&self, program: &Path, cwd: &Path) -> Command {
        let mut cmd = Command::new(program);
        cmd.env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
            .env("LC_ALL", "C.UTF-8")
            .env("HOME", cwd)
            .current_dir(cwd);
        if self.switch {
            cmd.uid(self.uid).gid(self.gid);
        }
        cmd
    }

    /// Gives `path` to this user (a no-op when not switching users).
    pub fn own(&self, path: &Path) -> Result<(), LocalError> {
        if !self.switch {
            return Ok(());
        }
        std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid))
            .map_err(|e| LocalError::io(&format!("chown {}", path.display()), e))
    }

    /// Fails, naming the culprit, if this user cannot reach `path` (every ancestor must
    /// be searchable by it): a data directory under `/root` (0700) would otherwise fail
    /// deep inside `initdb` with a less helpful message.
    pub fn check_reachable(&self, path: &Path) -> Result<(), LocalError> {
        if self.uid == 0 {
            return Ok(());
        }
        for dir in path.ancestors().skip(1) {
            let Ok(meta) = std::fs::metadata(dir) else {
                continue;
            };
            let bit = if meta.uid() == self.uid {
                0o100
            } else if meta.gid() == self.gid {
                0o010
            } else {
                0o001
            };
            if meta.mode() & bit == 0 {
                return Err(LocalError::Unusable(format!(
                    "the database user {} cannot reach {}: {} (mode {:o}) is not searchable \
                     by it; choose a directory elsewhere or allow search (chmod o+x)",
                    self.name,
                    path.display(),
                    dir.display(),
                    meta.mode() & 0o7777
                )));
            }
        }
        Ok(())
    }
}

/// Creates a directory (and its parents) owned by `user`, mode 0700.
pub fn private_dir(user: &DbUser, dir: &Path) -> Result<PathBuf, LocalError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| LocalError::io(&format!("create {}", dir.display()), e))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| LocalError::io(&format!("chmod {}", dir.display()), e))?;
    user.own(dir)?;
    Ok(dir.to_path_buf())
}

async fn lookup(key: &str) -> Option<(String, u32, u32)> {
    let mut cmd = Command::new("getent");
    cmd.args(["passwd", key]);
    let out = proc::run(cmd, None, &[], Duration::from_secs(10))
        .await
        .ok()?;
    parse_passwd_line(out.lines().next()?)
}

async fn create(name: &str) -> Result<(), LocalError> {
    let mut cmd = Command::new("useradd");
    cmd.args([
        "--system",
        "--no-create-home",
        "--home-dir",
        "/nonexistent",
        "--user-group",
        "--shell",
        "/usr/sbin/nologin",
        "--comment",
        "troved database servers",
        "--",
        name,
    ]);
    let Err(e) = proc::run(cmd, None, &[], Duration::from_secs(30)).await else {
        return Ok(());
    };
    // Two troved tasks (or tests) creating it at once: the loser fails ("already exists",
    // or "cannot lock /etc/passwd" while the winner writes) and finds it there soon.
    for _ in 0..50 {
        if lookup(name).await.is_some() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_lines_parse_to_name_uid_gid() {
        assert_eq!(
            parse_passwd_line("troved-db:x:998:998:troved:/nonexistent:/usr/sbin/nologin\n"),
            Some(("troved-db".into(), 998, 998))
        );
        assert_eq!(parse_passwd_line("bad:x:uid:1::/:/bin/sh"), None);
        assert_eq!(parse_passwd_line(""), None);
        assert_eq!(parse_passwd_line("a:x:1"), None);
    }

    #[test]
    fn an_ancestor_closed_to_the_user_is_named() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let closed = dir.path().join("closed");
        std::fs::create_dir_all(closed.join("inner")).unwrap();
        std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o700)).unwrap();
        let other = DbUser {
            name: "other".into(),
            uid: 4_000_000,
            gid: 4_000_000,
            switch: true,
        };
        let err = other
            .check_reachable(&closed.join("inner/data"))
            .unwrap_err();
        assert!(err.to_string().contains("closed"), "{err}");
        std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o711)).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
        other.check_reachable(&closed.join("inner/data")).unwrap();
    }
}
