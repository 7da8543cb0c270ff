//! The incident lifecycle: open → investigating → mitigated → resolved,
//! acknowledgement, escalation through the support levels, public text, the
//! timeline and audit entries, and the deliveries of each change committed
//! with it.

use serde_json::json;
use store::on_both_backends;
use store::test_support::TEST_ENVIRONMENT as ENV;
use store::{
    AuditFilter, DeliveryFilter, IncidentChange, IncidentFilter, NewDelivery, NewIncident,
    StepCommit, Store, StoreError,
};

const T0: i64 = 1_700_000_000_000;

async fn open(store: &Store, level: &str) -> i64 {
    let version = store
        .rollout_state(ENV, "calc-model")
        .await
        .expect("read")
        .map(|r| r.version);
    let committed = store
        .commit_rollout_step(StepCommit {
            environment: ENV,
            flag: "calc-model",
            read_version: version,
            state: r#"{"status":"paused"}"#.to_owned(),
            flag_change: None,
            incidents: vec![NewIncident {
                kind: "guard_pause".into(),
                severity: "major".into(),
                level: level.into(),
                title: "complaint_rate up 80%".into(),
                summary: "Paused in phase `beta`.".into(),
                evidence: Some(json!({"phase": "beta", "generation": 1})),
            }],
            new_window: false,
            actor: "controller",
            reason: Some("guard fired"),
        })
        .await
        .expect("open");
    committed.incidents[0]
}

fn note(event: &str) -> NewDelivery {
    NewDelivery {
        channel: "ops".into(),
        event: event.into(),
        body: "{}".into(),
    }
}

async fn an_incident_moves_through_its_lifecycle_with_a_timeline(store: Store) {
    let id = open(&store, "L2").await;
    let opened = store.incident(id).await.expect("incident");
    assert_eq!(
        (opened.status.as_str(), opened.level.as_str()),
        ("open", "L2")
    );
    assert_eq!(opened.acknowledged_by, None);
    assert_eq!(opened.environment, ENV);

    let acked = store
        .change_incident(
            id,
            &IncidentChange::Acknowledge {
                note: Some("on it".into()),
            },
            "alice",
            T0,
            |incident, entry| {
                assert_eq!(incident.acknowledged_by.as_deref(), Some("alice"));
                assert_eq!(entry.action, "acknowledged");
                vec![note("incident_updated")]
            },
        )
        .await
        .expect("ack");
    assert_eq!(acked.incident.acknowledged_at_ms, Some(T0));
    assert_eq!(acked.deliveries.len(), 1);
    // Twice is refused and changes nothing.
    let again = store
        .change_incident(
            id,
            &IncidentChange::Acknowledge { note: None },
            "bob",
            T0 + 1,
            |_, _| vec![note("incident_updated")],
        )
        .await;
    assert!(
        matches!(&again, Err(StoreError::Conflict(m)) if m.contains("already acknowledged by alice")),
        "{again:?}"
    );

    for status in ["investigating", "mitigated"] {
        let moved = store
            .change_incident(
                id,
                &IncidentChange::Status {
                    status: status.into(),
                    note: None,
                },
                "alice",
                T0 + 2,
                |_, _| Vec::new(),
            )
            .await
            .expect("status");
        assert_eq!(moved.incident.status, status);
    }
    let to_open = store
        .change_incident(
            id,
            &IncidentChange::Status {
                status: "open".into(),
                note: None,
            },
            "alice",
            T0 + 3,
            |_, _| Vec::new(),
        )
        .await;
    assert!(matches!(to_open, Err(StoreError::Conflict(_))));

    store
        .change_incident(
            id,
            &IncidentChange::Publish {
                text: "Some calculations are slower".into(),
            },
            "alice",
            T0 + 4,
            |_, _| Vec::new(),
        )
        .await
        .expect("publish");
    let public = store
        .incidents(
            ENV,
            &IncidentFilter {
                public: true,
                active: true,
                ..Default::default()
            },
        )
        .await
        .expect("public");
    assert_eq!(public.len(), 1);
    assert_eq!(
        public[0].public_text.as_deref(),
        Some("Some calculations are slower")
    );

    let resolved = store
        .change_incident(
            id,
            &IncidentChange::Resolve {
                resolution: "fixed in 2.4.1".into(),
            },
            "alice",
            T0 + 5,
            |_, _| vec![note("incident_resolved")],
        )
        .await
        .expect("resolve");
    assert_eq!(resolved.incident.status, "resolved");
    assert_eq!(resolved.incident.resolved_at_ms, Some(T0 + 5));
    // Resolved is final, but takes notes.
    let escalate = store
        .change_incident(
            id,
            &IncidentChange::Escalate {
                from: None,
                reason: None,
            },
            "alice",
            T0 + 6,
            |_, _| Vec::new(),
        )
        .await;
    assert!(matches!(escalate, Err(StoreError::Conflict(m)) if m.contains("is resolved")));
    store
        .change_incident(
            id,
            &IncidentChange::Note {
                text: "postmortem on Friday".into(),
            },
            "bob",
            T0 + 7,
            |_, _| Vec::new(),
        )
        .await
        .expect("note");

    let timeline = store.incident_timeline(id).await.expect("timeline");
    let actions: Vec<&str> = timeline.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "opened",
            "acknowledged",
            "status",
            "status",
            "published",
            "resolved",
            "note"
        ]
    );
    assert_eq!(timeline[0].text.as_deref(), Some("Paused in phase `beta`."));
    assert_eq!(
        timeline[2].detail,
        Some(json!({"from": "open", "to": "investigating"}))
    );
    assert_eq!(timeline[6].actor, "bob");

    let active = store
        .incidents(
            ENV,
            &IncidentFilter {
                active: true,
                ..Default::default()
            },
        )
        .await
        .expect("active");
    assert!(active.is_empty());
    let audit = store
        .list_audit(AuditFilter {
            target_kind: Some("incident".into()),
            ..AuditFilter::default()
        })
        .await
        .expect("audit");
    assert_eq!(audit.len(), 6, "every change but the refused ones");
    let queued = store
        .deliveries(&DeliveryFilter::default())
        .await
        .expect("deliveries");
    let events: Vec<&str> = queued.iter().map(|d| d.event.as_str()).collect();
    assert_eq!(events, ["incident_resolved", "incident_updated"]);
}

