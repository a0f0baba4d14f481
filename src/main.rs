//! The `upiflow` command: wiring of the engine, the task kinds and the web into one binary.

mod cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// mimalloc instead of the system allocator: the API server's answers are many small
/// allocations (bench_api: about 15% more requests/s on the same server).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// upiflow: a workflow orchestrator with a UPI payments pipeline.
#[derive(Parser)]
#[command(version, about, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Settings shared by every command.
#[derive(Args, Clone)]
pub struct Global {
    /// Postgres URL; when unset, the private cluster of a running `upiflow standalone` is used.
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    database_url: Option<String>,
    /// Folder holding the DAG files.
    #[arg(
        long,
        env = "UPIFLOW_DAGS_FOLDER",
        default_value = "./dags",
        global = true
    )]
    dags_folder: PathBuf,
    /// Kafka bootstrap servers; standalone starts a private broker when unset.
    #[arg(long, env = "KAFKA_BOOTSTRAP_SERVERS", global = true)]
    kafka_bootstrap_servers: Option<String>,
    /// Where standalone keeps its private Postgres cluster and state.
    #[arg(
        long,
        env = "UPIFLOW_HOME",
        default_value = "./.upiflow",
        global = true
    )]
    data_dir: PathBuf,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value = "text", global = true)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Scheduler and worker in one process, with a private Postgres when DATABASE_URL is unset.
    Standalone(cmd::serve::StandaloneArgs),
    /// Only the scheduler (run any number of them against one database).
    Scheduler,
    /// Only a worker (run any number of them against one database).
    Worker(cmd::serve::WorkerArgs),
    /// Only the Kafka -> Postgres ingest (run several to share the partitions).
    Ingest(cmd::pipeline::IngestArgs),
    /// Send synthetic UPI payments to Kafka.
    Generate(cmd::pipeline::GenerateArgs),
    /// The JSON API (Airflow 3 compatible paths under /api/v2).
    Web(cmd::web::WebArgs),
    /// Users of the web UI and API.
    #[command(subcommand)]
    Users(cmd::web::UsersCommand),
    /// API keys for machines: named, revocable bearer tokens (Prometheus, CI).
    #[command(subcommand)]
    Tokens(cmd::tokens::TokensCommand),
    /// Database maintenance.
    #[command(subcommand)]
    Db(DbCommand),
    /// List, validate, pause and unpause DAGs.
    #[command(subcommand)]
    Dags(cmd::dags::DagsCommand),
    /// Create a manual run of a DAG.
    Trigger(cmd::runs::TriggerArgs),
    /// Runs of a DAG, or the task instances of one run; `runs mark` sets a run's state.
    Runs(cmd::runs::RunsArgs),
    /// Task instances: `tasks mark` sets their state by hand.
    #[command(subcommand)]
    Tasks(cmd::tasks::TasksCommand),
    /// Every try of one task across runs.
    History(cmd::runs::HistoryArgs),
    /// The log of a task's try.
    Logs(cmd::runs::LogsArgs),
    /// Create runs for every interval in a date range, with a progress bar.
    Backfill(cmd::backfill::BackfillArgs),
    /// Re-run a task instance (and, with --downstream, everything after it).
    Clear(cmd::runs::ClearArgs),
    /// Create, resize, list and delete pools.
    #[command(subcommand)]
    Pools(cmd::pools::PoolsCommand),
    /// Connections to other systems (Airflow's), encrypted at rest.
    #[command(subcommand)]
    Connections(cmd::secrets::ConnectionsCommand),
    /// Variables (Airflow's), encrypted at rest.
    #[command(subcommand)]
    Variables(cmd::secrets::VariablesCommand),
}

#[derive(Subcommand)]
enum DbCommand {
    /// Apply the database migrations.
    Migrate,
    /// Re-encrypt every connection and variable with the first key of UPIFLOW_FERNET_KEY
    /// (set it to NEW_KEY,OLD_KEY first), as `airflow rotate-fernet-key`.
    RotateKey,
    /// Print a new Fernet key (for UPIFLOW_FERNET_KEY).
    GenerateKey,
    /// Delete history older than a cutoff, in batches (Airflow's `airflow db clean`).
    Clean(cmd::clean::CleanArgs),
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.global.log_format);
    let g = cli.global;
    if let Err(e) = cmd::secrets::configure_key(&g) {
        eprintln!("error: {e:#}");
        return ExitCode::FAILURE;
    }
    let result = match cli.command {
        Command::Standalone(a) => cmd::serve::standalone(&g, a).await,
        Command::Scheduler => cmd::serve::scheduler(&g).await,
        Command::Worker(a) => cmd::serve::worker(&g, a).await,
        Command::Db(DbCommand::Migrate) => cmd::db_migrate(&g).await,
        Command::Db(DbCommand::RotateKey) => cmd::secrets::rotate_key(&g).await,
        Command::Db(DbCommand::GenerateKey) => cmd::secrets::generate_key(),
        Command::Db(DbCommand::Clean(a)) => cmd::clean::run(&g, a).await,
        Command::Ingest(a) => cmd::pipeline::ingest(&g, a).await,
        Command::Web(a) => cmd::web::web(&g, a).await,
        Command::Users(c) => cmd::web::users(&g, c).await,
        Command::Tokens(c) => cmd::tokens::run(&g, c).await,
        Command::Generate(a) => cmd::pipeline::generate(&g, a).await,
        Command::Dags(c) => {
            cmd::rerun_on_transient("dags", async || cmd::dags::run(&g, c.clone()).await).await
        }
        Command::Trigger(a) => cmd::runs::trigger(&g, a).await,
        Command::Runs(a) => {
            cmd::rerun_on_transient("runs", async || cmd::runs::runs(&g, a.clone()).await).await
        }
        Command::History(a) => {
            cmd::rerun_on_transient("history", async || cmd::runs::history(&g, a.clone()).await)
                .await
        }
        Command::Logs(a) => {
            cmd::rerun_on_transient("logs", async || cmd::runs::logs(&g, a.clone()).await).await
        }
        Command::Clear(a) => cmd::runs::clear(&g, a).await,
        Command::Tasks(c) => cmd::tasks::run(&g, c).await,
        Command::Backfill(a) => cmd::backfill::run(&g, a).await,
        Command::Pools(c) => cmd::pools::run(&g, c).await,
        Command::Connections(c) => cmd::secrets::connections(&g, c).await,
        Command::Variables(c) => cmd::secrets::variables(&g, c).await,
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
