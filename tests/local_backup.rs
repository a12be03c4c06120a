//! Backups and restores on the local provider (issue #14), against real PostgreSQL and
//! MariaDB servers: a [`LocalProvider`] opened directly on a temporary root (ports
//! 31900-31949), its saga ports called as the saga would, and the data checked through
//! the datastores' own clients over TCP, as a user would.
//!
//! A datastore whose binaries are absent is skipped with a `SKIPPED:` line (CI installs
//! them, see `.ci/run`). Servers, mounts and loop devices are cleaned up by the guard,
//! also when an assertion fails.
//!
//! Throughput for `docs/performance.md`:
//! `cargo test --test local_backup -- --ignored --nocapture timings`.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::local::{installation, traversable_tempdir, Guard};
use serde_json::json;
use troved::backup_store::{FileStore, DEFAULT_CONTAINER};
use troved::local::provider::{state, LocalConfig, LocalProvider};
use troved::local::{user, Datastore, DbUser, Installation, Instance};
use troved::saga::ports::{
    Artifact, ArtifactRef, BackupAgent, BackupRequest, ComputeProvider, GuestAgent, IdempotencyKey,
    ParentArtifact, PrepareRequest, PrepareUser, ProviderError, RestoreRequest, ServerSpec,
    VolumeProvider, VolumeSpec,
};
use troved::secrets::Vault;
use uuid::Uuid;

const PASSWORD: &str = "s3cret-pw";

/// A provider on a temporary root with its backup store; cleans up on drop (the guard
/// before the files).
struct Fixture {
    provider: LocalProvider,
    install: Installation,
    manager: &'static str,
    version: &'static str,
    backups: PathBuf,
    vault: Arc<Vault>,
    /// GB of each volume.
    volume_gb: u64,
    _guard: Guard,
    _dir: tempfile::TempDir,
}

/// One instance: its id, server and port.
struct Built {
    id: Uuid,
    server: String,
    port: u16,
    volume: String,
}

impl Fixture {
    /// `None` (after a `SKIPPED:` line) when the datastore is not installed.
    async fn open(datastore: Datastore, ports: &str) -> Option<Fixture> {
        let install = installation(datastore).await?;
        let (manager, version) = match datastore {
            Datastore::Postgresql => ("postgresql", "15"),
            _ => ("mariadb", "10.11"),
        };
        let dir = traversable_tempdir();
        let base = dir.path().canonicalize().unwrap();
        let root = base.join("local");
        let guard = Guard { root: root.clone() };
        let cfg = LocalConfig {
            root,
            ports: ports.parse().unwrap(),
            public_bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            versions: vec![(manager.into(), version.into(), install.clone())],
            user: DbUser::resolve(user::DEFAULT_LOCAL_USER).await.unwrap(),
            timeout: Duration::from_secs(60),
        };
        let vault = Arc::new(Vault::open(&base.join("vault.db")).unwrap());
        let backups = base.join("backups");
        let store = Arc::new(FileStore::open(&backups).await.unwrap());
        let provider = LocalProvider::open(cfg, vault.clone(), store)
            .await
            .unwrap();
        Some(Fixture {
            provider,
            install,
            manager,
            version,
            backups,
            vault,
            volume_gb: 1,
            _guard: guard,
            _dir: dir,
        })
    }

