//! `deploybench load URL`: the load generator on its own against a loopback URL.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};
use hyper::Uri;

use super::output::{write_atomically, write_outputs};
use super::summary::LoadSummary;
use super::workload::{Arrival, ConnectionReuse, Workload};
use super::{run_load, LoadError, LoadSpec};

/// Name of the JSON summary that `--output` writes beside the interval log and CSV.
pub const SUMMARY_FILE: &str = "summary.json";

/// Seed of the Poisson arrivals when `--seed` is not given.
const DEFAULT_SEED: u64 = 1;

/// Options of `deploybench load`.
#[derive(Debug, Clone, Args)]
#[command(after_help = "\
Only loopback hosts are accepted (localhost, 127.0.0.0/8, [::1]), so the generator \
never loads a foreign host.

Exit codes: 0 valid run, 1 invalid run (the rate was not met or the generator ran \
out of CPU, see the reasons printed), 2 usage error or no run (invalid option, target \
unreachable, output not writable).")]
pub struct LoadArgs {
    /// URL to send GET requests to, such as http://127.0.0.1:8080/work?n=1000.
    pub url: String,
    /// Target rate over all connections, in requests per second. Required in the open
    /// and poisson modes, rejected in the closed mode.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Length of the measured window, such as 10s, 500ms or 2m. A bare number is seconds.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Time spent sending before the measured window, not recorded.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Number of connections, each carrying one request at a time.
    #[arg(long, short = 'c', default_value_t = 10)]
    pub connections: usize,
    /// Workload model: open (constant rate), poisson (exponential gaps) or closed (each
    /// connection sends as soon as its previous response arrived).
    #[arg(long, value_enum, default_value_t = Mode::Open)]
    pub mode: Mode,
    /// Seed of the Poisson arrivals, so that runs with the same seed send at the same
    /// times.
    #[arg(long, default_value_t = DEFAULT_SEED)]
    pub seed: u64,
    /// Open a new TCP connection for every request instead of keep-alive connections.
    #[arg(long)]
    pub new_connection_per_request: bool,
    /// Limit on one connect and on one request from send to last response byte.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Folder that receives latency.hlog, per_second.csv and summary.json.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Print the summary as JSON on stdout instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Workload model selected with `--mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    Open,
    Poisson,
    Closed,
}

/// A load target checked to be on the loopback interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoopbackUrl {
    pub address: SocketAddr,
    /// Path and query, `/` when the URL has none.
    pub path: String,
}

/// Parses `url` and rejects every host that is not a loopback address.
///
/// Accepted hosts are `localhost`, which maps to 127.0.0.1 without a DNS lookup, IPv4
/// addresses in 127.0.0.0/8, and `[::1]`. Only the `http` scheme is supported.
pub fn parse_loopback_url(url: &str) -> Result<LoopbackUrl, String> {
    let uri: Uri = url.parse().map_err(|error| format!("invalid URL {url:?}: {error}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(other) => {
            return Err(format!(
                "invalid URL {url:?}: scheme {other:?} is not supported, use http://"
            ))
        }
        None => {
            return Err(format!(
                "invalid URL {url:?}: missing scheme, write it as http://127.0.0.1:PORT/PATH"
            ))
        }
    }
    let authority = uri
        .authority()
        .ok_or_else(|| format!("invalid URL {url:?}: missing host"))?;
    if authority.as_str().contains('@') {
        return Err(format!("invalid URL {url:?}: user information is not supported"));
    }
    let host = authority.host();
    let ip = loopback_ip(host).ok_or_else(|| {
        format!(
            "rejected URL {url:?}: host {host:?} is not a loopback address; deploybench load \
             only sends to localhost, 127.0.0.0/8 and [::1], so that it never loads a foreign host"
        )
    })?;
    let port = authority.port_u16().unwrap_or(80);
    let path = uri.path_and_query().map_or("/", |path| path.as_str()).to_owned();
    Ok(LoopbackUrl {
        address: SocketAddr::new(ip, port),
        path: if path.is_empty() { "/".to_owned() } else { path },
    })
}

