//! When a task's runner looks at its Job again, and when it lists events: bookkeeping over
//! instants only, so the cadence is unit-tested without a cluster.
//!
//! The runner looks on a watch notification; every [`SAFETY_POLL`] with requests of its own
//! (the safety net); at once with requests when the Job it had seen left the watch cache
//! (deleted, or a relist racing its creation: a GET settles which); every [`RECHECK`] from
//! the cache while a tolerated condition is being timed (a stuck pod stops changing, so no
//! notification would say its timeout passed); and when events it owes are due.

use std::time::{Duration, Instant};

/// The safety-net poll (the seed's 30 s): a completion is never missed even when watches are
/// cut and history compacted at the same moment.
pub const SAFETY_POLL: Duration = Duration::from_secs(30);
/// How often a task being timed is judged again from the cache (no request).
pub const RECHECK: Duration = Duration::from_secs(1);
/// Events are listed at most this often per task, and only while a pod is Pending or Failed
/// (or no pod exists yet); a new pod's are listed at once. The Job's own events
/// (`FailedCreate`) are listed only once it has had no pod for this long: a pod normally
/// follows within moments, and a task then costs one events list, not two.
pub const EVENTS_EVERY: Duration = Duration::from_secs(5);

/// What the runner does after a wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Look {
    /// Nothing new: wait again.
    Skip,
    /// Judge the task from the watch cache.
    Cache,
    /// GET the Job and LIST its pods, then judge.
    Poll,
}

#[derive(Debug)]
pub struct Pace {
    next_poll: Instant,
    judged_at: Instant,
    seen_job: bool,
    events_at: Option<Instant>,
    /// Whose events were listed last.
    events_of: Vec<String>,
    /// A pending pod changed while events were listed too recently: list them when allowed.
    events_owed: bool,
}

impl Pace {
    pub fn new(now: Instant) -> Pace {
        Pace {
            next_poll: now + SAFETY_POLL,
            judged_at: now,
            seen_job: false,
            // The Job's creation opens the first interval (see `list_events`).
            events_at: Some(now),
            events_of: Vec::new(),
            events_owed: false,
        }
    }

    /// After a wait that a watch notification ended (`woke`) or not. `timing`: a tolerated
    /// condition is being timed; `cached`: the watch cache holds the Job now.
    pub fn look(&mut self, now: Instant, woke: bool, timing: bool, cached: bool) -> Look {
        let lost = self.seen_job && !cached;
        let poll = lost || now >= self.next_poll;
        let events_due = self.events_owed
            && self
                .events_at
                .is_none_or(|t| now.duration_since(t) >= EVENTS_EVERY);
        let recheck = timing && now.duration_since(self.judged_at) >= RECHECK;
        if !(woke || poll || events_due || recheck) {
            return Look::Skip;
        }
        self.judged_at = now;
        if poll {
            self.next_poll = now + SAFETY_POLL;
            Look::Poll
        } else {
            Look::Cache
        }
    }

    /// The Job was observed (from the cache or a poll).
    pub fn saw_job(&mut self) {
        self.seen_job = true;
    }

