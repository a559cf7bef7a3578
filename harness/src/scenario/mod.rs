//! Typed scenario files: which deployment models to run and how hard to push them.
//!
//! A scenario is TOML. Unknown keys, wrong types and out-of-range values are rejected
//! with the file, the line, the key and the reason, before anything boots.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::Spanned;

mod raw;

/// A deployment model, as named in scenario files and results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    Process,
    FatImage,
    Distroless,
    Vm,
    Function,
}

impl ModelKind {
    pub const ALL: [ModelKind; 5] = [
        ModelKind::Process,
        ModelKind::FatImage,
        ModelKind::Distroless,
        ModelKind::Vm,
        ModelKind::Function,
    ];

    /// True for the models that run on the Docker engine.
    pub fn uses_engine(self) -> bool {
        !matches!(self, ModelKind::Process | ModelKind::Vm)
    }

    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Process => "process",
            ModelKind::FatImage => "fat-image",
            ModelKind::Distroless => "distroless",
            ModelKind::Vm => "vm",
            ModelKind::Function => "function",
        }
    }

    pub fn from_name(name: &str) -> Option<ModelKind> {
        ModelKind::ALL.into_iter().find(|kind| kind.name() == name)
    }
}

impl fmt::Display for ModelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A validated scenario.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    pub models: Vec<ModelKind>,
    pub boot: BootSettings,
    pub memory: MemorySettings,
    pub load: LoadSettings,
    pub limits: ContainerLimits,
    pub service: ServiceSettings,
    pub vm: VmSettings,
    pub function: FunctionSettings,
    pub pull: PullSettings,
    pub deploy: DeploySettings,
    /// The file exactly as read, kept for the run's record.
    #[serde(skip)]
    pub source_text: String,
    #[serde(skip)]
    pub source_path: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BootSettings {
    /// Boots measured per model.
    pub repetitions: u32,
    /// Time allowed from the start call to the first 200 from /health.
    pub timeout: Duration,
    /// Interval between /health probes.
    pub poll_interval: Duration,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemorySettings {
    /// Idle time after boot before memory is read.
    pub settle: Duration,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoadSettings {
    /// Open-loop request rate in requests per second, the same for every model.
    pub rate: f64,
    pub duration: Duration,
    pub warmup: Duration,
    pub connections: usize,
    /// Path and query of every request, for example `/work?n=1000`.
    pub path: String,
    pub request_timeout: Duration,
    /// Load patterns to run, in order; `steady` is the open-loop rate above.
    pub patterns: Vec<LoadPattern>,
    /// Requests in each burst of the `bursty` pattern, sent at `rate`.
    pub burst_requests: u32,
    /// Idle time between the bursts of the `bursty` pattern.
    pub burst_gap: Duration,
    /// Number of bursts in the `bursty` pattern.
    pub bursts: u32,
    /// Requests sent at once by the `spike` pattern.
    pub spike_concurrency: u32,
}

/// A shape of load over time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LoadPattern {
    /// The open-loop rate of `[load]` for its duration.
    Steady,
    /// Bursts of requests separated by idle gaps, so that a scale-to-zero fleet goes
    /// cold between bursts.
    Bursty,
    /// From idle to many concurrent requests at once.
    Spike,
}

impl LoadPattern {
    pub const ALL: [LoadPattern; 3] = [LoadPattern::Steady, LoadPattern::Bursty, LoadPattern::Spike];

    pub fn name(self) -> &'static str {
        match self {
            LoadPattern::Steady => "steady",
            LoadPattern::Bursty => "bursty",
            LoadPattern::Spike => "spike",
        }
    }
}

/// Settings of the reference service itself, the same under every model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceSettings {
    /// Time the service answers /health with 503 after it starts: a deliberate
    /// slowdown, to prove that a regression check catches a slower boot.
    pub ready_delay: Duration,
}

/// Resource limits for hardened containers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContainerLimits {
    pub cpus: f64,
    pub memory_mib: u64,
}

/// Settings of the `vm` deployment model, from the optional `[vm]` section.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VmSettings {
    /// Virtual CPUs of each VM (QEMU `-smp`).
    pub vcpus: u32,
    /// Guest memory of each VM (QEMU `-m`).
    pub memory_mib: u64,
    pub accelerator: VmAccelerator,
    /// Boots measured for the vm model in place of `boot.repetitions`, because one VM
    /// boot under emulation takes about a minute.
    pub boots: u32,
    /// Time allowed from the QEMU spawn to the first 200 from /health, in place of
    /// `boot.timeout`.
    pub timeout: Duration,
}

/// Settings of the `function` deployment model's gateway, from the optional
/// `[function]` section.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FunctionSettings {
    /// Idle time after which a warm instance is stopped and removed.
    pub keep_warm: Duration,
    /// Maximum number of instances at once, instances still starting included.
    pub max_instances: u32,
    /// Requests that one instance serves at once; 1 as on AWS Lambda.
    pub concurrency: u32,
    /// Maximum number of requests waiting for an instance. The gateway rejects any
    /// further request with 503.
    pub queue_limit: u32,
    /// Maximum time a request waits in the queue before the gateway rejects it with 503.
    pub queue_timeout: Duration,
}

/// Settings of the pull measurement, from the optional `[pull]` section.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PullSettings {
    pub enabled: bool,
    /// Cold and warm pulls measured per link profile and image.
    pub repetitions: u32,
    /// Links a pull is measured or computed for, besides the unshaped loopback.
    pub profiles: Vec<LinkProfile>,
}

