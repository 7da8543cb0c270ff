//! End-to-end tests of the `rollgate` binary: each test starts a real server
//! (`rollgate serve --addr 127.0.0.1:0` on a fresh data directory) and runs the
//! CLI against it, checking what a user sees: output, errors and exit codes.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_rollgate");
const ADMIN_TOKEN: &str = "cli-test-admin-token";
const QUICKSTART: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../examples/quickstart.toml"
);
const LISTENING: &str = "Rollgate listening on ";

/// A `rollgate` command with none of the caller's Rollgate settings.
fn rollgate() -> Command {
    let mut command = Command::new(BIN);
    for var in [
        "ROLLGATE_SERVER",
        "ROLLGATE_TOKEN",
        "ROLLGATE_ADMIN_TOKEN",
        "ROLLGATE_ADDR",
        "ROLLGATE_DATA_DIR",
        "RUST_LOG",
    ] {
        command.env_remove(var);
    }
    command
}

/// A running `rollgate serve`, killed when dropped.
struct Server {
    child: Child,
    url: String,
    /// Everything the server wrote to standard error, for failure messages.
    log: Arc<Mutex<Vec<String>>>,
    dir: tempfile::TempDir,
}

fn start() -> Server {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut child = rollgate()
        .args(["serve", "--addr", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .env("ROLLGATE_ADMIN_TOKEN", ADMIN_TOKEN)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("rollgate serve starts");
    let stderr = child.stderr.take().expect("piped stderr");
    let log = Arc::new(Mutex::new(Vec::new()));
    let (address_tx, address_rx) = mpsc::channel();
    let lines = log.clone();
    // Reads until the server exits, so that it never blocks on a full pipe.
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some(url) = line.strip_prefix(LISTENING) {
                let _ = address_tx.send(url.trim().to_owned());
            }
            lines.lock().expect("log lock").push(line);
        }
    });
    let Ok(url) = address_rx.recv() else {
        let status = child.wait().expect("the server exited");
        panic!(
            "the server exited ({status}) before listening:\n{}",
            log.lock().expect("log lock").join("\n")
        );
    };
    Server {
        child,
        url,
        log,
        dir,
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One CLI run.
struct Run {
    args: String,
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Run {
    #[track_caller]
    fn ok(self) -> Run {
        assert!(
            self.status.success(),
            "`rollgate {}` failed ({}):\n{}{}",
            self.args,
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }

    /// Checks the run failed with exit code 1 and an error on stderr.
    #[track_caller]
    fn failed(self) -> Run {
        assert_eq!(
            self.status.code(),
            Some(1),
            "`rollgate {}`:\n{}{}",
            self.args,
            self.stdout,
            self.stderr
        );
        assert!(
            self.stderr.starts_with("error: "),
            "`rollgate {}`: {}",
            self.args,
            self.stderr
        );
        self
    }

    #[track_caller]
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "`rollgate {}` printed no JSON ({e}):\n{}",
                self.args, self.stdout
            )
        })
    }

    #[track_caller]
    fn stderr_has(self, fragments: &[&str]) -> Run {
        for fragment in fragments {
            assert!(
                self.stderr.contains(fragment),
                "`rollgate {}`: no `{fragment}` in:\n{}",
                self.args,
                self.stderr
            );
        }
        self
    }

    #[track_caller]
    fn stdout_has(self, fragments: &[&str]) -> Run {
        for fragment in fragments {
            assert!(
                self.stdout.contains(fragment),
                "`rollgate {}`: no `{fragment}` in:\n{}",
                self.args,
                self.stdout
            );
        }
        self
    }
}

