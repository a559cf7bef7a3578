//! The claims we compare against, from the "Key Findings" table of the Codcompass article
//! "Docker Containerization: Production-Grade Architecture & Implementation", and the
//! verdict of a measured figure against a claimed range.

use super::format;

/// Bytes in one MB or GB as the article writes them: we read its units as SI (10^6 and
/// 10^9 bytes) because it does not say otherwise.
pub const BYTES_PER_MB: f64 = 1e6;
pub const BYTES_PER_GB: f64 = 1e9;
pub const BYTES_PER_MIB: f64 = 1_048_576.0;

/// The deployment approaches of the article's table, plus our process floor and models
/// the article makes no claim about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Approach {
    Vm,
    Container,
    Function,
    /// The `process` model: the floor every overhead is measured against.
    Floor,
    /// A model label the article has no row for.
    Unclaimed,
}

impl Approach {
    /// Classifies a model label: `vm…` labels such as `vm (kvm)` are VMs, `distroless` and
    /// `fat-image` are containers, `function` is a function and `process` is the floor.
    pub fn of(model: &str) -> Approach {
        match model {
            "process" => Approach::Floor,
            "distroless" | "fat-image" => Approach::Container,
            "function" => Approach::Function,
            _ if model.starts_with("vm") => Approach::Vm,
            _ => Approach::Unclaimed,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Approach::Vm => "Traditional VMs",
            Approach::Container => "Docker Containers",
            Approach::Function => "Serverless Functions",
            Approach::Floor => "Bare process (floor)",
            Approach::Unclaimed => "Not in the article",
        }
    }

    pub fn claim(self) -> Option<&'static Claim> {
        match self {
            Approach::Vm => Some(&VM_CLAIM),
            Approach::Container => Some(&CONTAINER_CLAIM),
            Approach::Function => Some(&FUNCTION_CLAIM),
            Approach::Floor | Approach::Unclaimed => None,
        }
    }
}

/// One row of the article's table, converted to the units we measure in.
#[derive(Debug)]
pub struct Claim {
    /// Boot time range in milliseconds (a cold start for functions).
    pub boot_ms: (f64, f64),
    /// Memory overhead per instance in bytes, as the article states it.
    pub memory_bytes: (f64, f64),
    /// The memory claim in the article's own unit, for example `15–30 MB`.
    pub memory_text: &'static str,
    /// Deploys a day; the upper end is infinite for "100+".
    pub deploys_per_day: (f64, f64),
    /// The deploy claim in the article's own words and unit.
    pub deploy_text: &'static str,
}

impl Claim {
    pub fn memory_mib(&self) -> (f64, f64) {
        (self.memory_bytes.0 / BYTES_PER_MIB, self.memory_bytes.1 / BYTES_PER_MIB)
    }

    /// Formats the boot claim in seconds, as the article writes it.
    pub fn boot_text(&self) -> String {
        format!("{} s", format::range(self.boot_ms.0 / 1000.0, self.boot_ms.1 / 1000.0))
    }

    /// Formats the memory claim in the article's unit with our MiB conversion beside it.
    pub fn memory_text_with_mib(&self) -> String {
        let (low, high) = self.memory_mib();
        format!("{} ({} MiB)", self.memory_text, format::range(low, high))
    }
}

pub const VM_CLAIM: Claim = Claim {
    boot_ms: (45_000.0, 120_000.0),
    memory_bytes: (1.2 * BYTES_PER_GB, 1.8 * BYTES_PER_GB),
    memory_text: "1.2–1.8 GB",
    deploys_per_day: (2.0 / 7.0, 4.0 / 7.0),
    deploy_text: "2–4 a week",
};

pub const CONTAINER_CLAIM: Claim = Claim {
    boot_ms: (500.0, 3_000.0),
    memory_bytes: (15.0 * BYTES_PER_MB, 30.0 * BYTES_PER_MB),
    memory_text: "15–30 MB",
    deploys_per_day: (20.0, 50.0),
    deploy_text: "20–50 a day",
};

pub const FUNCTION_CLAIM: Claim = Claim {
    boot_ms: (100.0, 5_000.0),
    memory_bytes: (0.0, 0.0),
    memory_text: "0 MB persistent",
    deploys_per_day: (100.0, f64::INFINITY),
    deploy_text: "100+ a day",
};

/// The article's claim about pull latency and image size.
#[derive(Debug)]
pub struct PullClaim {
    /// Image sizes before and after the shrinking, in bytes (800 MB+ and under 50 MB).
    pub from_bytes: f64,
    pub to_bytes: f64,
    /// The claimed cut in pull latency, as a fraction.
    pub reduction: f64,
    /// The claim in our words, with the article's units.
    pub text: &'static str,
}

pub const PULL_CLAIM: PullClaim = PullClaim {
    from_bytes: 800.0 * BYTES_PER_MB,
    to_bytes: 50.0 * BYTES_PER_MB,
    reduction: 0.8,
    text: "80% less pull time when an image of 800 MB or more is cut to under 50 MB",
};

/// Position of a measured figure relative to a claimed range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    Below,
    Inside,
    Above,
}

impl Placement {
    pub fn word(self) -> &'static str {
        match self {
            Placement::Below => "below",
            Placement::Inside => "inside",
            Placement::Above => "above",
        }
    }
}

/// Places `measured` against the closed range `low..=high`: both ends count as inside.
pub fn place(measured: f64, low: f64, high: f64) -> Placement {
    if measured < low {
        Placement::Below
    } else if measured > high {
        Placement::Above
    } else {
        Placement::Inside
    }
}
