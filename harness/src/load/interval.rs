//! Per-second counts and latency histograms of the measured window.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::time::Instant;

use super::report::{add_histogram, new_histogram, record_duration};

/// Counts and latencies of one second of the measured window.
///
/// Sends count in the second in which they left. Completions, errors and latencies count
/// in the second in which the response or the failure arrived, as in an HdrHistogram
/// interval log.
#[derive(Debug, Clone)]
pub struct IntervalStats {
    /// Index of the second, 0 for the first second of the measured window.
    pub second: u64,
    /// Requests that left in this second.
    pub sent: u64,
    /// Requests whose complete response arrived in this second, whatever its status.
    pub completed: u64,
    /// Requests that failed in this second, of any [`ErrorKind`](super::ErrorKind).
    pub errors: u64,
    /// Corrected latencies in microseconds of the requests completed in this second.
    pub corrected: Histogram<u64>,
    /// Uncorrected latencies in microseconds of the requests completed in this second.
    pub uncorrected: Histogram<u64>,
}

impl IntervalStats {
    fn new(second: u64) -> Self {
        Self {
            second,
            sent: 0,
            completed: 0,
            errors: 0,
            corrected: new_histogram(),
            uncorrected: new_histogram(),
        }
    }

    fn is_empty(&self) -> bool {
        self.sent == 0 && self.completed == 0 && self.errors == 0
    }

    fn add(&mut self, other: &Self) {
        self.sent += other.sent;
        self.completed += other.completed;
        self.errors += other.errors;
        add_histogram(&mut self.corrected, &other.corrected);
        add_histogram(&mut self.uncorrected, &other.uncorrected);
    }

    fn clear(&mut self, second: u64) {
        self.second = second;
        self.sent = 0;
        self.completed = 0;
        self.errors = 0;
        // `reset` keeps the allocated counts, so recording allocates only when a value
        // above every earlier one grows the histogram.
        self.corrected.reset();
        self.uncorrected.reset();
    }
}

/// The per-second statistics of all workers, merged as each worker leaves a second.
pub(super) type IntervalStore = Arc<Mutex<Vec<IntervalStats>>>;

/// Records one worker's events into the second they fall in.
///
/// It keeps only the current second and adds it to the shared store when an event falls
/// in another second, so that the lock is taken about once per second per worker. A
/// worker's events arrive in time order, so each second is usually added once.
pub(super) struct IntervalRecorder {
    window_start: Instant,
    current: IntervalStats,
    store: IntervalStore,
}

impl IntervalRecorder {
    pub fn new(window_start: Instant, store: IntervalStore) -> Self {
        Self {
            window_start,
            current: IntervalStats::new(0),
            store,
        }
    }

    pub fn record_send(&mut self, at: Instant) {
        self.at(at).sent += 1;
    }

    pub fn record_completion(&mut self, at: Instant, corrected: Duration, uncorrected: Duration) {
        let interval = self.at(at);
        interval.completed += 1;
        record_duration(&mut interval.corrected, corrected);
        record_duration(&mut interval.uncorrected, uncorrected);
    }

    pub fn record_error(&mut self, at: Instant) {
        self.at(at).errors += 1;
    }

    /// Adds the current second to the store. Call it once after the worker's last event.
    pub fn flush(&mut self) {
        if self.current.is_empty() {
            return;
        }
        let mut store = self.store.lock().unwrap_or_else(PoisonError::into_inner);
        let second = self.current.second;
        let index = usize::try_from(second).expect("a run's seconds fit in usize");
        while store.len() <= index {
            let next = store.len() as u64;
            store.push(IntervalStats::new(next));
        }
        store[index].add(&self.current);
        drop(store);
        self.current.clear(second);
    }

    fn at(&mut self, at: Instant) -> &mut IntervalStats {
        let second = at.saturating_duration_since(self.window_start).as_secs();
        if second != self.current.second {
            self.flush();
            self.current.clear(second);
        }
        &mut self.current
    }
}

/// Takes the merged seconds out of `store`, from second 0 to the last one with an event.
pub(super) fn take_intervals(store: &IntervalStore) -> Vec<IntervalStats> {
    std::mem::take(&mut *store.lock().unwrap_or_else(PoisonError::into_inner))
}