    /// Whether to list the events of `subjects` now, for a task with a pod `pending`, or
    /// with no pod yet (`job_only`: the subjects are the Job's). Listing is remembered; a
    /// change seen too soon (`woke`) and a Job still without a pod are owed for later.
    pub fn list_events(
        &mut self,
        now: Instant,
        pending: bool,
        job_only: bool,
        subjects: &[String],
        woke: bool,
    ) -> bool {
        if !pending {
            self.events_owed = false;
            return false;
        }
        let waited = self
            .events_at
            .is_none_or(|t| now.duration_since(t) >= EVENTS_EVERY);
        let new_pods = !job_only && subjects != self.events_of.as_slice();
        if waited || new_pods {
            self.events_at = Some(now);
            self.events_owed = false;
            self.events_of = subjects.to_vec();
            return true;
        }
        if woke || job_only {
            self.events_owed = true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn after(start: Instant, ms: u64) -> Instant {
        start + Duration::from_millis(ms)
    }

    #[test]
    fn a_quiet_task_is_polled_every_thirty_seconds_and_judged_on_notifications() {
        let t0 = Instant::now();
        let mut p = Pace::new(t0);
        assert_eq!(p.look(after(t0, 200), false, false, false), Look::Skip);
        assert_eq!(p.look(after(t0, 400), true, false, false), Look::Cache);
        assert_eq!(p.look(after(t0, 29_900), false, false, false), Look::Skip);
        assert_eq!(p.look(after(t0, 30_000), false, false, false), Look::Poll);
        assert_eq!(p.look(after(t0, 30_200), false, false, false), Look::Skip);
        assert_eq!(p.look(after(t0, 60_000), true, false, false), Look::Poll);
    }

    #[test]
    fn a_timed_condition_is_judged_again_every_second_without_news() {
        let t0 = Instant::now();
        let mut p = Pace::new(t0);
        assert_eq!(p.look(after(t0, 200), true, true, true), Look::Cache);
        assert_eq!(p.look(after(t0, 400), false, true, true), Look::Skip);
        assert_eq!(p.look(after(t0, 1_200), false, true, true), Look::Cache);
        assert_eq!(p.look(after(t0, 1_400), false, true, true), Look::Skip);
        // Nothing timed: nothing to look at.
        assert_eq!(p.look(after(t0, 5_000), false, false, true), Look::Skip);
    }

    #[test]
    fn a_job_that_left_the_cache_is_fetched_at_once() {
        let t0 = Instant::now();
        let mut p = Pace::new(t0);
        // Not yet seen: its absence says nothing (the watch may not have delivered it).
        assert_eq!(p.look(after(t0, 200), false, false, false), Look::Skip);
        p.saw_job();
        assert_eq!(p.look(after(t0, 400), false, false, true), Look::Skip);
        assert_eq!(p.look(after(t0, 600), false, false, false), Look::Poll);
    }

    #[test]
    fn events_are_listed_for_new_pods_at_once_and_owed_changes_later() {
        let t0 = Instant::now();
        let mut p = Pace::new(t0);
        let job = vec!["job-uid".to_owned()];
        let pod = vec!["pod-uid".to_owned()];
        // No pod yet: the Job's events wait (a pod normally follows at once).
        assert!(!p.list_events(t0, true, true, &job, true));
        // The pod appears 10 ms later: its events at once.
        assert!(p.list_events(after(t0, 10), true, false, &pod, true));
        // It changes again soon after: owed, not listed.
        assert!(!p.list_events(after(t0, 500), true, false, &pod, true));
        assert_eq!(p.look(after(t0, 4_000), false, false, true), Look::Skip);
        // Owed events bring the runner back once the interval passed, without news.
        assert_eq!(p.look(after(t0, 5_010), false, false, true), Look::Cache);
        assert!(p.list_events(after(t0, 5_010), true, false, &pod, false));
        assert_eq!(p.look(after(t0, 11_000), false, false, true), Look::Skip);
        // A running pod needs no events and owes none.
        assert!(!p.list_events(after(t0, 11_000), false, false, &pod, true));
        assert_eq!(p.look(after(t0, 20_000), false, false, true), Look::Skip);
    }

    #[test]
    fn a_job_without_a_pod_has_its_events_listed_after_the_interval() {
        let t0 = Instant::now();
        let mut p = Pace::new(t0);
        let job = vec!["job-uid".to_owned()];
        assert!(!p.list_events(after(t0, 20), true, true, &job, true));
        // Nothing changes (the controller only records FailedCreate), yet the runner comes
        // back for the Job's events.
        assert_eq!(p.look(after(t0, 3_000), false, false, true), Look::Skip);
        assert_eq!(p.look(after(t0, 5_000), false, false, true), Look::Cache);
        assert!(p.list_events(after(t0, 5_000), true, true, &job, false));
        assert!(!p.list_events(after(t0, 6_000), true, true, &job, false));
    }
}
