//! The `deploybench` command line.
//!
//! Exit codes: 0 success, 1 a measured failure (a model failed or the run was
//! interrupted), 2 a usage or environment error.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use deploybench::runner::{self, RunOptions};

#[derive(Parser)]
#[command(
    name = "deploybench",
    version,
    about = "Boots one web service as a process, a container and more, and measures what each deployment model costs"
)]
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
        /// Folder that receives the run folder. The run also appends its medians to
        /// history.csv in this folder's parent.
        #[arg(long, default_value = "results/runs")]
        output: PathBuf,
        /// Print plain progress lines instead of live bars.
        #[arg(long)]
        quiet: bool,
    },
    /// Rewrite report.md and the plots of a run folder from its stored results, or plot
    /// the trends of results/history.csv.
    Report {
        /// Run folder, for example results/runs/20260101T000000Z-quick.
        #[arg(required_unless_present = "history")]
        run: Option<PathBuf>,
        /// Plot each gated figure's trend over the runs in this history file.
        #[arg(long, num_args = 0..=1, default_missing_value = "results/history.csv", conflicts_with = "run")]
        history: Option<PathBuf>,
        /// Folder for the trend plots.
        #[arg(long, default_value = "results/history", requires = "history")]
        output: PathBuf,
    },
    /// Compare a run with a baseline; exit 1 when a figure regressed.
    Compare {
        /// Baseline file made by `deploybench baseline save`.
        #[arg(long)]
        baseline: PathBuf,
        /// Run folder to check.
        run: PathBuf,
        /// Output file for the run's medians as bencher JSON (default: RUN/bencher.json).
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Check a local image against the production checklist; exit 1 when an item fails.
    Audit {
        /// Image name or id, for example deploybench/distroless:TAG.
        image: String,
        /// Print the items as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Build baselines from run folders.
    #[command(subcommand)]
    Baseline(BaselineCommand),
    /// Check a scenario file without running it.
    Check { scenario: PathBuf },
    /// Remove what deploybench runs left behind: containers and pulled image copies of
    /// runs whose process is gone, a traffic-shaping qdisc and registry folders.
    Clean {
        /// Also remove every image deploybench built (they are rebuilt on the next run).
        #[arg(long)]
        images: bool,
    },
    /// Run the load generator alone against a loopback URL and print a wrk2-style summary.
    Load(deploybench::load::cli::LoadArgs),
}

#[derive(Subcommand)]
enum BaselineCommand {
    /// Save a baseline holding the raw samples of one or more runs.
    Save {
        /// Run folders; three or more make the significance test meaningful.
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        /// Baseline file to write.
        #[arg(long)]
        output: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = match tracing_subscriber::EnvFilter::try_new(&cli.log) {
        Ok(filter) => filter,
        Err(error) => return fail(2, &format!("invalid --log filter {:?}: {error}; try warn, info or debug", cli.log)),
    };
    // Colour codes only where a terminal shows them, never in a log file.
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(colour).init();
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
        Command::Run {
            scenario,
            output,
            quiet,
        } => run(scenario, output, quiet).await,
        Command::Report { run, history, output } => report(run, history, output),
        Command::Compare { baseline, run, json } => {
            match deploybench::compare::run_compare(&baseline, &run, json.as_deref()) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::from(1),
                Err(error) => fail(2, &error.to_string()),
            }
        }
        Command::Audit { image, json } => audit(&image, json).await,
        Command::Baseline(BaselineCommand::Save { runs, output }) => {
            let saved = deploybench::compare::Baseline::from_runs(&runs).and_then(|baseline| baseline.save(&output));
            match saved {
                Ok(()) => {
                    println!("{}", output.display());
                    ExitCode::SUCCESS
                }
                Err(error) => fail(2, &error.to_string()),
            }
        }
        Command::Check { scenario } => match deploybench::scenario::Scenario::load(&scenario) {
            Ok(parsed) => {
                let models: Vec<&str> = parsed.models.iter().map(|model| model.name()).collect();
                println!("{}: valid, models {}", scenario.display(), models.join(", "));
                ExitCode::SUCCESS
            }
            Err(error) => fail(2, &error.to_string()),
        },
        Command::Load(args) => deploybench::load::cli::run(args).await,
        Command::Clean { images } => clean(images).await,
    }
}

