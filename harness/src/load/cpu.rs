//! CPU time of the generator process, for the saturation guard.

use std::io;
use std::time::Duration;

/// User plus system CPU time that this process used so far, from `getrusage(RUSAGE_SELF)`.
///
/// It covers every thread of the process. In a test that runs its server in the same
/// process, the server's CPU time therefore counts as the generator's.
pub(super) fn process_cpu_time() -> io::Result<Duration> {
    // SAFETY: `rusage` is plain integers, for which all zero bytes are a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable `rusage` that outlives the call, and
    // RUSAGE_SELF is a valid `who` argument.
    let result = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    if result != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(timeval(usage.ru_utime) + timeval(usage.ru_stime))
}

fn timeval(value: libc::timeval) -> Duration {
    let seconds = u64::try_from(value.tv_sec).unwrap_or(0);
    let micros = u32::try_from(value.tv_usec).unwrap_or(0);
    Duration::from_secs(seconds) + Duration::from_micros(u64::from(micros))
}

/// Number of CPUs the generator can keep busy: the CPUs this process may run on
/// (affinity and cgroup quota, as `std::thread::available_parallelism` reads them),
/// but at most the worker threads of the tokio runtime that runs the load.
///
/// The timer thread of an open-loop run is not counted, because it mostly sleeps.
pub(super) fn capacity() -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, |count| count.get());
    let runtime_threads = tokio::runtime::Handle::try_current().map_or(cpus, |handle| handle.metrics().num_workers());
    cpus.min(runtime_threads).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CPU time of the calling thread, from `CLOCK_THREAD_CPUTIME_ID`.
    fn thread_cpu_time() -> Duration {
        let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: `now` is a valid, writable `timespec` that outlives the call.
        let result = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
        assert_eq!(result, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
        Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
    }

    #[test]
    fn cpu_time_includes_busy_thread() {
        const BUSY: Duration = Duration::from_millis(30);
        let before = process_cpu_time().expect("getrusage");
        let thread_before = thread_cpu_time();
        let mut sum = 0u64;
        while thread_cpu_time() - thread_before < BUSY {
            sum = sum.wrapping_add(std::hint::black_box(1));
        }
        std::hint::black_box(sum);
        let after = process_cpu_time().expect("getrusage");

        // The process's CPU time contains this thread's, which grew by at least BUSY.
        assert!(
            after - before >= BUSY,
            "process CPU time grew by {:?} while this thread used {BUSY:?}",
            after - before
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn capacity_counts_runtime_threads() {
        assert_eq!(capacity(), 1);
    }
}
