//! Fleet bookkeeping of the function gateway: which instances exist, how many requests
//! each serves, which requests wait, and when an idle instance expires.
//!
//! The pool does no I/O. It returns the sandboxes to destroy and hands grants to
//! waiting requests through oneshot channels, so its rules are unit-tested without an
//! engine. Every method takes the current time from the caller for the same reason.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

/// Gateway-local number of an instance, unique for the life of the pool.
pub type InstanceId = u64;

/// Number of a queued request, used to withdraw it when its wait times out.
pub type WaiterId = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolLimits {
    /// Maximum number of instances, starting ones included.
    pub max_instances: usize,
    /// Requests one instance serves at once.
    pub concurrency: usize,
    /// Idle time after which an instance expires.
    pub keep_warm: Duration,
    /// Maximum number of waiting requests.
    pub queue_limit: usize,
}

/// A request's right to be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// A slot on a ready instance.
    Warm(InstanceId),
    /// A reserved place in the fleet: the request starts this new instance itself.
    Cold(InstanceId),
}

/// Decision of [`Pool::admit`] for one request.
#[derive(Debug)]
pub enum Admission {
    Granted(Grant),
    /// The request waits for a grant on `receiver`. The receiver fails when the pool
    /// closes.
    Queued { waiter: WaiterId, receiver: oneshot::Receiver<Grant> },
    /// The queue already contains `queue_limit` requests.
    QueueFull,
    /// The gateway is shutting down.
    Closed,
}

/// Totals since the pool was created.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PoolCounters {
    /// Cold starts granted, including those whose launch later failed.
    pub cold_starts: u64,
    /// Requests granted a slot on a ready instance.
    pub warm_grants: u64,
    /// Requests that had to wait in the queue.
    pub queued: u64,
    /// Requests rejected because the queue was full.
    pub queue_full: u64,
    /// Requests rejected because their wait in the queue timed out.
    pub queue_timeouts: u64,
    /// Cold starts whose launch failed.
    pub launch_failures: u64,
    /// Instances removed after their keep-warm window.
    pub expired: u64,
}

struct Waiter {
    id: WaiterId,
    sender: oneshot::Sender<Grant>,
}

struct Entry<S> {
    /// `None` while the instance starts.
    sandbox: Option<S>,
    in_flight: usize,
    /// When the instance last became idle. Only meaningful while `in_flight` is 0.
    idle_since: Instant,
    created: Instant,
    /// Set after a forwarding failure: the instance takes no new requests and is removed
    /// once its last request ends.
    broken: bool,
}

impl<S> Entry<S> {
    fn is_ready(&self) -> bool {
        self.sandbox.is_some() && !self.broken
    }
}

/// The fleet of one gateway. `S` is the sandbox handle: a container in the gateway, a
/// plain value in tests.
pub struct Pool<S> {
    limits: PoolLimits,
    entries: BTreeMap<InstanceId, Entry<S>>,
    waiters: VecDeque<Waiter>,
    next_instance: InstanceId,
    next_waiter: WaiterId,
    /// Instance-seconds of instances already removed.
    retired_seconds: f64,
    peak: usize,
    counters: PoolCounters,
    closed: bool,
}

impl<S: Clone> Pool<S> {
    pub fn new(limits: PoolLimits) -> Pool<S> {
        Pool {
            limits,
            entries: BTreeMap::new(),
            waiters: VecDeque::new(),
            next_instance: 0,
            next_waiter: 0,
            retired_seconds: 0.0,
            peak: 0,
            counters: PoolCounters::default(),
            closed: false,
        }
    }

    /// Admits a request that arrived at `now`: a slot on a ready instance, else a cold
    /// start while the fleet has room, else a place in the queue, else a rejection.
    /// Also returns the sandboxes whose keep-warm window ended, for the caller to destroy.
    pub fn admit(&mut self, now: Instant) -> (Admission, Vec<S>) {
        let expired = self.reap(now);
        if self.closed {
            return (Admission::Closed, expired);
        }
        if let Some(id) = self.free_slot() {
            let entry = self.entries.get_mut(&id).expect("free_slot returns a live id");
            entry.in_flight += 1;
            self.counters.warm_grants += 1;
            return (Admission::Granted(Grant::Warm(id)), expired);
        }
        if self.entries.len() < self.limits.max_instances {
            let id = self.reserve(now);
            self.counters.cold_starts += 1;
            return (Admission::Granted(Grant::Cold(id)), expired);
        }
        // Requests whose client went away no longer count against the limit.
        self.waiters.retain(|waiter| !waiter.sender.is_closed());
        if self.waiters.len() >= self.limits.queue_limit {
            self.counters.queue_full += 1;
            return (Admission::QueueFull, expired);
        }
        let (sender, receiver) = oneshot::channel();
        let waiter = self.next_waiter;
        self.next_waiter += 1;
        self.waiters.push_back(Waiter { id: waiter, sender });
        self.counters.queued += 1;
        (Admission::Queued { waiter, receiver }, expired)
    }