fn run(mut command: Command, args: &[&str], stdin: Option<&str>) -> Run {
    command
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = command.spawn().expect("rollgate runs");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("piped stdin");
        pipe.write_all(input.as_bytes())
            .expect("stdin takes the document");
    }
    let output = child.wait_with_output().expect("rollgate finishes");
    Run {
        args: args.join(" "),
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

impl Server {
    /// Runs the CLI as the admin.
    fn cli(&self, args: &[&str]) -> Run {
        self.cli_as(Some(ADMIN_TOKEN), args)
    }

    fn cli_as(&self, token: Option<&str>, args: &[&str]) -> Run {
        let mut command = rollgate();
        command.env("ROLLGATE_SERVER", &self.url);
        if let Some(token) = token {
            command.env("ROLLGATE_TOKEN", token);
        }
        run(command, args, None)
    }

    fn cli_with_stdin(&self, args: &[&str], stdin: &str) -> Run {
        let mut command = rollgate();
        command
            .env("ROLLGATE_SERVER", &self.url)
            .env("ROLLGATE_TOKEN", ADMIN_TOKEN);
        run(command, args, Some(stdin))
    }

    /// Writes a file next to the server's data directory.
    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("the file is written");
        path
    }

    fn apply_quickstart(&self) -> Run {
        self.cli(&["apply", QUICKSTART]).ok()
    }

    fn flags_json(&self) -> Value {
        self.cli(&["flags", "list", "--json"]).ok().json()
    }

    /// Stops the server with SIGTERM and returns how it exited.
    fn terminate(mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        let kill = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill runs");
        assert!(kill.success(), "kill -TERM {pid} failed");
        self.child.wait().expect("the server exits")
    }

    fn log(&self) -> String {
        self.log.lock().expect("log lock").join("\n")
    }
}

fn path_arg(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

fn quickstart_text() -> String {
    std::fs::read_to_string(QUICKSTART).expect("examples/quickstart.toml is readable")
}

#[test]
fn the_quickstart_applies_once_and_then_changes_nothing() {
    let server = start();
    server.apply_quickstart().stdout_has(&[
        "segment power-users: created (version 1)",
        "flag calc-model: created (version 1)",
        "2 changes applied to production (revision",
    ]);
    server.apply_quickstart().stdout_has(&[
        "segment power-users: unchanged",
        "flag calc-model: unchanged",
        "nothing to change in production",
    ]);
    let flags = server.flags_json();
    assert_eq!(flags["flags"][0]["key"], "calc-model");
    assert_eq!(flags["flags"][0]["version"], 1);
    let history = server
        .cli(&["flags", "history", "calc-model", "--json"])
        .ok()
        .json();
    assert_eq!(history["versions"].as_array().map(Vec::len), Some(1));
    server
        .cli(&["flags", "list"])
        .ok()
        .stdout_has(&["KEY", "calc-model", "string", "yes"]);
}

#[test]
fn an_export_applies_back_to_the_same_state() {
    let server = start();
    server.apply_quickstart();
    let toml_path = server.dir.path().join("production.toml");
    server.cli(&["export", "-o", path_arg(&toml_path)]).ok();
    let exported = std::fs::read_to_string(&toml_path).expect("the export was written");
    toml::from_str::<toml::Table>(&exported).expect("the export is TOML");
    let applied = server.cli(&["apply", path_arg(&toml_path)]).ok();
    assert!(
        !applied.stdout.contains("created") && !applied.stdout.contains("updated"),
        "{}",
        applied.stdout
    );
    applied.stdout_has(&[
        "flag calc-model: unchanged",
        "segment power-users: unchanged",
        "nothing to change",
    ]);

    // JSON, by option and by extension, and TOML on standard output.
    let json_path = server.dir.path().join("production.json");
    server.cli(&["export", "-o", path_arg(&json_path)]).ok();
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).expect("written")).expect("JSON");
    assert_eq!(json["flags"][0]["key"], "calc-model");
    server
        .cli(&["apply", path_arg(&json_path)])
        .ok()
        .stdout_has(&["nothing to change"]);
    let printed = server.cli(&["export", "--format", "json"]).ok().json();
    assert_eq!(printed, json);
    let on_stdout = server.cli(&["export"]).ok().stdout;
    assert_eq!(on_stdout, exported);
    server
        .cli_with_stdin(&["apply", "-"], &on_stdout)
        .ok()
        .stdout_has(&["nothing to change"]);
    assert_eq!(server.flags_json()["flags"][0]["version"], 1);
}

/// A second, valid flag appended to each bad file: it must not be created.
const GOOD_FLAG: &str = r#"
[[flags]]
key = "innocent"
type = "boolean"
off_variant = "off"
variants = { on = true, off = false }
default = { serve = { variant = "on" } }
"#;

