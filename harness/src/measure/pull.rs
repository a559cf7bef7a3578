//! Pull latency (`pull_ms`) of the container images from a local registry, cold and
//! warm, over the unshaped loopback and over link profiles.
//!
//! # What is pulled
//!
//! The engine pulls a marked copy of the model's image (see
//! [`crate::artifacts::marked`]): the recipe's base rootfs plus a marker file, and the
//! application layer with a marked binary. Its layers are new to the engine, so a pull
//! downloads them even while the model's own images stay in place for other runs.
//! The copy differs from the model's image by a few bytes.
//!
//! - **cold**: no layer of the image is present. Version 1 is removed (every tag, and
//!   with it every layer) before each timed pull.
//! - **warm**: only the application layer changed. Version 1 is present, and version 2,
//!   which shares its base layer but has a binary with another marker, is pulled.
//!
//! Each pull is checked against the engine's progress stream: a cold pull must report
//! no layer as `Already exists`, a warm one exactly the shared layers.
//!
//! # Link profiles and the method of each figure
//!
//! A sample's phase is `KIND/PROFILE/METHOD`, for example `cold/cloud-100m/applied`:
//!
//! - `measured`: profile `unshaped`, the pull over the loopback as it is.
//! - `applied`: the profile's bandwidth applied for real with `tc` (see
//!   [`crate::engine::shaping`]) on the registry's port, plus the computed delay.
//! - `computed`: shaping was not possible; the unshaped pull of the same repetition
//!   plus bytes / bandwidth plus the computed delay. This assumes that the download
//!   does not overlap the extraction, so it overstates the pull somewhat.
//!
//! The computed delay is round trips × the profile's delay, with round trips from
//! [`estimated_round_trips`]. No netem is used, so no delay is ever applied for real.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use bollard::image::ListImagesOptions;
use bollard::Docker;

use crate::artifacts::marked::{self, MarkedImage};
use crate::artifacts::{ArtifactCache, ArtifactError, Recipe, ServiceBinary};
use crate::engine::docker::{owner_is_alive, owner_label_value, MANAGED_LABEL, OWNER_LABEL, RUN_LABEL};
use crate::engine::images::find_image;
use crate::engine::registry::{self, remove_image, LocalRegistry, Manifest, PullStats, RegistryError};
use crate::engine::shaping::{self, PortShaping, ShapingError};
use crate::results::{CheckRecord, Sample};
use crate::scenario::{LinkProfile, ModelKind, PullSettings};

/// Metric of every pull time.
pub const METRIC: &str = "pull_ms";
/// Metric of the estimated round trips behind each computed delay.
pub const ROUND_TRIPS_METRIC: &str = "pull_round_trips";
/// `image_mib` phases this module adds: compressed bytes a cold and a warm pull
/// download, and the uncompressed size of the pulled image.
pub const COMPRESSED_COLD_PHASE: &str = "pulled_compressed_cold";
pub const COMPRESSED_WARM_PHASE: &str = "pulled_compressed_warm";
pub const UNCOMPRESSED_PHASE: &str = "pulled_uncompressed";

/// Label on every image this module creates, naming its purpose.
pub const PURPOSE_LABEL: &str = "io.deploybench.purpose";

/// Layers dockerd downloads at once (its `--max-concurrent-downloads`, default 3 in 20.10).
const CONCURRENT_DOWNLOADS: usize = 3;
/// Round trips before any layer download, one after the other: TCP connect,
/// `GET /v2/`, the manifest and the image configuration.
const SETUP_ROUND_TRIPS: u32 = 4;
/// TCP's initial congestion window: 10 segments (RFC 6928) of 1448 bytes.
const INITIAL_WINDOW_BYTES: f64 = 14_480.0;
/// A shaped pull is trusted only when the shaped class carried at least this share of
/// the layer bytes, which shows that the filter matched the registry's traffic.
const MIN_SHAPED_SHARE: f64 = 0.9;

const MIB: f64 = 1024.0 * 1024.0;

/// Whether any layer of the image was present before the pull.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullKind {
    Cold,
    Warm,
}

impl PullKind {
    pub const ALL: [PullKind; 2] = [PullKind::Cold, PullKind::Warm];

    pub fn name(self) -> &'static str {
        match self {
            PullKind::Cold => "cold",
            PullKind::Warm => "warm",
        }
    }
}