    /// Records that the cold start of `id` produced `sandbox`, and hands the instance's
    /// spare slots to waiting requests. Returns the sandbox back when the pool no longer
    /// contains `id` because it closed, so the caller destroys it.
    pub fn launched(&mut self, id: InstanceId, sandbox: S) -> Result<(), S> {
        let Some(entry) = self.entries.get_mut(&id) else {
            return Err(sandbox);
        };
        entry.sandbox = Some(sandbox);
        self.hand_out_slots(id);
        Ok(())
    }

    /// Removes the reservation of a failed cold start, then lets waiting requests use the
    /// freed place in the fleet.
    pub fn launch_failed(&mut self, id: InstanceId, now: Instant) {
        if let Some(entry) = self.entries.remove(&id) {
            self.retired_seconds += now.saturating_duration_since(entry.created).as_secs_f64();
            self.counters.launch_failures += 1;
        }
        self.admit_waiters(now);
    }

    /// Ends one request on `id`. The slot goes to the first waiting request, or the
    /// instance turns idle. Returns the sandbox of a broken instance whose last request
    /// ended, for the caller to destroy.
    pub fn release(&mut self, id: InstanceId, now: Instant) -> Vec<S> {
        let Some(entry) = self.entries.get_mut(&id) else {
            return Vec::new();
        };
        entry.in_flight = entry.in_flight.saturating_sub(1);
        if entry.broken {
            if entry.in_flight > 0 {
                return Vec::new();
            }
            let removed = self.remove(id, now);
            self.admit_waiters(now);
            return removed.into_iter().collect();
        }
        if entry.in_flight == 0 {
            entry.idle_since = now;
        }
        self.hand_out_slots(id);
        Vec::new()
    }

    /// Takes `id` out of service after a forwarding failure. The instance is removed by
    /// [`Pool::release`] when its last request ends.
    pub fn mark_broken(&mut self, id: InstanceId) {
        if let Some(entry) = self.entries.get_mut(&id) {
            entry.broken = true;
        }
    }

    /// Withdraws a waiting request whose wait timed out and counts the timeout. Returns
    /// false when the request is no longer queued because a grant was already sent to it.
    pub fn cancel_waiter(&mut self, waiter: WaiterId) -> bool {
        let Some(position) = self.waiters.iter().position(|queued| queued.id == waiter) else {
            return false;
        };
        self.waiters.remove(position);
        self.counters.queue_timeouts += 1;
        true
    }

    /// Withdraws a waiting request whose client went away, without counting a timeout.
    /// Returns false when the request is no longer queued.
    pub fn withdraw_waiter(&mut self, waiter: WaiterId) -> bool {
        let Some(position) = self.waiters.iter().position(|queued| queued.id == waiter) else {
            return false;
        };
        self.waiters.remove(position);
        true
    }

    /// Gives back a grant that its request never used, because the client went away
    /// after the grant was sent. Returns sandboxes to destroy, as [`Pool::release`] does.
    pub fn abandon(&mut self, grant: Grant, now: Instant) -> Vec<S> {
        match grant {
            Grant::Warm(id) => self.release(id, now),
            Grant::Cold(id) => {
                if self.entries.get(&id).is_some_and(|entry| entry.sandbox.is_none()) {
                    self.entries.remove(&id);
                    self.counters.cold_starts = self.counters.cold_starts.saturating_sub(1);
                }
                self.admit_waiters(now);
                Vec::new()
            }
        }
    }

    /// Removes every ready instance whose keep-warm window has ended and returns their
    /// sandboxes. An instance expires when it has been idle for `keep_warm` or longer.
    pub fn reap(&mut self, now: Instant) -> Vec<S> {
        let keep_warm = self.limits.keep_warm;
        let expired: Vec<InstanceId> = self
            .entries
            .iter()
            .filter(|(_, entry)| {
                entry.sandbox.is_some()
                    && entry.in_flight == 0
                    && now.saturating_duration_since(entry.idle_since) >= keep_warm
            })
            .map(|(&id, _)| id)
            .collect();
        let mut sandboxes = Vec::new();
        for id in expired {
            sandboxes.extend(self.remove(id, now));
            self.counters.expired += 1;
        }
        sandboxes
    }