fn loopback_ip(host: &str) -> Option<IpAddr> {
    if host.eq_ignore_ascii_case("localhost") {
        return Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    let literal = host
        .strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
        .unwrap_or(host);
    let ip: IpAddr = literal.parse().ok()?;
    // An IPv6 host must be bracketed in a URL, and an IPv4 one must not be.
    let bracketed = literal.len() != host.len();
    if ip.is_ipv6() != bracketed {
        return None;
    }
    ip.is_loopback().then_some(ip)
}

/// Parses a duration such as `10s`, `500ms` or `2m`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<f64>() {
        return Duration::try_from_secs_f64(seconds)
            .map_err(|_| format!("invalid duration {text:?}: must be a number of seconds of at least 0"));
    }
    humantime::parse_duration(text)
        .map_err(|error| format!("invalid duration {text:?}: {error}; write it as 10s, 500ms or 2m"))
}

impl LoadArgs {
    /// Builds the spec and workload, or returns a usage error message.
    pub fn to_spec(&self) -> Result<(LoadSpec, Workload), String> {
        let target = parse_loopback_url(&self.url)?;
        let arrival = match self.mode {
            Mode::Open => Arrival::Constant,
            Mode::Poisson => Arrival::Poisson { seed: self.seed },
            Mode::Closed => Arrival::Closed,
        };
        let rate_per_s = match (self.mode, self.rate) {
            (Mode::Closed, None) => 0.0,
            (Mode::Closed, Some(_)) => {
                return Err("--rate is not used with --mode closed, which sends as fast as the responses arrive; remove it or choose --mode open".to_owned())
            }
            (_, Some(rate)) => rate,
            (mode, None) => {
                return Err(format!(
                    "missing --rate: --mode {} needs a target rate in requests per second",
                    mode.to_possible_value().map_or_else(String::new, |value| value.get_name().to_owned())
                ))
            }
        };
        let connection_reuse = if self.new_connection_per_request {
            ConnectionReuse::PerRequest
        } else {
            ConnectionReuse::KeepAlive
        };
        let spec = LoadSpec {
            target: target.address,
            path: target.path,
            rate_per_s,
            duration: self.duration,
            warmup: self.warmup,
            connections: self.connections,
            request_timeout: self.timeout,
        };
        Ok((
            spec,
            Workload {
                arrival,
                connection_reuse,
            },
        ))
    }
}