async fn clean(images: bool) -> ExitCode {
    let docker = match deploybench::engine::docker::connect().await {
        Ok(docker) => docker,
        Err(error) => return fail(2, &error.to_string()),
    };
    let containers = runner::remove_leftovers(&docker, &runner::progress::Progress::new(true)).await;
    let copies = deploybench::measure::pull::remove_leftover_images(&docker, None).await;
    let registries = deploybench::engine::registry::remove_leftover_registries(&std::env::temp_dir());
    let vm_folders = deploybench::models::remove_leftover_vm_folders(&std::env::temp_dir());
    let shaping = match deploybench::engine::shaping::remove_leftover_shaping() {
        Ok(_) => "checked",
        Err(_) => "not checked (needs root)",
    };
    println!(
        "removed {containers} container(s), {copies} pulled image copies, {registries} registry folder(s), \
         {vm_folders} VM folder(s); traffic shaping {shaping}"
    );
    if images {
        match deploybench::engine::images::remove_managed_images(&docker).await {
            Ok(count) => println!("removed {count} image(s) built by deploybench"),
            Err(error) => return fail(2, &error.to_string()),
        }
    }
    ExitCode::SUCCESS
}

async fn audit(image: &str, json: bool) -> ExitCode {
    let docker = match deploybench::engine::docker::connect().await {
        Ok(docker) => docker,
        Err(error) => return fail(2, &error.to_string()),
    };
    let items = match deploybench::audit::audit(&docker, image).await {
        Ok(items) => items,
        Err(error) => return fail(2, &error.to_string()),
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&items).expect("audit items always serialize")
        );
    } else {
        println!("audit of {image}\n");
        for item in &items {
            println!(
                "{}  {}: {}",
                if item.passed { "pass" } else { "FAIL" },
                item.item,
                item.reason
            );
        }
    }
    if items.iter().all(|item| item.passed) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn report(run: Option<PathBuf>, history: Option<PathBuf>, output: PathBuf) -> ExitCode {
    if let Some(history) = history {
        return match deploybench::report::history::write_history_plots(&history, &output) {
            Ok(files) => {
                for file in files {
                    println!("{}", file.display());
                }
                ExitCode::SUCCESS
            }
            Err(error) => fail(2, &error.to_string()),
        };
    }
    let run = run.expect("clap requires a run folder unless --history is given");
    match deploybench::report::write_report(&run) {
        Ok(_) => {
            println!("{}", run.join(deploybench::results::REPORT_FILE).display());
            ExitCode::SUCCESS
        }
        Err(error) => fail(2, &explain_disk_full(error.to_string(), &run)),
    }
}

async fn run(scenario: PathBuf, output: PathBuf, quiet: bool) -> ExitCode {
    let output_root = output.clone();
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
            if outcome.failed_repetitions > 0 {
                eprintln!(
                    "deploybench: {} repetition(s) failed; the report lists them under \"Failed repetitions\"",
                    outcome.failed_repetitions
                );
            }
            if outcome.complete && outcome.failed_models.is_empty() && outcome.failed_repetitions == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(error) => fail(2, &explain_disk_full(error.to_string(), &output_root)),
    }
}

/// The checkout holding workloads/refservice: the current folder when it has one,
/// else the checkout this binary was built from.
fn workspace_root() -> PathBuf {
    let current = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    if current.join("workloads/refservice/Cargo.toml").exists() {
        return current;
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or(current, Path::to_path_buf)
}

/// Adds what to do to an error caused by a full disk (ENOSPC).
fn explain_disk_full(message: String, folder: &Path) -> String {
    if !message.contains("os error 28") {
        return message;
    }
    format!(
        "{message}\nThe disk holding {} is full: free space there, or write elsewhere with --output. \
         Each file already written is complete: results are written to a temporary file and renamed.",
        folder.display()
    )
}

fn fail(code: u8, message: &str) -> ExitCode {
    eprintln!("deploybench: {message}");
    ExitCode::from(code)
}