    /// Closes the pool: rejects every waiting request, removes every instance, and
    /// returns the sandboxes of ready instances. Instances still starting are dropped
    /// from the pool, so their [`Pool::launched`] returns the sandbox for destruction.
    pub fn close(&mut self, now: Instant) -> Vec<S> {
        self.closed = true;
        // Dropping the senders fails every waiting receiver.
        self.waiters.clear();
        let ids: Vec<InstanceId> = self.entries.keys().copied().collect();
        ids.into_iter().filter_map(|id| self.remove(id, now)).collect()
    }

    /// Returns the sandbox of a ready instance.
    pub fn sandbox(&self, id: InstanceId) -> Option<S> {
        self.entries.get(&id).and_then(|entry| entry.sandbox.clone())
    }

    /// Returns the sandboxes of every ready instance, busy or idle.
    pub fn sandboxes(&self) -> Vec<S> {
        self.entries.values().filter_map(|entry| entry.sandbox.clone()).collect()
    }

    /// Instances in the fleet: starting, busy or idle. A removed instance whose
    /// container is still being stopped no longer counts.
    pub fn instance_count(&self) -> usize {
        self.entries.len()
    }

    /// Requests waiting in the queue, including any whose client has gone.
    pub fn queue_length(&self) -> usize {
        self.waiters.len()
    }

    pub fn peak_instances(&self) -> usize {
        self.peak
    }

    pub fn counters(&self) -> PoolCounters {
        self.counters
    }

    /// Sum over all instances of the time from the start of their cold start until
    /// their removal, or until `now` for live ones, in seconds.
    pub fn instance_seconds(&self, now: Instant) -> f64 {
        let live: f64 = self
            .entries
            .values()
            .map(|entry| now.saturating_duration_since(entry.created).as_secs_f64())
            .sum();
        self.retired_seconds + live
    }

    /// The ready instance with a free slot that should take the next request: the
    /// busiest, then the most recently used, so that spare instances go idle and expire.
    fn free_slot(&self) -> Option<InstanceId> {
        self.entries
            .iter()
            .filter(|(_, entry)| entry.is_ready() && entry.in_flight < self.limits.concurrency)
            .max_by_key(|(&id, entry)| (entry.in_flight, entry.idle_since, std::cmp::Reverse(id)))
            .map(|(&id, _)| id)
    }

    fn reserve(&mut self, now: Instant) -> InstanceId {
        let id = self.next_instance;
        self.next_instance += 1;
        self.entries.insert(
            id,
            Entry { sandbox: None, in_flight: 1, idle_since: now, created: now, broken: false },
        );
        self.peak = self.peak.max(self.entries.len());
        id
    }

    fn remove(&mut self, id: InstanceId, now: Instant) -> Option<S> {
        let entry = self.entries.remove(&id)?;
        self.retired_seconds += now.saturating_duration_since(entry.created).as_secs_f64();
        entry.sandbox
    }

    /// Hands the free slots of ready instance `id` to waiting requests in arrival order.
    fn hand_out_slots(&mut self, id: InstanceId) {
        loop {
            let Some(entry) = self.entries.get(&id) else { return };
            if !entry.is_ready() || entry.in_flight >= self.limits.concurrency {
                return;
            }
            let Some(waiter) = self.waiters.pop_front() else { return };
            // A closed receiver means the client went away; the slot goes to the next one.
            if waiter.sender.send(Grant::Warm(id)).is_ok() {
                let entry = self.entries.get_mut(&id).expect("checked above");
                entry.in_flight += 1;
                self.counters.warm_grants += 1;
            }
        }
    }

