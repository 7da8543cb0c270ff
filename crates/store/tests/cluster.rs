//! Several replicas on one database: change notices and the controller's
//! lock, on a real PostgreSQL database (and what SQLite does instead).

use serde_json::json;
use store::test_support::TEST_ENVIRONMENT as ENV;
use store::{ApplyOptions, Change, ChangeNotice, Store};

async fn apply_flag(store: &Store, variant: &str) {
    let flag = serde_json::from_value(json!({
        "key": "banner", "type": "string", "off_variant": "off",
        "variants": {"off": "off", "blue": "blue"},
        "default": {"serve": {"variant": variant}}
    }))
    .expect("flag spec");
    store
        .apply(
            ENV,
            vec![Change::UpsertFlag(flag)],
            "tester",
            None,
            ApplyOptions::default(),
        )
        .await
        .expect("apply");
}

#[tokio::test]
async fn committed_changes_are_announced_to_every_listener() {
    let Some((_holder, store)) = store::test_support::postgres().await else {
        return;
    };
    // Another replica's store on the same database.
    let mut listener = store
        .listen_changes()
        .await
        .expect("listen")
        .expect("PostgreSQL announces changes");
    apply_flag(&store, "blue").await;
    assert_eq!(
        listener.next().await.expect("notice"),
        Some(ChangeNotice::Environment(ENV.into()))
    );
    store
        .create_token("ci", store::TokenKind::Admin, None, "tester")
        .await
        .expect("token");
    assert_eq!(
        listener.next().await.expect("notice"),
        Some(ChangeNotice::Tokens)
    );
    // A change that changes nothing commits nothing, and announces nothing:
    // the next notice is the one after it.
    apply_flag(&store, "blue").await;
    apply_flag(&store, "off").await;
    assert_eq!(
        listener.next().await.expect("notice"),
        Some(ChangeNotice::Environment(ENV.into()))
    );
    store.close().await;
}

#[tokio::test]
async fn one_process_leads_and_the_next_takes_over_when_it_lets_go() {
    let Some((_holder, store)) = store::test_support::postgres().await else {
        return;
    };
    let mut first = store
        .try_lead()
        .await
        .expect("try")
        .expect("nobody leads yet");
    assert!(first.holds().await);
    assert!(
        store.try_lead().await.expect("try").is_none(),
        "a second leader while the first holds the lock"
    );
    first.release().await;
    let mut second = store.try_lead().await.expect("try").expect("free again");
    assert!(second.holds().await);
    // A leader whose process dies: its connection closes and the lock goes
    // with it.
    // PostgreSQL ends the session when it reads the closed socket: poll for
    // it, with a deadline against a hang.
    drop(second);
    let start = std::time::Instant::now();
    while store.try_lead().await.expect("try").is_none() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "the lock of a closed connection is never released"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    store.close().await;
}

#[tokio::test]
async fn the_embedded_store_has_one_process_which_always_leads() {
    let (_holder, store) = store::test_support::sqlite().await;
    assert!(store.listen_changes().await.expect("listen").is_none());
    let mut lead = store.try_lead().await.expect("try").expect("leads");
    assert!(lead.holds().await);
    assert!(store.try_lead().await.expect("try").is_some());
    store.close().await;
}
