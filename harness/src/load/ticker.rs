//! A timer thread that wakes each worker at its intended send times.
//!
//! Tokio timers fire on millisecond ticks, so a task that sleeps until its send time
//! can leave up to about 1 ms late. That lag counts in the corrected latency, and on
//! 127.0.0.1 it can exceed the service time. Polling the clock in the last milliseconds
//! instead keeps sends within microseconds, but the busy waiting costs CPU time in
//! proportion to the rate, and the host utilization figures would include it. This
//! thread sleeps with `std::thread::sleep` and a timer slack of 1 ns, so it usually
//! wakes a worker well under 1 ms after the send time, without busy waiting.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::schedule::{Schedule, Sends};

/// Maximum single sleep of the thread, so that it notices within this time when the
/// run was dropped and exits.
const MAX_SLEEP: Duration = Duration::from_millis(100);

/// Starts the timer thread and returns one [`Notify`] per worker, in worker order.
///
/// The thread calls `notify_one` on worker `index`'s entry at each of that worker's
/// intended send times, and exits after the last one or once every returned handle is
/// dropped. If the thread cannot start, the entries are never notified, so workers
/// must also keep a tokio timer for each send.
pub(super) fn start(schedule: &Schedule) -> Arc<[Notify]> {
    let wakers: Arc<[Notify]> = (0..schedule.connections).map(|_| Notify::new()).collect();
    let weak = Arc::downgrade(&wakers);
    let schedule = schedule.clone();
    let spawned = std::thread::Builder::new()
        .name("load-ticker".to_owned())
        .spawn(move || run(&schedule, &weak));
    if let Err(error) = spawned {
        tracing::warn!(%error, "cannot start the load timer thread, so sends use tokio timers and may leave up to about 1 ms late");
    }
    wakers
}

fn run(schedule: &Schedule, wakers: &Weak<[Notify]>) {
    reduce_timer_slack();
    let deadline = schedule.deadline().into_std();

    // Sends of all workers in global time order, merged from each worker's own sends.
    let mut sends: Vec<Sends<'_>> = (0..schedule.connections).map(|index| schedule.sends(index)).collect();
    let mut next: BinaryHeap<Reverse<(Instant, usize)>> = sends
        .iter_mut()
        .enumerate()
        .filter_map(|(index, worker_sends)| Some(Reverse((worker_sends.next()?.intended, index))))
        .collect();

    while let Some(Reverse((intended, index))) = next.pop() {
        // A thread that fell behind stops with the workers instead of catching up.
        if std::time::Instant::now() >= deadline {
            return;
        }
        let when = intended.into_std();
        loop {
            let remaining = when.saturating_duration_since(std::time::Instant::now());
            if remaining.is_zero() {
                break;
            }
            if wakers.strong_count() == 0 {
                return;
            }
            std::thread::sleep(remaining.min(MAX_SLEEP));
        }
        let Some(wakers) = wakers.upgrade() else {
            return;
        };
        wakers[index].notify_one();
        if let Some(send) = sends[index].next() {
            next.push(Reverse((send.intended, index)));
        }
    }
}

/// Lowers the calling thread's timer slack from the Linux default of 50 µs to 1 ns, so
/// that `std::thread::sleep` returns as close to its deadline as the kernel can.
fn reduce_timer_slack() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: PR_SET_TIMERSLACK takes an integer and changes only the calling
        // thread's timer slack. It reads or writes no memory of this process.
        let result = unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
        if result != 0 {
            let error = std::io::Error::last_os_error();
            tracing::debug!(%error, "cannot lower the timer slack of the load timer thread");
        }
    }
}
