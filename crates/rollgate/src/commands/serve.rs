//! `rollgate serve`: the server on the embedded SQLite store or on
//! PostgreSQL.

use std::io::IsTerminal as _;

use anyhow::Context as _;
use tracing_subscriber::EnvFilter;

use crate::cli::{DatabaseArgs, ServeArgs};

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
    let store = open_store(&args.database).await?;
    let admin_token = std::env::var(ADMIN_TOKEN_VAR)
        .ok()
        .filter(|t| !t.trim().is_empty());
    let config = server::ServerConfig {
        delivery: server::notify::DeliveryPolicy {
            backoff_base_ms: args.delivery_backoff_ms,
            ..server::notify::DeliveryPolicy::default()
        },
        ..server::ServerConfig::default()
    };
    let state = server::prepare_with(store, admin_token.as_deref(), &config).await?;
    let listener = tokio::net::TcpListener::bind(&args.addr).await.with_context(|| {
        format!("cannot listen on {}; is another server using it? choose another with --addr or ROLLGATE_ADDR", args.addr)
    })?;
    let addr = listener
        .local_addr()
        .context("cannot read the address the server listens on")?;
    // Tests and scripts read this line to learn the port (`--addr 127.0.0.1:0`).
    eprintln!("Rollgate listening on http://{addr}");
    tracing::info!(message = "Serving.", %addr, store = %describe(&args.database));
    server::serve(listener, state, server::shutdown_signal()).await
}

/// Opens the store `args` names (running its migrations): PostgreSQL with
/// `--database-url`, else the SQLite file in `--data-dir`.
pub async fn open_store(args: &DatabaseArgs) -> anyhow::Result<store::Store> {
    if let Some(url) = &args.database_url {
        return store::Store::connect(url)
            .await
            .with_context(|| format!("cannot open the database {}", redact(url)));
    }
    let data_dir = &args.data_dir;
    std::fs::create_dir_all(data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}; choose another with --data-dir or \
             ROLLGATE_DATA_DIR",
            data_dir.display()
        )
    })?;
    store::Store::open_sqlite(data_dir)
        .await
        .with_context(|| format!("cannot open the store in {}", data_dir.display()))
}

/// The store for logs, without a password.
pub fn describe(args: &DatabaseArgs) -> String {
    match &args.database_url {
        Some(url) => redact(url),
        None => args.data_dir.display().to_string(),
    }
}

/// A database URL with its password replaced by `***`.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(parsed) => parsed.to_string(),
        Err(_) => "(an unparsable URL)".to_owned(),
    }
}
