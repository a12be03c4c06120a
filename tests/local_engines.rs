//! The local provider's engines against real PostgreSQL and MariaDB servers (issue #13).
//!
//! Each test spawns its own servers on free loopback ports in a temporary directory and
//! stops them by pid in a `Drop` guard, even when an assertion fails; it never touches a
//! system-wide database service. A datastore whose binaries are absent is skipped with a
//! `SKIPPED:` line (CI installs both, see `.ci/run`).
//!
//! Timings for `docs/performance.md`:
//! `cargo test --test local_engines -- --nocapture --test-threads 1 timings`.

use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use troved::local::{
    discover, engine, proc, ConfigOutcome, Datastore, DbUser, Engine, EngineOptions, Health,
    Installation, Instance, ServerRecord, UserSpec,
};

/// A tricky database name: quotes of both languages, a backtick, a MariaDB grant wildcard.
const DB: &str = "or\"d'ers`_1";
/// A user name that would end a literal or an identifier if it were not quoted.
const USER: &str = "app'; DROP \"x";
/// A password with quotes, a backslash and a statement terminator.
const PASSWORD: &str = "s3cr'et\\\"pw;-- $$";
const ADMIN_PASSWORD: &str = "adm'in\\pw";

/// A temporary root with its engine and instance; kills its server (by pid) on drop.
struct Fixture {
    engine: Box<dyn Engine>,
    inst: Instance,
    root: tempfile::TempDir,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        kill_recorded(&self.inst);
    }
}