/// Source of a pull figure: measured, shaped for real, or computed (see the module
/// documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullMethod {
    Measured,
    Applied,
    Computed,
}

impl PullMethod {
    pub const ALL: [PullMethod; 3] = [PullMethod::Measured, PullMethod::Applied, PullMethod::Computed];

    pub fn name(self) -> &'static str {
        match self {
            PullMethod::Measured => "measured",
            PullMethod::Applied => "applied",
            PullMethod::Computed => "computed",
        }
    }

    /// Describes the method for a reader of the report.
    pub fn description(self) -> &'static str {
        match self {
            PullMethod::Measured => "measured",
            PullMethod::Applied => "applied bandwidth + computed delay",
            PullMethod::Computed => "computed",
        }
    }
}

/// Returns the phase of a `pull_ms` sample, `KIND/PROFILE/METHOD`.
pub fn phase(kind: PullKind, profile: &str, method: PullMethod) -> String {
    format!("{}/{profile}/{}", kind.name(), method.name())
}

/// Splits a `pull_ms` phase into its kind, profile and method; `None` for any other text.
pub fn parse_phase(phase: &str) -> Option<(PullKind, &str, PullMethod)> {
    let mut parts = phase.split('/');
    let (kind, profile, method) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || profile.is_empty() {
        return None;
    }
    let kind = PullKind::ALL.into_iter().find(|candidate| candidate.name() == kind)?;
    let method = PullMethod::ALL.into_iter().find(|candidate| candidate.name() == method)?;
    Some((kind, profile, method))
}

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("pull measurements need a container image, and {model} has none")]
    Unsupported { model: ModelKind },
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    #[error("the {kind} pull of {reference} is invalid: {message}")]
    Invalid { kind: &'static str, reference: String, message: String },
}

/// Samples of one model's pulls, and a record of whether shaping was applied.
#[derive(Debug, Clone, Default)]
pub struct PullResults {
    pub samples: Vec<Sample>,
    /// One check, "link shaping applied with tc", passed when every profile's pulls
    /// ran shaped, with the reason in its detail otherwise.
    pub checks: Vec<CheckRecord>,
}

/// Estimates the round trips of a pull that downloads layers of `layer_sizes` bytes
/// over `profile`. The count is [`SETUP_ROUND_TRIPS`] plus, per wave of up to three
/// parallel layer downloads, a TCP connect, the request, and the slow-start rounds of
/// the wave's largest layer. Slow start ends when the window reaches the link's
/// bandwidth-delay product.
///
/// NOTE: an estimate of the protocol's sequential steps; it ignores TCP losses, and
/// its slow-start rounds also overlap the bytes / bandwidth term.
pub fn estimated_round_trips(layer_sizes: &[u64], profile: &LinkProfile) -> u32 {
    let bytes_per_second = profile.bandwidth_mbit * 1e6 / 8.0;
    let window_bytes = bytes_per_second * profile.delay_ms / 1000.0;
    let rounds_to_fill = doublings(window_bytes / INITIAL_WINDOW_BYTES);
    let waves: u32 = layer_sizes
        .chunks(CONCURRENT_DOWNLOADS)
        .map(|wave| {
            let largest = wave.iter().copied().max().unwrap_or(0) as f64;
            let slow_start = doublings(largest / INITIAL_WINDOW_BYTES + 1.0).min(rounds_to_fill);
            2 + slow_start
        })
        .sum();
    SETUP_ROUND_TRIPS + waves
}

/// Returns ceil(log2(ratio)), or 0 for a ratio of 1 or less.
fn doublings(ratio: f64) -> u32 {
    if ratio > 1.0 {
        ratio.log2().ceil() as u32
    } else {
        0
    }
}

/// Returns the computed delay of a pull in ms: round trips × the profile's delay.
pub fn delay_ms(round_trips: u32, profile: &LinkProfile) -> f64 {
    f64::from(round_trips) * profile.delay_ms
}

/// Returns the computed pull time in ms from an unshaped pull: the unshaped time plus
/// `bytes` at the profile's bandwidth plus the computed delay.
pub fn computed_pull_ms(unshaped_ms: f64, bytes: u64, round_trips: u32, profile: &LinkProfile) -> f64 {
    let transfer_ms = bytes as f64 * 8.0 / (profile.bandwidth_mbit * 1e6) * 1000.0;
    unshaped_ms + transfer_ms + delay_ms(round_trips, profile)
}