    /// Volume, server and prepare of a new instance with database `orders` and user
    /// `user` on it, from `restore` if given.
    async fn build(
        &self,
        name: &str,
        user: &str,
        restore: Option<RestoreRequest>,
    ) -> Result<Built, ProviderError> {
        let p = &self.provider;
        let id = Uuid::new_v4();
        let key = |step: &str| IdempotencyKey::new(id, step);
        let volume = p
            .create_volume(
                &key("volume"),
                &VolumeSpec {
                    instance_id: id,
                    size: self.volume_gb,
                    volume_type: None,
                    availability_zone: None,
                    instance_name: name.into(),
                },
            )
            .await?;
        let server = p
            .create_server(
                &key("server"),
                &ServerSpec {
                    instance_id: id,
                    instance_name: name.into(),
                    flavor_id: "1".into(),
                    vcpus: 1,
                    ram: 512,
                    availability_zone: None,
                    network_id: None,
                    public: false,
                    volume_id: Some(volume.id.clone()),
                },
            )
            .await?;
        let port = server.addresses[0].port.expect("a port");
        let req = PrepareRequest {
            instance_id: id,
            instance_name: name.into(),
            server_id: server.id.clone(),
            datastore_manager: self.manager.into(),
            datastore_version: self.version.into(),
            databases: vec!["orders".into()],
            users: vec![PrepareUser {
                name: user.into(),
                host: "%".into(),
                password: PASSWORD.into(),
                databases: vec!["orders".into()],
            }],
            configuration: None,
            replica_of: None,
            allowed_cidrs: Vec::new(),
            restore,
        };
        p.prepare(&key("prepare"), &req).await?;
        Ok(Built {
            id,
            server: server.id,
            port,
            volume: volume.id,
        })
    }

    async fn backup(
        &self,
        of: &Built,
        parent: Option<(Uuid, &Artifact)>,
    ) -> Result<(Uuid, Artifact), ProviderError> {
        let backup_id = Uuid::new_v4();
        let req = BackupRequest {
            backup_id,
            instance_id: of.id,
            instance_name: "bench".into(),
            server_id: of.server.clone(),
            datastore_manager: self.manager.into(),
            datastore_version: self.version.into(),
            container: DEFAULT_CONTAINER.into(),
            parent: parent.map(|(id, a)| ParentArtifact {
                backup_id: id,
                location: a.location.clone(),
                engine_position: a.engine_position.clone(),
            }),
        };
        let artifact = self.provider.take_backup(&req).await?;
        Ok((backup_id, artifact))
    }

    /// `sql` as `user` on `orders` over TCP; Ok(stdout) or Err(stderr), trimmed.
    fn query(&self, port: u16, user: &str, sql: &str) -> Result<String, String> {
        query(&self.install, port, user, sql)
    }

