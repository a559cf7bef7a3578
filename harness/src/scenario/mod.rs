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
}

impl ModelKind {
    pub const ALL: [ModelKind; 4] = [ModelKind::Process, ModelKind::FatImage, ModelKind::Distroless, ModelKind::Vm];

    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Process => "process",
            ModelKind::FatImage => "fat-image",
            ModelKind::Distroless => "distroless",
            ModelKind::Vm => "vm",
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
    pub vm: VmSettings,
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

/// The QEMU accelerator a scenario asks for.
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

/// Why a scenario file was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read scenario {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid scenario {path}, line {line}: {message}")]
    Invalid { path: PathBuf, line: usize, message: String },
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
        let raw: raw::RawScenario =
            toml::from_str(text).map_err(|error| invalid(error.span(), error.message().to_string()))?;
        raw.validate(text, path)
            .map_err(|(span, message)| invalid(Some(span), message))
    }

    /// The default name of a scenario is its file stem.
    pub fn default_name(path: &Path) -> String {
        path.file_stem()
            .map(|stem| stem.to_string_lossy().into_owned())
            .unwrap_or_else(|| "scenario".to_string())
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