#[test]
fn a_bad_file_is_rejected_whole_with_the_flag_and_field_named() {
    let server = start();
    server.apply_quickstart();
    let before = server.flags_json();
    let export_before = server.cli(&["export"]).ok().stdout;
    let cases: [(&str, &str, &str, &[&str]); 4] = [
        (
            "unknown-variant.toml",
            "split = { advanced = 5, simple = 95 }",
            "split = { advanced = 5, huge = 95 }",
            &["flag `calc-model`", "rules[1].serve.split", "huge"],
        ),
        (
            "bad-weights.toml",
            "split = { advanced = 5, simple = 95 }",
            "split = { advanced = 5, simple = 90 }",
            &[
                "flag `calc-model`",
                "rules[1].serve.split",
                "weights sum to 95, not 100",
            ],
        ),
        (
            "unknown-segment.toml",
            r#"{ segment = "power-users" }"#,
            r#"{ segment = "nobody" }"#,
            &[
                "flag `calc-model`",
                "rules[1].conditions[0].segment",
                "unknown segment `nobody`",
            ],
        ),
        (
            "bad-regex.toml",
            r#"op = "ends_with", values = ["@example.com"]"#,
            r#"op = "regex", values = ["(unclosed"]"#,
            &[
                "flag `calc-model`",
                "rules[0].conditions[0].values",
                "bad regex",
            ],
        ),
    ];
    for (name, from, to, expected) in cases {
        let text = quickstart_text();
        assert!(
            text.contains(from),
            "{name}: the quickstart has no `{from}`"
        );
        let path = server.file(name, &(text.replacen(from, to, 1) + GOOD_FLAG));
        server
            .cli(&["apply", path_arg(&path)])
            .failed()
            .stderr_has(expected)
            .stderr_has(&[name, "was not applied"]);
        assert_eq!(server.flags_json(), before, "{name} changed the flags");
        assert_eq!(
            server.cli(&["export"]).ok().stdout,
            export_before,
            "{name} changed the environment"
        );
    }
}

