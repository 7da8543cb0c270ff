//! Acknowledged writes survive kill -9: the real binary is killed with SIGKILL
//! right after the CLI reports success, and a restarted server on the same
//! data directory still has every change.

mod common;

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Child, Command};

use common::BIN;
const ADMIN: &str = "durability-admin-token";

struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(data_dir: &Path) -> Server {
        let (child, url) =
            common::spawn_serve(&[OsStr::new("--data-dir"), data_dir.as_os_str()], ADMIN);
        Server { child, url }
    }

    fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(BIN)
            .args(args)
            .env("ROLLGATE_SERVER", &self.url)
            .env("ROLLGATE_TOKEN", ADMIN)
            .output()
            .expect("run the CLI")
    }

    fn kill_9(mut self) {
        let status = Command::new("kill")
            .args(["-KILL", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ok(output: std::process::Output) -> String {
    assert!(
        output.status.success(),
        "command failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn acknowledged_changes_survive_sigkill() {
    let data = tempfile::tempdir().expect("temp dir");
    let quickstart = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/quickstart.toml"
    );

    let server = Server::start(data.path());
    ok(server.cli(&["apply", quickstart]));
    // A burst of acknowledged changes, the last one immediately before the kill.
    for round in 0..10 {
        let command = if round % 2 == 0 { "disable" } else { "enable" };
        ok(server.cli(&[
            "flags",
            command,
            "calc-model",
            "--reason",
            &format!("round {round}"),
        ]));
    }
    ok(server.cli(&[
        "flags",
        "disable",
        "calc-model",
        "--reason",
        "last before the crash",
    ]));
    server.kill_9();

    let server = Server::start(data.path());
    let history: serde_json::Value = serde_json::from_str(&ok(server.cli(&[
        "--json",
        "flags",
        "history",
        "calc-model",
    ])))
    .expect("history JSON");
    let versions = history["versions"].as_array().expect("versions array");
    assert_eq!(
        versions.len(),
        12,
        "the creation and all 11 acknowledged changes are there"
    );
    assert_eq!(versions[0]["reason"], "last before the crash");
    let flag: serde_json::Value =
        serde_json::from_str(&ok(server.cli(&["--json", "flags", "get", "calc-model"])))
            .expect("flag JSON");
    assert_eq!(flag["enabled"], false);
    let eval = ok(server.cli(&[
        "--json",
        "eval",
        "calc-model",
        "--context",
        r#"{"targetingKey":"u-1"}"#,
    ]));
    let eval: serde_json::Value = serde_json::from_str(&eval).expect("eval JSON");
    assert_eq!(
        (eval["value"].as_str(), eval["reason"].as_str()),
        (Some("simple"), Some("DISABLED"))
    );
}
