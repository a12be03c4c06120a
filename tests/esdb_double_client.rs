//! Proves the in-process EventStoreDB double (tests/esdb_double) against the real
//! `eventstore::Client`: `cargo test --test esdb_double_client`.

use std::time::Duration;

use bytes::Bytes;
use esdb_double::EsdbDouble;
use eventstore::{
    AppendToStreamOptions, BatchAppendOptions, Client, ClientSettings, CurrentRevision,
    DeleteStreamOptions, Error, EventData, ExpectedRevision, Position, ReadAllOptions,
    ReadStreamOptions, RecordedEvent, ResolvedEvent, RetryOptions, StreamPosition,
    SubscribeToAllOptions, SubscribeToStreamOptions, Subscription, SubscriptionEvent,
    SubscriptionFilter, WriteResult,
};
use uuid::Uuid;

const STEP: Duration = Duration::from_secs(2);

fn client(double: &EsdbDouble) -> Client {
    let settings: ClientSettings = double.url().parse().expect("connection string");
    Client::new(settings).expect("client")
}

fn event(event_type: &str, n: u64) -> EventData {
    EventData::json(event_type, &serde_json::json!({ "n": n }))
        .expect("json")
        .id(Uuid::new_v4())
}

fn opts(expected: ExpectedRevision) -> AppendToStreamOptions {
    AppendToStreamOptions::default().expected_revision(expected)
}

async fn append(
    client: &Client,
    stream: &str,
    expected: ExpectedRevision,
    events: Vec<EventData>,
) -> eventstore::Result<WriteResult> {
    client
        .append_to_stream(stream, &opts(expected), events)
        .await
}

async fn read_stream(
    client: &Client,
    stream: &str,
    options: &ReadStreamOptions,
) -> eventstore::Result<Vec<RecordedEvent>> {
    let mut read = client.read_stream(stream, options).await?;
    let mut out = Vec::new();
    while let Some(e) = read.next().await? {
        out.push(e.event.expect("event"));
    }
    Ok(out)
}

async fn read_all(client: &Client, options: &ReadAllOptions) -> Vec<ResolvedEvent> {
    let mut read = client.read_all(options).await.expect("read_all");
    let mut out = Vec::new();
    while let Some(e) = read.next().await.expect("read_all next") {
        out.push(e);
    }
    out
}

/// How many events a forwards read of `stream` returns.
async fn stream_len(client: &Client, stream: &str) -> usize {
    let options = ReadStreamOptions::default().position(StreamPosition::Start);
    read_stream(client, stream, &options)
        .await
        .expect("read_stream")
        .len()
}

/// The ids of every event a forwards read of `$all` returns.
async fn all_ids(client: &Client) -> Vec<Uuid> {
    let options = ReadAllOptions::default().position(StreamPosition::Start);
    read_all(client, &options)
        .await
        .iter()
        .map(|e| e.get_original_event().id)
        .collect()
}

fn pos(e: &RecordedEvent) -> (u64, u64) {
    (e.position.commit, e.position.prepare)
}

async fn next_event(sub: &mut Subscription) -> eventstore::Result<SubscriptionEvent> {
    tokio::time::timeout(STEP, sub.next_subscription_event())
        .await
        .expect("subscription message within 2 s")
}

/// Next event appearing on the subscription, skipping confirmation/checkpoint/caught-up.
async fn next_appeared(sub: &mut Subscription) -> RecordedEvent {
    loop {
        if let SubscriptionEvent::EventAppeared(e) = next_event(sub).await.expect("subscription") {
            return e.event.expect("event");
        }
    }
}

fn assert_wrong_expected(
    result: eventstore::Result<WriteResult>,
    current: CurrentRevision,
    expected: ExpectedRevision,
) {
    match result {
        Err(Error::WrongExpectedVersion {
            current: c,
            expected: x,
        }) => {
            assert_eq!(c, current, "current revision");
            assert_eq!(x, expected, "expected revision");
        }
        other => panic!("expected WrongExpectedVersion {current:?}/{expected:?}, got {other:?}"),
    }
}

