//! The command line: every command, option and environment variable of
//! `rollgate`, as clap derives them. Parsing only; the commands live in
//! [`crate::commands`].

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Where the server listens when neither `--server` nor `ROLLGATE_SERVER` says.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

/// The environment of commands that name none with `-e`.
pub const DEFAULT_ENVIRONMENT: &str = "production";

#[derive(Parser, Debug)]
#[command(
    name = "rollgate",
    version,
    about = "Rollgate: feature flags and progressive delivery from one binary.",
    after_help = "Run `rollgate serve` to start the server; every other command talks to it over HTTP."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,

    #[command(subcommand)]
    pub command: Command,
}

/// The help heading of the options every command takes.
const GLOBAL: &str = "Global options";

/// Options every command takes.
#[derive(Args, Debug, Clone)]
pub struct Global {
    /// URL of the Rollgate server.
    #[arg(long, global = true, env = "ROLLGATE_SERVER", default_value = DEFAULT_SERVER, help_heading = GLOBAL)]
    pub server: String,

    /// API token (an admin token for everything but `eval`).
    #[arg(long, global = true, env = "ROLLGATE_TOKEN", hide_env_values = true, help_heading = GLOBAL)]
    pub token: Option<String>,

    /// Environment to work in [default: production, or the file's `environment` for `apply`].
    #[arg(short = 'e', long = "env", global = true, value_name = "ENV", help_heading = GLOBAL)]
    pub environment: Option<String>,

    /// Print the server's JSON instead of text.
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub json: bool,
}

impl Global {
    /// The environment to use: `-e`, or `production`.
    pub fn environment(&self) -> &str {
        self.environment.as_deref().unwrap_or(DEFAULT_ENVIRONMENT)
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server on the embedded SQLite store.
    ///
    /// The admin token is read from ROLLGATE_ADMIN_TOKEN: on a store without
    /// tokens it becomes the first admin token.
    Serve(ServeArgs),
    /// Create the store, or bring its schema up to date, and show its migrations.
    Migrate(MigrateArgs),
    /// Write every table of the store to a file, from one consistent snapshot.
    ///
    /// The file restores into either backend: `backup` from SQLite, then
    /// `restore --database-url` moves a store to PostgreSQL.
    Backup(BackupArgs),
    /// Load a file written by `backup` into a new, empty store.
    Restore(RestoreArgs),
    /// Create or update the segments, flags, metrics and experiments of a TOML or JSON file.
    Apply(ApplyArgs),
    /// Write an environment's segments, flags, metrics and experiments in the format `apply` reads.
    Export(ExportArgs),
    /// List, inspect and change flags.
    #[command(subcommand)]
    Flags(FlagsCommand),
    /// List and inspect metric definitions (they are changed with `apply`).
    #[command(subcommand)]
    Metrics(MetricsCommand),
    /// List experiments and show their results (they are changed with `apply`).
    #[command(subcommand)]
    Experiment(ExperimentCommand),
    /// Run a flag's staged rollout: start it, see its status, and steer it by hand.
    #[command(subcommand)]
    Rollout(RolloutCommand),
    /// Create, list and revoke API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Evaluate a flag for a context, as an application would.
    Eval(EvalArgs),
    /// Show who changed what, when and why.
    Audit(AuditArgs),
    /// List webhook deliveries to notification channels, newest first.
    Deliveries(DeliveriesArgs),
    /// Reports on a flag's rollout, as Markdown: daily status, weekly report, review, release notes.
    #[command(subcommand)]
    Report(ReportCommand),
    /// List, inspect and work incidents: acknowledge, note, move, escalate, publish, resolve.
    #[command(subcommand)]
    Incident(IncidentCommand),
    /// Run a rollout plan's controller against synthetic traffic on a virtual clock (no server).
    Simulate(SimulateArgs),
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free port.
    #[arg(
        long,
        env = "ROLLGATE_ADDR",
        default_value = "127.0.0.1:8080",
        value_name = "HOST:PORT"
    )]
    pub addr: String,

    /// The wait after a webhook delivery's first failed attempt, in
    /// milliseconds; it doubles after each further failure, up to an hour.
    /// For tuning and for tests.
    #[arg(
        long,
        env = "ROLLGATE_DELIVERY_BACKOFF_MS",
        default_value_t = server::notify::DEFAULT_BACKOFF_BASE_MS,
        value_parser = clap::value_parser!(i64).range(1..=3_600_000),
        value_name = "MS"
    )]
    pub delivery_backoff_ms: i64,

    #[command(flatten)]
    pub database: DatabaseArgs,
}