/// Returns the recipe of a container model.
pub(crate) fn recipe_of(kind: ModelKind) -> Result<Recipe, PullError> {
    match kind {
        ModelKind::Distroless => Ok(Recipe::distroless()?),
        ModelKind::FatImage => Ok(Recipe::fat_image()?),
        _ => Err(PullError::Unsupported { model: kind }),
    }
}

/// Returns a token that makes the tags of one measurement unique on this host.
pub(crate) fn unique_token() -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_nanos());
    format!("{}-{:x}", std::process::id(), nanos & 0xff_ffff_ffff)
}

/// Returns the labels of every image and container that pull and deploy measurements create.
pub(crate) fn labels(run_id: &str, purpose: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_LABEL.to_string(), "true".to_string()),
        (RUN_LABEL.to_string(), run_id.to_string()),
        (OWNER_LABEL.to_string(), owner_label_value()),
        (PURPOSE_LABEL.to_string(), purpose.to_string()),
    ])
}

/// Removes images that pull and deploy measurements created and left behind, and
/// returns how many it removed. With `run_id`, it removes that run's images (after an
/// interrupted run, whose cleanup did not get to run). Without, it removes those of
/// harness processes that no longer run. Failures are logged and skipped.
pub async fn remove_leftover_images(docker: &Docker, run_id: Option<&str>) -> usize {
    let options = ListImagesOptions::<String> {
        filters: std::collections::HashMap::from([("label".to_string(), vec![PURPOSE_LABEL.to_string()])]),
        ..Default::default()
    };
    let images = match docker.list_images(Some(options)).await {
        Ok(images) => images,
        Err(error) => {
            tracing::warn!(%error, "cannot list leftover measurement images");
            return 0;
        }
    };
    let mut removed = 0;
    for image in images {
        let label = |name: &str| image.labels.get(name).map(String::as_str).unwrap_or_default();
        let leftover = match run_id {
            Some(run_id) => label(RUN_LABEL) == run_id,
            None => !owner_is_alive(label(OWNER_LABEL)),
        };
        if !leftover {
            continue;
        }
        // An image with several tags is removed tag by tag, which needs no force.
        let mut failed = false;
        for reference in image.repo_tags.iter().chain([&image.id]) {
            if let Err(error) = remove_image(docker, reference).await {
                tracing::warn!(%reference, %error, "cannot remove a leftover measurement image");
                failed = true;
            }
        }
        if !failed {
            removed += 1;
        }
    }
    removed
}