fn is_connection_error(e: &Error) -> bool {
    matches!(
        e,
        Error::ServerError(_)
            | Error::GrpcConnectionError(_)
            | Error::ConnectionClosed
            | Error::DeadlineExceeded
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn append_and_read_back_keep_ids_data_and_metadata() {
    let double = EsdbDouble::start().await;
    let client = client(&double);
    let (id1, id2) = (Uuid::new_v4(), Uuid::new_v4());
    let first = EventData::json("InstanceCreated", &serde_json::json!({"name": "db1"}))
        .unwrap()
        .id(id1)
        .metadata(Bytes::from_static(b"{\"correlation\":\"c-1\"}"));
    let second = EventData::binary("Blob", Bytes::from_static(&[0, 159, 146, 150]))
        .id(id2)
        .metadata(Bytes::from_static(&[1, 2, 3]));
    let before = chrono::Utc::now();
    let written = append(
        &client,
        "instance-1",
        ExpectedRevision::NoStream,
        vec![first, second],
    )
    .await
    .unwrap();
    assert_eq!(written.next_expected_version, 1);

    let events = read_stream(&client, "instance-1", &ReadStreamOptions::default())
        .await
        .unwrap();
    assert_eq!(events.len(), 2);
    let (a, b) = (&events[0], &events[1]);
    assert_eq!(
        (a.id, a.revision, a.stream_id.as_str()),
        (id1, 0, "instance-1")
    );
    assert_eq!((b.id, b.revision), (id2, 1));
    assert_eq!(a.event_type, "InstanceCreated");
    assert!(a.is_json && !b.is_json);
    assert_eq!(a.data, Bytes::from_static(b"{\"name\":\"db1\"}"));
    assert_eq!(
        a.custom_metadata,
        Bytes::from_static(b"{\"correlation\":\"c-1\"}")
    );
    assert_eq!(b.data, Bytes::from_static(&[0, 159, 146, 150]));
    assert_eq!(b.custom_metadata, Bytes::from_static(&[1, 2, 3]));
    assert_eq!(a.metadata["type"], "InstanceCreated");
    assert_eq!(a.metadata["content-type"], "application/json");
    assert_eq!(b.metadata["content-type"], "application/octet-stream");
    let ticks: i64 = a.metadata["created"].parse().unwrap();
    assert!(
        (ticks / 10_000_000 - before.timestamp()).abs() <= 2,
        "created is ticks since epoch"
    );
    assert!((a.created - before).num_seconds().abs() <= 2);

    // Backwards, from a revision, with a count.
    let back = read_stream(
        &client,
        "instance-1",
        &ReadStreamOptions::default()
            .backwards()
            .position(StreamPosition::End),
    )
    .await
    .unwrap();
    assert_eq!(
        back.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![id2, id1]
    );
    let from_one = read_stream(
        &client,
        "instance-1",
        &ReadStreamOptions::default().position(StreamPosition::Position(1)),
    )
    .await
    .unwrap();
    assert_eq!(from_one.iter().map(|e| e.id).collect::<Vec<_>>(), vec![id2]);
    let one = read_stream(
        &client,
        "instance-1",
        &ReadStreamOptions::default().max_count(1),
    )
    .await
    .unwrap();
    assert_eq!(one.iter().map(|e| e.id).collect::<Vec<_>>(), vec![id1]);
    let back_from_zero = read_stream(
        &client,
        "instance-1",
        &ReadStreamOptions::default()
            .backwards()
            .position(StreamPosition::Position(0)),
    )
    .await
    .unwrap();
    assert_eq!(
        back_from_zero.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![id1]
    );
    assert_eq!(double.user_event_count(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn expected_revision_cases_and_wrong_expected_version_fields() {
    let double = EsdbDouble::start().await;
    let client = client(&double);
    let s = "expectations";

    assert_wrong_expected(
        append(
            &client,
            s,
            ExpectedRevision::StreamExists,
            vec![event("E", 0)],
        )
        .await,
        CurrentRevision::NoStream,
        ExpectedRevision::StreamExists,
    );
    assert_wrong_expected(
        append(&client, s, ExpectedRevision::Exact(0), vec![event("E", 0)]).await,
        CurrentRevision::NoStream,
        ExpectedRevision::Exact(0),
    );
    let r = append(&client, s, ExpectedRevision::NoStream, vec![event("E", 0)])
        .await
        .unwrap();
    assert_eq!(r.next_expected_version, 0);
    assert_wrong_expected(
        append(&client, s, ExpectedRevision::NoStream, vec![event("E", 1)]).await,
        CurrentRevision::Current(0),
        ExpectedRevision::NoStream,
    );
    let r = append(&client, s, ExpectedRevision::Exact(0), vec![event("E", 1)])
        .await
        .unwrap();
    assert_eq!(r.next_expected_version, 1);
    assert_wrong_expected(
        append(&client, s, ExpectedRevision::Exact(0), vec![event("E", 2)]).await,
        CurrentRevision::Current(1),
        ExpectedRevision::Exact(0),
    );
    assert_wrong_expected(
        append(&client, s, ExpectedRevision::Exact(5), vec![event("E", 2)]).await,
        CurrentRevision::Current(1),
        ExpectedRevision::Exact(5),
    );
    let r = append(
        &client,
        s,
        ExpectedRevision::StreamExists,
        vec![event("E", 2)],
    )
    .await
    .unwrap();
    assert_eq!(r.next_expected_version, 2);
    let r = append(
        &client,
        s,
        ExpectedRevision::Any,
        vec![event("E", 3), event("E", 4)],
    )
    .await
    .unwrap();
    assert_eq!(r.next_expected_version, 4);
    let r = append(&client, "fresh", ExpectedRevision::Any, vec![event("E", 0)])
        .await
        .unwrap();
    assert_eq!(r.next_expected_version, 0);
    assert_eq!(double.user_event_count(), 6);
}

#[tokio::test(flavor = "multi_thread")]
async fn idempotent_retries_follow_the_server_rules() {
    let double = EsdbDouble::start().await;
    let client = client(&double);
    let s = "idem";
    let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let ev = |id: Uuid| EventData::json("E", &serde_json::json!({})).unwrap().id(id);

    let first = append(&client, s, ExpectedRevision::NoStream, vec![ev(a), ev(b)])
        .await
        .unwrap();
    assert_eq!(first.next_expected_version, 1);
    let count = double.user_event_count();

    // Same ids, same expectation: success, nothing written, revision of those events; the
    // position is the server's idempotent one (prepare position of the last of them).
    let retry = append(&client, s, ExpectedRevision::NoStream, vec![ev(a), ev(b)])
        .await
        .unwrap();
    assert_eq!(retry.next_expected_version, 1);
    assert_eq!(double.user_event_count(), count);
    let events = read_stream(&client, s, &ReadStreamOptions::default())
        .await
        .unwrap();
    let last_prepare = events[1].position.prepare;
    assert_eq!(
        retry.position,
        Position {
            commit: last_prepare,
            prepare: last_prepare
        }
    );

    let single = append(&client, s, ExpectedRevision::Exact(1), vec![ev(c)])
        .await
        .unwrap();
    assert_eq!(single.next_expected_version, 2);
    let single_retry = append(&client, s, ExpectedRevision::Exact(1), vec![ev(c)])
        .await
        .unwrap();
    assert_eq!(single_retry.next_expected_version, 2);
    assert_eq!(single_retry.position, single.position);
    assert_eq!(double.user_event_count(), count + 1);

    // Only some ids match at that place: wrong expected version.
    assert_wrong_expected(
        append(
            &client,
            s,
            ExpectedRevision::NoStream,
            vec![ev(a), ev(Uuid::new_v4())],
        )
        .await,
        CurrentRevision::Current(2),
        ExpectedRevision::NoStream,
    );
    assert_wrong_expected(
        append(&client, s, ExpectedRevision::Exact(0), vec![ev(a)]).await,
        CurrentRevision::Current(2),
        ExpectedRevision::Exact(0),
    );
    // The batch runs past the end of the stream.
    assert_wrong_expected(
        append(
            &client,
            s,
            ExpectedRevision::Exact(1),
            vec![ev(c), ev(Uuid::new_v4())],
        )
        .await,
        CurrentRevision::Current(2),
        ExpectedRevision::Exact(1),
    );

    // `any`: all ids already there (consecutively) is idempotent.
    let any = append(&client, s, ExpectedRevision::Any, vec![ev(b), ev(c)])
        .await
        .unwrap();
    assert_eq!(any.next_expected_version, 2);
    assert_wrong_expected(
        append(
            &client,
            s,
            ExpectedRevision::Any,
            vec![ev(a), ev(Uuid::new_v4())],
        )
        .await,
        CurrentRevision::Current(2),
        ExpectedRevision::Any,
    );
    assert_eq!(double.user_event_count(), count + 1);

    // Ids are per stream: the same id elsewhere is simply written.
    let other = append(
        &client,
        "idem-other",
        ExpectedRevision::NoStream,
        vec![ev(a)],
    )
    .await
    .unwrap();
    assert_eq!(other.next_expected_version, 0);
    assert_eq!(double.user_event_count(), count + 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn read_all_positions_are_byte_offsets_one_per_event() {
    let double = EsdbDouble::start().await;
    let client = client(&double);
    let tx = append(
        &client,
        "a",
        ExpectedRevision::NoStream,
        vec![event("A", 0), event("A", 1), event("A", 2)],
    )
    .await
    .unwrap();
    let single = append(
        &client,
        "b",
        ExpectedRevision::NoStream,
        vec![event("B", 0)],
    )
    .await
    .unwrap();
    assert_eq!(
        tx.position.commit, tx.position.prepare,
        "append position = (last, last)"
    );
    assert!(single.position.commit > tx.position.commit);

    let all = read_all(&client, &ReadAllOptions::default()).await;
    let records: Vec<&RecordedEvent> = all.iter().map(|e| e.get_original_event()).collect();
    assert!(records.len() >= 6);
    assert!(records[0].stream_id.starts_with('$'), "system events first");
    assert!(records[0].event_type.starts_with('$'));
    assert!(records[0].position.prepare > 0);
    for pair in records.windows(2) {
        assert!(pos(pair[0]) < pos(pair[1]), "strictly increasing positions");
    }
    for e in &all {
        assert_eq!(
            e.commit_position,
            Some(e.get_original_event().position.commit)
        );
    }
    let a: Vec<&&RecordedEvent> = records.iter().filter(|r| r.stream_id == "a").collect();
    assert_eq!(a.len(), 3);
    // As on the server: every event is its own commit (commit == prepare == its offset), and
    // an append answers with the position of its last event.
    for r in &a {
        assert_eq!(r.position.commit, r.position.prepare, "commit = own offset");
    }
    assert_eq!(pos(a[2]), (tx.position.commit, tx.position.prepare));
    assert!(a[0].position.commit < a[1].position.commit);
    assert!(a[1].position.commit < a[2].position.commit);
    assert!(
        a[1].position.prepare - a[0].position.prepare > 1,
        "not a dense counter"
    );
    let b = records.iter().find(|r| r.stream_id == "b").unwrap();
    assert_eq!(pos(b), (single.position.commit, single.position.commit));
    assert!(b.position.commit > a[2].position.prepare);

    // Forwards from a position is inclusive; backwards from it is exclusive.
    let from_a1 = read_all(
        &client,
        &ReadAllOptions::default()
            .position(StreamPosition::Position(a[1].position))
            .max_count(2),
    )
    .await;
    let got: Vec<u64> = from_a1
        .iter()
        .map(|e| e.get_original_event().revision)
        .collect();
    assert_eq!(got, vec![1, 2]);
    let before_a1 = read_all(
        &client,
        &ReadAllOptions::default()
            .backwards()
            .position(StreamPosition::Position(a[1].position))
            .max_count(1),
    )
    .await;
    assert_eq!(before_a1[0].get_original_event().id, a[0].id);
    let backwards = read_all(
        &client,
        &ReadAllOptions::default()
            .backwards()
            .position(StreamPosition::End),
    )
    .await;
    let mut ids: Vec<Uuid> = backwards
        .iter()
        .map(|e| e.get_original_event().id)
        .collect();
    ids.reverse();
    assert_eq!(ids, records.iter().map(|r| r.id).collect::<Vec<_>>());
    // Note: the client's `ReadAllOptions::position(End)` also switches to backwards.
    let forwards_from_end = ReadAllOptions::default()
        .position(StreamPosition::End)
        .forwards();
    assert!(read_all(&client, &forwards_from_end).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn filtered_subscription_to_all_sees_catch_up_then_live_events() {
    let double = EsdbDouble::start().await;
    let client = client(&double);
    append(&client, "s1", ExpectedRevision::Any, vec![event("E", 1)])
        .await
        .unwrap();
    double.append_system_event();
    append(&client, "s2", ExpectedRevision::Any, vec![event("E", 2)])
        .await
        .unwrap();

    let filter = SubscriptionFilter::on_event_type().exclude_system_events();
    let mut sub = client
        .subscribe_to_all(&SubscribeToAllOptions::default().filter(filter))
        .await;
    assert!(matches!(
        next_event(&mut sub).await.unwrap(),
        SubscriptionEvent::Confirmed(_)
    ));
    let e1 = match next_event(&mut sub).await.unwrap() {
        SubscriptionEvent::EventAppeared(e) => e.event.unwrap(),
        other => panic!("expected the first user event, got {other:?}"),
    };
    assert_eq!(e1.stream_id, "s1");
    let e2 = next_appeared(&mut sub).await;
    assert_eq!(e2.stream_id, "s2");
    // End of catch-up: a checkpoint at (or after) the last considered record, then caught-up.
    match next_event(&mut sub).await.unwrap() {
        SubscriptionEvent::Checkpoint(p) => assert!((p.commit, p.prepare) >= pos(&e2)),
        other => panic!("expected a checkpoint, got {other:?}"),
    }
    assert!(matches!(
        next_event(&mut sub).await.unwrap(),
        SubscriptionEvent::CaughtUp
    ));

    // Live: pushed as appended, system events filtered out.
    double.append_system_event();
    append(&client, "s3", ExpectedRevision::Any, vec![event("E", 3)])
        .await
        .unwrap();
    let e3 = next_appeared(&mut sub).await;
    assert_eq!(e3.stream_id, "s3");
    assert!(pos(&e3) > pos(&e2));
    append(&client, "s1", ExpectedRevision::Any, vec![event("E", 4)])
        .await
        .unwrap();
    let e4 = next_appeared(&mut sub).await;
    assert_eq!((e4.stream_id.as_str(), e4.revision), ("s1", 1));
}

#[tokio::test(flavor = "multi_thread")]
async fn subscription_from_a_position_is_exclusive() {
    let double = EsdbDouble::start().await;
    let client = client(&double);
    for n in 0..3 {
        append(&client, "p", ExpectedRevision::Any, vec![event("E", n)])
            .await
            .unwrap();
    }
    let events = read_stream(&client, "p", &ReadStreamOptions::default())
        .await
        .unwrap();
    let mut sub = client
        .subscribe_to_all(
            &SubscribeToAllOptions::default()
                .position(StreamPosition::Position(events[1].position))
                .filter(SubscriptionFilter::on_event_type().exclude_system_events()),
        )
        .await;
    let first = next_appeared(&mut sub).await;
    assert_eq!(first.id, events[2].id);
    append(&client, "p", ExpectedRevision::Any, vec![event("E", 3)])
        .await
        .unwrap();
    assert_eq!(next_appeared(&mut sub).await.revision, 3);

    // From the end: only what comes next.
    let mut from_end = client
        .subscribe_to_all(&SubscribeToAllOptions::default().position(StreamPosition::End))
        .await;
    assert!(matches!(
        next_event(&mut from_end).await.unwrap(),
        SubscriptionEvent::Confirmed(_)
    ));
    assert!(matches!(
        next_event(&mut from_end).await.unwrap(),
        SubscriptionEvent::CaughtUp
    ));
    append(&client, "p", ExpectedRevision::Any, vec![event("E", 4)])
        .await
        .unwrap();
    assert_eq!(next_appeared(&mut from_end).await.revision, 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn filtered_subscription_checkpoints_while_live() {
    let double = EsdbDouble::start().await;
    let client = client(&double);
    let filter = SubscriptionFilter::on_event_type()
        .add_prefix("Keep")
        .max(4);
    let mut sub = client
        .subscribe_to_all(
            &SubscribeToAllOptions::default()
                .position(StreamPosition::End)
                .filter(filter),
        )
        .await;
    assert!(matches!(
        next_event(&mut sub).await.unwrap(),
        SubscriptionEvent::Confirmed(_)
    ));
    assert!(matches!(
        next_event(&mut sub).await.unwrap(),
        SubscriptionEvent::CaughtUp
    ));
    let skipped: Vec<EventData> = (0..8).map(|n| event("Skip", n)).collect();
    let w = append(&client, "c", ExpectedRevision::Any, skipped)
        .await
        .unwrap();
    append(
        &client,
        "c",
        ExpectedRevision::Any,
        vec![event("KeepMe", 9)],
    )
    .await
    .unwrap();
    let mut checkpoints = Vec::new();
    loop {
        match next_event(&mut sub).await.unwrap() {
            SubscriptionEvent::Checkpoint(p) => checkpoints.push(p),
            SubscriptionEvent::EventAppeared(e) => {
                assert_eq!(e.get_original_event().event_type, "KeepMe");
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    // 8 considered records with a window of 4: two checkpoints, at the 4th and the 8th (the
    // last of the append, whose position the append answered).
    assert_eq!(checkpoints.len(), 2, "{checkpoints:?}");
    assert!(checkpoints.iter().all(|p| p.commit == p.prepare));
    assert!(checkpoints[0].commit < checkpoints[1].commit);
    assert_eq!(checkpoints[1], w.position);
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_subscriber_loses_nothing() {
    let double = EsdbDouble::start().await;
    let client = client(&double);
    let mut sub = client
        .subscribe_to_all(
            &SubscribeToAllOptions::default()
                .filter(SubscriptionFilter::on_event_type().exclude_system_events()),
        )
        .await;
    assert!(matches!(
        next_event(&mut sub).await.unwrap(),
        SubscriptionEvent::Confirmed(_)
    ));
    // Far more than the per-subscription buffer, written while nobody reads.
    append(
        &client,
        "big",
        ExpectedRevision::NoStream,
        (0..300).map(|n| event("E", n)).collect(),
    )
    .await
    .unwrap();
    for n in 300..400 {
        append(
            &client,
            "big",
            ExpectedRevision::Exact(n - 1),
            vec![event("E", n)],
        )
        .await
        .unwrap();
        double.append_system_event();
    }
    let mut previous = (0, 0);
    for n in 0..400 {
        let e = next_appeared(&mut sub).await;
        assert_eq!(e.revision, n, "no gap, no duplicate");
        assert!(pos(&e) > previous);
        previous = pos(&e);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn subscription_to_a_stream() {
    let double = EsdbDouble::start().await;
    let client = client(&double);
    append(
        &client,
        "st",
        ExpectedRevision::NoStream,
        vec![event("E", 0), event("E", 1)],
    )
    .await
    .unwrap();
    append(&client, "other", ExpectedRevision::Any, vec![event("E", 0)])
        .await
        .unwrap();
    // The client's default for stream subscriptions is the end of the stream.
    let mut sub = client
        .subscribe_to_stream(
            "st",
            &SubscribeToStreamOptions::default().start_from(StreamPosition::Start),
        )
        .await;
    assert_eq!(next_appeared(&mut sub).await.revision, 0);
    assert_eq!(next_appeared(&mut sub).await.revision, 1);
    assert!(matches!(
        next_event(&mut sub).await.unwrap(),
        SubscriptionEvent::CaughtUp
    ));
    append(&client, "other", ExpectedRevision::Any, vec![event("E", 1)])
        .await
        .unwrap();
    append(
        &client,
        "st",
        ExpectedRevision::Exact(1),
        vec![event("E", 2)],
    )
    .await
    .unwrap();
    let live = next_appeared(&mut sub).await;
    assert_eq!((live.stream_id.as_str(), live.revision), ("st", 2));

    let mut after_zero = client
        .subscribe_to_stream(
            "st",
            &SubscribeToStreamOptions::default().start_from(StreamPosition::Position(0)),
        )
        .await;
    assert_eq!(next_appeared(&mut after_zero).await.revision, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_stream_is_resource_not_found() {
    let double = EsdbDouble::start().await;
    let client = client(&double);
    let result = read_stream(&client, "nope", &ReadStreamOptions::default()).await;
    assert!(matches!(result, Err(Error::ResourceNotFound)), "{result:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn tombstoned_stream_is_resource_deleted() {
    let double = EsdbDouble::start().await;
    let client = client(&double);
    append(
        &client,
        "gone",
        ExpectedRevision::NoStream,
        vec![event("E", 0)],
    )
    .await
    .unwrap();
    let users = double.user_event_count();
    double.tombstone("gone");

    let read = read_stream(&client, "gone", &ReadStreamOptions::default()).await;
    assert!(matches!(read, Err(Error::ResourceDeleted)), "{read:?}");
    for expected in [
        ExpectedRevision::Any,
        ExpectedRevision::Exact(0),
        ExpectedRevision::NoStream,
    ] {
        let write = append(&client, "gone", expected, vec![event("E", 1)]).await;
        assert!(matches!(write, Err(Error::ResourceDeleted)), "{write:?}");
    }
    let mut sub = client
        .subscribe_to_stream("gone", &SubscribeToStreamOptions::default())
        .await;
    let sub_result = next_event(&mut sub).await;
    assert!(
        matches!(sub_result, Err(Error::ResourceDeleted)),
        "{sub_result:?}"
    );

    // The server records the hard delete in $all as a `$streamDeleted` event of that stream.
    let all = read_all(&client, &ReadAllOptions::default()).await;
    let last = all.last().unwrap().get_original_event();
    assert_eq!(
        (last.stream_id.as_str(), last.event_type.as_str()),
        ("gone", "$streamDeleted")
    );
    assert_eq!(last.revision, i64::MAX as u64);
    assert_eq!(double.user_event_count(), users);
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_fails_appends_and_restart_serves_the_same_data() {
    let double = EsdbDouble::start().await;
    let client = client(&double);
    append(
        &client,
        "durable",
        ExpectedRevision::NoStream,
        vec![event("E", 0)],
    )
    .await
    .unwrap();

    double.stop().await;
    let failed = append(
        &client,
        "durable",
        ExpectedRevision::Exact(0),
        vec![event("E", 1)],
    )
    .await;
    match &failed {
        Err(e) => assert!(is_connection_error(e), "connection-type error, got {e:?}"),
        Ok(r) => panic!("append succeeded on a stopped server: {r:?}"),
    }

    double.restart().await;
    let again = append(
        &client,
        "durable",
        ExpectedRevision::Exact(0),
        vec![event("E", 1)],
    )
    .await
    .expect("same client works after restart");
    assert_eq!(again.next_expected_version, 1);
    let fresh = client_for_url(&double.url());
    let events = read_stream(&fresh, "durable", &ReadStreamOptions::default())
        .await
        .unwrap();
    assert_eq!(events.len(), 2, "data kept across stop/restart");
}

/// An append issued right after a blip may still go to the dead connection before the client
/// notices it is gone (the client does not retry appends): retry on connection-type errors.
async fn append_through_blip(
    client: &Client,
    stream: &str,
    expected: ExpectedRevision,
    event: EventData,
) -> WriteResult {
    let mut attempts = 0;
    loop {
        match append(client, stream, expected, vec![event.clone()]).await {
            Ok(r) => return r,
            Err(e) if is_connection_error(&e) && attempts < 10 => {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("append after the blip: {e:?}"),
        }
    }
}

fn client_for_url(url: &str) -> Client {
    Client::new(url.parse().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_and_drop_connections_end_live_subscriptions_with_an_error() {
    let double = EsdbDouble::start().await;
    let client = client(&double);
    for cut in ["drop_connections", "stop"] {
        let mut sub = client
            .subscribe_to_all(&SubscribeToAllOptions::default().position(StreamPosition::End))
            .await;
        assert!(matches!(
            next_event(&mut sub).await.unwrap(),
            SubscriptionEvent::Confirmed(_)
        ));
        assert!(matches!(
            next_event(&mut sub).await.unwrap(),
            SubscriptionEvent::CaughtUp
        ));
        if cut == "stop" {
            double.stop().await;
        } else {
            double.drop_connections().await;
        }
        match next_event(&mut sub).await {
            Err(e) => assert!(
                is_connection_error(&e),
                "{cut}: connection-type error, got {e:?}"
            ),
            Ok(m) => panic!("{cut}: subscription went on: {m:?}"),
        }
        if cut == "drop_connections" {
            // Still serving: the same client reconnects on its own.
            append_through_blip(&client, "after-blip", ExpectedRevision::Any, event("E", 0)).await;
        }
    }
    double.restart().await;
    append(
        &client,
        "after-blip",
        ExpectedRevision::Any,
        vec![event("E", 1)],
    )
    .await
    .expect("append after restart");
}

#[tokio::test(flavor = "multi_thread")]
async fn unimplemented_rpcs_and_server_features() {
    let double = EsdbDouble::start().await;
    let client = client(&double);
    let info = client.server_info().await.unwrap();
    assert_eq!(info.version().to_string(), esdb_double::SERVER_VERSION);
    // BatchAppend is not advertised, so the client refuses it (append_to_stream uses Append).
    let batch = client.batch_append(&BatchAppendOptions::default()).await;
    assert!(matches!(batch, Err(Error::UnsupportedFeature)));
    // Delete is not implemented: gRPC UNIMPLEMENTED.
    let delete = client
        .delete_stream("x", &DeleteStreamOptions::default())
        .await;
    assert!(
        matches!(delete, Err(Error::UnsupportedFeature)),
        "{delete:?}"
    );
    // The connection is still fine afterwards.
    append(&client, "x", ExpectedRevision::Any, vec![event("E", 0)])
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_appends_exactly_one_wins_per_expected_revision() {
    let double = EsdbDouble::start().await;
    let client = client(&double);
    append(
        &client,
        "race",
        ExpectedRevision::NoStream,
        vec![event("E", 0)],
    )
    .await
    .unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|n| {
            let client = client.clone();
            tokio::spawn(async move {
                append(
                    &client,
                    "race",
                    ExpectedRevision::Exact(0),
                    vec![event("E", n)],
                )
                .await
            })
        })
        .collect();
    let mut wins = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(r) => {
                wins += 1;
                assert_eq!(r.next_expected_version, 1);
            }
            Err(Error::WrongExpectedVersion { current, .. }) => {
                assert_eq!(current, CurrentRevision::Current(1));
            }
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(wins, 1);
    assert_eq!(double.user_event_count(), 2);
}

/// The double has its own runtime: it also serves a current-thread test.
#[tokio::test]
async fn works_from_a_current_thread_runtime() {
    let double = EsdbDouble::start().await;
    let client = client(&double);
    append(
        &client,
        "ct",
        ExpectedRevision::NoStream,
        vec![event("E", 0)],
    )
    .await
    .unwrap();
    assert_eq!(
        read_stream(&client, "ct", &ReadStreamOptions::default())
            .await
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn filter_regex_engine() {
    let m = |p: &str, s: &str| esdb_double::filter_regex_matches(p, s).unwrap();
    // What SubscriptionFilter::exclude_system_events() sends.
    assert!(m("^[^\\$].*", "InstanceCreated"));
    assert!(!m("^[^\\$].*", "$statsCollected"));
    assert!(!m("^[^\\$].*", ""));
    assert!(m("^\\$", "$metadata"));
    assert!(!m("^\\$", "a$"));
    assert!(m("^(instance|backup)-[0-9a-f]{4}$", "backup-12ab"));
    assert!(!m("^(instance|backup)-[0-9a-f]{4}$", "backup-12ab5"));
    assert!(!m("^(instance|backup)-[0-9a-f]{4}$", "config-12ab"));
    assert!(m("Created", "InstanceCreatedV2"));
    assert!(m("a(b|)*c", "xabbc"));
    assert!(m("(?:x|y)+z?\\d", "xyx7"));
    assert!(esdb_double::filter_regex_matches("\\q", "").is_err());
    assert!(esdb_double::filter_regex_matches("(ab", "").is_err());
}

/// Client behaviour worth knowing (eventstore 4.0.0): a `Client` whose *first* call finds the
/// server down gives up for good (its connection task ends); every later call is
/// `ConnectionClosed`, even once the server is back. A new `Client` is needed.
#[tokio::test(flavor = "multi_thread")]
async fn client_first_used_while_the_server_is_down_stays_closed() {
    let double = EsdbDouble::start().await;
    double.stop().await;
    let early = client(&double);
    let first = append(&early, "x", ExpectedRevision::Any, vec![event("E", 0)]).await;
    assert!(
        matches!(first, Err(Error::GrpcConnectionError(_))),
        "{first:?}"
    );
    double.restart().await;
    let later = append(&early, "x", ExpectedRevision::Any, vec![event("E", 0)]).await;
    assert!(matches!(later, Err(Error::ConnectionClosed)), "{later:?}");
    let fresh = client(&double);
    append(&fresh, "x", ExpectedRevision::Any, vec![event("E", 0)])
        .await
        .expect("a new client works");
}

/// With retry options the client resubscribes after a dropped connection, from the position
/// of the last event it handed out: the double's exclusive start means no duplicate, no gap.
#[tokio::test(flavor = "multi_thread")]
async fn retrying_subscription_resumes_after_a_blip_without_gap_or_duplicate() {
    let double = EsdbDouble::start().await;
    let client = client(&double);
    append(
        &client,
        "r",
        ExpectedRevision::NoStream,
        vec![event("E", 0), event("E", 1)],
    )
    .await
    .unwrap();
    let mut sub = client
        .subscribe_to_all(
            &SubscribeToAllOptions::default()
                .filter(SubscriptionFilter::on_event_type().exclude_system_events())
                .retry_options(RetryOptions::default().retry_delay(Duration::from_millis(20))),
        )
        .await;
    assert_eq!(next_appeared(&mut sub).await.revision, 0);
    assert_eq!(next_appeared(&mut sub).await.revision, 1);
    double.drop_connections().await;
    append_through_blip(&client, "r", ExpectedRevision::Exact(1), event("E", 2)).await;
    let mut confirmations = 0;
    loop {
        match next_event(&mut sub).await.expect("no error with retries") {
            SubscriptionEvent::Confirmed(_) => confirmations += 1,
            SubscriptionEvent::EventAppeared(e) => {
                assert_eq!(e.get_original_event().revision, 2);
                break;
            }
            _ => {}
        }
    }
    assert_eq!(confirmations, 1, "resubscribed once");
}

/// A demoted node answers NotLeader with the leader's address, as the server does
/// (`RpcExceptions.LeaderInfo`: NOT_FOUND, `exception: not-leader`, `leader-endpoint-host`,
/// `leader-endpoint-port`); the client reads it as `NotLeaderException` and connects to
/// that node for its next call. A subscription already open on the demoted node stays
/// live; a new one is refused the same way.
#[tokio::test(flavor = "multi_thread")]
async fn not_leader_names_the_leader_and_the_client_follows() {
    let follower = EsdbDouble::start().await;
    let leader = EsdbDouble::start_node_of(&follower).await;
    let client = client(&follower);
    append(
        &client,
        "nl",
        ExpectedRevision::NoStream,
        vec![event("E", 0)],
    )
    .await
    .unwrap();
    let mut live = client
        .subscribe_to_all(&SubscribeToAllOptions::default().position(StreamPosition::End))
        .await;
    assert!(matches!(
        next_event(&mut live).await.unwrap(),
        SubscriptionEvent::Confirmed(_)
    ));
    follower.demote(Some(&leader));

    let other = client_for_url(&follower.url());
    match read_stream(&other, "nl", &ReadStreamOptions::default()).await {
        Err(Error::NotLeaderException(at)) => {
            assert_eq!(
                (at.host.as_str(), at.port),
                ("127.0.0.1", u32::from(leader.port()))
            )
        }
        other => panic!("expected NotLeaderException, got {other:?}"),
    }
    match append(
        &client,
        "nl",
        ExpectedRevision::Exact(0),
        vec![event("E", 1)],
    )
    .await
    {
        Err(Error::NotLeaderException(at)) => assert_eq!(at.port, u32::from(leader.port())),
        other => panic!("expected NotLeaderException, got {other:?}"),
    }
    assert_eq!(follower.user_event_count(), 1, "nothing was written");
    let written = append(
        &client,
        "nl",
        ExpectedRevision::Exact(0),
        vec![event("E", 1)],
    )
    .await
    .expect("the next call goes to the leader");
    assert_eq!(written.next_expected_version, 1);
    assert_eq!(next_appeared(&mut live).await.revision, 1, "still live");

    let mut refused = client_for_url(&follower.url())
        .subscribe_to_all(&SubscribeToAllOptions::default().position(StreamPosition::End))
        .await;
    assert!(matches!(
        next_event(&mut refused).await,
        Err(Error::NotLeaderException(_))
    ));
}

/// Server-side timeouts answer ABORTED "Operation timed out: ..." (`RpcExceptions.Timeout`):
/// after the write landed (commit timeout), and for an idempotent retry dropped because it
/// came before the original was replicated (prepare timeout). The client passes both on as
/// an unmapped gRPC error.
#[tokio::test(flavor = "multi_thread")]
async fn server_timeouts_answer_aborted() {
    let double = EsdbDouble::start().await;
    let client = client(&double);
    let id = Uuid::new_v4();
    let ev = || EventData::json("E", &serde_json::json!({})).unwrap().id(id);
    let aborted = |result: eventstore::Result<WriteResult>, phase: &str| match result {
        Err(Error::Grpc { code, message }) => {
            assert_eq!(format!("{code:?}"), "Aborted");
            assert_eq!(
                message,
                format!("Operation timed out: {phase} phase timeout.")
            );
        }
        other => panic!("expected ABORTED, got {other:?}"),
    };
    double.time_out_after_write(1);
    aborted(
        append(&client, "t", ExpectedRevision::NoStream, vec![ev()]).await,
        "Commit",
    );
    assert_eq!(double.user_event_count(), 1, "the write landed");
    assert_eq!(stream_len(&client, "t").await, 1, "and is replicated");
    // A retry of a replicated write is idempotent, even while retries are dropped.
    double.drop_early_retries(1);
    let retried = append(&client, "t", ExpectedRevision::NoStream, vec![ev()])
        .await
        .expect("a retry of a replicated write");
    assert_eq!(retried.next_expected_version, 0);
    // A write that is not a retry is not dropped.
    append(
        &client,
        "t",
        ExpectedRevision::Exact(0),
        vec![event("E", 1)],
    )
    .await
    .unwrap();

    // A write that timed out while retries are dropped is pending: unreadable (stream and
    // `$all`), its retries dropped, until the last drop replicates it.
    let id = Uuid::new_v4();
    let ev = || EventData::json("E", &serde_json::json!({})).unwrap().id(id);
    double.time_out_after_write(1);
    double.drop_early_retries(2);
    aborted(
        append(&client, "t", ExpectedRevision::Exact(1), vec![ev()]).await,
        "Commit",
    );
    assert_eq!(double.user_event_count(), 3, "the write landed");
    assert!(double.is_replicating());
    assert_eq!(stream_len(&client, "t").await, 2, "not replicated yet");
    let all = all_ids(&client).await;
    assert!(!all.contains(&id), "not in $all either");
    aborted(
        append(&client, "t", ExpectedRevision::Exact(1), vec![ev()]).await,
        "Prepare",
    );
    assert_eq!(stream_len(&client, "t").await, 2, "still pending");
    aborted(
        append(&client, "t", ExpectedRevision::Exact(1), vec![ev()]).await,
        "Prepare",
    );
    assert!(!double.is_replicating(), "the last drop replicates it");
    assert_eq!(stream_len(&client, "t").await, 3);
    assert!(all_ids(&client).await.contains(&id));
    let retried = append(&client, "t", ExpectedRevision::Exact(1), vec![ev()])
        .await
        .expect("the retry once the original is replicated");
    assert_eq!(retried.next_expected_version, 2);

    // `replicate()` ends the pending state at once; a count of 0 does not.
    let id = Uuid::new_v4();
    let ev = || EventData::json("E", &serde_json::json!({})).unwrap().id(id);
    double.time_out_after_write(1);
    double.drop_early_retries(100);
    aborted(
        append(&client, "t", ExpectedRevision::Exact(2), vec![ev()]).await,
        "Commit",
    );
    double.drop_early_retries(0);
    aborted(
        append(&client, "t", ExpectedRevision::Exact(2), vec![ev()]).await,
        "Prepare",
    );
    assert_eq!(stream_len(&client, "t").await, 3);
    double.replicate();
    assert_eq!(stream_len(&client, "t").await, 4);
    let retried = append(&client, "t", ExpectedRevision::Exact(2), vec![ev()])
        .await
        .expect("idempotent once replicated");
    assert_eq!(retried.next_expected_version, 3);
    assert_eq!(double.user_event_count(), 4);
}

/// Over the server's maximum append size: INVALID_ARGUMENT "Maximum Append Size of N
/// Exceeded." (`RpcExceptions.MaxAppendSizeExceeded`), nothing written. `$all` denied:
/// PERMISSION_DENIED (`RpcExceptions.AccessDenied`) for reads and subscriptions, and an
/// open subscription ends with it; the client's `AccessDenied`.
#[tokio::test(flavor = "multi_thread")]
async fn append_size_limit_and_access_denied_as_the_server_answers() {
    let double = EsdbDouble::start().await;
    let client = client(&double);
    double.max_append_size(Some(100));
    let big = EventData::binary("E", Bytes::from(vec![7u8; 60])).id(Uuid::new_v4());
    let big2 = EventData::binary("E", Bytes::from(vec![7u8; 60])).id(Uuid::new_v4());
    match append(&client, "big", ExpectedRevision::Any, vec![big, big2]).await {
        Err(Error::Grpc { code, message }) => {
            assert_eq!(format!("{code:?}"), "InvalidArgument");
            assert_eq!(message, "Maximum Append Size of 100 Exceeded.");
        }
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
    assert_eq!(double.user_event_count(), 0);
    let small = EventData::binary("E", Bytes::from(vec![7u8; 60])).id(Uuid::new_v4());
    append(&client, "big", ExpectedRevision::Any, vec![small])
        .await
        .unwrap();

    let mut open = client
        .subscribe_to_all(&SubscribeToAllOptions::default().position(StreamPosition::End))
        .await;
    assert!(matches!(
        next_event(&mut open).await.unwrap(),
        SubscriptionEvent::Confirmed(_)
    ));
    double.deny_all(true);
    loop {
        match next_event(&mut open).await {
            Err(Error::AccessDenied) => break,
            Ok(_) => continue,
            Err(other) => panic!("expected AccessDenied, got {other:?}"),
        }
    }
    let denied = client.read_all(&ReadAllOptions::default()).await;
    assert!(
        matches!(denied, Err(Error::AccessDenied)),
        "{:?}",
        denied.err()
    );
    assert_eq!(
        read_stream(&client, "big", &ReadStreamOptions::default())
            .await
            .unwrap()
            .len(),
        1,
        "stream reads are not affected"
    );
    double.deny_all(false);
    assert!(!read_all(&client, &ReadAllOptions::default())
        .await
        .is_empty());
}
