//! The scenario file as written, with spans kept for error messages, and its validation.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{
    in_range, BootSettings, ServiceSettings, Checked, ContainerLimits, DeploySettings, FunctionSettings, LinkProfile, LoadPattern,
    LoadSettings, MemorySettings, ModelKind, PullSettings, Scenario, VmAccelerator, VmSettings,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScenario {
    name: Option<Spanned<String>>,
    #[serde(default)]
    description: String,
    models: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    boot: RawBoot,
    #[serde(default)]
    memory: RawMemory,
    #[serde(default)]
    load: RawLoad,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    service: RawService,
    #[serde(default)]
    vm: RawVm,
    #[serde(default)]
    function: RawFunction,
    #[serde(default)]
    pull: RawPull,
    #[serde(default)]
    deploy: RawDeploy,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBoot {
    repetitions: Option<Spanned<u32>>,
    timeout_s: Option<Spanned<f64>>,
    poll_interval_ms: Option<Spanned<f64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMemory {
    settle_s: Option<Spanned<f64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLoad {
    rate: Option<Spanned<f64>>,
    duration_s: Option<Spanned<f64>>,
    warmup_s: Option<Spanned<f64>>,
    connections: Option<Spanned<u32>>,
    path: Option<Spanned<String>>,
    request_timeout_s: Option<Spanned<f64>>,
    /// A pattern name or an array of them, checked in `validate_patterns`.
    pattern: Option<Spanned<toml::Value>>,
    burst_requests: Option<Spanned<u32>>,
    burst_gap_s: Option<Spanned<f64>>,
    bursts: Option<Spanned<u32>>,
    spike_concurrency: Option<Spanned<u32>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    ready_delay_ms: Option<Spanned<u64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    cpus: Option<Spanned<f64>>,
    memory_mib: Option<Spanned<u64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVm {
    vcpus: Option<Spanned<u32>>,
    memory_mib: Option<Spanned<u64>>,
    accelerator: Option<Spanned<String>>,
    boots: Option<Spanned<u32>>,
    timeout_s: Option<Spanned<f64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFunction {
    keep_warm_s: Option<Spanned<f64>>,
    max_instances: Option<Spanned<u32>>,
    concurrency: Option<Spanned<u32>>,
    queue_limit: Option<Spanned<u32>>,
    queue_timeout_s: Option<Spanned<f64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPull {
    enabled: Option<bool>,
    repetitions: Option<Spanned<u32>>,
    profiles: Option<Spanned<Vec<RawLinkProfile>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLinkProfile {
    name: Spanned<String>,
    bandwidth_mbit: Spanned<f64>,
    delay_ms: Option<Spanned<f64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDeploy {
    enabled: Option<bool>,
    repetitions: Option<Spanned<u32>>,
}

/// Keep-warm window of the function gateway when the scenario sets none.
const DEFAULT_KEEP_WARM_S: f64 = 5.0;
/// How much longer than the keep-warm window the default gap between bursts is.
const DEFAULT_GAP_BEYOND_KEEP_WARM_S: f64 = 2.0;

/// Reads an optional spanned number, checks its range, and falls back to a default.
fn number<T>(value: &Option<Spanned<T>>, key: &str, default: T, low: T, high: T, unit: &str) -> Checked<T>
where
    T: PartialOrd + Copy + std::fmt::Display,
{
    match value {
        Some(value) => in_range(value, key, low, high, unit),
        None => Ok(default),
    }
}

fn seconds(value: f64) -> Duration {
    Duration::from_secs_f64(value)
}

impl RawScenario {
    pub(super) fn validate(self, text: &str, path: &Path) -> Checked<Scenario> {
        let name = match &self.name {
            Some(name) if name.get_ref().trim().is_empty() => {
                return Err((name.span(), "name must not be empty".to_string()));
            }
            // The name becomes part of the run folder's name, so it may not leave that folder.
            Some(name) if !Scenario::is_valid_name(name.get_ref()) => {
                return Err((
                    name.span(),
                    format!(
                        "name {:?} is invalid: use 1 to 64 ASCII letters, digits, `.`, `_` or `-`, \
                         starting with a letter or digit",
                        name.get_ref()
                    ),
                ));
            }
            Some(name) => name.get_ref().clone(),
            None => Scenario::default_name(path),
        };
        let models = self.validate_models()?;

        let boot = BootSettings {
            repetitions: number(&self.boot.repetitions, "boot.repetitions", 5, 1, 1000, "boots")?,
            timeout: seconds(number(&self.boot.timeout_s, "boot.timeout_s", 60.0, 1.0, 3600.0, "seconds")?),
            poll_interval: Duration::from_secs_f64(
                number(&self.boot.poll_interval_ms, "boot.poll_interval_ms", 1.0, 0.1, 1.0, "milliseconds")?
                    / 1000.0,
            ),
        };
        let memory = MemorySettings {
            settle: seconds(number(&self.memory.settle_s, "memory.settle_s", 2.0, 0.0, 600.0, "seconds")?),
        };
        let function = self.validate_function()?;
        let load = LoadSettings {
            rate: number(&self.load.rate, "load.rate", 100.0, 0.1, 1_000_000.0, "requests per second")?,
            duration: seconds(number(&self.load.duration_s, "load.duration_s", 10.0, 1.0, 86_400.0, "seconds")?),
            warmup: seconds(number(&self.load.warmup_s, "load.warmup_s", 2.0, 0.0, 3600.0, "seconds")?),
            connections: number(&self.load.connections, "load.connections", 4, 1, 10_000, "connections")? as usize,
            path: self.validate_path()?,
            request_timeout: seconds(number(
                &self.load.request_timeout_s,
                "load.request_timeout_s",
                5.0,
                0.1,
                300.0,
                "seconds",
            )?),
            patterns: self.validate_patterns()?,
            burst_requests: number(&self.load.burst_requests, "load.burst_requests", 10, 1, 10_000, "requests")?,
            burst_gap: self.validate_burst_gap(&function, &models)?,
            bursts: number(&self.load.bursts, "load.bursts", 3, 1, 100, "bursts")?,
            spike_concurrency: number(
                &self.load.spike_concurrency,
                "load.spike_concurrency",
                16,
                1,
                10_000,
                "requests",
            )?,
        };
        if models.contains(&ModelKind::Function) {
            self.check_keep_warm_covers_settle(&function, &memory)?;
        }
        let limits = ContainerLimits {
            cpus: number(&self.limits.cpus, "limits.cpus", 0.75, 0.01, 1024.0, "CPUs")?,
            // Docker rejects memory limits under 6 MiB.
            memory_mib: number(&self.limits.memory_mib, "limits.memory_mib", 384, 6, 1_048_576, "MiB")?,
        };

        let service = ServiceSettings {
            ready_delay: Duration::from_millis(number(
                &self.service.ready_delay_ms,
                "service.ready_delay_ms",
                0,
                0,
                3_600_000,
                "milliseconds",
            )?),
        };

        let vm = VmSettings {
            // QEMU 7.2 accepts up to 288 vCPUs on the q35 machine.
            vcpus: number(&self.vm.vcpus, "vm.vcpus", 1, 1, 288, "vCPUs")?,
            // A Debian kernel with its initramfs does not boot in less than about 128 MiB.
            memory_mib: number(&self.vm.memory_mib, "vm.memory_mib", 1024, 128, 1_048_576, "MiB")?,
            accelerator: self.validate_accelerator()?,
            boots: number(&self.vm.boots, "vm.boots", 3, 1, 1000, "boots")?,
            timeout: seconds(number(&self.vm.timeout_s, "vm.timeout_s", 300.0, 1.0, 3600.0, "seconds")?),
        };

        let pull = self.validate_pull()?;
        let deploy = DeploySettings {
            enabled: self.deploy.enabled.unwrap_or(false),
            repetitions: number(&self.deploy.repetitions, "deploy.repetitions", 3, 1, 100, "deploy cycles")?,
        };

        Ok(Scenario {
            name,
            description: self.description,
            models,
            boot,
            memory,
            load,
            limits,
            service,
            vm,
            function,
            pull,
            deploy,
            source_text: text.to_string(),
            source_path: path.to_path_buf(),
        })
    }

    fn validate_models(&self) -> Checked<Vec<ModelKind>> {
        if self.models.get_ref().is_empty() {
            return Err((self.models.span(), "models must name at least one deployment model".into()));
        }
        let mut models = Vec::new();
        for entry in self.models.get_ref() {
            let Some(kind) = ModelKind::from_name(entry.get_ref()) else {
                let known: Vec<&str> = ModelKind::ALL.iter().map(|kind| kind.name()).collect();
                return Err((
                    entry.span(),
                    format!("unknown model {:?} in models: expected one of {}", entry.get_ref(), known.join(", ")),
                ));
            };
            if models.contains(&kind) {
                return Err((entry.span(), format!("model {kind} is listed twice in models")));
            }
            models.push(kind);
        }
        Ok(models)
    }

    fn validate_accelerator(&self) -> Checked<VmAccelerator> {
        let Some(accelerator) = &self.vm.accelerator else {
            return Ok(VmAccelerator::Auto);
        };
        let value = accelerator.get_ref();
        VmAccelerator::ALL.into_iter().find(|choice| choice.name() == value).ok_or_else(|| {
            let known: Vec<&str> = VmAccelerator::ALL.iter().map(|choice| choice.name()).collect();
            (
                accelerator.span(),
                format!("vm.accelerator {value:?} is invalid: expected one of {}", known.join(", ")),
            )
        })
    }

    fn validate_function(&self) -> Checked<FunctionSettings> {
        let raw = &self.function;
        Ok(FunctionSettings {
            keep_warm: seconds(number(
                &raw.keep_warm_s,
                "function.keep_warm_s",
                DEFAULT_KEEP_WARM_S,
                0.1,
                86_400.0,
                "seconds",
            )?),
            max_instances: number(&raw.max_instances, "function.max_instances", 4, 1, 1000, "instances")?,
            concurrency: number(&raw.concurrency, "function.concurrency", 1, 1, 10_000, "requests per instance")?,
            queue_limit: number(&raw.queue_limit, "function.queue_limit", 64, 0, 1_000_000, "requests")?,
            queue_timeout: seconds(number(
                &raw.queue_timeout_s,
                "function.queue_timeout_s",
                10.0,
                0.001,
                3600.0,
                "seconds",
            )?),
        })
    }

    /// Reads `load.pattern`: one pattern name or an array of distinct names.
    fn validate_patterns(&self) -> Checked<Vec<LoadPattern>> {
        let Some(value) = &self.load.pattern else {
            return Ok(vec![LoadPattern::Steady]);
        };
        let span = value.span();
        let known: Vec<&str> = LoadPattern::ALL.iter().map(|pattern| pattern.name()).collect();
        let names: Vec<&toml::Value> = match value.get_ref() {
            toml::Value::Array(items) => items.iter().collect(),
            other => vec![other],
        };
        if names.is_empty() {
            return Err((span, "load.pattern must name at least one pattern".to_string()));
        }
        let mut patterns = Vec::new();
        for name in names {
            let found = name
                .as_str()
                .and_then(|text| LoadPattern::ALL.into_iter().find(|pattern| pattern.name() == text));
            let Some(pattern) = found else {
                return Err((
                    span,
                    format!("load.pattern {name} is invalid: expected one of {} or an array of them", known.join(", ")),
                ));
            };
            if patterns.contains(&pattern) {
                return Err((span, format!("load.pattern lists {} twice", pattern.name())));
            }
            patterns.push(pattern);
        }
        Ok(patterns)
    }

    /// Reads `load.burst_gap_s`. With the function model in the scenario the gap must be
    /// longer than the keep-warm window, or the bursts after the first would find warm
    /// instances and measure no cold start.
    fn validate_burst_gap(&self, function: &FunctionSettings, models: &[ModelKind]) -> Checked<Duration> {
        let keep_warm_s = function.keep_warm.as_secs_f64();
        let Some(value) = &self.load.burst_gap_s else {
            return Ok(seconds(keep_warm_s + DEFAULT_GAP_BEYOND_KEEP_WARM_S));
        };
        let gap_s = in_range(value, "load.burst_gap_s", 0.1, 86_400.0, "seconds")?;
        if models.contains(&ModelKind::Function) && gap_s <= keep_warm_s {
            return Err((
                value.span(),
                format!(
                    "load.burst_gap_s = {gap_s} must be longer than function.keep_warm_s = {keep_warm_s}, \
                     so that every burst starts cold; raise burst_gap_s or lower keep_warm_s"
                ),
            ));
        }
        Ok(seconds(gap_s))
    }

    /// Rejects a keep-warm window that ends before the idle memory of a booted function
    /// instance is read, since no warm instance would be left to measure.
    fn check_keep_warm_covers_settle(&self, function: &FunctionSettings, memory: &MemorySettings) -> Checked<()> {
        let keep_warm_s = function.keep_warm.as_secs_f64();
        let settle_s = memory.settle.as_secs_f64();
        if keep_warm_s > settle_s {
            return Ok(());
        }
        let span = match (&self.function.keep_warm_s, &self.memory.settle_s) {
            (Some(keep_warm), _) => keep_warm.span(),
            (None, Some(settle)) => settle.span(),
            (None, None) => self.models.span(),
        };
        Err((
            span,
            format!(
                "function.keep_warm_s = {keep_warm_s} must be longer than memory.settle_s = {settle_s}, \
                 so that a warm function instance is still running when its idle memory is read"
            ),
        ))
    }

    /// Reads `[pull]`: the repetitions and the link profiles, each with a distinct name
    /// that can stand in a sample phase.
    fn validate_pull(&self) -> Checked<PullSettings> {
        let raw = &self.pull;
        let repetitions = number(&raw.repetitions, "pull.repetitions", 3, 1, 100, "pulls")?;
        let Some(listed) = &raw.profiles else {
            return Ok(PullSettings { enabled: raw.enabled.unwrap_or(false), repetitions, profiles: LinkProfile::defaults() });
        };
        if listed.get_ref().is_empty() {
            return Err((
                listed.span(),
                "pull.profiles must list at least one link profile; leave it out for the defaults".to_string(),
            ));
        }
        let mut profiles: Vec<LinkProfile> = Vec::new();
        for (index, entry) in listed.get_ref().iter().enumerate() {
            let key = |field: &str| format!("pull.profiles[{index}].{field}");
            let name = entry.name.get_ref();
            let valid_name = (1..=32).contains(&name.len())
                && name.bytes().all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || b"._-".contains(&byte));
            if !valid_name {
                return Err((
                    entry.name.span(),
                    format!("{} {name:?} is invalid: expected 1 to 32 lowercase letters, digits, '.', '_' or '-'", key("name")),
                ));
            }
            if name == LinkProfile::UNSHAPED_NAME {
                return Err((
                    entry.name.span(),
                    format!("{} {name:?} is reserved for the pull over the unshaped loopback", key("name")),
                ));
            }
            if profiles.iter().any(|profile| &profile.name == name) {
                return Err((entry.name.span(), format!("pull.profiles lists the name {name:?} twice")));
            }
            profiles.push(LinkProfile {
                name: name.clone(),
                bandwidth_mbit: in_range(&entry.bandwidth_mbit, &key("bandwidth_mbit"), 0.1, 100_000.0, "Mbit/s")?,
                delay_ms: number(&entry.delay_ms, &key("delay_ms"), 0.0, 0.0, 10_000.0, "milliseconds")?,
            });
        }
        Ok(PullSettings { enabled: raw.enabled.unwrap_or(false), repetitions, profiles })
    }

    fn validate_path(&self) -> Checked<String> {
        let Some(path) = &self.load.path else {
            return Ok("/work?n=100".to_string());
        };
        let value = path.get_ref();
        if !value.starts_with('/') || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err((
                path.span(),
                format!("load.path {value:?} is invalid: expected a path starting with '/' and no spaces"),
            ));
        }
        Ok(value.clone())
    }
}