    /// Grants cold starts to waiting requests while the fleet has room.
    fn admit_waiters(&mut self, now: Instant) {
        while !self.closed && self.entries.len() < self.limits.max_instances {
            let Some(waiter) = self.waiters.pop_front() else { return };
            let id = self.reserve(now);
            if waiter.sender.send(Grant::Cold(id)).is_ok() {
                self.counters.cold_starts += 1;
            } else {
                // No request will start this instance, so its reservation is removed uncounted.
                self.entries.remove(&id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEEP_WARM: Duration = Duration::from_secs(2);

    fn pool(max_instances: usize, concurrency: usize, queue_limit: usize) -> Pool<&'static str> {
        Pool::new(PoolLimits { max_instances, concurrency, keep_warm: KEEP_WARM, queue_limit })
    }

    fn granted(admission: (Admission, Vec<&'static str>)) -> Grant {
        match admission.0 {
            Admission::Granted(grant) => grant,
            other => panic!("expected a grant, got {other:?}"),
        }
    }

    fn queued(admission: (Admission, Vec<&'static str>)) -> (WaiterId, oneshot::Receiver<Grant>) {
        match admission.0 {
            Admission::Queued { waiter, receiver } => (waiter, receiver),
            other => panic!("expected a queued request, got {other:?}"),
        }
    }

    #[test]
    fn first_request_cold_second_warm() {
        let mut pool = pool(2, 1, 4);
        let start = Instant::now();
        let Grant::Cold(id) = granted(pool.admit(start)) else { panic!("first request must start cold") };
        assert_eq!(pool.instance_count(), 1);
        pool.launched(id, "a").unwrap();
        pool.release(id, start + Duration::from_millis(300));

        let second = granted(pool.admit(start + Duration::from_millis(400)));
        assert_eq!(second, Grant::Warm(id));
        assert_eq!(pool.counters().cold_starts, 1);
        assert_eq!(pool.counters().warm_grants, 1);
    }

    #[test]
    fn busy_instance_fans_out_to_max() {
        let mut pool = pool(2, 1, 4);
        let now = Instant::now();
        let Grant::Cold(a) = granted(pool.admit(now)) else { panic!() };
        pool.launched(a, "a").unwrap();
        // `a` is still busy with its first request, so the next request starts cold.
        let Grant::Cold(b) = granted(pool.admit(now)) else { panic!("expected a second cold start") };
        assert_ne!(a, b);
        assert_eq!(pool.instance_count(), 2);
        assert_eq!(pool.peak_instances(), 2);
        let (_, _receiver) = queued(pool.admit(now));
        assert_eq!(pool.instance_count(), 2, "max_instances bounds the fleet");
    }

    #[test]
    fn concurrency_shares_one_instance() {
        let mut pool = pool(1, 3, 4);
        let now = Instant::now();
        let Grant::Cold(id) = granted(pool.admit(now)) else { panic!() };
        pool.launched(id, "a").unwrap();
        assert_eq!(granted(pool.admit(now)), Grant::Warm(id));
        assert_eq!(granted(pool.admit(now)), Grant::Warm(id));
        let (_, _receiver) = queued(pool.admit(now));
        assert_eq!(pool.instance_count(), 1);
    }

    #[test]
    fn waiter_gets_released_slot() {
        let mut pool = pool(1, 1, 4);
        let now = Instant::now();
        let Grant::Cold(id) = granted(pool.admit(now)) else { panic!() };
        pool.launched(id, "a").unwrap();
        let (_, mut receiver) = queued(pool.admit(now));
        assert!(receiver.try_recv().is_err(), "no grant before the release");

        pool.release(id, now);
        assert_eq!(receiver.try_recv().unwrap(), Grant::Warm(id));
        assert_eq!(pool.counters().queued, 1);
    }

    #[test]
    fn waiters_share_spare_slots_after_launch() {
        let mut pool = pool(1, 2, 4);
        let now = Instant::now();
        let Grant::Cold(id) = granted(pool.admit(now)) else { panic!() };
        // While the only instance starts, the fleet is full, so the next request waits.
        let (_, mut receiver) = queued(pool.admit(now));
        pool.launched(id, "a").unwrap();
        assert_eq!(receiver.try_recv().unwrap(), Grant::Warm(id));
    }

    #[test]
    fn queue_limit_rejects_with_count() {
        let mut pool = pool(1, 1, 2);
        let now = Instant::now();
        let _cold = granted(pool.admit(now));
        let (_, _first) = queued(pool.admit(now));
        let (_, _second) = queued(pool.admit(now));
        for _ in 0..3 {
            assert!(matches!(pool.admit(now).0, Admission::QueueFull));
        }
        assert_eq!(pool.counters().queue_full, 3);
        assert_eq!(pool.queue_length(), 2);
    }

    #[test]
    fn zero_queue_limit_rejects_at_once() {
        let mut pool = pool(1, 1, 0);
        let now = Instant::now();
        let _cold = granted(pool.admit(now));
        assert!(matches!(pool.admit(now).0, Admission::QueueFull));
        assert_eq!(pool.counters().queue_full, 1);
    }

    #[test]
    fn departed_waiter_frees_queue_place() {
        let mut pool = pool(1, 1, 1);
        let now = Instant::now();
        let _cold = granted(pool.admit(now));
        let (_, receiver) = queued(pool.admit(now));
        drop(receiver);
        let (_, _receiver) = queued(pool.admit(now));
        assert_eq!(pool.counters().queue_full, 0);
    }

    #[test]
    fn cancelled_waiter_counts_timeout() {
        let mut pool = pool(1, 1, 4);
        let now = Instant::now();
        let Grant::Cold(id) = granted(pool.admit(now)) else { panic!() };
        pool.launched(id, "a").unwrap();
        let (waiter, _receiver) = queued(pool.admit(now));
        assert!(pool.cancel_waiter(waiter));
        assert_eq!(pool.counters().queue_timeouts, 1);
        assert!(!pool.cancel_waiter(waiter), "a waiter is withdrawn once");
        assert_eq!(pool.counters().queue_timeouts, 1);
    }

    #[test]
    fn cancel_after_grant_returns_false() {
        let mut pool = pool(1, 1, 4);
        let now = Instant::now();
        let Grant::Cold(id) = granted(pool.admit(now)) else { panic!() };
        pool.launched(id, "a").unwrap();
        let (waiter, mut receiver) = queued(pool.admit(now));
        pool.release(id, now);
        assert!(!pool.cancel_waiter(waiter), "the grant was sent before the timeout");
        assert_eq!(receiver.try_recv().unwrap(), Grant::Warm(id));
        assert_eq!(pool.counters().queue_timeouts, 0);
    }

    #[test]
    fn keep_warm_expiry_is_exact() {
        let mut pool = pool(2, 1, 4);
        let start = Instant::now();
        let Grant::Cold(id) = granted(pool.admit(start)) else { panic!() };
        pool.launched(id, "a").unwrap();
        pool.release(id, start);

        let just_before = start + KEEP_WARM - Duration::from_millis(1);
        assert!(pool.reap(just_before).is_empty());
        assert_eq!(pool.instance_count(), 1);

        assert_eq!(pool.reap(start + KEEP_WARM), vec!["a"]);
        assert_eq!(pool.instance_count(), 0);
        assert_eq!(pool.counters().expired, 1);
    }

    #[test]
    fn request_after_window_starts_cold() {
        let mut pool = pool(2, 1, 4);
        let start = Instant::now();
        let Grant::Cold(first) = granted(pool.admit(start)) else { panic!() };
        pool.launched(first, "a").unwrap();
        pool.release(first, start);

        let later = start + KEEP_WARM + Duration::from_millis(1);
        let (admission, expired) = pool.admit(later);
        assert_eq!(expired, vec!["a"], "admit destroys the expired instance itself");
        assert!(matches!(admission, Admission::Granted(Grant::Cold(id)) if id != first));
    }

    #[test]
    fn busy_instance_never_expires() {
        let mut pool = pool(1, 1, 4);
        let start = Instant::now();
        let Grant::Cold(id) = granted(pool.admit(start)) else { panic!() };
        pool.launched(id, "a").unwrap();
        assert!(pool.reap(start + KEEP_WARM * 10).is_empty());
        pool.release(id, start + KEEP_WARM * 10);
        assert!(pool.reap(start + KEEP_WARM * 11 - Duration::from_millis(1)).is_empty());
    }

    #[test]
    fn starting_instance_never_expires() {
        let mut pool = pool(1, 1, 4);
        let start = Instant::now();
        let _cold = granted(pool.admit(start));
        assert!(pool.reap(start + KEEP_WARM * 10).is_empty());
        assert_eq!(pool.instance_count(), 1);
    }

    #[test]
    fn most_recent_instance_reused() {
        let mut pool = pool(2, 1, 4);
        let start = Instant::now();
        let Grant::Cold(a) = granted(pool.admit(start)) else { panic!() };
        let Grant::Cold(b) = granted(pool.admit(start)) else { panic!() };
        pool.launched(a, "a").unwrap();
        pool.launched(b, "b").unwrap();
        pool.release(a, start + Duration::from_millis(10));
        pool.release(b, start + Duration::from_millis(20));
        assert_eq!(granted(pool.admit(start + Duration::from_millis(30))), Grant::Warm(b));
    }

    #[test]
    fn failed_launch_frees_place_for_waiter() {
        let mut pool = pool(1, 1, 4);
        let now = Instant::now();
        let Grant::Cold(id) = granted(pool.admit(now)) else { panic!() };
        let (_, mut receiver) = queued(pool.admit(now));
        pool.launch_failed(id, now);
        let Grant::Cold(retry) = receiver.try_recv().unwrap() else { panic!("the waiter starts its own instance") };
        assert_ne!(retry, id);
        assert_eq!(pool.counters().launch_failures, 1);
        assert_eq!(pool.counters().cold_starts, 2);
        assert_eq!(pool.instance_count(), 1);
    }

    #[test]
    fn broken_instance_removed_after_last_request() {
        let mut pool = pool(1, 2, 4);
        let now = Instant::now();
        let Grant::Cold(id) = granted(pool.admit(now)) else { panic!() };
        pool.launched(id, "a").unwrap();
        assert_eq!(granted(pool.admit(now)), Grant::Warm(id));
        pool.mark_broken(id);
        assert!(pool.release(id, now).is_empty(), "one request still runs");
        assert_eq!(pool.release(id, now), vec!["a"]);
        assert_eq!(pool.instance_count(), 0);
        assert!(matches!(granted(pool.admit(now)), Grant::Cold(_)));
    }

    #[test]
    fn close_rejects_and_drains() {
        let mut pool = pool(2, 1, 4);
        let now = Instant::now();
        let Grant::Cold(a) = granted(pool.admit(now)) else { panic!() };
        let Grant::Cold(b) = granted(pool.admit(now)) else { panic!() };
        pool.launched(a, "a").unwrap();
        let (_, mut receiver) = queued(pool.admit(now));

        assert_eq!(pool.close(now), vec!["a"]);
        assert!(receiver.try_recv().is_err(), "waiters are rejected");
        assert_eq!(pool.launched(b, "b"), Err("b"), "a late launch is handed back for destruction");
        assert!(matches!(pool.admit(now).0, Admission::Closed));
        assert_eq!(pool.instance_count(), 0);
    }

    #[test]
    fn withdrawn_waiter_not_counted() {
        let mut pool = pool(1, 1, 4);
        let now = Instant::now();
        let _cold = granted(pool.admit(now));
        let (waiter, _receiver) = queued(pool.admit(now));
        assert!(pool.withdraw_waiter(waiter));
        assert_eq!(pool.queue_length(), 0);
        assert_eq!(pool.counters().queue_timeouts, 0);
    }

    #[test]
    fn abandoned_grants_given_back() {
        let mut pool = pool(1, 1, 4);
        let now = Instant::now();
        let Grant::Cold(id) = granted(pool.admit(now)) else { panic!() };
        pool.launched(id, "a").unwrap();
        let (_, mut receiver) = queued(pool.admit(now));
        pool.release(id, now);
        let grant = receiver.try_recv().unwrap();
        assert!(pool.abandon(grant, now).is_empty());
        assert_eq!(granted(pool.admit(now)), Grant::Warm(id), "the slot is free again");

        let mut empty = self::pool(1, 1, 4);
        let Grant::Cold(first) = granted(empty.admit(now)) else { panic!() };
        let (_, mut receiver) = queued(empty.admit(now));
        empty.launch_failed(first, now);
        let cold = receiver.try_recv().unwrap();
        empty.abandon(cold, now);
        assert_eq!(empty.instance_count(), 0, "an unused reservation leaves no instance");
        assert_eq!(empty.counters().cold_starts, 1, "only the failed launch counts");
    }

    #[test]
    fn instance_seconds_sum_lifetimes() {
        let mut pool = pool(2, 1, 4);
        let start = Instant::now();
        let Grant::Cold(a) = granted(pool.admit(start)) else { panic!() };
        pool.launched(a, "a").unwrap();
        pool.release(a, start + Duration::from_secs(1));
        // `a` lives from `start` until its expiry 2 s after its last request.
        pool.reap(start + Duration::from_secs(3));
        let Grant::Cold(b) = granted(pool.admit(start + Duration::from_secs(4))) else { panic!() };
        pool.launched(b, "b").unwrap();
        let seconds = pool.instance_seconds(start + Duration::from_secs(5));
        assert!((seconds - 4.0).abs() < 1e-9, "{seconds}");
    }
}
