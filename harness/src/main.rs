//! The `deploybench` command line.
//!
//! Exit codes: 0 success, 1 a measured failure (a model failed or the run was
//! interrupted), 2 a usage or environment error.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use deploybench::runner::{self, RunOptions};

#[derive(Parser)]
#[command(name = "deploybench", version, about = "Boots one web service as a process, a container and more, and measures what each deployment model costs")]
struct Cli {
    /// Log level for messages on stderr (error, warn, info, debug, trace).
    #[arg(long, global = true, env = "DEPLOYBENCH_LOG", default_value = "warn")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a scenario and write its run folder under results/runs/.
    Run {
        /// Scenario file (TOML).
        #[arg(default_value = "scenarios/quick.toml")]
        scenario: PathBuf,
        /// Folder that receives the run folder.
        #[arg(long, default_value = "results/runs")]
        output: PathBuf,
        /// Print plain progress lines instead of live bars.
        #[arg(long)]
        quiet: bool,
    },
    /// Rewrite report.md and the plots of an existing run folder from its stored results.
    Report {
        /// Run folder, for example results/runs/20260101T000000Z-quick.
        run: PathBuf,
    },
    /// Check a scenario file without running it.
    Check {
        scenario: PathBuf,
    },
    /// Remove the containers of deploybench runs whose process is gone.
    Clean,
    /// Run the load generator alone against a loopback URL and print a wrk2-style summary.
    Load(deploybench::load::cli::LoadArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&cli.log).unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::env::var_os("NO_COLOR").is_none())
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("deploybench: cannot start the async runtime: {error}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(dispatch(cli.command))
}

async fn dispatch(command: Command) -> ExitCode {
    match command {
        Command::Run { scenario, output, quiet } => run(scenario, output, quiet).await,
        Command::Report { run } => match deploybench::report::write_report(&run) {
            Ok(_) => {
                println!("{}", run.join(deploybench::results::REPORT_FILE).display());
                ExitCode::SUCCESS
            }
            Err(error) => fail(2, &error.to_string()),
        },
        Command::Check { scenario } => match deploybench::scenario::Scenario::load(&scenario) {
            Ok(parsed) => {
                let models: Vec<&str> = parsed.models.iter().map(|model| model.name()).collect();
                println!("{}: valid, models {}", scenario.display(), models.join(", "));
                ExitCode::SUCCESS
            }
            Err(error) => fail(2, &error.to_string()),
        },
        Command::Load(args) => deploybench::load::cli::run(args).await,
        Command::Clean => match deploybench::engine::docker::connect().await {
            Ok(docker) => {
                let removed = runner::remove_leftovers(&docker, &runner::progress::Progress::new(true)).await;
                println!("removed {removed} container(s)");
                ExitCode::SUCCESS
            }
            Err(error) => fail(2, &error.to_string()),
        },
    }
}

async fn run(scenario: PathBuf, output: PathBuf, quiet: bool) -> ExitCode {
    let options = RunOptions {
        scenario_path: scenario,
        output_root: output,
        workspace_root: workspace_root(),
        quiet,
    };
    match runner::run(&options).await {
        Ok(outcome) => {
            println!("{}", outcome.folder.join(deploybench::results::REPORT_FILE).display());
            for failure in &outcome.failed_models {
                eprintln!("deploybench: model failed: {failure}");
            }
            if outcome.complete && outcome.failed_models.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(error) => fail(2, &error.to_string()),
    }
}

/// The checkout holding workloads/refservice: the current folder when it has one,
/// else the checkout this binary was built from.
fn workspace_root() -> PathBuf {
    let current = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    if current.join("workloads/refservice/Cargo.toml").exists() {
        return current;
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map_or(current, Path::to_path_buf)
}

fn fail(code: u8, message: &str) -> ExitCode {
    eprintln!("deploybench: {message}");
    ExitCode::from(code)
}