#[test]
fn a_toml_syntax_error_names_the_line_and_sends_nothing() {
    let server = start();
    let text = quickstart_text().replacen(r#"key = "calc-model""#, r#"key = "calc-model"#, 1);
    let path = server.file("broken.toml", &text);
    let line = text
        .lines()
        .position(|l| l.starts_with(r#"key = "calc-model"#))
        .expect("the broken line")
        + 1;
    server
        .cli(&["apply", path_arg(&path)])
        .failed()
        .stderr_has(&["broken.toml:", &format!("line {line}")]);
    let flags = server.flags_json();
    assert_eq!(flags["flags"], Value::Array(Vec::new()));
    server
        .cli(&["flags", "list"])
        .ok()
        .stdout_has(&["no flags in production"]);
}

#[test]
fn a_dry_run_from_standard_input_changes_nothing() {
    let server = start();
    server
        .cli_with_stdin(&["apply", "-", "--dry-run"], &quickstart_text())
        .ok()
        .stdout_has(&[
            "flag calc-model: created",
            "dry run: nothing changed (2 changes would be applied to production)",
        ]);
    assert_eq!(server.flags_json()["flags"], Value::Array(Vec::new()));
    server
        .cli_with_stdin(&["apply", "-", "--format", "toml"], &quickstart_text())
        .ok()
        .stdout_has(&["2 changes applied"]);
}

#[test]
fn prune_deletes_what_the_file_does_not_name() {
    let server = start();
    server.apply_quickstart();
    let only_segment = quickstart_text()
        .split("[[flags]]")
        .next()
        .expect("the segment part")
        .to_owned();
    let path = server.file("segments.toml", &only_segment);
    server
        .cli(&["apply", path_arg(&path), "--prune", "--reason", "cleanup"])
        .ok()
        .stdout_has(&["flag calc-model: deleted"]);
    assert_eq!(server.flags_json()["flags"], Value::Array(Vec::new()));
}

#[test]
fn disable_history_restore_and_delete() {
    let server = start();
    server.apply_quickstart();
    let tester = r#"{"targetingKey":"u-1","email":"ana@example.com"}"#;
    server
        .cli(&["eval", "calc-model", "--context", tester])
        .ok()
        .stdout_has(&["advanced  (variant advanced, reason TARGETING_MATCH)"]);

    server
        .cli(&["flags", "disable", "calc-model", "--reason", "error spike"])
        .ok()
        .stdout_has(&["flag calc-model disabled in production (version 2)"]);
    server
        .cli(&["eval", "calc-model", "--context", tester])
        .ok()
        .stdout_has(&["simple  (variant simple, reason DISABLED)"]);
    let evaluation = server
        .cli(&["eval", "calc-model", "--context", tester, "--json"])
        .ok()
        .json();
    assert_eq!(evaluation["reason"], "DISABLED");
    assert_eq!(evaluation["variant"], "simple");

    let admin_name =
        server.cli(&["token", "list", "--json"]).ok().json()["tokens"][0]["name"].clone();
    let admin_name = admin_name
        .as_str()
        .expect("the admin token has a name")
        .to_owned();
    let history = server
        .cli(&["flags", "history", "calc-model", "--json"])
        .ok()
        .json();
    assert_eq!(history["versions"][0]["version"], 2);
    assert_eq!(history["versions"][0]["author"], admin_name.as_str());
    assert_eq!(history["versions"][0]["reason"], "error spike");
    assert_eq!(history["versions"][1]["version"], 1);
    server
        .cli(&["flags", "history", "calc-model"])
        .ok()
        .stdout_has(&["VERSION", "error spike", "disabled", &admin_name]);

    server
        .cli(&[
            "flags",
            "restore",
            "calc-model",
            "1",
            "--reason",
            "back to the first version",
        ])
        .ok()
        .stdout_has(&["restored to version 1", "now version 3"]);
    server
        .cli(&["eval", "calc-model", "--context", tester])
        .ok()
        .stdout_has(&["reason TARGETING_MATCH"]);
    let record = server
        .cli(&["flags", "get", "calc-model", "--json"])
        .ok()
        .json();
    assert_eq!(record["version"], 3);
    assert_eq!(record["enabled"], true);
    let shown = server.cli(&["flags", "get", "calc-model"]).ok().stdout;
    let shown: toml::Table = toml::from_str(&shown).expect("flags get prints TOML");
    assert_eq!(shown["flags"][0]["key"].as_str(), Some("calc-model"));

    let audit = server
        .cli(&["audit", "--flag", "calc-model", "--limit", "1", "--json"])
        .ok()
        .json();
    assert_eq!(audit["entries"].as_array().map(Vec::len), Some(1));
    assert_eq!(audit["entries"][0]["reason"], "back to the first version");
    server
        .cli(&["audit"])
        .ok()
        .stdout_has(&["error spike", "flag calc-model"]);

    server
        .cli(&["flags", "delete", "calc-model", "--reason", "done"])
        .ok()
        .stdout_has(&[
            "flag calc-model deleted from production",
            "rollgate flags restore calc-model 3",
        ]);
    server
        .cli(&["flags", "list"])
        .ok()
        .stdout_has(&["no flags in production"]);
    server
        .cli(&["flags", "history", "calc-model"])
        .ok()
        .stdout_has(&["deleted", "done"]);
    server
        .cli(&["eval", "calc-model"])
        .failed()
        .stderr_has(&["FLAG_NOT_FOUND"]);
    server.cli(&["flags", "restore", "calc-model", "3"]).ok();
    assert_eq!(server.flags_json()["flags"][0]["enabled"], true);
}

#[test]
fn client_tokens_evaluate_but_cannot_administer() {
    let server = start();
    server.apply_quickstart();
    let created = server
        .cli(&[
            "token",
            "create",
            "--kind",
            "client",
            "-e",
            "production",
            "--name",
            "checkout",
            "--json",
        ])
        .ok()
        .json();
    let secret = created["secret"].as_str().expect("a secret").to_owned();
    let id = created["token"]["id"].to_string();

    server
        .cli_as(
            Some(&secret),
            &[
                "eval",
                "calc-model",
                "--context",
                r#"{"targetingKey":"u-3"}"#,
            ],
        )
        .ok()
        .stdout_has(&["simple  (variant simple, reason DEFAULT)"]);
    server
        .cli_as(Some(&secret), &["flags", "list"])
        .failed()
        .stderr_has(&["HTTP 403", "admin token"]);
    server
        .cli_as(Some(&secret), &["eval", "calc-model", "-e", "staging"])
        .failed()
        .stderr_has(&["HTTP 403"]);

    // Text mode prints the secret alone on standard output.
    let text = server
        .cli(&["token", "create", "--kind", "client", "--name", "batch-job"])
        .ok();
    assert_eq!(text.stdout.lines().count(), 1, "{}", text.stdout);
    assert!(
        text.stderr.contains("shown only this once"),
        "{}",
        text.stderr
    );
    let second = text.stdout.trim().to_owned();
    server.cli_as(Some(&second), &["eval", "calc-model"]).ok();

    server.cli(&["token", "list"]).ok().stdout_has(&[
        "checkout",
        "batch-job",
        "client",
        "production",
    ]);
    server
        .cli(&["token", "revoke", &id])
        .ok()
        .stdout_has(&["revoked token", "checkout"]);
    server
        .cli_as(Some(&secret), &["eval", "calc-model"])
        .failed()
        .stderr_has(&["HTTP 401", "pass --token or set ROLLGATE_TOKEN"]);
}

#[test]
fn a_missing_or_wrong_token_says_to_set_rollgate_token() {
    let server = start();
    server
        .cli_as(None, &["flags", "list"])
        .failed()
        .stderr_has(&["ROLLGATE_TOKEN", "--token"]);
    server
        .cli_as(Some("not-a-token"), &["flags", "list"])
        .failed()
        .stderr_has(&["HTTP 401", "ROLLGATE_TOKEN"]);
}

#[test]
fn an_unreachable_server_says_to_start_one() {
    // A port that was free a moment ago: nothing listens on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut command = rollgate();
    command
        .env("ROLLGATE_SERVER", format!("http://127.0.0.1:{port}"))
        .env("ROLLGATE_TOKEN", ADMIN_TOKEN);
    run(command, &["flags", "list"], None)
        .failed()
        .stderr_has(&[
            &format!("cannot reach the server at http://127.0.0.1:{port}"),
            "is `rollgate serve` running?",
            "ROLLGATE_SERVER",
        ]);
}

#[test]
fn bad_command_line_input_is_explained() {
    let server = start();
    server.apply_quickstart();
    server
        .cli(&["eval", "calc-model", "--context", "{nope"])
        .failed()
        .stderr_has(&["--context is not valid JSON"]);
    server
        .cli(&["eval", "calc-model", "--context", "[1]"])
        .failed()
        .stderr_has(&["--context must be a JSON object"]);
    server
        .cli(&["eval", "no-such-flag"])
        .failed()
        .stderr_has(&["FLAG_NOT_FOUND"]);
    server
        .cli(&["flags", "get", "no-such-flag"])
        .failed()
        .stderr_has(&["no-such-flag", "HTTP 404"]);
    let path = server.file("config.yaml", "flags: []");
    server
        .cli(&["apply", path_arg(&path)])
        .failed()
        .stderr_has(&["name it .toml or .json"]);
    let missing = server.dir.path().join("missing.toml");
    server
        .cli(&["apply", path_arg(&missing)])
        .failed()
        .stderr_has(&["cannot read", "missing.toml"]);
    let usage = server.cli(&["token", "create", "--kind", "root", "--name", "x"]);
    assert_eq!(usage.status.code(), Some(2), "{}", usage.stderr);
}

#[test]
fn every_json_output_parses() {
    let server = start();
    let applied = server.cli(&["apply", QUICKSTART, "--json"]).ok().json();
    assert_eq!(applied["changes"].as_array().map(Vec::len), Some(2));
    let commands: [&[&str]; 10] = [
        &["flags", "list", "--json"],
        &["flags", "get", "calc-model", "--json"],
        &["flags", "disable", "calc-model", "--json"],
        &["flags", "enable", "calc-model", "--json"],
        &["flags", "history", "calc-model", "--json"],
        &[
            "eval",
            "calc-model",
            "--context",
            r#"{"targetingKey":"u-2","plan":"pro"}"#,
            "--json",
        ],
        &["audit", "--json"],
        &["token", "list", "--json"],
        &["export", "--json"],
        &[
            "token", "create", "--kind", "admin", "--name", "ops", "--json",
        ],
    ];
    for args in commands {
        let value = server.cli(args).ok().json();
        assert!(
            value.is_object(),
            "`rollgate {}` printed {value}",
            args.join(" ")
        );
    }
}

#[test]
fn serve_stops_cleanly_on_sigterm() {
    let server = start();
    server.cli(&["flags", "list"]).ok();
    let log_before = server.log();
    let status = server.terminate();
    assert!(
        status.success(),
        "the server exited with {status}:\n{log_before}"
    );
}

const SEED_METRICS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../examples/seed-metrics.toml"
);

const SEED_EXPERIMENT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../examples/seed-experiment.toml"
);

#[test]
fn metrics_apply_export_and_apply_back_unchanged() {
    let server = start();
    server.apply_quickstart();
    let applied = server.cli(&["apply", SEED_METRICS]).ok();
    applied.stdout_has(&[
        "metric cache_hit_rate: created (version 1)",
        "metric uptime: created (version 1)",
    ]);

    server.cli(&["metrics", "list"]).ok().stdout_has(&[
        "KEY",
        "KIND",
        "READS",
        "error_rate",
        "calc_error / calc_request",
        "count(calc_request) filtered / calc_request",
        "p95 of calc_request",
        "retention_7d",
        "lower",
    ]);
    let listed = server.cli(&["metrics", "list", "--json"]).ok().json();
    let keys: Vec<&str> = listed["metrics"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["key"].as_str())
        .collect();
    assert!(keys.contains(&"response_time_p95"), "{keys:?}");
    let get = server.cli(&["metrics", "get", "cache_hit_rate"]).ok();
    get.stdout_has(&[
        "# cache_hit_rate in production: version 1",
        "[[metrics]]",
        "numerator = { event = \"calc_request\", agg = \"count\", filter = { cache_hit = true } }",
    ]);
    let record = server
        .cli(&["metrics", "get", "cache_hit_rate", "--json"])
        .ok()
        .json();
    assert_eq!(record["kind"], "ratio");

    // TOML export → apply: nothing changes, metrics included.
    let toml_path = server.dir.path().join("all.toml");
    server.cli(&["export", "-o", path_arg(&toml_path)]).ok();
    let exported = std::fs::read_to_string(&toml_path).expect("the export was written");
    assert!(exported.contains("[[metrics]]"), "{exported}");
    assert!(
        exported.contains(
            "numerator = { event = \"calc_request\", agg = \"count\", filter = { cache_hit = true } }"
        ),
        "{exported}"
    );
    let again = server.cli(&["apply", path_arg(&toml_path), "--prune"]).ok();
    assert!(
        !again.stdout.contains("created")
            && !again.stdout.contains("updated")
            && !again.stdout.contains("deleted"),
        "{}",
        again.stdout
    );
    again.stdout_has(&[
        "metric satisfaction_score: unchanged",
        "flag calc-model: unchanged",
        "nothing to change",
    ]);

    // And through JSON.
    let json_path = server.dir.path().join("all.json");
    server.cli(&["export", "-o", path_arg(&json_path)]).ok();
    server
        .cli(&["apply", path_arg(&json_path)])
        .ok()
        .stdout_has(&["nothing to change"]);

    // Pruning with a file without metrics deletes them.
    server
        .cli(&["apply", QUICKSTART, "--prune"])
        .ok()
        .stdout_has(&["metric uptime: deleted"]);
    server
        .cli(&["metrics", "list"])
        .ok()
        .stdout_has(&["no metrics in production"]);
}

#[test]
fn a_bad_metric_is_rejected_with_metric_and_field_named() {
    let server = start();
    let path = server.file(
        "bad-metric.toml",
        "[[metrics]]\nkey = \"p95\"\nkind = \"quantile\"\nevent = \"calc_request\"\nq = 95\n",
    );
    server
        .cli(&["apply", path_arg(&path)])
        .failed()
        .stderr_has(&["metric `p95`: q: is 95; it must be between 0 and 1 exclusive"]);
    server
        .cli(&["metrics", "get", "nope"])
        .failed()
        .stderr_has(&["metric `nope` was not found", "404"]);
    server
        .cli(&["metrics", "get", "no/such"])
        .failed()
        .stderr_has(&["invalid metric key"]);
}

#[test]
fn metrics_show_reports_per_variant_values() {
    let server = start();
    server.apply_quickstart();
    let metrics = server.file(
        "metrics.toml",
        "[[metrics]]\nkey = \"error_rate\"\nkind = \"ratio\"\nnumerator = \"calc_error\"\ndenominator = \"calc_request\"\n",
    );
    server.cli(&["apply", path_arg(&metrics)]).ok();
    let body = server
        .cli(&[
            "--json",
            "metrics",
            "show",
            "error_rate",
            "--flag",
            "calc-model",
            "--bucket",
            "1m",
        ])
        .ok()
        .json();
    assert_eq!(
        (
            body["metric"].as_str(),
            body["kind"].as_str(),
            body["bucket"].as_str()
        ),
        (Some("error_rate"), Some("ratio"), Some("1m"))
    );
    assert!(body["variants"].is_array());
    server
        .cli(&["metrics", "show", "error_rate", "--flag", "calc-model"])
        .ok()
        .stdout_has(&["error_rate (ratio) by variant of calc-model", "VARIANT"]);
    server
        .cli(&["metrics", "show", "error_rate", "--flag", "no-such-flag"])
        .failed()
        .stderr_has(&["flag `no-such-flag` was not found"]);
    server
        .cli(&[
            "metrics",
            "show",
            "error_rate",
            "--flag",
            "calc-model",
            "--bucket",
            "5m",
        ])
        .failed()
        .stderr_has(&["bucket `5m` is unknown"]);
}

#[test]
fn the_seed_experiment_applies_lists_and_reports() {
    let server = start();
    server.cli(&["apply", SEED_METRICS]).ok();
    server
        .cli(&["apply", SEED_EXPERIMENT])
        .ok()
        .stdout_has(&["experiment calc-models: created (version 1)"]);
    server.cli(&["experiment", "list"]).ok().stdout_has(&[
        "calc-models",
        "calc-model",
        "simple, advanced, choice, auto",
    ]);
    server.cli(&["experiment", "get", "calc-models"]).ok().stdout_has(&[
        "# calc-models in production: version 1",
        "[[experiments]]",
        "auto_select = { arm = \"auto\", among = [\"simple\", \"advanced\"], metric = \"satisfaction_score\" }",
    ]);
    // No data yet: the warning comes first, every comparison says why.
    server
        .cli(&["experiment", "results", "calc-models"])
        .ok()
        .stdout_has(&[
            "calc-models — flag calc-model in production; alpha 0.05, sequential (always-valid) intervals, CUPED, holm correction",
            "WARNING: Samples are too small to say anything yet",
            "satisfaction_score (ratio, primary, higher is better)",
            "calculations_per_user (mean, secondary, higher is better, CUPED)",
            "ARM", "LIFT", "P ADJ", "BEATS CONTROL", "VERDICT",
            "insufficient data",
            "automatic selection in arm auto (probability best on satisfaction_score): simple 50.0%, advanced 50.0%",
        ]);
    let body = server
        .cli(&["experiment", "results", "calc-models", "--json"])
        .ok()
        .json();
    assert_eq!(body["experiment"], "calc-models");
    assert_eq!(body["arms"].as_array().map(Vec::len), Some(4));
    // Export and apply back: unchanged, experiments included.
    let path = server.dir.path().join("all.toml");
    server.cli(&["export", "-o", path_arg(&path)]).ok();
    let exported = std::fs::read_to_string(&path).expect("the export was written");
    assert!(exported.contains("[[experiments]]"), "{exported}");
    server
        .cli(&["apply", path_arg(&path), "--prune"])
        .ok()
        .stdout_has(&["experiment calc-models: unchanged", "nothing to change"]);
    server
        .cli(&["experiment", "results", "nope"])
        .failed()
        .stderr_has(&["experiment `nope` was not found", "404"]);
}

const SEED_ROLLOUT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../examples/seed-rollout.toml"
);

