//! Which metrics gate a build, in which direction, and how large a change must be.

/// Whether a larger value is worse or better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    HigherIsWorse,
    LowerIsWorse,
}

/// The band a change must leave, and whether it must also be significant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold {
    pub direction: Direction,
    /// Relative change of the median, in percent, that a regression must exceed.
    pub percent: f64,
    /// Absolute change of the median, in the metric's unit, that it must also exceed.
    pub floor: f64,
    /// True when the Mann-Whitney test must also reject "no change". Off only for
    /// figures that do not vary between runs of the same build, such as image size.
    pub needs_significance: bool,
}

/// Significance level of the Mann-Whitney test.
pub const ALPHA: f64 = 0.01;

/// The threshold of a metric and phase, or `None` when it is reported but never gates.
///
/// `boot_ratio_to_process` is reported but does not gate: the bare process boots in a
/// few milliseconds, so its median moves by half between runs and the ratio with it.
///
/// The bands are wide on purpose: on a shared 2-core machine the median boot time of
/// the same build moved by up to 40% between runs, so a narrower band would fail
/// builds on noise even with the significance test.
pub fn threshold(metric: &str, phase: &str) -> Option<Threshold> {
    let higher = |percent, floor, needs_significance| Threshold {
        direction: Direction::HigherIsWorse,
        percent,
        floor,
        needs_significance,
    };
    match (metric, phase) {
        ("boot_ms", "first_200") => Some(higher(50.0, 50.0, true)),
        ("memory_overhead_mib", _) => Some(higher(25.0, 2.0, true)),
        ("memory_mib", "total") => Some(higher(25.0, 2.0, true)),
        ("image_mib", _) => Some(higher(10.0, 0.5, false)),
        ("cpu_ms_per_1k_req", _) => Some(higher(50.0, 20.0, true)),
        ("latency_ms", "p99") => Some(higher(100.0, 5.0, true)),
        ("achieved_rps", _) => Some(Threshold {
            direction: Direction::LowerIsWorse,
            percent: 5.0,
            floor: 0.0,
            needs_significance: true,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_gates_and_phases_do_not() {
        assert!(threshold("boot_ms", "first_200").is_some());
        assert!(threshold("boot_ms", "create").is_none());
        assert!(threshold("service_time_ms", "p99").is_none());
    }

    #[test]
    fn image_size_needs_no_test() {
        assert!(!threshold("image_mib", "uncompressed").unwrap().needs_significance);
    }
}
