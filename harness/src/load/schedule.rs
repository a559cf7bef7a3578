//! The intended send times of every worker.

use std::time::Duration;

use rand::SeedableRng;
use rand_distr::{Distribution, Exp};
use rand_pcg::Pcg64Mcg;
use tokio::time::Instant;

/// Multiplier that spreads worker indexes over the seed space, the 64-bit golden ratio
/// constant of SplitMix64, so that neighbouring workers get unrelated generators.
const SEED_SPREAD: u64 = 0x9E37_79B9_7F4A_7C15;

/// The send times of all workers of an open-loop run.
///
/// With `poisson_seed` unset, sends are evenly spaced and split round-robin over the
/// workers: send number `g` of the whole run is intended at `start + g / rate_per_s`,
/// and worker `index` sends numbers `index`, `index + connections`, `index + 2 *
/// connections`, and so on. Its `round`-th send is therefore number `index + round *
/// connections`.
///
/// With `poisson_seed` set, each worker sends at the arrivals of its own Poisson process
/// of rate `rate_per_s / connections`, drawn from a generator seeded with the seed and
/// the worker index.
#[derive(Debug, Clone)]
pub(super) struct Schedule {
    pub start: Instant,
    pub rate_per_s: f64,
    pub connections: usize,
    /// Offset from `start` where the measured window begins.
    pub warmup: Duration,
    /// Offset from `start` where the measured window ends, `warmup + duration`.
    pub end: Duration,
    /// Seed of the Poisson arrivals, or `None` for evenly spaced sends.
    pub poisson_seed: Option<u64>,
}

/// One intended send of a worker.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Send {
    pub intended: Instant,
    /// Whether the intended time lies in the measured window rather than the warm-up.
    pub in_window: bool,
}

impl Schedule {
    /// Intended time of a round, as seconds after `start`.
    fn offset_secs(&self, index: usize, round: u64) -> f64 {
        (index as f64 + round as f64 * self.connections as f64) / self.rate_per_s
    }

    /// Intended time of an evenly spaced round. Only valid for rounds below
    /// [`Self::round_at`]`(index, self.end)`, whose offsets are all below `end`.
    pub fn intended(&self, index: usize, round: u64) -> Instant {
        self.start + Duration::from_secs_f64(self.offset_secs(index, round))
    }

    /// First evenly spaced round of worker `index` whose intended time is at or after
    /// `offset`.
    ///
    /// The estimate from a division is corrected by stepping with [`Self::offset_secs`],
    /// so that this function and the send times agree exactly despite rounding.
    pub fn round_at(&self, index: usize, offset: Duration) -> u64 {
        let secs = offset.as_secs_f64();
        let estimate = (secs * self.rate_per_s - index as f64) / self.connections as f64;
        // A float-to-int `as` cast saturates, so a negative estimate becomes 0.
        let mut round = estimate.ceil() as u64;
        while round > 0 && self.offset_secs(index, round - 1) >= secs {
            round -= 1;
        }
        while self.offset_secs(index, round) < secs {
            round += 1;
        }
        round
    }

    /// Evenly spaced rounds of worker `index` whose intended time lies in the measured
    /// window.
    pub fn measured_rounds(&self, index: usize) -> std::ops::Range<u64> {
        self.round_at(index, self.warmup)..self.round_at(index, self.end)
    }

    /// Number of requests of all workers together intended in the measured window.
    ///
    /// For Poisson arrivals this draws every send of the run, so it takes time in
    /// proportion to the number of sends.
    pub fn measured_requests(&self) -> u64 {
        (0..self.connections)
            .map(|index| match self.poisson_seed {
                None => {
                    let rounds = self.measured_rounds(index);
                    rounds.end - rounds.start
                }
                Some(_) => self.sends(index).filter(|send| send.in_window).count() as u64,
            })
            .sum()
    }

