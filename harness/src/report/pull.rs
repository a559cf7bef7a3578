//! The pull-latency and deploy-cycle sections: the pull table, the pull-time
//! reduction beside the article's 80% claim, and the deploy cycles with their
//! deploys-a-day ceiling beside the article's deploy frequencies.

use std::fmt::Write;
use std::path::Path;

use crate::measure::deploy::{self, PHASES};
use crate::measure::pull::{self, PullKind, PullMethod};
use crate::results::Summary;
use crate::scenario::{LinkProfile, Scenario};

use super::claims::{place, Approach, Placement, BYTES_PER_MIB, PULL_CLAIM};
use super::data::RunData;
use super::format;

/// A link profile as the report shows it: the name, and bandwidth and delay when the
/// stored scenario still parses.
pub struct Link {
    pub name: String,
    pub profile: Option<LinkProfile>,
}

impl Link {
    fn label(&self) -> String {
        match &self.profile {
            Some(profile) if profile.delay_ms > 0.0 => format!(
                "{} ({} Mbit/s, {} ms)",
                self.name,
                format::trimmed(profile.bandwidth_mbit),
                format::trimmed(profile.delay_ms)
            ),
            Some(profile) => format!("{} ({} Mbit/s)", self.name, format::trimmed(profile.bandwidth_mbit)),
            None if self.name == LinkProfile::UNSHAPED_NAME => format!("{} (loopback)", self.name),
            None => self.name.clone(),
        }
    }
}

/// One pull figure: its summary and how it came about.
pub struct PullFigure<'a> {
    pub summary: &'a Summary,
    pub method: PullMethod,
}

/// The pull figures of a run, by model and link.
pub struct PullData<'a> {
    data: &'a RunData,
    /// Links in the order of first appearance, `unshaped` first.
    pub links: Vec<Link>,
    /// Models with `pull_ms` samples, in report order.
    pub models: Vec<&'a str>,
}

impl<'a> PullData<'a> {
    pub fn new(data: &'a RunData) -> PullData<'a> {
        let profiles = stored_profiles(data);
        let mut names: Vec<String> = vec![LinkProfile::UNSHAPED_NAME.to_string()];
        for phase in data.phases(pull::METRIC) {
            if let Some((_, profile, _)) = pull::parse_phase(&phase) {
                if !names.iter().any(|name| name == profile) {
                    names.push(profile.to_string());
                }
            }
        }
        let links = names
            .into_iter()
            .map(|name| {
                let profile = profiles.iter().find(|profile| profile.name == name).cloned();
                Link { name, profile }
            })
            .collect();
        PullData { data, links, models: data.models_with(pull::METRIC) }
    }

    /// Returns the figure of one model, kind and link, preferring a shaped one.
    pub fn figure(&self, model: &str, kind: PullKind, link: &str) -> Option<PullFigure<'a>> {
        PullMethod::ALL.into_iter().find_map(|method| {
            let summary = self.data.summary(model, pull::METRIC, &pull::phase(kind, link, method))?;
            Some(PullFigure { summary, method })
        })
    }

    /// Returns the uncompressed size in MiB of the pulled image, else of the model's image.
    pub fn image_mib(&self, model: &str) -> Option<f64> {
        self.data
            .summary(model, "image_mib", pull::UNCOMPRESSED_PHASE)
            .or_else(|| self.data.summary(model, "image_mib", "uncompressed"))
            .map(|summary| summary.median)
    }

    fn mib(&self, model: &str, phase: &str) -> Option<f64> {
        self.data.summary(model, "image_mib", phase).map(|summary| summary.median)
    }
}

/// Reads the link profiles of the scenario stored in run.json; empty when it does not parse.
fn stored_profiles(data: &RunData) -> Vec<LinkProfile> {
    let meta = &data.meta;
    Scenario::parse(&meta.scenario_text, Path::new(&meta.scenario_path))
        .map(|scenario| scenario.pull.profiles)
        .unwrap_or_default()
}

fn pull_cell(figure: Option<PullFigure>) -> String {
    match figure {
        Some(figure) if figure.summary.n > 1 => format!(
            "{} (p95 {}, n {})",
            format::duration_ms(figure.summary.median),
            format::duration_ms(figure.summary.p95),
            figure.summary.n
        ),
        Some(figure) => format!("{} (n 1)", format::duration_ms(figure.summary.median)),
        None => "—".to_string(),
    }
}

fn mib_cell(value: Option<f64>) -> String {
    value.map_or_else(|| "—".to_string(), format::number)
}