#[test]
fn the_seed_rollout_applies_starts_and_rolls_back_by_hand() {
    let server = start();
    server.cli(&["apply", SEED_METRICS]).ok();
    server.cli(&["apply", SEED_ROLLOUT]).ok().stdout_has(&[
        "rollout calc-model: created (version 1)",
        "experiment calc-models: created (version 1)",
    ]);
    server
        .cli(&["rollout", "status", "calc-model"])
        .ok()
        .stdout_has(&["rollout of calc-model in production: pending"]);
    server
        .cli(&["rollout", "start", "calc-model"])
        .ok()
        .stdout_has(&[
            "rollout of calc-model in production: running, phase 1 of 3 (beta, 5%)",
            "CHECK",
            "guard (rollback)",
            "error_rate",
            "insufficient data",
        ]);
    // The beta is for power users only: others keep the simple model.
    let eval = server
        .cli(&[
            "eval",
            "calc-model",
            "--context",
            r#"{"targetingKey":"u-1","plan":"free"}"#,
        ])
        .ok();
    eval.stdout_has(&["simple"]);
    server
        .cli(&[
            "rollout",
            "rollback",
            "calc-model",
            "--reason",
            "critical bug",
        ])
        .ok()
        .stdout_has(&["rolled_back", "incidents:", "[manual_rollback]"]);
    let status = server
        .cli(&["rollout", "status", "calc-model", "--json"])
        .ok()
        .json();
    assert_eq!(status["status"], "rolled_back");
    server
        .cli(&["rollout", "advance", "calc-model"])
        .failed()
        .stderr_has(&["rolled back", "409"]);
    server
        .cli(&["rollout", "extend", "calc-model", "--by", "soon"])
        .failed()
        .stderr_has(&["by:"]);
    // Export and apply back: unchanged, the plan included.
    let path = server.dir.path().join("all.toml");
    server.cli(&["export", "-o", path_arg(&path)]).ok();
    let exported = std::fs::read_to_string(&path).expect("the export was written");
    assert!(exported.contains("[[rollouts]]"), "{exported}");
    server
        .cli(&["apply", path_arg(&path)])
        .ok()
        .stdout_has(&["rollout calc-model: unchanged", "nothing to change"]);
}

