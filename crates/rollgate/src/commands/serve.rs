//! `rollgate serve`: the server on the embedded SQLite store.

use std::io::IsTerminal as _;

use anyhow::Context as _;
use tracing_subscriber::EnvFilter;

use crate::cli::ServeArgs;

/// The variable whose value becomes the first admin token of an empty store.
/// Read from the environment only, so the secret is not in the process list.
const ADMIN_TOKEN_VAR: &str = "ROLLGATE_ADMIN_TOKEN";

/// The log filter when `RUST_LOG` is not set.
const DEFAULT_LOG_FILTER: &str = "info";

/// Runs the server until SIGTERM or ctrl-c, then lets in-flight requests finish.
pub fn run(args: &ServeArgs) -> anyhow::Result<()> {
    init_logging();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(args))
}

fn init_logging() {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    // Logs go to standard error, like the "listening" line; colours only on a terminal.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

async fn serve(args: &ServeArgs) -> anyhow::Result<()> {
    let data_dir = &args.data_dir;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create the data directory {}; choose another with --data-dir or ROLLGATE_DATA_DIR", data_dir.display()))?;
    let store = store::Store::open_sqlite(data_dir)
        .await
        .with_context(|| format!("cannot open the store in {}", data_dir.display()))?;
    let admin_token = std::env::var(ADMIN_TOKEN_VAR)
        .ok()
        .filter(|t| !t.trim().is_empty());
    let state = server::prepare(store, admin_token.as_deref()).await?;
    let listener = tokio::net::TcpListener::bind(&args.addr).await.with_context(|| {
        format!("cannot listen on {}; is another server using it? choose another with --addr or ROLLGATE_ADDR", args.addr)
    })?;
    let addr = listener
        .local_addr()
        .context("cannot read the address the server listens on")?;
    // Tests and scripts read this line to learn the port (`--addr 127.0.0.1:0`).
    eprintln!("Rollgate listening on http://{addr}");
    tracing::info!(message = "Serving.", %addr, data_dir = %data_dir.display());
    server::serve(listener, state, server::shutdown_signal()).await
}