    /// Returns the sends of worker `index` in time order, warm-up included, up to the end of
    /// the measured window.
    pub fn sends(&self, index: usize) -> Sends<'_> {
        let pattern = match self.poisson_seed {
            None => Pattern::Even {
                round: 0,
                window_round: self.round_at(index, self.warmup),
                end_round: self.round_at(index, self.end),
            },
            Some(seed) => {
                let worker_rate = self.rate_per_s / self.connections as f64;
                Pattern::Poisson {
                    rng: Pcg64Mcg::seed_from_u64(seed ^ (index as u64).wrapping_mul(SEED_SPREAD)),
                    gaps: Exp::new(worker_rate).expect("a validated rate is finite and above 0"),
                    offset_secs: 0.0,
                }
            }
        };
        Sends {
            schedule: self,
            index,
            pattern,
        }
    }

    /// Start of the measured window.
    pub fn window_start(&self) -> Instant {
        self.start + self.warmup
    }

    /// End of the measured window, after which no request is sent.
    pub fn deadline(&self) -> Instant {
        self.start + self.end
    }
}

/// Iterator over the sends of one worker, from [`Schedule::sends`].
pub(super) struct Sends<'a> {
    schedule: &'a Schedule,
    index: usize,
    pattern: Pattern,
}

enum Pattern {
    Even {
        round: u64,
        window_round: u64,
        end_round: u64,
    },
    Poisson {
        rng: Pcg64Mcg,
        gaps: Exp<f64>,
        /// Seconds from `start` to the previous send, or 0 before the first one.
        offset_secs: f64,
    },
}