#[test]
fn an_incident_is_worked_from_the_command_line() {
    let server = start();
    server.cli(&["apply", SEED_METRICS]).ok();
    server.cli(&["apply", SEED_ROLLOUT]).ok();
    server.cli(&["rollout", "start", "calc-model"]).ok();
    server
        .cli(&[
            "rollout",
            "rollback",
            "calc-model",
            "--reason",
            "critical bug",
        ])
        .ok();
    // A rollback by hand is the seed's critical bug: L3.
    let listed = server.cli(&["incident", "list", "--json"]).ok().json();
    let incident = &listed["incidents"][0];
    assert_eq!(incident["level"], "L3", "{listed}");
    assert_eq!(incident["kind"], "manual_rollback");
    let id = incident["id"].to_string();
    server
        .cli(&["incident", "list"])
        .ok()
        .stdout_has(&["ID", "LEVEL", "calc-model", "L3", "open"]);
    server
        .cli(&["incident", "ack", &id, "--note", "on it"])
        .ok()
        .stdout_has(&["acknowledged", "bootstrap-admin acknowledged: on it"]);
    // Text from people is shown escaped, never as terminal control.
    server
        .cli(&["incident", "note", &id, "rm -rf \u{1b}[2J\nnext line"])
        .ok()
        .stdout_has(&["note: rm -rf \\u{1b}[2J\\nnext line"]);
    server
        .cli(&[
            "incident",
            "status",
            &id,
            "mitigated",
            "--note",
            "control for all",
        ])
        .ok()
        .stdout_has(&["mitigated", "(open → mitigated): control for all"]);
    server
        .cli(&[
            "incident",
            "publish",
            &id,
            "--text",
            "Calculations were wrong for some",
        ])
        .ok()
        .stdout_has(&["public: Calculations were wrong for some"]);
    server
        .cli(&["incident", "resolve", &id, "--resolution", "fixed in 2.4.1"])
        .ok()
        .stdout_has(&["resolved", "fixed in 2.4.1"]);
    server
        .cli(&["incident", "list"])
        .ok()
        .stdout_has(&["no active incidents"]);
    let all = server
        .cli(&["incident", "list", "--all", "--json"])
        .ok()
        .json();
    assert_eq!(all["incidents"][0]["status"], "resolved");
    let shown = server.cli(&["incident", "show", &id, "--json"]).ok().json();
    let actions: Vec<&str> = shown["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .map(|e| e["action"].as_str().expect("action"))
        .collect();
    assert_eq!(
        actions,
        [
            "opened",
            "acknowledged",
            "note",
            "status",
            "published",
            "resolved"
        ]
    );
    server
        .cli(&["incident", "escalate", &id])
        .failed()
        .stderr_has(&["is resolved", "409"]);
    server
        .cli(&["incident", "ack", "999999"])
        .failed()
        .stderr_has(&["incident `999999` was not found"]);
    let usage = server.cli(&["incident", "status", &id, "resolved"]);
    assert_eq!(usage.status.code(), Some(2), "{}", usage.stderr);
    assert!(
        usage.stderr.contains("invalid value 'resolved'"),
        "{}",
        usage.stderr
    );
}
