//! Shared by the tests that run the real binary: starting `rollgate serve`.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_rollgate");

/// Starts `rollgate serve --addr 127.0.0.1:0` with `store_args` (e.g.
/// `--data-dir DIR`) and `admin` as the bootstrap admin token, and waits for
/// its "listening" line (no sleeping: the line is the readiness signal).
/// Returns the process and its base URL. Its standard error is drained
/// from then on; `ROLLGATE_TEST_LOGS=1` shows it.
pub fn spawn_serve<S: AsRef<OsStr>>(store_args: &[S], admin: &str) -> (Child, String) {
    let mut child = Command::new(BIN)
        .args(["serve", "--addr", "127.0.0.1:0"])
        .args(store_args)
        .env("ROLLGATE_ADMIN_TOKEN", admin)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start rollgate serve");
    let stderr = child.stderr.take().expect("stderr is piped");
    let mut lines = BufReader::new(stderr).lines();
    let url = loop {
        let line = lines
            .next()
            .expect("serve printed its address before exiting")
            .expect("read stderr");
        if let Some(rest) = line.split("Rollgate listening on ").nth(1) {
            break rest.trim().to_owned();
        }
    };
    // Keep draining stderr so the server never blocks on a full pipe.
    let show = std::env::var_os("ROLLGATE_TEST_LOGS").is_some();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            if show {
                eprintln!("[serve] {line}");
            }
        }
    });
    (child, url)
}
