//! Given/when/then tests of the Quota aggregate.

use chrono::TimeZone;
use serde_json::json;

use super::*;

fn caller(roles: &[&str]) -> Caller {
    Caller {
        user_id: "ops".into(),
        project_id: "admin-p".into(),
        roles: roles.iter().map(|r| r.to_string()).collect(),
    }
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 7, 12, 0, 0).unwrap()
}

/// Given `history`, when `limits` are asked by a caller with `roles`, then this.
fn when(
    history: &[QuotaEvent],
    limits: serde_json::Value,
    roles: &[&str],
) -> Result<Vec<QuotaEvent>, QuotaError> {
    let state = history.iter().fold(Quota::default(), evolve);
    let limits = limits
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let cmd = UpdateQuotas {
        project_id: "p1".into(),
        limits,
    };
    let caller = caller(roles);
    decide(
        &state,
        &cmd,
        &DecideCtx {
            now: now(),
            caller: &caller,
        },
    )
}

fn updated(limits: &[(&str, i64)]) -> QuotaEvent {
    QuotaEvent::QuotaLimitsUpdated {
        project_id: "p1".into(),
        limits: limits.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        at: now(),
    }
}

#[test]
fn an_admin_sets_the_named_limits_and_only_those() {
    let events = when(
        &[],
        json!({"instances": 3, "backups": -1, "ram": null}),
        &["admin"],
    );
    assert_eq!(
        events,
        Ok(vec![updated(&[("backups", -1), ("instances", 3)])])
    );
}

#[test]
fn a_later_change_keeps_the_limits_it_does_not_name() {
    let state = [
        updated(&[("instances", 3), ("volumes", 5)]),
        updated(&[("instances", 7)]),
    ]
    .iter()
    .fold(Quota::default(), evolve);
    assert_eq!(state.limits.get("instances"), Some(&7));
    assert_eq!(state.limits.get("volumes"), Some(&5));
    assert_eq!(state.limits.get("ram"), None);
}

#[test]
fn a_member_is_refused_as_upstream_does_with_401() {
    let err = when(&[], json!({"instances": 3}), &["member"]).unwrap_err();
    assert_eq!(err, QuotaError::NotAdmin);
    assert_eq!(err.fault(), Fault::Unauthorized);
}

#[test]
fn an_unknown_resource_is_upstreams_404_and_nothing_is_recorded() {
    let err = when(&[], json!({"instances": 3, "cpus": 2}), &["admin"]).unwrap_err();
    assert_eq!(err.to_string(), "Unknown quota resources cpus.");
    assert_eq!(err.fault(), Fault::ItemNotFound);
}

#[test]
fn a_limit_below_minus_one_or_not_an_integer_is_a_400() {
    let err = when(&[], json!({"instances": -2}), &["admin"]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Quota limit '-2' for 'instances' is too small - must be at least '-1'."
    );
    assert_eq!(err.fault(), Fault::BadRequest);
    for bad in [json!("5"), json!(1.5), json!(true), json!([1])] {
        let err = when(&[], json!({ "backups": bad }), &["admin"]).unwrap_err();
        assert_eq!(err, QuotaError::NotAnInteger("backups".into()), "{bad}");
    }
}

#[test]
fn a_body_that_names_nothing_records_nothing() {
    assert_eq!(when(&[], json!({}), &["admin"]), Ok(vec![]));
    assert_eq!(
        when(&[], json!({"instances": null}), &["admin"]),
        Ok(vec![])
    );
}

#[test]
fn the_event_round_trips_through_its_stored_form() {
    let e = updated(&[("instances", 2)]);
    let (t, v, body) = e.encode();
    assert_eq!((t, v), ("QuotaLimitsUpdated", 1));
    assert_eq!(decode(t, v, body.clone()).unwrap(), e);
    assert_eq!(
        decode_slice(t, v, &serde_json::to_vec(&body).unwrap()).unwrap(),
        e
    );
    assert_eq!(project_of_stream("quota-p1"), Some("p1"));
    assert_eq!(project_of_stream("quota-"), None);
}
