//! The cost of storing a run: summarizing samples and writing samples.csv and
//! summary.csv atomically.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};

use deploybench::results::{self, Sample};

/// A run's worth of samples: 4 models, 20 boots with 4 phases and 3 memory figures each.
fn run_samples() -> Vec<Sample> {
    let mut samples = Vec::new();
    for model in ["process", "distroless", "fat-image", "vm (tcg)"] {
        for repetition in 0..20 {
            for (phase, value) in [("create", 10.0), ("start", 100.0), ("first_accept", 200.0), ("first_200", 300.0)] {
                samples.push(Sample::new(model, "boot_ms", phase, repetition, value + f64::from(repetition), "ms"));
            }
            for phase in ["instance", "runtime", "total"] {
                samples.push(Sample::new(model, "memory_mib", phase, repetition, 10.0, "MiB"));
            }
        }
    }
    samples
}

fn bench_results(c: &mut Criterion) {
    let samples = run_samples();
    c.bench_function("summarize_560_samples", |bencher| bencher.iter(|| results::summarize(&samples)));

    let folder = tempfile::tempdir().expect("a temporary folder can be created");
    c.bench_function("write_samples_and_summary", |bencher| {
        bencher.iter_batched(
            || results::summarize(&samples),
            |summaries| {
                results::write_samples(folder.path(), &samples).expect("the temporary folder is writable");
                results::write_summaries(folder.path(), &summaries).expect("the temporary folder is writable");
            },
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, bench_results);
criterion_main!(benches);