/// Runs `deploybench load` and returns its exit code: 0 for a valid run, 1 for an
/// invalid one, 2 for a usage error or when no run took place.
pub async fn run(args: LoadArgs) -> ExitCode {
    let (spec, workload) = match args.to_spec() {
        Ok(parsed) => parsed,
        Err(message) => return usage_error(&message),
    };
    let report = match run_load(&spec, workload).await {
        Ok(report) => report,
        Err(error @ LoadError::InvalidSpec { .. }) => return usage_error(&error.to_string()),
        Err(error) => return usage_error(&error.to_string()),
    };
    let summary = LoadSummary::new(&args.url, &spec, &report);

    let mut written = Vec::new();
    if let Some(folder) = &args.output {
        match write_all_outputs(&report, &summary, folder) {
            Ok(paths) => written = paths,
            Err(error) => return usage_error(&error.to_string()),
        }
    }

    if args.json {
        match serde_json::to_string_pretty(&summary) {
            Ok(json) => println!("{json}"),
            Err(error) => return usage_error(&format!("cannot serialize the summary: {error}")),
        }
    } else {
        print!("{summary}");
        for path in &written {
            println!("Wrote {}", path.display());
        }
    }

    if report.valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn write_all_outputs(
    report: &super::LoadReport,
    summary: &LoadSummary,
    folder: &Path,
) -> std::io::Result<Vec<PathBuf>> {
    let files = write_outputs(report, folder)?;
    let summary_path = folder.join(SUMMARY_FILE);
    write_atomically(&summary_path, |out| {
        serde_json::to_writer_pretty(&mut *out, summary)?;
        std::io::Write::write_all(out, b"\n")
    })?;
    Ok(vec![files.hlog, files.csv, summary_path])
}

/// Prints `message` and returns exit code 2, for usage errors and runs that never
/// produced a report.
fn usage_error(message: &str) -> ExitCode {
    eprintln!("deploybench load: {message}");
    ExitCode::from(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_urls_are_accepted() {
        let cases = [
            ("http://127.0.0.1:8080/work?n=1", "127.0.0.1:8080", "/work?n=1"),
            ("http://localhost:9000", "127.0.0.1:9000", "/"),
            ("http://LOCALHOST/", "127.0.0.1:80", "/"),
            ("http://127.8.9.10:1/a", "127.8.9.10:1", "/a"),
            ("http://[::1]:8080/health", "[::1]:8080", "/health"),
        ];
        for (url, address, path) in cases {
            let parsed = parse_loopback_url(url).unwrap_or_else(|error| panic!("{url}: {error}"));
            assert_eq!(parsed.address.to_string(), address, "{url}");
            assert_eq!(parsed.path, path, "{url}");
        }
    }

    #[test]
    fn foreign_hosts_are_rejected() {
        let cases = [
            "http://10.0.0.1:8080/",
            "http://192.168.1.1/",
            "http://0.0.0.0:8080/",
            "http://example.com/",
            "http://localhost.example.com/",
            "http://[::2]:8080/",
            "http://[::ffff:127.0.0.1]:8080/",
            "http://[127.0.0.1]:8080/",
            "http://127.1:8080/",
        ];
        for url in cases {
            let error = parse_loopback_url(url).expect_err(url);
            assert!(error.contains("not a loopback address"), "{url}: {error}");
        }
    }

    #[test]
    fn unsupported_urls_are_rejected() {
        let cases = [
            ("https://127.0.0.1/", "scheme \"https\""),
            ("127.0.0.1:8080", "missing scheme"),
            ("http://user@127.0.0.1/", "user information"),
            ("not a url", "invalid URL"),
        ];
        for (url, expected) in cases {
            let error = parse_loopback_url(url).expect_err(url);
            assert!(error.contains(expected), "{url}: {error}");
        }
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("ten").is_err());
    }

    fn args(extra: &[&str]) -> Result<LoadArgs, clap::Error> {
        #[derive(clap::Parser)]
        struct Wrapper {
            #[command(flatten)]
            load: LoadArgs,
        }
        let mut argv = vec!["load", "http://127.0.0.1:8080/"];
        argv.extend_from_slice(extra);
        <Wrapper as clap::Parser>::try_parse_from(argv).map(|wrapper| wrapper.load)
    }

    #[test]
    fn options_map_to_workload() {
        let (spec, workload) = args(&["--rate", "500", "--mode", "poisson", "--seed", "7", "-c", "4"])
            .expect("valid options")
            .to_spec()
            .expect("valid spec");

        assert_eq!(spec.rate_per_s, 500.0);
        assert_eq!(spec.connections, 4);
        assert_eq!(spec.duration, Duration::from_secs(10));
        assert_eq!(spec.request_timeout, Duration::from_secs(5));
        assert_eq!(workload.arrival, Arrival::Poisson { seed: 7 });
        assert_eq!(workload.connection_reuse, ConnectionReuse::KeepAlive);

        let (_, workload) = args(&["--mode", "closed", "--new-connection-per-request"])
            .expect("valid options")
            .to_spec()
            .expect("valid spec");
        assert_eq!(workload.arrival, Arrival::Closed);
        assert_eq!(workload.connection_reuse, ConnectionReuse::PerRequest);
    }

    #[test]
    fn rate_must_match_mode() {
        let missing = args(&[]).expect("valid options").to_spec().expect_err("no rate");
        assert!(missing.contains("missing --rate"), "{missing}");

        let extra = args(&["--mode", "closed", "--rate", "10"])
            .expect("valid options")
            .to_spec()
            .expect_err("rate in closed mode");
        assert!(extra.contains("--rate is not used"), "{extra}");
    }

    #[tokio::test]
    async fn foreign_host_exits_with_usage_error() {
        let mut load = args(&["--rate", "10"]).expect("valid options");
        load.url = "http://192.0.2.1:8080/".to_owned();

        assert_eq!(run(load).await, ExitCode::from(2));
    }
}