#[derive(Args, Debug)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
}

#[derive(Args, Debug)]
pub struct BackupArgs {
    /// The file to write, or `-` for standard output.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,

    /// Replace FILE if it exists.
    #[arg(long)]
    pub force: bool,

    #[command(flatten)]
    pub database: DatabaseArgs,
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// A file written by `rollgate backup`, or `-` for standard input.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,

    #[command(flatten)]
    pub database: DatabaseArgs,
}

/// Where the store is: the embedded SQLite file in a directory (the
/// default), or a PostgreSQL database.
#[derive(Args, Debug, Clone)]
pub struct DatabaseArgs {
    /// Directory of the embedded store; created if missing. Ignored with
    /// `--database-url`.
    #[arg(
        long,
        env = "ROLLGATE_DATA_DIR",
        default_value = "./rollgate-data",
        value_name = "DIR"
    )]
    pub data_dir: PathBuf,

    /// A PostgreSQL database (`postgres://user@host:5432/db`) instead of
    /// the embedded store; several replicas may share it.
    #[arg(long, env = "ROLLGATE_DATABASE_URL", value_name = "URL")]
    pub database_url: Option<String>,
}

/// The formats of a config document.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Toml,
    Json,
}

#[derive(Args, Debug)]
pub struct ApplyArgs {
    /// The config file (`.toml` or `.json`), or `-` for standard input.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,

    /// The file's format; by default its extension says (`-` is TOML).
    #[arg(long)]
    pub format: Option<Format>,

    /// Validate and report what would change, but change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Also delete the flags, segments, metrics and experiments of the environment the file does not name.
    #[arg(long)]
    pub prune: bool,

    /// Why; stored with every version and audit entry this creates.
    #[arg(long)]
    pub reason: Option<String>,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Output format [default: the extension of `-o`, else toml].
    #[arg(long)]
    pub format: Option<Format>,

