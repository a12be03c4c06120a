//! `--event-store`: an embedded store outside the data directory is used (and locked),
//! and a bad URL is refused at start without echoing its credentials.

mod common;

use std::process::{Command, Stdio};

use common::TestServer;
use troved::store::sqlite::SqliteStore;
use troved::store::EventStore;

#[tokio::test]
async fn an_embedded_store_elsewhere_is_used_and_locked() {
    let data = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let file = elsewhere.path().join("log").join("events.db");
    let url = format!("sqlite://{}", file.display());
    let mut s = TestServer::start(data.path(), &["--event-store", &url]).await;
    let id = s.create("alice", "p1", "elsewhere").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    s.kill_and_restart().await;
    assert_eq!(
        s.get("alice", "p1", &format!("/instances/{id}")).await.0,
        200,
        "the instance survived the restart, read back from {url}"
    );
    assert!(
        !data.path().join("events.db").exists(),
        "the default store was not used"
    );

    // A second server with its own data directory but the same store is refused.
    let other = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_troved"))
        .args([
            "serve",
            "--provider",
            "sim",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(other.path())
        .args(["--event-store", &url])
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another troved process"), "{err}");
    s.kill();

    let store = SqliteStore::open(&file).unwrap();
    let events = store.read_stream(&format!("instance-{id}")).await.unwrap();
    assert!(!events.is_empty());
    store.shutdown().await;
}

#[test]
fn a_bad_event_store_url_is_refused_without_its_secrets() {
    let data = tempfile::tempdir().unwrap();
    for url in [
        "postgres://admin:hunter2@db/troved",
        "esdb://admin:hunter2@[::1",
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_troved"))
            .args([
                "serve",
                "--provider",
                "sim",
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(data.path())
            .args(["--event-store", url])
            .stdout(Stdio::null())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{url} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("event store") || err.contains("EventStoreDB"),
            "{err}"
        );
        assert!(!err.contains("hunter2"), "{err}");
    }
}

/// Every `--help` of every subcommand, with every variable that can name an event store
/// set to a URL with a password: the password is never printed (clap shows the values
/// of environment variables in `--help` unless told not to).
#[test]
fn no_help_text_shows_a_store_password() {
    use clap::CommandFactory;
    fn paths(cmd: &clap::Command, prefix: &[String], out: &mut Vec<Vec<String>>) {
        out.push(prefix.to_vec());
        for sub in cmd.get_subcommands() {
            let mut p = prefix.to_vec();
            p.push(sub.get_name().to_string());
            paths(sub, &p, out);
        }
    }
    let mut all = Vec::new();
    paths(&troved::config::Cli::command(), &[], &mut all);
    assert!(all.iter().any(|p| p == &["serve"]), "{all:?}");
    let url = "esdb://admin:pw-5ecret@host:2113";
    for path in all {
        let out = Command::new(env!("CARGO_BIN_EXE_troved"))
            .args(&path)
            .arg("--help")
            .env("TROVED_EVENT_STORE", url)
            .env("TROVED_MIGRATE_FROM", url)
            .env("TROVED_MIGRATE_TO", url)
            .output()
            .unwrap();
        assert!(out.status.success(), "{path:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            !text.contains("pw-5ecret"),
            "troved {path:?} --help: {text}"
        );
    }
}