/// Kills the recorded server of `inst`, if it runs, and waits (bounded) until it is gone.
fn kill_recorded(inst: &Instance) {
    let Some(record) = ServerRecord::load(inst) else {
        return;
    };
    if record.is_running() {
        proc::signal(record.pid, rustix::process::Signal::KILL);
        let deadline = Instant::now() + Duration::from_secs(10);
        while record.is_running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

async fn installation(datastore: Datastore) -> Option<Installation> {
    let found = discover::installed()
        .await
        .into_iter()
        .find(|i| i.datastore == datastore);
    if found.is_none() {
        println!("SKIPPED: no {} server installed", datastore.manager());
    }
    found
}

/// A fixture whose directories the database user can reach (a tempdir is 0700).
async fn fixture(install: &Installation, name: &str) -> Fixture {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().unwrap();
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let options = options(root.path()).await;
    let inst = Instance {
        dir: root.path().join(name),
        port: free_port(),
        bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
        ram_mb: Some(512),
    };
    Fixture {
        engine: engine(install, options).unwrap(),
        inst,
        root,
    }
}

async fn options(root: &Path) -> EngineOptions {
    let user = DbUser::resolve(troved::local::user::DEFAULT_LOCAL_USER)
        .await
        .unwrap();
    EngineOptions {
        user,
        templates: root.join("templates"),
        timeout: Duration::from_secs(60),
    }
}

/// Runs a client over TCP as `user` with `password`; stdout, or stderr on failure.
fn client(f: &Fixture, user: &str, password: &str, db: &str, sql: &str) -> Result<String, String> {
    let install = f.engine.installation();
    let port = f.inst.port.to_string();
    let out = match install.datastore {
        Datastore::Postgresql => Command::new(install.tool("psql"))
            .args(["-X", "-w", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                user,
                "-d",
                db,
                "-c",
                sql,
            ])
            .env("PGPASSWORD", password)
            .output(),
        _ => Command::new(install.tool("mariadb"))
            .args([
                "--no-defaults",
                "--protocol=tcp",
                "-h",
                "127.0.0.1",
                "-P",
                &port,
            ])
            .args(["-u", user, "-D", db, "-N", "-B", "-e", sql])
            .env("MYSQL_PWD", password)
            .output(),
    }
    .unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn admin_db(f: &Fixture) -> &'static str {
    match f.engine.installation().datastore {
        Datastore::Postgresql => "postgres",
        _ => "mysql",
    }
}

fn max_connections(f: &Fixture) -> String {
    let sql = match f.engine.installation().datastore {
        Datastore::Postgresql => "SHOW max_connections",
        _ => "SELECT @@max_connections",
    };
    client(f, f.engine.admin_user(), ADMIN_PASSWORD, admin_db(f), sql).unwrap()
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().mode() & 0o7777
}

/// init → start → databases and users (with names that try to inject) → logins →
/// admin password → configuration → re-adoption.
async fn starts_and_serves_created_users(f: &Fixture) -> ServerRecord {
    let (e, inst) = (&f.engine, &f.inst);
    e.init(inst).await.unwrap();
    assert_eq!(mode(&inst.dir), 0o700);
    assert_eq!(mode(&inst.data_dir()), 0o700);
    let record = e.start(inst).await.unwrap();
    assert!(record.is_running());
    assert_eq!(e.health(inst).await, Health::Healthy);

    e.create_database(inst, DB).await.unwrap();
    e.create_database(inst, DB).await.unwrap(); // a retried step finds it done
    let user = UserSpec {
        name: USER.into(),
        host: "%".into(),
        password: PASSWORD.into(),
        databases: vec![DB.into()],
    };
    e.create_user(inst, &user).await.unwrap();
    e.create_user(inst, &user).await.unwrap();
    let sql = "CREATE TABLE kept (x int); INSERT INTO kept VALUES (7)";
    client(f, USER, PASSWORD, DB, sql).expect("the created user logs in and writes");
    let wrong = client(f, USER, "s3cr'et", DB, "SELECT 1");
    assert!(wrong.is_err(), "a wrong password must fail: {wrong:?}");

    e.set_admin_password(inst, ADMIN_PASSWORD).await.unwrap();
    client(f, e.admin_user(), ADMIN_PASSWORD, admin_db(f), "SELECT 1").expect("admin login");
    assert!(client(f, e.admin_user(), "nope", admin_db(f), "SELECT 1").is_err());

    // A second engine (a restarted troved) adopts the running server.
    let restarted_troved = engine(e.installation(), options(f.root.path()).await).unwrap();
    let again = restarted_troved.start(inst).await.unwrap();
    assert_eq!(
        again.pid, record.pid,
        "never a second server on one data dir"
    );
    record
}

async fn applies_configuration(f: &Fixture) {
    let (e, inst) = (&f.engine, &f.inst);
    let values = vec![("max_connections".to_string(), "42".to_string())];
    let outcome = e.apply_config(inst, &values).await.unwrap();
    if outcome == ConfigOutcome::RestartRequired {
        e.restart(inst).await.unwrap();
    }
    assert_eq!(max_connections(f), "42");
    e.restart(inst).await.unwrap();
    assert_eq!(max_connections(f), "42", "kept across a restart");
    let unknown = vec![("no_such_parameter".to_string(), "1".to_string())];
    assert!(e.apply_config(inst, &unknown).await.is_err());
    e.restart(inst).await.unwrap();
    assert_eq!(
        max_connections(f),
        "42",
        "a refused value leaves the previous ones"
    );
}

/// kill -9 → health says Down → a start brings it back with its rows → stop → gone.
async fn survives_kill_and_stops(f: &Fixture) {
    let (e, inst) = (&f.engine, &f.inst);
    let record = ServerRecord::load(inst).unwrap();
    proc::signal(record.pid, rustix::process::Signal::KILL);
    assert!(proc::wait_gone(record.pid, &record.data_dir, Duration::from_secs(10)).await);
    assert_eq!(e.health(inst).await, Health::Down);
    let restarted = e.start(inst).await.unwrap();
    assert_ne!(restarted.pid, record.pid);
    assert_eq!(e.health(inst).await, Health::Healthy);
    assert_eq!(
        client(f, USER, PASSWORD, DB, "SELECT x FROM kept").unwrap(),
        "7"
    );

    e.stop(inst).await.unwrap();
    assert!(!restarted.is_running(), "the server process is gone");
    assert_eq!(e.health(inst).await, Health::Down);
    assert!(client(f, USER, PASSWORD, DB, "SELECT 1").is_err());
    e.stop(inst).await.unwrap(); // stopping a stopped server succeeds
    e.destroy(inst).await.unwrap();
    assert!(!inst.dir.exists());
}

async fn full_lifecycle(datastore: Datastore) {
    let Some(install) = installation(datastore).await else {
        return;
    };
    let f = fixture(&install, "instance-1").await;
    starts_and_serves_created_users(&f).await;
    applies_configuration(&f).await;
    survives_kill_and_stops(&f).await;
    assert!(f.root.path().join("templates").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn postgresql_server_runs_created_users_configuration_and_recovers_from_kill() {
    full_lifecycle(Datastore::Postgresql).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mariadb_server_runs_created_users_configuration_and_recovers_from_kill() {
    full_lifecycle(Datastore::Mariadb).await;
}

/// Instances whose servers are killed on drop (the timing runs make several).
struct Servers(Vec<Instance>);

impl Drop for Servers {
    fn drop(&mut self) {
        self.0.iter().for_each(kill_recorded);
    }
}

fn median(mut samples: Vec<Duration>) -> String {
    samples.sort();
    format!("{:.3} s", samples[samples.len() / 2].as_secs_f64())
}

/// Resident memory of a server: its process and its children (shared memory is counted in
/// each, so this is an upper bound), MiB.
fn rss_mib(pid: u32) -> u64 {
    let kib = |p: &str| -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{p}/status")).unwrap_or_default();
        let line = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .unwrap_or("");
        line.split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let children: u64 = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            let ppid = stat
                .rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().nth(1));
            ppid == Some(&pid.to_string())
        })
        .map(|p| kib(&p))
        .sum();
    (kib(&pid.to_string()) + children) / 1024
}

async fn init_fresh(install: &Installation, options: EngineOptions, inst: &Instance) {
    match install.datastore {
        Datastore::Postgresql => troved::local::postgres::Postgres::new(install.clone(), options)
            .init_fresh(inst)
            .await
            .unwrap(),
        _ => troved::local::mariadb::Mariadb::new(install.clone(), options)
            .init_fresh(inst)
            .await
            .unwrap(),
    }
}

fn instance(root: &Path, name: &str) -> Instance {
    Instance {
        dir: root.join(name),
        port: free_port(),
        bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
        ram_mb: Some(512),
    }
}

/// Prints the figures `docs/performance.md` records (no assertion on time: the machine
/// may be busy). Five instances from the template, three with a fresh init.
async fn timings(datastore: Datastore) {
    let Some(install) = installation(datastore).await else {
        return;
    };
    let f = fixture(&install, "first").await;
    let root = f.root.path();
    let started = Instant::now();
    f.engine.init(&f.inst).await.unwrap();
    let first = started.elapsed();
    let mut servers = Servers(Vec::new());
    let (mut copy, mut fresh, mut start, mut users, mut stop) =
        (vec![], vec![], vec![], vec![], vec![]);
    for i in 0..5 {
        let inst = instance(root, &format!("copy-{i}"));
        let t = Instant::now();
        f.engine.init(&inst).await.unwrap();
        copy.push(t.elapsed());
        servers.0.push(inst);
    }
    for i in 0..3 {
        let inst = instance(root, &format!("fresh-{i}"));
        let t = Instant::now();
        init_fresh(&install, options(root).await, &inst).await;
        fresh.push(t.elapsed());
    }
    let mut rss = 0;
    for inst in &servers.0 {
        let t = Instant::now();
        let record = f.engine.start(inst).await.unwrap();
        start.push(t.elapsed());
        rss = rss.max(rss_mib(record.pid));
        let t = Instant::now();
        f.engine.create_database(inst, "orders").await.unwrap();
        let user = UserSpec {
            name: "app".into(),
            host: "%".into(),
            password: "pw".into(),
            databases: vec!["orders".into()],
        };
        f.engine.create_user(inst, &user).await.unwrap();
        users.push(t.elapsed());
        let t = Instant::now();
        f.engine.stop(inst).await.unwrap();
        stop.push(t.elapsed());
    }
    let du = Command::new("du")
        .arg("-sm")
        .arg(servers.0[0].data_dir())
        .output()
        .unwrap();
    let size = String::from_utf8_lossy(&du.stdout)
        .split_whitespace()
        .next()
        .unwrap_or("?")
        .to_string();
    println!(
        "| {} {} | first init (template + copy) | {:.3} s |",
        datastore.manager(),
        install.version,
        first.as_secs_f64()
    );
    println!(
        "| | init from the template (median of 5) | {} |",
        median(copy)
    );
    println!(
        "| | init without the template (median of 3) | {} |",
        median(fresh)
    );
    println!(
        "| | start until it answers (median of 5) | {} |",
        median(start)
    );
    println!(
        "| | one database + one user with a grant (median of 5) | {} |",
        median(users)
    );
    println!("| | fast stop (median of 5) | {} |", median(stop));
    println!("| | data directory | {size} MiB |");
    println!("| | RSS of an idle server, 512 MB RAM sizing (max of 5) | {rss} MiB |");
}

#[tokio::test(flavor = "multi_thread")]
async fn timings_postgresql() {
    timings(Datastore::Postgresql).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn timings_mariadb() {
    timings(Datastore::Mariadb).await;
}
