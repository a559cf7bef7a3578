//! The "Key findings" table, laid out like the article's table, and the list of figures
//! where our measurements and the article's claims disagree.

use std::fmt::Write;

use crate::results::Summary;

use super::claims::{place, Approach, Claim, Placement, CONTAINER_CLAIM, VM_CLAIM};
use super::data::RunData;
use super::format;

pub const NOT_MEASURED: &str = "not measured in this run";

/// One row of the key-findings table: a model and its headline figures.
pub struct FindingRow<'a> {
    pub approach: Approach,
    pub model: String,
    /// boot_ms, phase first_200.
    pub boot: Option<&'a Summary>,
    /// memory_overhead_mib, phase "".
    pub memory: Option<&'a Summary>,
    /// memory_mib, phase total (else instance): the RSS of the process floor, which the
    /// overhead of every model subtracts.
    pub floor_rss: Option<&'a Summary>,
    /// deploy_cycle_s, the whole cycle (phase "", else the first phase stored), when the run measured it.
    pub deploy_cycle: Option<&'a Summary>,
    /// "skipped: reason" or "failed: reason" from run.json.
    pub outcome_note: Option<String>,
}

impl FindingRow<'_> {
    /// Returns the deploy ceiling in deploys a day: 86 400 s over the median deploy cycle.
    pub fn deploys_per_day(&self) -> Option<f64> {
        self.deploy_cycle
            .filter(|cycle| cycle.median > 0.0)
            .map(|cycle| 86_400.0 / cycle.median)
    }

    pub fn boot_placement(&self) -> Option<Placement> {
        let claim = self.approach.claim()?;
        Some(place(self.boot?.median, claim.boot_ms.0, claim.boot_ms.1))
    }

    pub fn memory_placement(&self) -> Option<Placement> {
        let claim = self.approach.claim()?;
        let (low, high) = claim.memory_mib();
        Some(place(self.memory?.median, low, high))
    }

    pub fn deploy_placement(&self) -> Option<Placement> {
        let claim = self.approach.claim()?;
        Some(place(
            self.deploys_per_day()?,
            claim.deploys_per_day.0,
            claim.deploys_per_day.1,
        ))
    }

    fn not_measured(&self) -> String {
        match &self.outcome_note {
            Some(note) => format!("{NOT_MEASURED} ({note})"),
            None => NOT_MEASURED.to_string(),
        }
    }
}

/// Builds the rows in the article's order: VMs, containers, functions, then the process
/// floor and any model the article has no row for.
pub fn rows(data: &RunData) -> Vec<FindingRow<'_>> {
    let mut labels: Vec<String> = Vec::new();
    let vm_models: Vec<&String> = data.models.iter().filter(|m| Approach::of(m) == Approach::Vm).collect();
    if vm_models.is_empty() {
        labels.push("vm".to_string());
    } else {
        labels.extend(vm_models.into_iter().cloned());
    }
    for fixed in ["distroless", "fat-image", "function", "process"] {
        labels.push(fixed.to_string());
    }
    let unclaimed = data.models.iter().filter(|m| Approach::of(m) == Approach::Unclaimed);
    labels.extend(unclaimed.cloned());

    labels.into_iter().map(|model| row(data, model)).collect()
}

fn row(data: &RunData, model: String) -> FindingRow<'_> {
    let outcome_note = data
        .outcome(&model)
        .filter(|(status, _)| *status != "measured")
        .map(|(status, reason)| {
            if reason.is_empty() {
                status.to_string()
            } else {
                format!("{status}: {reason}")
            }
        });
    let deploy_cycle = data.summary(&model, "deploy_cycle_s", "").or_else(|| {
        data.summaries
            .iter()
            .find(|summary| summary.model == model && summary.metric == "deploy_cycle_s")
    });
    FindingRow {
        approach: Approach::of(&model),
        boot: data.summary(&model, "boot_ms", "first_200"),
        memory: data.summary(&model, "memory_overhead_mib", ""),
        floor_rss: data
            .summary(&model, "memory_mib", "total")
            .or_else(|| data.summary(&model, "memory_mib", "instance")),
        deploy_cycle,
        outcome_note,
        model,
    }
}