/// Measures cold and warm pulls of `kind`'s image from a local registry started for
/// this call, `settings.repetitions` times over the unshaped loopback and every link
/// profile. `run_id` goes into the labels of what it creates, and `progress` receives a
/// short message before each step. Everything it created is removed before it returns,
/// on error too.
pub async fn measure_pulls(
    docker: &Docker,
    cache: &ArtifactCache,
    binary: &ServiceBinary,
    kind: ModelKind,
    settings: &PullSettings,
    run_id: &str,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<PullResults, PullError> {
    let recipe = recipe_of(kind)?;
    progress("starting the local registry");
    let registry = LocalRegistry::start().await?;
    let listening = registry::loopback_only_check(kind.name(), registry.listening_addresses());
    let mut images = PullImages::new(kind, &registry);

    let measured = async {
        images.prepare(docker, &registry, cache, binary, &recipe, run_id, progress).await?;
        images.measure(docker, &registry, settings, progress).await
    }
    .await;
    let removed = images.remove_all(docker).await;
    let stopped = registry.stop();

    let mut results = measured?;
    removed?;
    stopped?;
    results.checks.insert(0, listening);
    Ok(results)
}

/// The images of one pull measurement and where they are.
struct PullImages {
    model: String,
    /// Repository in the registry and locally, for example `deploybench/pull-distroless`.
    repository: String,
    token: String,
    /// References to remove at the end, whether or not they still exist.
    created: Vec<String>,
    cold: Option<Manifest>,
    warm: Option<Manifest>,
    /// Image ids of version 1, version 2 and the marked base.
    ids: Vec<String>,
    registry_repository: String,
}

impl PullImages {
    fn new(kind: ModelKind, registry: &LocalRegistry) -> PullImages {
        let repository = format!("deploybench/pull-{}", kind.name());
        PullImages {
            model: kind.name().to_string(),
            registry_repository: registry.repository(&repository),
            repository,
            token: unique_token(),
            created: Vec::new(),
            cold: None,
            warm: None,
            ids: Vec::new(),
        }
    }

    fn tag(&self, version: u32) -> String {
        format!("{}-v{version}", self.token)
    }

    fn remote(&self, version: u32) -> String {
        format!("{}:{}", self.registry_repository, self.tag(version))
    }

    /// Builds the marked base and versions 1 and 2, pushes both versions, and removes
    /// every local copy, so that no layer of either version is left.
    #[allow(clippy::too_many_arguments)]
    async fn prepare(
        &mut self,
        docker: &Docker,
        registry: &LocalRegistry,
        cache: &ArtifactCache,
        binary: &ServiceBinary,
        recipe: &Recipe,
        run_id: &str,
        progress: &(dyn Fn(&str) + Sync),
    ) -> Result<(), PullError> {
        let labels = labels(run_id, "pull");
        let base_tag = format!("deploybench/pull-base-{}:{}", self.model, self.token);
        self.created.push(base_tag.clone());
        let base = marked::import_marked_base(docker, cache, recipe, &self.token, &base_tag, &labels, progress).await?;

        let mut built: Vec<MarkedImage> = Vec::new();
        for version in [1, 2] {
            let local = format!("{}:{}", self.repository, self.tag(version));
            progress(&format!("building {local}"));
            self.created.push(local.clone());
            let marker = format!("{}-v{version}", self.token);
            built.push(marked::build_marked_app(docker, binary, recipe, &base_tag, &marker, &local, &labels).await?);
        }

        for (version, image) in [1, 2].into_iter().zip(&built) {
            progress(&format!("pushing {} to the registry on {}", image.tag, registry.address()));
            self.created.push(self.remote(version));
            registry.push(docker, &image.tag, &self.repository, &self.tag(version)).await?;
        }
        self.ids = built.iter().map(|image| image.id.clone()).chain([base.id.clone()]).collect();

        for reference in self.created.clone() {
            remove_image(docker, &reference).await?;
        }
        self.check_absent(docker, &self.ids.clone(), "cold").await
    }

    /// Fails when any of `ids` is still present in the engine.
    async fn check_absent(&self, docker: &Docker, ids: &[String], kind: &'static str) -> Result<(), PullError> {
        for id in ids {
            if find_image(docker, id).await.map_err(ArtifactError::from)?.is_some() {
                return Err(PullError::Invalid {
                    kind,
                    reference: id.clone(),
                    message: "the image is still present after its tags were removed".to_string(),
                });
            }
        }
        Ok(())
    }

    async fn measure(
        &mut self,
        docker: &Docker,
        registry: &LocalRegistry,
        settings: &PullSettings,
        progress: &(dyn Fn(&str) + Sync),
    ) -> Result<PullResults, PullError> {
        let cold = registry.manifest(&self.repository, &self.tag(1)).await?;
        let warm = registry.manifest(&self.repository, &self.tag(2)).await?;
        let shared_layers = warm.layers.len() - warm.layers.iter().filter(|layer| !cold.layers.contains(layer)).count();
        self.cold = Some(cold.clone());
        self.warm = Some(warm.clone());

        let mut recorder = Recorder::new(&self.model);
        recorder.push_sizes(&cold, &warm);
        let mut shaping = ShapingState::detect();

        for repetition in 0..settings.repetitions {
            let cold_plan = PullPlan {
                kind: PullKind::Cold,
                version: 1,
                layer_sizes: cold.layers.iter().map(|layer| layer.size).collect(),
                expected_present: 0,
            };
            for profile in std::iter::once(None).chain(settings.profiles.iter().map(Some)) {
                remove_image(docker, &self.remote(1)).await?;
                self.check_absent(docker, &self.ids[..1], "cold").await?;
                let stats = self.pull_once(docker, registry, &cold_plan, profile, &mut shaping, progress).await?;
                recorder.record(&cold_plan, repetition, profile, stats);
                if repetition == 0 && profile.is_none() {
                    let image = find_image(docker, &self.remote(1)).await.map_err(ArtifactError::from)?;
                    let size = image.and_then(|image| image.size).unwrap_or(0).max(0) as f64;
                    recorder.samples.push(Sample::new(
                        &self.model,
                        "image_mib",
                        UNCOMPRESSED_PHASE,
                        0,
                        size / MIB,
                        "MiB",
                    ));
                }
            }

            // Version 1 stays present for the warm pulls: its base layer is shared.
            let missing: Vec<u64> =
                warm.layers.iter().filter(|layer| !cold.layers.contains(layer)).map(|layer| layer.size).collect();
            let warm_plan =
                PullPlan { kind: PullKind::Warm, version: 2, layer_sizes: missing, expected_present: shared_layers };
            for profile in std::iter::once(None).chain(settings.profiles.iter().map(Some)) {
                remove_image(docker, &self.remote(2)).await?;
                self.check_absent(docker, &self.ids[1..2], "warm").await?;
                let stats = self.pull_once(docker, registry, &warm_plan, profile, &mut shaping, progress).await?;
                recorder.record(&warm_plan, repetition, profile, stats);
            }
            remove_image(docker, &self.remote(2)).await?;
        }

        Ok(PullResults { samples: recorder.samples, checks: vec![shaping.check(&self.model)] })
    }

    /// Runs one timed pull, shaped when `profile` is given and shaping works.
    async fn pull_once(
        &self,
        docker: &Docker,
        registry: &LocalRegistry,
        plan: &PullPlan,
        profile: Option<&LinkProfile>,
        shaping: &mut ShapingState,
        progress: &(dyn Fn(&str) + Sync),
    ) -> Result<Pulled, PullError> {
        let Some(profile) = profile else {
            progress(&format!("{} pull of {} over the unshaped loopback", plan.kind.name(), self.model));
            let stats = registry.pull(docker, &self.repository, &self.tag(plan.version)).await?;
            self.check_layers(plan, &stats)?;
            return Ok(Pulled::Unshaped(stats));
        };

        let Some(guard) = shaping.apply(registry.address().port(), profile) else {
            return Ok(Pulled::NotShaped);
        };
        progress(&format!(
            "{} pull of {} at {} Mbit/s ({}, shaped with tc)",
            plan.kind.name(),
            self.model,
            profile.bandwidth_mbit,
            profile.name
        ));
        let pulled = registry.pull(docker, &self.repository, &self.tag(plan.version)).await;
        let sent = guard.sent_bytes();
        let removed = guard.remove();
        let stats = pulled?;
        self.check_layers(plan, &stats)?;

        if let Err(error) = removed {
            shaping.disable(format!("removing the qdisc failed: {error}"));
            return Ok(Pulled::NotShaped);
        }
        let expected: u64 = plan.layer_sizes.iter().sum();
        match sent {
            Ok(sent) if sent as f64 >= expected as f64 * MIN_SHAPED_SHARE => Ok(Pulled::Shaped(stats)),
            Ok(sent) => {
                let reason = format!("the shaped class carried {sent} bytes of a {expected}-byte pull, so the filter missed the registry's traffic");
                shaping.disable(reason);
                Ok(Pulled::NotShaped)
            }
            Err(error) => {
                shaping.disable(error.to_string());
                Ok(Pulled::NotShaped)
            }
        }
    }

    fn check_layers(&self, plan: &PullPlan, stats: &PullStats) -> Result<(), PullError> {
        if stats.layers_present == plan.expected_present && stats.layers_downloaded == plan.layer_sizes.len() {
            return Ok(());
        }
        Err(PullError::Invalid {
            kind: plan.kind.name(),
            reference: self.remote(plan.version),
            message: format!(
                "the engine downloaded {} layers and found {} present, but {} downloaded and {} present were expected",
                stats.layers_downloaded,
                stats.layers_present,
                plan.layer_sizes.len(),
                plan.expected_present
            ),
        })
    }

    /// Removes every tag this measurement created; the first failure is returned after
    /// the rest were tried.
    async fn remove_all(&self, docker: &Docker) -> Result<(), PullError> {
        let mut first_error = None;
        for reference in self.created.iter().rev() {
            if let Err(error) = remove_image(docker, reference).await {
                tracing::warn!(%reference, %error, "cannot remove a pull measurement image");
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), |error| Err(error.into()))
    }
}

/// The expected outcome of one pull.
struct PullPlan {
    kind: PullKind,
    version: u32,
    /// Compressed sizes of the layers it downloads.
    layer_sizes: Vec<u64>,
    /// Layers the engine must already have.
    expected_present: usize,
}

enum Pulled {
    Unshaped(PullStats),
    Shaped(PullStats),
    /// Shaping was not possible; the figure is computed from the unshaped pull.
    NotShaped,
}

/// Turns pulls into samples, computing figures from the unshaped pull of the same
/// repetition where shaping was not possible.
struct Recorder {
    model: String,
    samples: Vec<Sample>,
    /// Unshaped time in ms of the current repetition, per kind.
    unshaped_ms: [Option<f64>; 2],
}

impl Recorder {
    fn new(model: &str) -> Recorder {
        Recorder { model: model.to_string(), samples: Vec::new(), unshaped_ms: [None, None] }
    }

    fn push_sizes(&mut self, cold: &Manifest, warm: &Manifest) {
        let cold_mib = cold.layer_bytes() as f64 / MIB;
        let warm_mib = warm.layer_bytes_missing_from(cold) as f64 / MIB;
        self.samples.push(Sample::new(&self.model, "image_mib", COMPRESSED_COLD_PHASE, 0, cold_mib, "MiB"));
        self.samples.push(Sample::new(&self.model, "image_mib", COMPRESSED_WARM_PHASE, 0, warm_mib, "MiB"));
    }

    fn record(&mut self, plan: &PullPlan, repetition: u32, profile: Option<&LinkProfile>, pulled: Pulled) {
        let index = plan.kind as usize;
        let ms = |stats: &PullStats| stats.elapsed.as_secs_f64() * 1000.0;
        let Some(profile) = profile else {
            if let Pulled::Unshaped(stats) = pulled {
                let value = ms(&stats);
                self.unshaped_ms[index] = Some(value);
                let phase = phase(plan.kind, LinkProfile::UNSHAPED_NAME, PullMethod::Measured);
                self.samples.push(Sample::new(&self.model, METRIC, &phase, repetition, value, "ms"));
            }
            return;
        };
        let round_trips = estimated_round_trips(&plan.layer_sizes, profile);
        let (method, value) = match pulled {
            Pulled::Shaped(stats) => (PullMethod::Applied, ms(&stats) + delay_ms(round_trips, profile)),
            Pulled::Unshaped(_) | Pulled::NotShaped => {
                let Some(unshaped) = self.unshaped_ms[index] else {
                    return;
                };
                let bytes = plan.layer_sizes.iter().sum();
                (PullMethod::Computed, computed_pull_ms(unshaped, bytes, round_trips, profile))
            }
        };
        let phase = phase(plan.kind, &profile.name, method);
        self.samples.push(Sample::new(&self.model, METRIC, &phase, repetition, value, "ms"));
        if repetition == 0 {
            let phase = format!("{}/{}", plan.kind.name(), profile.name);
            self.samples.push(Sample::new(
                &self.model,
                ROUND_TRIPS_METRIC,
                &phase,
                0,
                f64::from(round_trips),
                "round trips",
            ));
        }
    }
}

/// Whether shaping works, and why not once it failed.
struct ShapingState {
    /// `None` while shaping works; the first reason it did not otherwise.
    failure: Option<String>,
    applied: u32,
}

impl ShapingState {
    fn detect() -> ShapingState {
        let failure = shaping::check_available().err().map(|error| error.to_string());
        if let Some(reason) = &failure {
            tracing::warn!(%reason, "link shaping unavailable, pull figures of link profiles are computed");
        }
        ShapingState { failure, applied: 0 }
    }

    fn apply(&mut self, port: u16, profile: &LinkProfile) -> Option<PortShaping> {
        if self.failure.is_some() {
            return None;
        }
        match PortShaping::apply(port, profile.bandwidth_mbit) {
            Ok(guard) => {
                self.applied += 1;
                Some(guard)
            }
            Err(error @ (ShapingError::Busy { .. } | ShapingError::Foreign { .. })) => {
                // Another process owns the loopback qdisc for now: compute this figure only.
                tracing::warn!(profile = %profile.name, %error, "pull figure computed instead of shaped");
                None
            }
            Err(error) => {
                self.disable(error.to_string());
                None
            }
        }
    }

    fn disable(&mut self, reason: String) {
        tracing::warn!(%reason, "link shaping disabled for the rest of the pull measurement");
        self.failure.get_or_insert(reason);
    }

    fn check(&self, model: &str) -> CheckRecord {
        let (passed, detail) = match &self.failure {
            None => (
                true,
                format!(
                    "{} pulls ran with the profile's bandwidth applied by a tc htb class on lo, filtered to the registry's source port; delays are computed",
                    self.applied
                ),
            ),
            Some(reason) => (false, format!("profile figures after this are computed: {reason}")),
        };
        CheckRecord { model: model.to_string(), check: "link shaping applied with tc".to_string(), passed, detail }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn profile(bandwidth_mbit: f64, delay_ms: f64) -> LinkProfile {
        LinkProfile { name: "test".to_string(), bandwidth_mbit, delay_ms }
    }

    #[test]
    fn phase_round_trips_through_parse() {
        let text = phase(PullKind::Cold, "cloud-100m", PullMethod::Applied);
        assert_eq!(text, "cold/cloud-100m/applied");
        assert_eq!(parse_phase(&text), Some((PullKind::Cold, "cloud-100m", PullMethod::Applied)));
        assert_eq!(parse_phase("warm/unshaped/measured"), Some((PullKind::Warm, "unshaped", PullMethod::Measured)));
    }

    #[test]
    fn other_phases_not_parsed() {
        for text in ["cold", "cold/x", "cold/x/guessed", "hot/x/applied", "cold//applied", "cold/x/applied/1"] {
            assert_eq!(parse_phase(text), None, "{text}");
        }
    }

    #[test]
    fn no_delay_no_slow_start_rounds() {
        // Setup 4, then one wave of connect + request.
        assert_eq!(estimated_round_trips(&[70_000_000, 3_000_000], &profile(1000.0, 0.0)), 6);
        assert_eq!(estimated_round_trips(&[], &profile(1000.0, 0.0)), 4);
    }

    #[test]
    fn slow_start_limited_by_window() {
        // 20 Mbit/s × 40 ms = 100 000 bytes, 6.9 initial windows: 3 doublings.
        assert_eq!(estimated_round_trips(&[70_000_000], &profile(20.0, 40.0)), 4 + 2 + 3);
        // A 10 000-byte layer fits the first window: 1 round.
        assert_eq!(estimated_round_trips(&[10_000], &profile(20.0, 40.0)), 4 + 2 + 1);
    }

    #[test]
    fn layers_download_in_waves_of_three() {
        let sizes = [1_000_000, 1_000_000, 1_000_000, 1_000_000];
        assert_eq!(estimated_round_trips(&sizes, &profile(100.0, 0.0)), 4 + 2 + 2);
    }

    #[test]
    fn computed_adds_transfer_and_delay() {
        // 12.5 MB at 100 Mbit/s is 1 s; 9 round trips of 10 ms.
        let value = computed_pull_ms(500.0, 12_500_000, 9, &profile(100.0, 10.0));
        assert!((value - (500.0 + 1000.0 + 90.0)).abs() < 1e-9, "{value}");
    }

    #[test]
    fn recorder_computes_from_unshaped_of_same_kind() {
        let mut recorder = Recorder::new("distroless");
        let plan = PullPlan { kind: PullKind::Warm, version: 2, layer_sizes: vec![1_250_000], expected_present: 1 };
        let stats = PullStats { elapsed: Duration::from_millis(200), layers_downloaded: 1, layers_present: 1 };
        let edge = LinkProfile { name: "edge".to_string(), bandwidth_mbit: 10.0, delay_ms: 0.0 };
        recorder.record(&plan, 0, None, Pulled::Unshaped(stats));
        recorder.record(&plan, 0, Some(&edge), Pulled::NotShaped);
        recorder.record(&plan, 0, Some(&edge), Pulled::Shaped(stats));

        let pulls: Vec<(&str, f64)> = recorder
            .samples
            .iter()
            .filter(|sample| sample.metric == METRIC)
            .map(|sample| (sample.phase.as_str(), sample.value))
            .collect();
        assert_eq!(
            pulls,
            vec![("warm/unshaped/measured", 200.0), ("warm/edge/computed", 1200.0), ("warm/edge/applied", 200.0)]
        );
    }
}