    /// Write to this file instead of standard output.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum FlagsCommand {
    /// List the flags of the environment.
    List,
    /// Show one flag as TOML (or its record as JSON).
    Get { key: String },
    /// Turn a flag on: targeting rules apply again.
    Enable(ReasonArgs),
    /// Turn a flag off: everyone gets its off-variant.
    Disable(ReasonArgs),
    /// Show every version of a flag, newest first.
    History { key: String },
    /// Make an old version of a flag current again (as a new version).
    Restore {
        key: String,
        version: i64,
        /// Why; stored with the version and the audit entry.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Delete a flag; its history is kept and it can be restored.
    Delete(ReasonArgs),
}

#[derive(Subcommand, Debug)]
pub enum MetricsCommand {
    /// List the metric definitions of the environment.
    List,
    /// Show one metric definition as TOML (or its record as JSON).
    Get { key: String },
    /// Show a metric's value per variant of a flag, in total and over time.
    Show {
        key: String,
        /// The flag whose variants are compared.
        #[arg(long)]
        flag: String,
        /// Time bucket of the series: 1m, 1h or 1d.
        #[arg(long, default_value = "1h")]
        bucket: String,
        /// Start of the series (RFC 3339); the server's default when absent.
        #[arg(long)]
        from: Option<String>,
        /// End of the series (RFC 3339); the server's default when absent.
        #[arg(long)]
        to: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum ExperimentCommand {
    /// List the experiments of the environment.
    List,
    /// Show one experiment definition as TOML (or its record as JSON).
    Get { key: String },
    /// Per arm and metric: value, lift with its interval, p-values (raw and
    /// adjusted), chance to beat control, sample sizes and the SRM verdict.
    Results { key: String },
}

#[derive(Subcommand, Debug)]
pub enum RolloutCommand {
    /// Start phase 1 of the flag's rollout plan.
    Start(RolloutArgs),
    /// Where the rollout is: phase, percentage, every gate and guard, incidents.
    Status { flag: String },
    /// Go to the next phase now (a person's decision, whatever the time and gates).
    Advance(RolloutArgs),
    /// Hold the current percentage until `resume`.
    Pause(RolloutArgs),
    /// Continue a paused rollout.
    Resume(RolloutArgs),
    /// Serve the control to everyone now and open an incident (e.g. --reason "critical bug").
    Rollback(RolloutArgs),
    /// Start a rolled-back or aborted rollout again from phase 1; the same users come back first.
    Restart(RolloutArgs),
    /// Give the current phase more time.
    Extend {
        flag: String,
        /// How much longer: e.g. 2d, 12h, 90s.
        #[arg(long)]
        by: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Call the rollout off; everyone gets the control.
    Abort(RolloutArgs),
}

#[derive(Args, Debug)]
pub struct RolloutArgs {
    pub flag: String,
    /// Why; stored with the state change, the flag version and the audit entry.
    #[arg(long)]
    pub reason: Option<String>,
}

#[derive(Args, Debug)]
pub struct ReasonArgs {
    pub key: String,

    /// Why; stored with the version and the audit entry.
    #[arg(long)]
    pub reason: Option<String>,
}

/// The kinds of API token.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    /// May call the whole admin API, in every environment.
    Admin,
    /// May only evaluate flags (and send events) in one environment (`-e`).
    Client,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Admin => "admin",
            TokenKind::Client => "client",
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Create a token and print its secret (shown only this once).
    Create {
        /// A name that says who uses the token; it is the author of their changes.
        #[arg(long)]
        name: String,

        #[arg(long, value_enum)]
        kind: TokenKind,
    },
    /// List tokens (never their secrets).
    List,
    /// Revoke a token; requests with it are refused from now on.
    Revoke { id: i64 },
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    pub key: String,

    /// The evaluation context as JSON, e.g. '{"targetingKey":"u-1","plan":"pro"}'.
    #[arg(long, default_value = "{}")]
    pub context: String,
}

#[derive(Args, Debug)]
pub struct AuditArgs {
    /// At most this many entries (newest first).
    #[arg(long)]
    pub limit: Option<u32>,

    /// Only the entries of this flag.
    #[arg(long, value_name = "KEY")]
    pub flag: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum IncidentCommand {
    /// The environment's incidents, newest first (active ones unless --all or --status).
    List(IncidentListArgs),
    /// One incident: what happened, its evidence, timeline and links.
    Show { id: i64 },
    /// Take the incident: stops its escalation.
    Ack {
        id: i64,
        /// A note for the timeline.
        #[arg(long)]
        note: Option<String>,
    },
    /// Add a note to the timeline.
    Note { id: i64, text: String },
    /// Move it to investigating or mitigated (resolve closes it).
    Status {
        id: i64,
        #[arg(value_parser = ["investigating", "mitigated"])]
        status: String,
        /// A note for the timeline.
        #[arg(long)]
        note: Option<String>,
    },
    /// Hand it to the next support level now.
    Escalate {
        id: i64,
        /// Why, for the timeline and the next level.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Show it on the public status page as a known issue, with this text.
    Publish {
        id: i64,
        /// What the public reads (no internal details).
        #[arg(long)]
        text: String,
    },
    /// Take it off the public status page.
    Unpublish { id: i64 },
    /// Close it, saying what fixed it.
    Resolve {
        id: i64,
        /// What fixed it.
        #[arg(long)]
        resolution: String,
    },
}

#[derive(Args, Debug)]
pub struct IncidentListArgs {
    /// Only this flag's incidents.
    #[arg(long, value_name = "KEY")]
    pub flag: Option<String>,

    /// Only incidents in this status.
    #[arg(long, value_parser = ["open", "investigating", "mitigated", "resolved", "active"])]
    pub status: Option<String>,

    /// Resolved incidents too.
    #[arg(long, conflicts_with = "status")]
    pub all: bool,

    /// Only incidents at this support level.
    #[arg(long, value_parser = ["L1", "L2", "L3"])]
    pub level: Option<String>,

    /// At most this many (newest first).
    #[arg(long)]
    pub limit: Option<u32>,
}

#[derive(Subcommand, Debug)]
pub enum ReportCommand {
    /// Daily status: phase, percentage, gates, guards, incidents, key metrics against yesterday.
    Status { flag: String },
    /// The week: phase, gates, guards, metrics against the week before, what happened.
    Weekly { flag: String },
    /// The review's material: the phase's gates, experiment results, incidents, the decision to take.
    Review { flag: String },
    /// What changed and when: the plan with its dates, the flag's versions, the incidents.
    ReleaseNotes { flag: String },
}

#[derive(Args, Debug)]
pub struct DeliveriesArgs {
    /// Only deliveries in this status: queued, delivered or failed.
    #[arg(long, value_parser = ["queued", "delivered", "failed"])]
    pub status: Option<String>,

    /// At most this many deliveries (newest first).
    #[arg(long)]
    pub limit: Option<u32>,
}

/// The scenarios `rollgate simulate` knows (`rollout::simulate::SCENARIOS`).
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScenarioName {
    /// Both variants at 0.5% errors and 150 ms.
    Healthy,
    /// The treatment fails 4% of requests from the first phase on.
    ErrorRegression,
    /// The treatment is 30% slower from the first phase on.
    LatencyRegression,
    /// The treatment fails 4% of requests from the second phase on.
    LateErrorRegression,
}

/// What a simulated person does with a rollout held at the end of a phase.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhenHeld {
    /// Nothing: it stays held, guards watching, until the time is up.
    Wait,
    /// `rollgate rollout advance` at once, overriding failed gates.
    Advance,
}

#[derive(Args, Debug)]
pub struct SimulateArgs {
    /// A config file (TOML or JSON) with `[[rollouts]]` and the flags, segments and experiments they name.
    #[arg(value_name = "PLAN_FILE")]
    pub file: PathBuf,

    /// The file with the `[[metrics]]`, when the plan file has none.
    #[arg(long, value_name = "FILE")]
    pub metrics: Option<PathBuf>,

    /// The flag whose rollout to simulate [default: the file's first rollout].
    #[arg(long, value_name = "KEY")]
    pub flag: Option<String>,

    /// Requests per minute, all variants together.
    #[arg(long, default_value_t = 1000.0, value_name = "RATE")]
    pub traffic: f64,

    /// Simulated days at most [default: the plan's phases end to end].
    #[arg(long, value_name = "N")]
    pub days: Option<u32>,

    #[arg(long, value_enum, default_value = "healthy")]
    pub scenario: ScenarioName,

    /// Independent runs; over several, rollback rates and detection delays are reported.
    #[arg(long, default_value_t = 1, value_name = "K")]
    pub runs: u32,

    /// Seed of run 1 (the others derive from it); the same seed replays the same runs.
    #[arg(long, default_value_t = 1, value_name = "S")]
    pub seed: u64,

    /// How often the controller looks: a whole number of minutes, e.g. 1m, 10m, 1h.
    #[arg(long, default_value = "1m", value_name = "DURATION")]
    pub step: String,

    /// Units (users) in the simulated population.
    #[arg(long, default_value_t = rollout::simulate::DEFAULT_USERS, value_name = "N")]
    pub users: u32,

    /// Share of units in a phase's audience segment (the rest get the control).
    #[arg(long, default_value_t = 1.0, value_name = "SHARE")]
    pub audience_share: f64,

    /// What a person does when gates hold a rollout at the end of a phase.
    #[arg(long, value_enum, default_value = "wait")]
    pub when_held: WhenHeld,

    /// The control's (and the healthy treatment's) error rate [default: 0.005].
    #[arg(long, value_name = "RATE")]
    pub control_error_rate: Option<f64>,

    /// The regressed treatment's error rate [default: the scenario's].
    #[arg(long, value_name = "RATE")]
    pub treatment_error_rate: Option<f64>,

    /// The control's mean latency in ms [default: 150].
    #[arg(long, value_name = "MS")]
    pub latency_ms: Option<f64>,

    /// The regressed treatment's latency over the control's [default: the scenario's].
    #[arg(long, value_name = "FACTOR")]
    pub treatment_latency_factor: Option<f64>,

    /// The phase (1 = the first) whose start begins the treatment's regression [default: the scenario's].
    #[arg(long, value_name = "N")]
    pub regression_phase: Option<usize>,

    /// The event of a request (its value the latency in ms).
    #[arg(long, default_value = rollout::simulate::DEFAULT_REQUEST_EVENT, value_name = "NAME")]
    pub request_event: String,

    /// The event of a failed request.
    #[arg(long, default_value = rollout::simulate::DEFAULT_ERROR_EVENT, value_name = "NAME")]
    pub error_event: String,

    /// Threads running the runs [default: the machine's cores].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
