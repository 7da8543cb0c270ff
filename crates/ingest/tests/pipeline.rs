//! The write path against a real SQLite file and a real PostgreSQL database:
//! group commit, idempotency, and backpressure when the database cannot keep
//! up.

use ingest::{Event, Ingestor, SubmitError};
use sqlx::Connection;
use store::Store;

fn events(n: usize) -> Vec<Event> {
    (0..n)
        .map(|i| Event::Track {
            name: "calc_request".into(),
            unit: format!("u-{i}"),
            value: Some(i as f64),
            at_ms: 1_795_428_000_000,
            attributes: Default::default(),
            flag: None,
            variant: None,
        })
        .collect()
}

async fn concurrent_batches_are_all_committed(store: Store) {
    let ingestor = Ingestor::start(store.clone());
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let ingestor = ingestor.clone();
            tokio::spawn(async move {
                ingestor
                    .submit("production", Some(format!("k-{i}")), &events(50))
                    .await
            })
        })
        .collect();
    for task in tasks {
        let receipt = task.await.expect("join").expect("stored");
        assert_eq!((receipt.accepted, receipt.duplicate), (50, false));
    }
    assert_eq!(store.event_count("production").await.expect("count"), 1000);
    let again = ingestor
        .submit("production", Some("k-3".into()), &events(50))
        .await
        .expect("retry");
    assert!(again.duplicate);
    assert_eq!(store.event_count("production").await.expect("count"), 1000);
}

#[tokio::test]
async fn a_full_queue_answers_overloaded_instead_of_buffering() {
    let (holder, store) = store::test_support::sqlite().await;
    let store::test_support::Holder::Sqlite(dir) = &holder else {
        unreachable!("a SQLite store")
    };
    let ingestor = Ingestor::with_queue(store.clone(), 4);

    // Another connection holds SQLite's write lock, so the writer stalls on
    // its first group and the queue fills up behind it.
    let url = format!("sqlite:{}", dir.path().join(store::SQLITE_FILE).display());
    let mut blocker = sqlx::SqliteConnection::connect(&url)
        .await
        .expect("second connection");
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut blocker)
        .await
        .expect("take the write lock");

    let mut pending = Vec::new();
    let mut overloaded = 0;
    for i in 0..100 {
        let ingestor = ingestor.clone();
        let task = tokio::spawn(async move {
            ingestor
                .submit("production", Some(format!("b-{i}")), &events(10))
                .await
        });
        // Let the submit run up to its await point, so the queue state is
        // deterministic: it either queued or was refused.
        tokio::task::yield_now().await;
        if task.is_finished() {
            match task.await.expect("join") {
                Err(SubmitError::Overloaded) => overloaded += 1,
                other => panic!(
                    "a finished submit while the database is locked must be refused, got {other:?}"
                ),
            }
        } else {
            pending.push(task);
        }
    }
    assert!(
        overloaded >= 100 - 4 - ingest::pipeline::MAX_GROUP,
        "batches beyond the queue were refused: {overloaded}"
    );
    // Waiting are at most the queue's capacity plus the group the writer
    // took out of it before the lock stalled it.
    assert!(
        pending.len() <= 4 + ingest::pipeline::MAX_GROUP,
        "{} waiting",
        pending.len()
    );

    sqlx::query("ROLLBACK")
        .execute(&mut blocker)
        .await
        .expect("release the lock");
    let mut stored = 0;
    for task in pending {
        stored += task
            .await
            .expect("join")
            .expect("stored once the lock is released")
            .accepted;
    }
    assert_eq!(
        store.event_count("production").await.expect("count"),
        stored as i64
    );
    assert_eq!(stored + overloaded * 10, 1000);
}

store::on_both_backends!(concurrent_batches_are_all_committed,);
