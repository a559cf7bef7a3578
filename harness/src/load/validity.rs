//! The saturation guard: checks that a run measured the instance, not the generator.
//!
//! A run is invalid when any of these holds:
//!
//! - **Rate** (open loop only): `achieved_rps < 0.95 × scheduled_rps`, so fewer than 95%
//!   of the requests the schedule asked for completed per second of the window.
//!   `scheduled_rps` is used instead of `target_rps` because Poisson arrivals schedule a
//!   random number of requests around the target.
//! - **Unsent** (open loop only): more than 5% of the scheduled requests never left,
//!   because their worker's connection was still busy when the window ended. Each
//!   connection carries one request at a time, so a rate above
//!   `connections / latency` cannot be sent.
//! - **Generator lag** (open loop only): more than 5% of the sends left more than 10 ms
//!   after their intended time although their worker was idle before it, so the
//!   timer thread or the CPU made the generator late. Sends delayed because a slow
//!   response still held the connection do not count here, because the corrected
//!   latency already accounts for them, as it does for a stall of the instance. The
//!   limit is 10 ms rather than the 1 ms of `late_sends`, because waking an idle worker
//!   through the timer thread is not instant. In debug test runs on a shared 2-CPU
//!   machine it took a median of 0.1 to 0.3 ms, with a tail above 1 ms. A burst of responses, such as the backlog after
//!   a stall, also delays some wake-ups by a few milliseconds without the generator
//!   falling behind. A generator that is really behind soon exceeds 10 ms, because its
//!   lag grows with every send it cannot keep up with.
//! - **CPU**: the generator process used more than 90% of the CPU time available to it
//!   over the run, see [`LoadReport::generator_cpu_share`].

use std::time::Duration;

use super::report::LoadReport;

/// Minimum share of the scheduled rate that a valid open-loop run achieves.
pub const MIN_RATE_SHARE: f64 = 0.95;
/// Maximum share of scheduled requests that a valid open-loop run leaves unsent.
pub const MAX_UNSENT_SHARE: f64 = 0.05;
/// Delay of a send by the generator itself above which the send counts in
/// [`LoadReport::generator_late_sends`].
pub const GENERATOR_LAG_LIMIT: Duration = Duration::from_millis(10);
/// Maximum share of sends that the generator itself may delay by more than
/// [`GENERATOR_LAG_LIMIT`] in a valid run.
pub const MAX_GENERATOR_LATE_SHARE: f64 = 0.05;
/// Maximum share of its available CPU time that the generator may use in a valid run.
pub const MAX_CPU_SHARE: f64 = 0.90;

/// Returns one sentence per failed check, or nothing for a valid run.
pub(super) fn invalid_reasons(report: &LoadReport) -> Vec<String> {
    let mut reasons = Vec::new();
    if report.workload.arrival.is_open_loop() {
        check_rate(report, &mut reasons);
        check_unsent(report, &mut reasons);
        check_generator_lag(report, &mut reasons);
    }
    check_cpu(report, &mut reasons);
    reasons
}

fn check_rate(report: &LoadReport, reasons: &mut Vec<String>) {
    if report.achieved_rps >= MIN_RATE_SHARE * report.scheduled_rps {
        return;
    }
    reasons.push(format!(
        "achieved {:.1} req/s, {:.1}% of the {:.1} req/s scheduled, below the {:.0}% minimum \
         ({} scheduled, {} sent, {} completed)",
        report.achieved_rps,
        percent(report.achieved_rps, report.scheduled_rps),
        report.scheduled_rps,
        MIN_RATE_SHARE * 100.0,
        report.scheduled,
        report.sent,
        report.completed,
    ));
}

fn check_unsent(report: &LoadReport, reasons: &mut Vec<String>) {
    if report.unsent as f64 <= MAX_UNSENT_SHARE * report.scheduled as f64 {
        return;
    }
    reasons.push(format!(
        "{} of {} scheduled requests ({:.1}%) were never sent because their connection was \
         still busy when the window ended; each connection carries one request at a time, \
         so use more connections than rate × latency",
        report.unsent,
        report.scheduled,
        percent(report.unsent as f64, report.scheduled as f64),
    ));
}

