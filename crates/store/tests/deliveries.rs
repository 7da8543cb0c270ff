//! Notification channels as config items (validated, versioned, audited
//! without their secret) and the deliveries queue (one claim per attempt,
//! retries, listing).

use store::on_both_backends;
use store::test_support::TEST_ENVIRONMENT as ENV;

use serde_json::json;
use store::{
    ApplyOptions, AuditFilter, Change, ChangeAction, ChannelSpec, DeliveryFilter, NewDelivery,
    StepCommit, Store, StoreError,
};

fn channel(url: &str, events: serde_json::Value) -> ChannelSpec {
    serde_json::from_value(json!({
        "key": "ops", "url": url, "format": "slack", "secret": "s3cret",
        "events": events, "levels": ["L2", "L3"]
    }))
    .expect("channel")
}

fn delivery(event: &str) -> NewDelivery {
    NewDelivery {
        channel: "ops".to_owned(),
        event: event.to_owned(),
        body: format!(r#"{{"event":"{event}"}}"#),
    }
}

async fn a_channel_is_a_versioned_item_audited_without_its_secret(store: Store) {
    let report = store
        .apply(
            ENV,
            vec![Change::UpsertChannel(channel(
                "https://hooks.example.com/T0",
                json!(["rollback"]),
            ))],
            "admin",
            None,
            ApplyOptions::default(),
        )
        .await
        .expect("apply");
    assert_eq!(report.changes[0].action, ChangeAction::Created);
    assert_eq!(report.changes[0].version, Some(1));
    let stored = store.list_channels(ENV).await.expect("list");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].spec.secret, "s3cret");

    let audit = store
        .list_audit(AuditFilter {
            environment: Some(ENV.to_owned()),
            ..AuditFilter::default()
        })
        .await
        .expect("audit");
    let entry = audit
        .iter()
        .find(|e| e.action == "channel.created")
        .expect("channel.created entry");
    let after = entry.after.as_ref().expect("after");
    assert_eq!(after["secret"], store::REDACTED_SECRET);
    for entry in &audit {
        assert!(!format!("{entry:?}").contains("s3cret"), "{entry:?}");
    }
}

async fn a_bad_channel_rejects_the_whole_change(store: Store) {
    let error = store
        .apply(
            ENV,
            vec![Change::UpsertChannel(channel(
                "ftp://hooks.example.com/",
                json!(["rollback", "explosion"]),
            ))],
            "admin",
            None,
            ApplyOptions::default(),
        )
        .await
        .expect_err("invalid");
    let StoreError::Invalid(problems) = error else {
        panic!("expected a validation error, got {error:?}");
    };
    let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(fields, ["url", "events[1]"]);
    assert!(problems[0].subject.contains("ops"));
    assert!(store.list_channels(ENV).await.expect("list").is_empty());
}

async fn a_claimed_delivery_is_not_claimed_again_until_it_is_retried(store: Store) {
    let to_l3 = NewDelivery {
        channel: "l3".to_owned(),
        ..delivery("rollback")
    };
    let ids = store
        .enqueue_deliveries(
            ENV,
            &[delivery("rollback"), delivery("phase_started"), to_l3],
        )
        .await
        .expect("enqueue");
    assert_eq!(ids.len(), 3);
    let now = store
        .deliveries(&DeliveryFilter::default())
        .await
        .expect("list")[0]
        .created_at_ms;

    // One delivery per channel at a time, the oldest first.
    let claimed = store
        .claim_due_deliveries(now, 60_000, 10)
        .await
        .expect("claim");
    assert_eq!(
        claimed.iter().map(|d| d.id).collect::<Vec<_>>(),
        [ids[0], ids[2]],
        "the head of each channel"
    );
    assert!(
        store
            .claim_due_deliveries(now + 1_000, 60_000, 10)
            .await
            .expect("claim")
            .is_empty(),
        "leased deliveries are not claimed twice, and hold back their channel"
    );

    store
        .mark_attempt_failed(ids[0], "HTTP 500", Some(now + 2_000))
        .await
        .expect("retry");
    store.mark_delivered(ids[2], now + 10).await.expect("ok");
    assert_eq!(
        store.next_delivery_due_ms().await.expect("due"),
        Some(now + 2_000),
        "the next delivery a sender may claim"
    );
    assert!(
        store
            .claim_due_deliveries(now + 1_999, 60_000, 10)
            .await
            .expect("claim")
            .is_empty(),
        "a delivery waiting for its retry holds back the ones after it"
    );
    let again = store
        .claim_due_deliveries(now + 2_000, 60_000, 10)
        .await
        .expect("claim");
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, ids[0]);
    assert_eq!(again[0].attempts, 1);
    assert_eq!(again[0].last_error.as_deref(), Some("HTTP 500"));
    store
        .mark_attempt_failed(ids[0], "HTTP 500", None)
        .await
        .expect("give up");
    // Given up, it no longer holds the channel back.
    let next = store
        .claim_due_deliveries(now + 2_000, 60_000, 10)
        .await
        .expect("claim");
    assert_eq!(next.iter().map(|d| d.id).collect::<Vec<_>>(), [ids[1]]);
    store.mark_delivered(ids[1], now + 2_010).await.expect("ok");

    let failed = store
        .deliveries(&DeliveryFilter {
            status: Some("failed".to_owned()),
            ..DeliveryFilter::default()
        })
        .await
        .expect("list");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].attempts, 2);
    let delivered = store
        .deliveries(&DeliveryFilter {
            environment: Some(ENV.to_owned()),
            status: Some("delivered".to_owned()),
            limit: Some(5),
        })
        .await
        .expect("list");
    let events: Vec<(&str, &str)> = delivered
        .iter()
        .map(|d| (d.channel.as_str(), d.event.as_str()))
        .collect();
    assert_eq!(events, [("l3", "rollback"), ("ops", "phase_started")]);
    assert_eq!(delivered[1].delivered_at_ms, Some(now + 2_010));
    assert_eq!(store.next_delivery_due_ms().await.expect("due"), None);
}

async fn a_step_enqueues_its_deliveries_only_when_it_commits(store: Store) {
    let step = |read_version| StepCommit {
        environment: ENV,
        flag: "calc-model",
        read_version,
        state: r#"{"status":"running"}"#.to_owned(),
        flag_change: None,
        incidents: Vec::new(),
        new_window: false,
        actor: "controller",
        reason: None,
    };
    store
        .commit_rollout_step_announcing(step(None), |_| vec![delivery("phase_started")])
        .await
        .expect("commit");
    // A step over a state that moved on writes nothing, deliveries included.
    let stale = store
        .commit_rollout_step_announcing(step(None), |_| vec![delivery("rollback")])
        .await;
    assert!(matches!(stale, Err(StoreError::Conflict(_))), "{stale:?}");
    let all = store
        .deliveries(&DeliveryFilter::default())
        .await
        .expect("list");
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].event, "phase_started");
    assert_eq!(all[0].status, "queued");
}

on_both_backends!(
    a_channel_is_a_versioned_item_audited_without_its_secret,
    a_bad_channel_rejects_the_whole_change,
    a_claimed_delivery_is_not_claimed_again_until_it_is_retried,
    a_step_enqueues_its_deliveries_only_when_it_commits,
);
