//! Webhook deliveries survive a crash, with the real binary: a channel points
//! at a loopback port where no receiver listens yet; a person rolls a rollout
//! back (`rollgate rollout rollback`), the alert's first attempt fails and it
//! is queued for a retry; the server is killed with SIGKILL. Then the
//! receiver starts, the server starts again on the same data directory, and
//! the receiver gets the rollback alert, signed. `rollgate deliveries` shows
//! the delivery queued with its error before the crash and delivered after
//! it, as a table and as JSON, filtered by `--status`.

mod common;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::BIN;
const ADMIN: &str = "deliveries-admin-token";
const SECRET: &str = "deliveries-webhook-secret";
/// The first retry comes this long after the failed attempt, so the crash
/// lands between attempts (`rollgate serve --delivery-backoff-ms`).
const BACKOFF_MS: &str = "2000";
/// A bound on every wait for a condition; not a timing assumption.
const DEADLINE: Duration = Duration::from_secs(60);

fn config(hook_url: &str) -> String {
    format!(
        r#"
environment = "production"

[[flags]]
key = "calc-model"
type = "string"
off_variant = "simple"
variants = {{ simple = "simple", advanced = "advanced" }}

[flags.default]
serve = {{ variant = "simple" }}

[[rollouts]]
flag = "calc-model"
treatment = "advanced"
control = "simple"

[[rollouts.phases]]
name = "beta"
percent = 10
duration = "1h"

[[channels]]
key = "ops"
url = "{hook_url}"
format = "json"
secret = "{SECRET}"
events = ["rollback"]
"#
    )
}

/// `rollgate serve` on a data directory, killed when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(data_dir: &Path) -> Server {
        let (child, url) = common::spawn_serve(
            &[
                OsStr::new("--data-dir"),
                data_dir.as_os_str(),
                OsStr::new("--delivery-backoff-ms"),
                OsStr::new(BACKOFF_MS),
            ],
            ADMIN,
        );
        Server { child, url }
    }

    /// A CLI command against this server; it must succeed.
    #[track_caller]
    fn cli(&self, args: &[&str]) -> String {
        let output: Output = Command::new(BIN)
            .args(args)
            .env("ROLLGATE_SERVER", &self.url)
            .env("ROLLGATE_TOKEN", ADMIN)
            .env_remove("ROLLGATE_ENVIRONMENT")
            .output()
            .expect("run the CLI");
        assert!(
            output.status.success(),
            "`rollgate {}` failed ({}):\n{}{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("utf-8 output")
    }

    /// `rollgate deliveries --json` with `args`: the listed deliveries.
    fn deliveries(&self, args: &[&str]) -> Vec<Value> {
        let mut all = vec!["deliveries", "--json"];
        all.extend_from_slice(args);
        let out = self.cli(&all);
        let body: Value = serde_json::from_str(&out).expect("JSON output");
        body["deliveries"].as_array().expect("deliveries").clone()
    }

    /// Polls `rollgate deliveries --json` (with a deadline) until one is
    /// `accepted`, and returns it.
    fn wait_for_delivery(&self, args: &[&str], accepted: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let listed = self.deliveries(args);
            if let Some(found) = listed.iter().find(|d| accepted(d)) {
                return found.clone();
            }
            assert!(Instant::now() < deadline, "no such delivery: {listed:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL, and wait until the process is gone.
    fn kill_9(mut self) {
        self.child.kill().expect("SIGKILL the server");
        self.child.wait().expect("wait for the server to exit");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback port, with nothing listening on it once this returns:
/// connections to it are refused until a receiver binds it.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    listener.local_addr().expect("addr").port()
}

/// One request the receiver got: lower-case header names, the raw body.
#[derive(Clone, Debug)]
struct Received {
    headers: HashMap<String, String>,
    body: String,
}

/// A webhook receiver on a loopback port: answers every POST with 204 and
/// records it.
struct Receiver {
    received: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    fn start(port: u16) -> Receiver {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the receiver's port");
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let recorded = received.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let recorded = recorded.clone();
                std::thread::spawn(move || serve_connection(stream, &recorded));
            }
        });
        Receiver { received }
    }

    /// Waits (polling, with a deadline) for the first request.
    fn wait_for_first(&self) -> Received {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(first) = self.requests().first() {
                return first.clone();
            }
            assert!(Instant::now() < deadline, "no delivery arrived");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn requests(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }
}

/// Reads HTTP/1.1 requests from one connection until it closes.
fn serve_connection(stream: TcpStream, recorded: &Mutex<Vec<Received>>) {
    let mut writer = stream.try_clone().expect("clone the stream");
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut headers = HashMap::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
            }
        }
        let length: usize = headers
            .get("content-length")
            .and_then(|l| l.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        recorded.lock().expect("lock").push(Received {
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        });
        if writer
            .write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
            .is_err()
        {
            return;
        }
    }
}