/// A network link between a registry and a host: its bandwidth and its one-way delay.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LinkProfile {
    /// Name used in sample phases, for example `cloud-100m`.
    pub name: String,
    /// Bandwidth in Mbit/s (10^6 bit/s).
    pub bandwidth_mbit: f64,
    /// Delay added to each round trip, in milliseconds.
    pub delay_ms: f64,
}

impl LinkProfile {
    /// Profile name of the pull over the loopback without shaping, which every computed
    /// figure starts from; scenario profiles cannot take it.
    pub const UNSHAPED_NAME: &'static str = "unshaped";

    /// Returns the profiles a scenario gets when `[pull]` lists none: a 1 Gbit/s LAN, a
    /// 100 Mbit/s cloud link with 10 ms round trips, and a 20 Mbit/s edge link with 40 ms.
    pub fn defaults() -> Vec<LinkProfile> {
        let profile = |name: &str, bandwidth_mbit: f64, delay_ms: f64| LinkProfile {
            name: name.to_string(),
            bandwidth_mbit,
            delay_ms,
        };
        vec![
            profile("lan-1g", 1000.0, 0.0),
            profile("cloud-100m", 100.0, 10.0),
            profile("edge-20m", 20.0, 40.0),
        ]
    }
}

/// Settings of the deploy-cycle measurement, from the optional `[deploy]` section.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeploySettings {
    pub enabled: bool,
    /// Deploy cycles measured per deployment model.
    pub repetitions: u32,
}

/// The QEMU accelerator a scenario requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VmAccelerator {
    /// KVM when a short test boot under KVM works, else TCG.
    Auto,
    /// KVM only: the model is unavailable when the test boot under KVM fails.
    Kvm,
    /// TCG emulation, without trying KVM.
    Tcg,
}

impl VmAccelerator {
    pub const ALL: [VmAccelerator; 3] = [VmAccelerator::Auto, VmAccelerator::Kvm, VmAccelerator::Tcg];

    pub fn name(self) -> &'static str {
        match self {
            VmAccelerator::Auto => "auto",
            VmAccelerator::Kvm => "kvm",
            VmAccelerator::Tcg => "tcg",
        }
    }
}

/// Reason a scenario file was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read scenario {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid scenario {path}, line {line}: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

impl Scenario {
    /// Reads and validates a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Scenario::parse(&text, path)
    }

    /// Parses and validates scenario text; `path` only names the source in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Scenario, ScenarioError> {
        let invalid = |span: Option<std::ops::Range<usize>>, message: String| ScenarioError::Invalid {
            path: path.to_path_buf(),
            line: span.map_or(1, |span| line_of(text, span.start)),
            message,
        };
        let deserializer = toml::Deserializer::new(text);
        let raw: raw::RawScenario = serde_path_to_error::deserialize(deserializer).map_err(|error| {
            let path = error.path().clone();
            let inner = error.into_inner();
            invalid(inner.span(), keyed_message(&path, inner.message()))
        })?;
        raw.validate(text, path)
            .map_err(|(span, message)| invalid(Some(span), message))
    }

    /// Returns the default name of a scenario: its file stem.
    pub fn default_name(path: &Path) -> String {
        let stem = path.file_stem().map(|stem| stem.to_string_lossy().into_owned()).unwrap_or_default();
        let cleaned: String = stem
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '-' })
            .take(64)
            .collect();
        if Scenario::is_valid_name(&cleaned) {
            cleaned
        } else {
            "scenario".to_string()
        }
    }

    /// Returns true for a name that is safe as part of a folder name: 1 to 64 ASCII
    /// letters, digits, `.`, `_` or `-`, starting with a letter or digit.
    pub fn is_valid_name(name: &str) -> bool {
        (1..=64).contains(&name.len())
            && name.starts_with(|c: char| c.is_ascii_alphanumeric())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    }
}

/// Prefixes a parse error with the key it concerns, such as `load.rate`, leaving out
/// the internal segments of `toml::Spanned`. An unknown key is named by its table,
/// since the message names the key itself. Multi-line messages become one line.
fn keyed_message(path: &serde_path_to_error::Path, message: &str) -> String {
    use serde_path_to_error::Segment;
    let mut segments: Vec<String> = Vec::new();
    for segment in path.iter() {
        match segment {
            Segment::Map { key } if key.starts_with("$__") => {}
            Segment::Map { key } | Segment::Enum { variant: key } => segments.push(key.clone()),
            Segment::Seq { index } => match segments.last_mut() {
                Some(last) => last.push_str(&format!("[{index}]")),
                None => segments.push(format!("[{index}]")),
            },
            Segment::Unknown => {}
        }
    }
    let message = message.trim().lines().map(str::trim).collect::<Vec<_>>().join(": ");
    if message.starts_with("unknown field") {
        segments.pop();
    }
    if segments.is_empty() {
        message
    } else {
        format!("{}: {message}", segments.join("."))
    }
}

/// One-based line number of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    let offset = offset.min(text.len());
    text.as_bytes()[..offset].iter().filter(|&&byte| byte == b'\n').count() + 1
}

pub(crate) type Checked<T> = Result<T, (std::ops::Range<usize>, String)>;

/// Checks a spanned number against an inclusive range, naming the key on failure.
pub(crate) fn in_range<T>(value: &Spanned<T>, key: &str, low: T, high: T, unit: &str) -> Checked<T>
where
    T: PartialOrd + Copy + fmt::Display,
{
    let inner = *value.get_ref();
    // `!(a <= b)` rather than `a > b` so that NaN is rejected too.
    #[allow(clippy::neg_cmp_op_on_partial_ord)]
    if !(low <= inner && inner <= high) {
        return Err((
            value.span(),
            format!("{key} = {inner} is out of range: expected {low} to {high} {unit}"),
        ));
    }
    Ok(inner)
}

#[cfg(test)]
mod tests;
