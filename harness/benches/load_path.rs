//! Criterion benchmarks of the load generator's hot path.

use criterion::{criterion_group, criterion_main, Criterion};

fn histogram_recording(_criterion: &mut Criterion) {}

criterion_group!(benches, histogram_recording);
criterion_main!(benches);
