//! A webhook receiver on a loopback port: records every request (path,
//! headers, body) and answers 500 to the first `fail_first` of them.
//! Several channels can point at one receiver under different paths
//! (`{url}/ops`, `{url}/l3`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode, Uri};
use serde_json::Value;

/// One request the receiver got.
#[derive(Clone, Debug)]
pub struct Received {
    /// The path without the leading slash: the channel it was sent to.
    pub path: String,
    pub headers: HeaderMap,
    pub body: String,
}

impl Received {
    /// The `X-Rollgate-Event` header.
    pub fn event(&self) -> &str {
        self.headers["x-rollgate-event"].to_str().expect("ascii")
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("a JSON body")
    }

    /// Whether the `X-Rollgate-Signature` header is the body's HMAC with `secret`.
    pub fn signed_with(&self, secret: &str) -> bool {
        let header = self.headers["x-rollgate-signature"]
            .to_str()
            .expect("ascii");
        server::notify::signature(secret, self.body.as_bytes()) == header
    }
}

pub struct Receiver {
    /// The base URL; channels append a path.
    pub url: String,
    received: Arc<Mutex<Vec<Received>>>,
}

pub async fn start(fail_first: usize) -> Receiver {
    let received: Arc<Mutex<Vec<Received>>> = Arc::default();
    let failures = Arc::new(AtomicUsize::new(fail_first));
    let app = {
        let received = received.clone();
        axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: String| {
            let (received, failures) = (received.clone(), failures.clone());
            async move {
                received.lock().expect("lock").push(Received {
                    path: uri.path().trim_start_matches('/').to_owned(),
                    headers,
                    body,
                });
                let failing = failures
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
                if failing {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::NO_CONTENT
                }
            }
        })
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    Receiver { url, received }
}

impl Receiver {
    /// The URL of one path (a channel's webhook).
    pub fn url_for(&self, path: &str) -> String {
        format!("{}/{path}", self.url)
    }

    pub fn requests(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }

    /// The requests sent to one path (channel), in arrival order.
    pub fn at(&self, path: &str) -> Vec<Received> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// Waits (polling, with a deadline) until `n` requests arrived at `path`.
    pub async fn wait_for_at(&self, path: &str, n: usize) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = self.at(path);
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {n} requests arrived at /{path}: {got:?}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
