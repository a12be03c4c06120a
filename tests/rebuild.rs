//! A live rebuild of the read models on a running server under read load: every
//! request is served throughout (no 5xx, never an empty or short list), the new models
//! are swapped in, and the server goes on projecting into them.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::TestServer;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_rebuild_serves_every_request_and_swaps_in() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(
        TestServer::start(
            dir.path(),
            &[
                "--sim-latency-ms",
                "0",
                "--quota-instances",
                "-1",
                "--quota-volumes",
                "-1",
            ],
        )
        .await,
    );
    let mut ids = Vec::new();
    for n in 0..30 {
        ids.push(
            s.create("alice", "p1", &format!("r{n}")).await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    for id in &ids {
        s.wait_for("alice", "p1", id, |i| i["status"] == "ACTIVE")
            .await;
    }

    // Readers: full first pages and shows, all the time.
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let mut readers = Vec::new();
    for id in ids.iter().take(4) {
        let (s, stop, served, id) = (s.clone(), stop.clone(), served.clone(), id.clone());
        readers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let (status, list) = s.get("alice", "p1", "/instances").await;
                assert_eq!(status, 200, "{list}");
                assert_eq!(
                    list["instances"].as_array().unwrap().len(),
                    20,
                    "a full page, always"
                );
                let (status, shown) = s.get("alice", "p1", &format!("/instances/{id}")).await;
                assert_eq!(status, 200, "{shown}");
                served.fetch_add(2, Ordering::Relaxed);
            }
        }));
    }

    // A writer renames all the time: the rebuild must still finish (it holds the
    // projector still for its last catch-up).
    let writer = {
        let (s, stop, id) = (s.clone(), stop.clone(), ids[29].clone());
        tokio::spawn(async move {
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let body = json!({"instance": {"name": format!("w{n}")}});
                let (status, resp) = s
                    .patch("alice", "p1", &format!("/instances/{id}"), &body)
                    .await;
                assert_eq!(status, 202, "{resp}");
                n += 1;
            }
            n
        })
    };

    // Only admins may rebuild.
    let (status, _) = s
        .post("alice", "p1", "/mgmt/projections/rebuild", &json!({}))
        .await;
    assert_eq!(status, 401);
    let (status, started) = s
        .post("admin", "p1", "/mgmt/projections/rebuild", &json!({}))
        .await;
    assert_eq!(status, 202, "{started}");
    assert_eq!(started["rebuild"]["state"], "running");
    let deadline = Instant::now() + Duration::from_secs(20);
    let done = loop {
        let (status, body) = s.get("admin", "p1", "/mgmt/projections/rebuild").await;
        assert_eq!(status, 200, "{body}");
        if body["rebuild"]["state"] != "running" {
            break body;
        }
        assert!(Instant::now() < deadline, "rebuild did not finish: {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(done["rebuild"]["state"], "done", "{done}");
    assert!(done["rebuild"]["events"].as_u64().unwrap() > 0);

    // Keep reading a little after the swap too.
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.await.expect("a reader saw a failure");
    }
    assert!(writer.await.expect("the writer saw a failure") > 0);
    assert!(served.load(Ordering::Relaxed) > 10);

    // The swapped-in models keep following the log: a new write is visible at once.
    let new_id = s.create("alice", "p1", "after-rebuild").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, _) = s.get("alice", "p1", &format!("/instances/{new_id}")).await;
    assert_eq!(status, 200);
    let (_, rename) = s
        .patch(
            "alice",
            "p1",
            &format!("/instances/{}", ids[0]),
            &json!({"instance": {"name": "renamed-after"}}),
        )
        .await;
    assert!(rename.is_null(), "{rename}");
    let (_, shown) = s
        .get("alice", "p1", &format!("/instances/{}", ids[0]))
        .await;
    assert_eq!(shown["instance"]["name"], "renamed-after");
}