#[test]
fn a_rollback_alert_queued_at_a_crash_is_delivered_after_the_restart() {
    let help = Command::new(BIN)
        .args(["serve", "--help"])
        .output()
        .expect("run the CLI");
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("--delivery-backoff-ms"), "{help}");

    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().join("data");
    let port = free_port();
    let hook_url = format!("http://127.0.0.1:{port}/hook");
    let config_file = dir.path().join("channels.toml");
    std::fs::write(&config_file, config(&hook_url)).expect("write the config");

    let server = Server::start(&data_dir);
    server.cli(&["apply", config_file.to_str().expect("utf-8 path")]);
    assert_eq!(
        server.cli(&["deliveries"]).trim(),
        "no deliveries",
        "nothing is announced before the rollout starts"
    );
    server.cli(&["rollout", "start", "calc-model"]);
    let rolled_back = server.cli(&[
        "rollout",
        "rollback",
        "calc-model",
        "--reason",
        "critical bug",
    ]);
    assert!(rolled_back.contains("rolled_back"), "{rolled_back}");

    // Nobody listens: the first attempt fails and the alert waits for a retry.
    let queued = server.wait_for_delivery(&["--status", "queued"], |d| {
        d["attempts"].as_i64().is_some_and(|a| a >= 1)
    });
    assert_eq!(queued["event"], "rollback", "{queued}");
    assert_eq!(queued["channel"], "ops", "{queued}");
    assert_eq!(queued["environment"], "production", "{queued}");
    assert!(queued["nextAttemptAt"].is_string(), "{queued}");
    assert!(
        queued["lastError"]
            .as_str()
            .is_some_and(|e| e.contains("request failed")),
        "{queued}"
    );
    let id = queued["id"].as_i64().expect("id");
    let table = server.cli(&["deliveries", "--status", "queued"]);
    let header = table.lines().next().expect("a header line");
    for column in ["ID", "CHANNEL", "EVENT", "STATUS", "ATTEMPTS", "LAST ERROR"] {
        assert!(header.contains(column), "{table}");
    }
    let row = table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(id.to_string().as_str()))
        .unwrap_or_else(|| panic!("no row for delivery {id}:\n{table}"));
    for cell in ["production", "ops", "rollback", "queued", "request failed"] {
        assert!(row.contains(cell), "{table}");
    }
    assert_eq!(
        server.cli(&["deliveries", "--status", "delivered"]).trim(),
        "no deliveries"
    );

    server.kill_9();
    let receiver = Receiver::start(port);
    let server = Server::start(&data_dir);

    let alert = receiver.wait_for_first();
    assert_eq!(alert.headers["x-rollgate-event"], "rollback");
    assert_eq!(alert.headers["x-rollgate-delivery"], id.to_string());
    let signature = &alert.headers["x-rollgate-signature"];
    assert_eq!(
        *signature,
        server::notify::signature(SECRET, alert.body.as_bytes())
    );
    assert_ne!(
        *signature,
        server::notify::signature("another secret", alert.body.as_bytes())
    );
    let body: Value = serde_json::from_str(&alert.body).expect("a JSON body");
    assert_eq!(body["event"], "rollback", "{body}");
    assert_eq!(body["flag"], "calc-model", "{body}");
    assert_eq!(body["phase"], "beta", "{body}");
    assert_eq!(body["trigger"]["kind"], "manual", "{body}");
    assert_eq!(body["trigger"]["reason"], "critical bug", "{body}");

    let delivered = server.wait_for_delivery(&["--status", "delivered"], |d| d["id"] == id);
    assert_eq!(delivered["event"], "rollback", "{delivered}");
    assert!(
        delivered["attempts"].as_i64().expect("attempts") >= 2,
        "{delivered}"
    );
    assert!(delivered["deliveredAt"].is_string(), "{delivered}");
    assert!(delivered["nextAttemptAt"].is_null(), "{delivered}");
    assert!(delivered["lastError"].is_null(), "{delivered}");
    assert!(server.deliveries(&["--status", "queued"]).is_empty());
    assert!(server.deliveries(&["--status", "failed"]).is_empty());
    let table = server.cli(&["deliveries"]);
    let row = table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(id.to_string().as_str()))
        .unwrap_or_else(|| panic!("no row for delivery {id}:\n{table}"));
    assert!(row.contains("delivered"), "{table}");
    assert_eq!(receiver.requests().len(), 1, "delivered once");
}