    /// `sql` as the database user's own account over the server's socket (MariaDB).
    async fn admin_sql(&self, of: &Built, sql: &str) {
        let dir = self
            ._guard
            .root
            .join("volumes")
            .join(&of.volume)
            .join("server");
        let inst = Instance {
            dir: dir.clone(),
            port: of.port,
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            ram_mb: None,
        };
        let user = DbUser::resolve(user::DEFAULT_LOCAL_USER).await.unwrap();
        let mut cmd = user.command(&self.install.tool("mariadb"), &dir);
        cmd.arg("--no-defaults")
            .arg(format!(
                "--socket={}",
                inst.run_dir().join("mariadb.sock").display()
            ))
            .arg(format!("--user={}", user.name))
            .args(["-e", sql]);
        let out = cmd.output().await.unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The superuser password the provider keeps (sealed) for `of`.
    fn admin_password(&self, of: &Built) -> String {
        let st = state::load(&self._guard.root).unwrap().unwrap();
        let sealed = st.servers[&of.server]
            .sealed_admin_password
            .clone()
            .unwrap();
        self.vault.unseal(of.id, &sealed).unwrap().unwrap()
    }

    /// Whether the superuser of `of` logs in with its own password and not with the
    /// one of `source` (whose data it restored).
    fn check_own_superuser(&self, of: &Built, source: &Built) {
        let admin = match self.install.datastore {
            Datastore::Postgresql => "postgres",
            _ => "root",
        };
        let (own, other) = (self.admin_password(of), self.admin_password(source));
        assert_ne!(own, other);
        login(&self.install, of.port, (admin, &own), "SELECT 1;").unwrap();
        login(&self.install, source.port, (admin, &other), "SELECT 1;").unwrap();
        let refused = login(&self.install, of.port, (admin, &other), "SELECT 1;");
        assert!(
            refused.is_err(),
            "the source's superuser password logs in: {refused:?}"
        );
    }

    /// The artifacts in the store's default container.
    fn stored(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.backups.join(DEFAULT_CONTAINER))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}

fn query(install: &Installation, port: u16, user: &str, sql: &str) -> Result<String, String> {
    login(install, port, (user, PASSWORD), sql)
}

/// `sql` as `user` with `password` on `orders` over TCP; Ok(stdout) or Err(stderr).
fn login(
    install: &Installation,
    port: u16,
    (user, password): (&str, &str),
    sql: &str,
) -> Result<String, String> {
    let port = port.to_string();
    let out = match install.datastore {
        Datastore::Postgresql => Command::new(install.tool("psql"))
            .arg(format!(
                "postgresql://{user}:{password}@127.0.0.1:{port}/orders"
            ))
            .args(["-X", "-w", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .env_remove("PGPASSWORD")
            .output(),
        _ => Command::new(install.tool("mariadb"))
            .args(["--no-defaults", "--protocol=TCP", "-h", "127.0.0.1", "-P"])
            .arg(&port)
            .args(["-u", user])
            .arg(format!("-p{password}"))
            .args(["orders", "-N", "-e", sql])
            .output(),
    }
    .expect("run the client");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

fn chain(of: &[(Uuid, &Artifact)]) -> RestoreRequest {
    RestoreRequest {
        backup_id: of.last().expect("a backup").0,
        chain: of
            .iter()
            .map(|(id, a)| ArtifactRef {
                backup_id: *id,
                location: a.location.clone(),
                checksum: a.checksum.clone(),
            })
            .collect(),
    }
}

/// The file of a `file://` location.
fn file_of(a: &Artifact) -> PathBuf {
    PathBuf::from(a.location.strip_prefix("file://").expect("a file location"))
}

/// The data directories and the restore scratch directories (`.restore.*`) in the
/// servers' directories under `root`.
fn data_dirs(root: &Path) -> (usize, Vec<PathBuf>) {
    let (mut data, mut scratch) = (0, Vec::new());
    let volumes = std::fs::read_dir(root.join("volumes")).unwrap();
    for v in volumes.flatten() {
        let Ok(entries) = std::fs::read_dir(v.path().join("server")) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name == "data" {
                data += 1;
            } else if name.starts_with(".restore.") || name.starts_with(".data.") {
                scratch.push(e.path());
            }
        }
    }
    (data, scratch)
}

#[tokio::test]
async fn postgresql_restore_has_the_rows_of_the_backup_and_not_later_ones() {
    let Some(f) = Fixture::open(Datastore::Postgresql, "31900-31914").await else {
        return;
    };
    assert!(!f.provider.supports_incremental("postgresql", "15"));
    let a = f.build("pg-source", "app", None).await.unwrap();
    f.query(
        a.port,
        "app",
        "CREATE TABLE t (i int); INSERT INTO t VALUES (1), (2);",
    )
    .unwrap();
    let (b1, art) = f.backup(&a, None).await.unwrap();
    assert!(art.size > 0 && art.checksum.len() == 64, "{art:?}");
    assert_eq!(art.engine_position, None);
    assert_eq!(f.stored(), [b1.to_string()]);
    f.query(a.port, "app", "INSERT INTO t VALUES (3);").unwrap();

    // The restore: the rows up to the backup; the request's user on top of the source's.
    let r = f
        .build("pg-restored", "app2", Some(chain(&[(b1, &art)])))
        .await
        .unwrap();
    let rows = "SELECT string_agg(i::text, ',' ORDER BY i) FROM t;";
    assert_eq!(f.query(r.port, "app", rows).unwrap(), "1,2");
    assert_eq!(
        f.query(r.port, "app2", "SELECT current_user;").unwrap(),
        "app2"
    );
    f.check_own_superuser(&r, &a);
    // Its own server: a write there is not on the source, and the source goes on.
    f.query(r.port, "app", "INSERT INTO t VALUES (10);")
        .unwrap();
    assert_eq!(f.query(a.port, "app", rows).unwrap(), "1,2,3");
    assert_eq!(f.query(r.port, "app", rows).unwrap(), "1,2,10");

    // No incrementals for PostgreSQL 15.
    let err = f.backup(&a, Some((b1, &art))).await.unwrap_err();
    assert!(matches!(err, ProviderError::Permanent(_)), "{err:?}");

    // A tool that fails (no WAL sender allowed) leaves no artifact, and says why.
    let values = json!({"max_wal_senders": 0});
    let key = IdempotencyKey::new(a.id, "configuration-1");
    f.provider
        .apply_configuration(&key, &a.server, Some(&values))
        .await
        .unwrap();
    let err = f.backup(&a, None).await.unwrap_err();
    let ProviderError::Permanent(text) = &err else {
        panic!("not permanent: {err:?}");
    };
    assert!(text.contains("pg_basebackup"), "{text}");
    assert_eq!(f.stored(), [b1.to_string()]);

    corrupted_and_missing_artifacts_fail_the_restore(&f, (b1, &art)).await;
}

/// A flipped byte, then a missing file: the restore fails, permanently, saying so, and
/// leaves no data directory or scratch behind.
async fn corrupted_and_missing_artifacts_fail_the_restore(
    f: &Fixture,
    (id, art): (Uuid, &Artifact),
) {
    let file = file_of(art);
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&file, &bytes).unwrap();
    let err = f
        .build("corrupt", "app", Some(chain(&[(id, art)])))
        .await
        .err()
        .expect("a corrupted artifact must not restore");
    let ProviderError::Permanent(text) = &err else {
        panic!("not permanent: {err:?}");
    };
    assert!(text.contains("checksum mismatch"), "{text}");
    let root = f._guard.root.clone();
    // The source and the good restore only.
    assert_eq!(data_dirs(&root), (2, Vec::new()));

    std::fs::remove_file(&file).unwrap();
    let err = f
        .build("missing", "app", Some(chain(&[(id, art)])))
        .await
        .err()
        .expect("a missing artifact must not restore");
    let ProviderError::Permanent(text) = &err else {
        panic!("not permanent: {err:?}");
    };
    assert!(text.contains("missing"), "{text}");
    assert_eq!(data_dirs(&root), (2, Vec::new()));
}

#[tokio::test]
async fn mariadb_restore_of_an_incremental_has_the_rows_up_to_it() {
    let Some(f) = Fixture::open(Datastore::Mariadb, "31920-31949").await else {
        return;
    };
    assert!(f.provider.supports_incremental("mariadb", "10.11"));
    let a = f.build("maria-source", "app", None).await.unwrap();
    let rows = "SELECT GROUP_CONCAT(i ORDER BY i) FROM t;";
    f.query(
        a.port,
        "app",
        "CREATE TABLE t (i int PRIMARY KEY) ENGINE=InnoDB; INSERT INTO t VALUES (1), (2);",
    )
    .unwrap();
    let (full_id, full) = f.backup(&a, None).await.unwrap();
    let lsn = |a: &Artifact| -> u64 { a.engine_position.as_deref().unwrap().parse().unwrap() };
    f.query(a.port, "app", "INSERT INTO t VALUES (3);").unwrap();
    let (inc_id, inc) = f.backup(&a, Some((full_id, &full))).await.unwrap();
    assert!(lsn(&inc) > lsn(&full), "{full:?} {inc:?}");
    assert!(inc.size < full.size, "{full:?} {inc:?}");
    f.query(a.port, "app", "INSERT INTO t VALUES (4);").unwrap();

    let restore = chain(&[(full_id, &full), (inc_id, &inc)]);
    let r = f
        .build("maria-restored", "app2", Some(restore))
        .await
        .unwrap();
    assert_eq!(f.query(r.port, "app", rows).unwrap(), "1,2,3");
    assert_eq!(
        f.query(r.port, "app2", "SELECT COUNT(*) FROM t;").unwrap(),
        "3"
    );
    f.check_own_superuser(&r, &a);
    f.query(r.port, "app", "INSERT INTO t VALUES (10);")
        .unwrap();
    assert_eq!(f.query(a.port, "app", rows).unwrap(), "1,2,3,4");

    // A tool that fails (its account locked) leaves nothing, and says why.
    f.admin_sql(&a, "ALTER USER CURRENT_USER() ACCOUNT LOCK;")
        .await;
    let before = f.stored();
    let err = f.backup(&a, Some((inc_id, &inc))).await.unwrap_err();
    let ProviderError::Permanent(text) = &err else {
        panic!("not permanent: {err:?}");
    };
    assert!(text.contains("mariadb-backup"), "{text}");
    assert_eq!(f.stored(), before);
}

/// A backup whose data is larger than the new volume (1 GB): the restore fails,
/// permanently, on the full volume, and leaves no data directory or scratch behind.
#[tokio::test]
async fn a_restore_that_does_not_fit_its_volume_fails_and_leaves_nothing() {
    let Some(mut f) = Fixture::open(Datastore::Postgresql, "31915-31919").await else {
        return;
    };
    f.volume_gb = 4;
    let a = f.build("big", "app", None).await.unwrap();
    // 1.2 GB stored uncompressed on the server, a few MB gzip'ed in the artifact.
    let fill = "CREATE TABLE big (s text); ALTER TABLE big ALTER s SET STORAGE PLAIN; \
                INSERT INTO big SELECT repeat('x', 1000) FROM generate_series(1, 1200000);";
    f.query(a.port, "app", fill).unwrap();
    let (id, art) = f.backup(&a, None).await.unwrap();
    f.volume_gb = 1;
    let err = f
        .build("small", "app", Some(chain(&[(id, &art)])))
        .await
        .err()
        .expect("a restore larger than its volume must fail");
    let ProviderError::Permanent(text) = &err else {
        panic!("not permanent: {err:?}");
    };
    assert!(text.contains("No space left on device"), "{text}");
    assert_eq!(data_dirs(&f._guard.root), (1, Vec::new()));
}

#[tokio::test]
async fn a_backup_of_an_unknown_server_is_not_found() {
    let Some(f) = Fixture::open(Datastore::Postgresql, "31900-31901").await else {
        return;
    };
    let built = Built {
        id: Uuid::new_v4(),
        server: "srv-nope".into(),
        port: 0,
        volume: "vol-nope".into(),
    };
    let err = f.backup(&built, None).await.unwrap_err();
    assert!(matches!(err, ProviderError::NotFound(_)), "{err:?}");
}

/// Backup and restore throughput of a few hundred MB, beside the backup tool run by
/// hand into a file with the same options. "data" is the data directory's size (for
/// PostgreSQL with the WAL the load wrote, which a backup mostly does not copy).
#[tokio::test]
#[ignore = "a measurement: run with --ignored --nocapture"]
async fn timings() {
    for (datastore, ports) in [
        (Datastore::Postgresql, "31900-31919"),
        (Datastore::Mariadb, "31920-31949"),
    ] {
        let Some(mut f) = Fixture::open(datastore, ports).await else {
            continue;
        };
        f.volume_gb = 4;
        let a = f.build("bench", "app", None).await.unwrap();
        // About 1 GB of data directory each (issue #14's benchmark row).
        let rows: u64 = match datastore {
            Datastore::Postgresql => 4_500_000,
            _ => 6_500_000,
        };
        let fill = match datastore {
            Datastore::Postgresql => format!(
                "CREATE TABLE big AS SELECT g AS i, md5(g::text) || md5((g * 7)::text) AS s \
                 FROM generate_series(1, {rows}) g;"
            ),
            _ => format!(
                "CREATE TABLE big (i int PRIMARY KEY, s varchar(64)) ENGINE=InnoDB; \
                 INSERT INTO big SELECT seq, CONCAT(MD5(seq), MD5(seq * 7)) FROM seq_1_to_{rows};"
            ),
        };
        f.query(a.port, "app", &fill).unwrap();
        let data_mb = du_mb(&f.server_dir(&a).join("data"));
        // The best of three each, alternating (a single run varies by seconds).
        let (mut backup, mut by_hand, mut last) = (f64::MAX, f64::MAX, None);
        for _ in 0..3 {
            let started = Instant::now();
            last = Some(f.backup(&a, None).await.unwrap());
            backup = backup.min(started.elapsed().as_secs_f64());
            by_hand = by_hand.min(f.backup_by_hand(&a).await);
        }
        let (id, art) = last.unwrap();
        let started = Instant::now();
        let r = f
            .build("bench-restored", "app", Some(chain(&[(id, &art)])))
            .await
            .unwrap();
        let restore = started.elapsed().as_secs_f64();
        let count = f.query(r.port, "app", "SELECT count(*) FROM big;").unwrap();
        assert_eq!(count, rows.to_string());
        let mb = art.size as f64 / 1e6;
        println!(
            "{}: data {data_mb:.0} MB, artifact {mb:.0} MB; backup {backup:.1} s \
             ({:.0} MB/s of data), by hand {by_hand:.1} s; restore, build included, \
             {restore:.1} s ({:.0} MB/s of data)",
            f.manager,
            data_mb / backup,
            data_mb / restore,
        );
    }
}

/// MB under `dir` (`du -sm`).
fn du_mb(dir: &Path) -> f64 {
    let out = Command::new("du").arg("-sm").arg(dir).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace().next().unwrap().parse().unwrap()
}

impl Fixture {
    /// The instance directory of `of`.
    fn server_dir(&self, of: &Built) -> PathBuf {
        self._guard
            .root
            .join("volumes")
            .join(&of.volume)
            .join("server")
    }

    /// Seconds the engine's backup tool takes by hand, into a file beside the store.
    async fn backup_by_hand(&self, of: &Built) -> f64 {
        let dir = self.server_dir(of);
        let inst = Instance {
            dir: dir.clone(),
            port: of.port,
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            ram_mb: None,
        };
        let user = DbUser::resolve(user::DEFAULT_LOCAL_USER).await.unwrap();
        let scratch = dir.join("by-hand");
        std::fs::create_dir_all(&scratch).unwrap();
        std::os::unix::fs::chown(&scratch, Some(user.uid), Some(user.gid)).unwrap();
        let mut cmd = match self.install.datastore {
            Datastore::Postgresql => {
                let mut cmd = user.command(&self.install.tool("pg_basebackup"), &scratch);
                cmd.arg("-h")
                    .arg(inst.run_dir())
                    .arg("-p")
                    .arg(of.port.to_string());
                cmd.args([
                    "-U", "postgres", "-w", "-D", "-", "-F", "tar", "-X", "fetch",
                ]);
                cmd.args(["-c", "fast", "-Z", "client-gzip:1"]);
                cmd
            }
            _ => {
                let tool = self
                    .install
                    .tool("mariadb")
                    .with_file_name("mariadb-backup");
                let mut cmd = user.command(&tool, &scratch);
                cmd.args(["--no-defaults", "--backup", "--stream=xbstream"])
                    .arg(format!(
                        "--socket={}",
                        inst.run_dir().join("mariadb.sock").display()
                    ))
                    .arg(format!("--user={}", user.name))
                    .arg(format!("--datadir={}", inst.data_dir().display()))
                    .arg(format!("--target-dir={}", scratch.display()));
                cmd
            }
        };
        let out = std::fs::File::create(self.backups.join("by-hand")).unwrap();
        cmd.stdout(out).stderr(std::process::Stdio::null());
        let started = Instant::now();
        assert!(cmd.status().await.unwrap().success());
        started.elapsed().as_secs_f64()
    }
}