/// Renders the key-findings table and its footnotes.
pub fn table(rows: &[FindingRow]) -> String {
    let mut out = String::new();
    out.push_str("| Approach | Model | Boot time measured (median, p95) | Boot claim | Memory overhead measured (median) | Memory claim [^units] | Deploy frequency claim | Deploys measured [^deploys] | Verdict against the claim |\n");
    out.push_str("| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
    for row in rows {
        let claim = row.approach.claim();
        let cells = [
            row.approach.label().to_string(),
            format::cell(&row.model),
            boot_cell(row),
            claim.map_or_else(|| "no claim".to_string(), Claim::boot_text),
            memory_cell(row),
            claim.map_or_else(|| "no claim".to_string(), Claim::memory_text_with_mib),
            claim.map_or("no claim", |claim| claim.deploy_text).to_string(),
            deploy_cell(row),
            verdict_cell(row),
        ];
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    out.push('\n');
    let mib_range = |claim: &Claim| {
        let (low, high) = claim.memory_mib();
        format::range(low, high)
    };
    let _ = writeln!(
        out,
        "[^units]: The article writes MB and GB without defining them. We read them as SI units \
         (1 MB = 10^6 bytes, 1 GB = 10^9 bytes) and convert to MiB (2^20 bytes), the unit we \
         measure in: {} is {} MiB and {} is {} MiB. The function claim is memory held while no \
         instance is warm, but our function figure is one warm instance (its sandbox and shim, \
         without the gateway, which runs inside the harness), so it is an upper bound for that \
         claim. The memory left after the keep-warm window is in the function section.",
        CONTAINER_CLAIM.memory_text,
        mib_range(&CONTAINER_CLAIM),
        VM_CLAIM.memory_text,
        mib_range(&VM_CLAIM),
    );
    out.push_str(
        "[^deploys]: The article's deploy frequencies describe how often teams deploy. We can \
         measure only a ceiling, 86 400 s divided by the median deploy cycle (build, push, pull, \
         start, healthy, old instance replaced), so only a ceiling below the claimed range \
         contradicts the article.\n",
    );
    if rows.iter().any(|row| row.model.contains("(tcg)")) {
        out.push_str(
            "\nThe vm model ran under TCG, QEMU's software emulation, because hardware \
             virtualization (KVM) failed its test boot on this host. Emulation inflates the VM's \
             boot time and CPU figures several times over what the same guest needs under KVM, so \
             read the VM row as an upper bound, not as what a VM costs on bare metal.\n",
        );
    }
    out
}

fn boot_cell(row: &FindingRow) -> String {
    match row.boot {
        Some(boot) if boot.n > 1 => format!(
            "{} (p95 {}, n {})",
            format::duration_ms(boot.median),
            format::duration_ms(boot.p95),
            boot.n
        ),
        Some(boot) => format!("{} (n 1)", format::duration_ms(boot.median)),
        None => row.not_measured(),
    }
}

fn memory_cell(row: &FindingRow) -> String {
    let measured = match row.memory {
        Some(memory) => format!("{} MiB (n {})", format::number(memory.median), memory.n),
        None => row.not_measured(),
    };
    match (row.approach, row.floor_rss) {
        (Approach::Floor, Some(rss)) => {
            format!(
                "{measured}, the floor: its median RSS of {} MiB is subtracted from every model",
                format::number(rss.median)
            )
        }
        _ => measured,
    }
}

fn deploy_cell(row: &FindingRow) -> String {
    match (row.deploys_per_day(), row.deploy_cycle) {
        (Some(per_day), Some(cycle)) => format!(
            "at most {} a day (cycle median {} s)",
            format::number(per_day),
            format::number(cycle.median)
        ),
        _ => NOT_MEASURED.to_string(),
    }
}

fn verdict_cell(row: &FindingRow) -> String {
    match row.approach {
        Approach::Floor => return "floor, no claim".to_string(),
        Approach::Unclaimed => return "no claim to compare".to_string(),
        _ => {}
    }
    let part = |name: &str, placement: Option<Placement>| match placement {
        Some(placement) => format!("{name} {} the claimed range", placement.word()),
        None => format!("{name} not measured"),
    };
    let mut parts = vec![
        part("boot", row.boot_placement()),
        part("memory", row.memory_placement()),
    ];
    if row.deploy_placement() == Some(Placement::Below) {
        parts.push("deploy ceiling below the claimed frequency".to_string());
    }
    parts.join(", ")
}

/// Renders one sentence per figure outside its claimed range, then the figures inside one.
pub fn disagreements(rows: &[FindingRow]) -> String {
    let mut disagree = Vec::new();
    let mut agree = Vec::new();
    for row in rows {
        let Some(claim) = row.approach.claim() else { continue };
        let approach = row.approach.label();

        if let (Some(boot), Some(placement)) = (row.boot, row.boot_placement()) {
            let sentence = format!(
                "{} boots in a median {} (p95 {}, n {}), {} the claimed {} for {approach}.",
                row.model,
                format::duration_ms(boot.median),
                format::duration_ms(boot.p95),
                boot.n,
                placement.word(),
                claim.boot_text(),
            );
            sort_sentence(placement, sentence, &mut agree, &mut disagree);
        }

        if let (Some(memory), Some(placement)) = (row.memory, row.memory_placement()) {
            let sentence = format!(
                "{} adds a median {} MiB of memory over the bare process, {} the claimed {} for {approach}.",
                row.model,
                format::number(memory.median),
                placement.word(),
                claim.memory_text_with_mib(),
            );
            sort_sentence(placement, sentence, &mut agree, &mut disagree);
        }

        if let (Some(per_day), Some(cycle), Some(Placement::Below)) =
            (row.deploys_per_day(), row.deploy_cycle, row.deploy_placement())
        {
            disagree.push(format!(
                "{} needs a median {} s per deploy cycle, so at most {} deploys a day fit, below the claimed {} for {approach}.",
                row.model,
                format::number(cycle.median),
                format::number(per_day),
                claim.deploy_text,
            ));
        }
    }

    let mut out = String::new();
    if disagree.is_empty() && agree.is_empty() {
        out.push_str("This run measured no figure that the article makes a claim about.\n");
    } else if disagree.is_empty() {
        out.push_str("Every measured figure with a claim falls inside the article's claimed range.\n");
    }
    for sentence in &disagree {
        let _ = writeln!(out, "- {sentence}");
    }
    if !agree.is_empty() {
        out.push_str("\nInside the claimed range:\n\n");
        for sentence in &agree {
            let _ = writeln!(out, "- {sentence}");
        }
    }
    out
}

fn sort_sentence(placement: Placement, sentence: String, agree: &mut Vec<String>, disagree: &mut Vec<String>) {
    if placement == Placement::Inside {
        agree.push(sentence);
    } else {
        disagree.push(sentence);
    }
}