/// Renders the pull table: one row per model and link, cold and warm.
pub fn table(data: &RunData) -> String {
    let pulls = PullData::new(data);
    if pulls.models.is_empty() {
        return format!("The run stored no `{}` samples.\n", pull::METRIC);
    }
    let mut out = String::from(
        "A cold pull starts with no layer of the image present, a warm pull with every layer but \
         the application layer present. Each pull is timed from the pull call to the end of the \
         engine's progress stream, from a local registry on 127.0.0.1. The pulled image is a copy \
         of the model's image with a marker file, so that its layers are new to the engine. Sizes \
         are in MiB: the image uncompressed, and the compressed layer bytes each pull downloads.\n\n\
         How each figure came about:\n\n\
         - measured: the pull over the loopback, unshaped;\n\
         - applied bandwidth + computed delay: the link's bandwidth applied with tc on the \
         registry's port, plus round trips × the link's delay;\n\
         - computed: the unshaped pull of the same repetition, plus bytes / bandwidth, plus round \
         trips × delay. It assumes that the download does not overlap the extraction, so it \
         overstates the pull somewhat.\n\n\
         | Model | Link | Image size | Pulled cold | Cold pull | Pulled warm | Warm pull | How |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for model in &pulls.models {
        for link in &pulls.links {
            let cold = pulls.figure(model, PullKind::Cold, &link.name);
            let warm = pulls.figure(model, PullKind::Warm, &link.name);
            if cold.is_none() && warm.is_none() {
                continue;
            }
            let how = methods_text(cold.as_ref().map(|f| f.method), warm.as_ref().map(|f| f.method));
            let cells = [
                format::cell(model),
                format::cell(&link.label()),
                mib_cell(pulls.image_mib(model)),
                mib_cell(pulls.mib(model, pull::COMPRESSED_COLD_PHASE)),
                pull_cell(cold),
                mib_cell(pulls.mib(model, pull::COMPRESSED_WARM_PHASE)),
                pull_cell(warm),
                how,
            ];
            let _ = writeln!(out, "| {} |", cells.join(" | "));
        }
    }
    if let Some(other) = unparsed_phases(data) {
        let _ = write!(
            out,
            "\n`{}` samples whose phase is not `KIND/LINK/METHOD`, from an older run: {other}.\n",
            pull::METRIC
        );
    }
    out
}

fn methods_text(cold: Option<PullMethod>, warm: Option<PullMethod>) -> String {
    match (cold, warm) {
        (Some(cold), Some(warm)) if cold == warm => cold.description().to_string(),
        (Some(cold), Some(warm)) => format!("cold {}, warm {}", cold.description(), warm.description()),
        (Some(method), None) | (None, Some(method)) => method.description().to_string(),
        (None, None) => String::new(),
    }
}

/// Lists `pull_ms` summaries whose phase [`pull::parse_phase`] does not read.
fn unparsed_phases(data: &RunData) -> Option<String> {
    let listed: Vec<String> = data
        .summaries
        .iter()
        .filter(|summary| summary.metric == pull::METRIC && pull::parse_phase(&summary.phase).is_none())
        .map(|summary| format!("{} {} {}", summary.model, summary.phase, format::duration_ms(summary.median)))
        .collect();
    (!listed.is_empty()).then(|| listed.join(", "))
}

/// Renders the cold pull-time reduction from fat-image to distroless per link beside
/// the article's claim, or a sentence saying why it cannot.
pub fn claim(data: &RunData) -> String {
    let pulls = PullData::new(data);
    let claim_text = PULL_CLAIM.text;
    let (Some(fat), Some(small)) = (pulls.image_mib("fat-image"), pulls.image_mib("distroless")) else {
        return format!(
            "The article claims {claim_text}. This run has no cold pulls of both fat-image and \
             distroless, so the claim is not checked.\n"
        );
    };
    let mut out = format!(
        "The article claims {claim_text} ({} MiB to {} MiB). Our images are {} MiB (fat-image) \
         and {} MiB (distroless), uncompressed. The sizes differ from the article's, so the table \
         checks the claimed cut in pull time for our pair of images. The reduction is \
         1 − distroless / fat-image of the median cold pulls.\n\n\
         | Link | fat-image cold pull | distroless cold pull | Reduction | Claim | Verdict |\n\
         | --- | --- | --- | --- | --- | --- |\n",
        format::number(PULL_CLAIM.from_bytes / BYTES_PER_MIB),
        format::number(PULL_CLAIM.to_bytes / BYTES_PER_MIB),
        format::number(fat),
        format::number(small),
    );
    let mut rows = 0;
    for link in &pulls.links {
        let (Some(fat_pull), Some(small_pull)) = (
            pulls.figure("fat-image", PullKind::Cold, &link.name),
            pulls.figure("distroless", PullKind::Cold, &link.name),
        ) else {
            continue;
        };
        if fat_pull.summary.median <= 0.0 {
            continue;
        }
        let reduction = 1.0 - small_pull.summary.median / fat_pull.summary.median;
        let verdict = match place(reduction, PULL_CLAIM.reduction, f64::INFINITY) {
            Placement::Below => "less than claimed",
            _ => "at least the claimed reduction",
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {}% | {}% | {verdict} |",
            format::cell(&link.label()),
            format::duration_ms(fat_pull.summary.median),
            format::duration_ms(small_pull.summary.median),
            format::number(reduction * 100.0),
            format::trimmed(PULL_CLAIM.reduction * 100.0),
        );
        rows += 1;
    }
    if rows == 0 {
        out.push_str("| no link with cold pulls of both images | — | — | — | — | — |\n");
    }
    out
}