impl Iterator for Sends<'_> {
    type Item = Send;

    fn next(&mut self) -> Option<Send> {
        let schedule = self.schedule;
        match &mut self.pattern {
            Pattern::Even {
                round,
                window_round,
                end_round,
            } => {
                if *round >= *end_round {
                    return None;
                }
                let send = Send {
                    intended: schedule.intended(self.index, *round),
                    in_window: *round >= *window_round,
                };
                *round += 1;
                Some(send)
            }
            Pattern::Poisson { rng, gaps, offset_secs } => {
                let end_secs = schedule.end.as_secs_f64();
                if *offset_secs >= end_secs {
                    return None;
                }
                *offset_secs += gaps.sample(rng);
                if *offset_secs >= end_secs {
                    return None;
                }
                Some(Send {
                    intended: schedule.start + Duration::from_secs_f64(*offset_secs),
                    in_window: *offset_secs >= schedule.warmup.as_secs_f64(),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(rate_per_s: f64, connections: usize, warmup_ms: u64, end_ms: u64) -> Schedule {
        Schedule {
            start: Instant::now(),
            rate_per_s,
            connections,
            warmup: Duration::from_millis(warmup_ms),
            end: Duration::from_millis(end_ms),
            poisson_seed: None,
        }
    }

    #[test]
    fn schedule_counts_window_exactly() {
        let schedule = schedule(200.0, 4, 500, 2500);

        assert_eq!(schedule.measured_requests(), 400);
        for index in 0..4 {
            assert_eq!(schedule.measured_rounds(index), 25..125, "worker {index}");
        }
    }

    #[test]
    fn schedule_interleaves_workers_evenly() {
        let schedule = schedule(100.0, 3, 0, 1000);
        let mut sends: Vec<Instant> = (0..3)
            .flat_map(|index| (0..schedule.round_at(index, schedule.end)).map(move |round| (index, round)))
            .map(|(index, round)| schedule.intended(index, round))
            .collect();
        sends.sort();

        assert_eq!(sends.len(), 100);
        for pair in sends.windows(2) {
            let gap = pair[1] - pair[0];
            assert!(
                gap.abs_diff(Duration::from_millis(10)) < Duration::from_micros(1),
                "gap {gap:?} between consecutive sends, expected 10 ms"
            );
        }
    }

    #[test]
    fn schedule_handles_rate_below_one_per_window() {
        let schedule = schedule(0.5, 2, 0, 1000);

        assert_eq!(schedule.measured_rounds(0), 0..1);
        assert_eq!(schedule.measured_rounds(1), 0..0);
        assert_eq!(schedule.measured_requests(), 1);
    }

    fn poisson(rate_per_s: f64, connections: usize, end_s: u64, seed: u64) -> Schedule {
        Schedule {
            start: Instant::now(),
            rate_per_s,
            connections,
            warmup: Duration::ZERO,
            end: Duration::from_secs(end_s),
            poisson_seed: Some(seed),
        }
    }

    /// Gaps in seconds between the consecutive sends of all workers together.
    fn merged_gaps(schedule: &Schedule) -> Vec<f64> {
        let mut sends: Vec<Instant> = (0..schedule.connections)
            .flat_map(|index| schedule.sends(index).map(|send| send.intended))
            .collect();
        sends.sort();
        let mut previous = schedule.start;
        sends
            .into_iter()
            .map(|send| {
                let gap = (send - previous).as_secs_f64();
                previous = send;
                gap
            })
            .collect()
    }

    #[test]
    fn poisson_gaps_average_one_over_rate() {
        // About 100 000 gaps, so the mean's standard error is 0.3% and 2% is 6 errors.
        let schedule = poisson(1000.0, 1, 100, 7);

        let gaps = merged_gaps(&schedule);

        let count = gaps.len() as f64;
        let mean = gaps.iter().sum::<f64>() / count;
        let variance = gaps.iter().map(|gap| (gap - mean).powi(2)).sum::<f64>() / count;
        assert!(
            (count - 100_000.0).abs() <= 2_000.0,
            "{count} sends, expected 100 000 ± 2%"
        );
        assert!(
            (mean - 0.001).abs() <= 0.001 * 0.02,
            "mean gap {mean} s, expected 0.001 s ± 2%"
        );
        // An exponential distribution's standard deviation equals its mean.
        let deviation = variance.sqrt();
        assert!(
            (deviation - mean).abs() <= mean * 0.03,
            "gap standard deviation {deviation} s, expected the mean {mean} s ± 3%"
        );
    }

    #[test]
    fn poisson_workers_sum_to_total_rate() {
        let schedule = poisson(1000.0, 4, 50, 11);

        let gaps = merged_gaps(&schedule);

        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        assert!(
            (mean - 0.001).abs() <= 0.001 * 0.03,
            "mean gap of 4 merged workers {mean} s, expected 0.001 s ± 3%"
        );
        let per_worker: Vec<usize> = (0..4).map(|index| schedule.sends(index).count()).collect();
        for (index, count) in per_worker.iter().enumerate() {
            assert!(
                (11_500..=13_500).contains(count),
                "worker {index} has {count} sends, expected about 12 500"
            );
        }
    }

    #[test]
    fn poisson_seed_fixes_send_times() {
        let first = poisson(500.0, 3, 2, 42);
        let mut second = first.clone();
        second.start = first.start;
        let other_seed = Schedule {
            poisson_seed: Some(43),
            ..first.clone()
        };

        for index in 0..3 {
            let sends: Vec<Send> = first.sends(index).collect();
            let again: Vec<Send> = second.sends(index).collect();
            let other: Vec<Send> = other_seed.sends(index).collect();
            assert!(!sends.is_empty(), "worker {index} has no sends");
            assert_eq!(sends, again, "worker {index} with the same seed");
            assert_ne!(sends, other, "worker {index} with another seed");
        }
        assert_ne!(
            first.sends(0).next(),
            first.sends(1).next(),
            "workers of one run must not share a sequence"
        );
    }

    #[test]
    fn poisson_sends_stay_in_run() {
        let schedule = Schedule {
            warmup: Duration::from_millis(500),
            ..poisson(200.0, 2, 2, 5)
        };
        let window_start = schedule.window_start();
        let deadline = schedule.deadline();

        for index in 0..2 {
            let sends: Vec<Send> = schedule.sends(index).collect();
            for pair in sends.windows(2) {
                assert!(pair[0].intended <= pair[1].intended, "sends out of order");
            }
            for send in &sends {
                assert!(send.intended < deadline, "send after the deadline");
                assert_eq!(send.in_window, send.intended >= window_start);
            }
        }
        let in_window: u64 = (0..2)
            .map(|index| schedule.sends(index).filter(|send| send.in_window).count() as u64)
            .sum();
        assert_eq!(schedule.measured_requests(), in_window);
    }
}