fn check_generator_lag(report: &LoadReport, reasons: &mut Vec<String>) {
    if report.generator_late_sends as f64 <= MAX_GENERATOR_LATE_SHARE * report.sent as f64 {
        return;
    }
    reasons.push(format!(
        "{} of {} sends ({:.1}%) left more than {:?} after their intended time while their \
         connection was idle, so the generator itself fell behind its schedule",
        report.generator_late_sends,
        report.sent,
        percent(report.generator_late_sends as f64, report.sent as f64),
        GENERATOR_LAG_LIMIT,
    ));
}

fn check_cpu(report: &LoadReport, reasons: &mut Vec<String>) {
    let share = report.generator_cpu_share();
    if share <= MAX_CPU_SHARE {
        return;
    }
    reasons.push(format!(
        "the generator used {:.2} s of CPU time in {:.2} s, {:.1}% of its {} CPU(s), above \
         the {:.0}% limit, so it may have limited the rate or delayed sends",
        report.generator_cpu.as_secs_f64(),
        report.run_time.as_secs_f64(),
        share * 100.0,
        report.cpu_capacity,
        MAX_CPU_SHARE * 100.0,
    ));
}

fn percent(part: f64, whole: f64) -> f64 {
    if whole > 0.0 {
        part * 100.0 / whole
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::{Arrival, Workload};

    /// An open-loop report of 1000 scheduled requests in 10 s, all sent and completed,
    /// with the generator at 10% CPU.
    fn clean_report() -> LoadReport {
        let mut report = LoadReport::empty(Workload::default(), 100.0);
        report.scheduled = 1000;
        report.scheduled_rps = 100.0;
        report.sent = 1000;
        report.completed = 1000;
        report.achieved_rps = 99.9;
        report.run_time = Duration::from_secs(10);
        report.generator_cpu = Duration::from_secs(2);
        report.cpu_capacity = 2;
        report
    }

    #[test]
    fn clean_run_is_valid() {
        assert_eq!(invalid_reasons(&clean_report()), Vec::<String>::new());
    }

    #[test]
    fn low_rate_is_invalid() {
        let mut report = clean_report();
        report.achieved_rps = 94.9;

        let reasons = invalid_reasons(&report);

        assert_eq!(reasons.len(), 1, "{reasons:?}");
        assert!(reasons[0].starts_with("achieved 94.9 req/s"), "{reasons:?}");
    }

    #[test]
    fn rate_at_limit_is_valid() {
        let mut report = clean_report();
        report.achieved_rps = 95.0;

        assert_eq!(invalid_reasons(&report), Vec::<String>::new());
    }

    #[test]
    fn unsent_share_is_invalid() {
        let mut report = clean_report();
        report.sent = 949;
        report.unsent = 51;

        let reasons = invalid_reasons(&report);

        assert_eq!(reasons.len(), 1, "{reasons:?}");
        assert!(
            reasons[0].starts_with("51 of 1000 scheduled requests (5.1%) were never sent"),
            "{reasons:?}"
        );
    }

    #[test]
    fn generator_lag_is_invalid() {
        let mut report = clean_report();
        report.generator_late_sends = 51;

        let reasons = invalid_reasons(&report);

        assert_eq!(reasons.len(), 1, "{reasons:?}");
        assert!(reasons[0].starts_with("51 of 1000 sends (5.1%)"), "{reasons:?}");
    }

    #[test]
    fn late_sends_of_busy_connections_are_valid() {
        let mut report = clean_report();
        report.late_sends = 200;

        assert_eq!(invalid_reasons(&report), Vec::<String>::new());
    }

    #[test]
    fn cpu_saturation_is_invalid() {
        let mut report = clean_report();
        // 18.2 s of CPU time in 10 s on 2 CPUs is 91%.
        report.generator_cpu = Duration::from_millis(18_200);

        let reasons = invalid_reasons(&report);

        assert_eq!(reasons.len(), 1, "{reasons:?}");
        assert!(
            reasons[0].starts_with("the generator used 18.20 s of CPU time in 10.00 s, 91.0%"),
            "{reasons:?}"
        );
    }

    #[test]
    fn closed_loop_checks_only_cpu() {
        let mut report = clean_report();
        report.workload.arrival = Arrival::Closed;
        report.target_rps = 0.0;
        report.scheduled_rps = 0.0;
        report.generator_late_sends = 500;
        report.unsent = 500;
        report.achieved_rps = 1.0;
        assert_eq!(invalid_reasons(&report), Vec::<String>::new());

        report.generator_cpu = Duration::from_secs(19);
        assert_eq!(invalid_reasons(&report).len(), 1);
    }
}