/// Renders the deploy cycles per model: the total and each phase, and the ceiling of
/// deploys a day beside the article's claimed frequency.
pub fn deploy_table(data: &RunData) -> String {
    let models = data.models_with(deploy::METRIC);
    if models.is_empty() {
        return format!("The run stored no `{}` samples.\n", deploy::METRIC);
    }
    let mut out = String::from(
        "One cycle builds a new version (the service binary with a changed version marker, in a \
         new application layer), pushes it to the local registry, pulls it after its local \
         copies are removed, starts it beside the running version, waits for its first 200 \
         from /health, and stops the old instance. Times are medians in seconds; `healthy` \
         counts from the end of `start`. The build phase does not include compiling the \
         service. Deploys a day is 86 400 s over the median cycle, a ceiling for one \
         deployment pipeline.\n\n",
    );
    out.push_str("| Model | Cycle (median, p95, n) |");
    for phase in PHASES {
        let _ = write!(out, " {phase} |");
    }
    out.push_str(" Deploys a day, at most | Claim | Verdict |\n|");
    out.push_str(&" --- |".repeat(PHASES.len() + 5));
    out.push('\n');

    for model in models {
        let Some(cycle) = data.summary(model, deploy::METRIC, "") else {
            continue;
        };
        let mut cells = vec![
            format::cell(model),
            format!("{} (p95 {}, n {})", format::number(cycle.median), format::number(cycle.p95), cycle.n),
        ];
        for phase in PHASES {
            cells.push(
                data.summary(model, deploy::METRIC, phase)
                    .map_or_else(|| "—".to_string(), |s| format::number(s.median)),
            );
        }
        let claim = Approach::of(model).claim();
        let per_day = (cycle.median > 0.0).then(|| 86_400.0 / cycle.median);
        cells.push(per_day.map_or_else(|| "—".to_string(), format::number));
        cells.push(claim.map_or("no claim", |claim| claim.deploy_text).to_string());
        let verdict = match (claim, per_day) {
            (Some(claim), Some(per_day)) => match place(per_day, claim.deploys_per_day.0, claim.deploys_per_day.1) {
                Placement::Below => "ceiling below the claimed frequency",
                Placement::Inside => "ceiling inside the claimed range",
                Placement::Above => "ceiling above the claimed frequency",
            },
            _ => "no claim to compare",
        };
        cells.push(verdict.to_string());
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_text_merges_equal_methods() {
        assert_eq!(
            methods_text(Some(PullMethod::Applied), Some(PullMethod::Applied)),
            "applied bandwidth + computed delay"
        );
        assert_eq!(
            methods_text(Some(PullMethod::Applied), Some(PullMethod::Computed)),
            "cold applied bandwidth + computed delay, warm computed"
        );
        assert_eq!(methods_text(None, Some(PullMethod::Measured)), "measured");
    }

    #[test]
    fn link_label_states_bandwidth_and_delay() {
        let profile = |delay_ms| Some(LinkProfile { name: "x".to_string(), bandwidth_mbit: 100.0, delay_ms });
        assert_eq!(Link { name: "x".to_string(), profile: profile(10.0) }.label(), "x (100 Mbit/s, 10 ms)");
        assert_eq!(Link { name: "x".to_string(), profile: profile(0.0) }.label(), "x (100 Mbit/s)");
        assert_eq!(Link { name: "unshaped".to_string(), profile: None }.label(), "unshaped (loopback)");
    }
}