async fn escalation_climbs_one_level_at_a_time_and_names_the_level_it_judged(store: Store) {
    let id = open(&store, "L1").await;
    let up = store
        .change_incident(
            id,
            &IncidentChange::Escalate {
                from: Some("L1".into()),
                reason: Some("not acknowledged within 30m".into()),
            },
            "controller",
            T0,
            |_, _| Vec::new(),
        )
        .await
        .expect("escalate");
    assert_eq!(up.incident.level, "L2");
    assert_eq!(up.incident.level_since_ms, T0);
    // A second escalation judged on the old level does nothing.
    let stale = store
        .change_incident(
            id,
            &IncidentChange::Escalate {
                from: Some("L1".into()),
                reason: None,
            },
            "controller",
            T0 + 1,
            |_, _| Vec::new(),
        )
        .await;
    assert!(matches!(stale, Err(StoreError::Conflict(_))));
    for (expected, outcome) in [("L3", true), ("L3", false)] {
        let result = store
            .change_incident(
                id,
                &IncidentChange::Escalate {
                    from: None,
                    reason: None,
                },
                "alice",
                T0 + 2,
                |_, _| Vec::new(),
            )
            .await;
        assert_eq!(result.is_ok(), outcome, "{result:?}");
        assert_eq!(store.incident(id).await.expect("read").level, expected);
    }
    let filtered = store
        .incidents(
            ENV,
            &IncidentFilter {
                level: Some("L3".into()),
                flag: Some("calc-model".into()),
                ..Default::default()
            },
        )
        .await
        .expect("by level");
    assert_eq!(filtered.len(), 1);
    assert!(matches!(
        store.incident(id + 1000).await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn a_scheduled_message_is_enqueued_once_per_scheduled_time(store: Store) {
    assert_eq!(
        store
            .schedule_last_run(ENV, "ops", "daily_digest")
            .await
            .expect("read"),
        None
    );
    let digest = [note("daily_digest")];
    for (run, sent) in [
        (T0, true),
        (T0, false),
        (T0 - 1, false),
        (T0 + 86_400_000, true),
    ] {
        assert_eq!(
            store
                .enqueue_scheduled(ENV, "ops", "daily_digest", run, &digest)
                .await
                .expect("enqueue"),
            sent,
            "run {run}"
        );
    }
    assert_eq!(
        store
            .schedule_last_run(ENV, "ops", "daily_digest")
            .await
            .expect("read"),
        Some(T0 + 86_400_000)
    );
    let queued = store
        .deliveries(&DeliveryFilter::default())
        .await
        .expect("deliveries");
    assert_eq!(queued.len(), 2);
}

on_both_backends!(
    an_incident_moves_through_its_lifecycle_with_a_timeline,
    escalation_climbs_one_level_at_a_time_and_names_the_level_it_judged,
    a_scheduled_message_is_enqueued_once_per_scheduled_time,
);
