//! The scenario file as written, with spans kept for error messages, and its validation.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{
    in_range, BootSettings, Checked, ContainerLimits, LoadSettings, MemorySettings, ModelKind,
    Scenario, VmAccelerator, VmSettings,
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
    vm: RawVm,
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
        };
        let limits = ContainerLimits {
            cpus: number(&self.limits.cpus, "limits.cpus", 0.75, 0.01, 1024.0, "CPUs")?,
            // Docker rejects memory limits under 6 MiB.
            memory_mib: number(&self.limits.memory_mib, "limits.memory_mib", 384, 6, 1_048_576, "MiB")?,
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

        Ok(Scenario {
            name,
            description: self.description,
            models,
            boot,
            memory,
            load,
            limits,
            vm,
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
