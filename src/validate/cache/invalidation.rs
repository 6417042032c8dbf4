//! Invalidations: numbered, remembered for the backend calls in flight, and
//! marked on the subjects of cached identities.
//!
//! Every invalidation gets the next *generation*. A backend call reads the
//! generation before it starts; its outcome may be stored or answered only
//! if no invalidation made since reaches it. Calls in flight are checked
//! against a log of the most recent invalidations; cached outcomes are
//! removed from the cache directly (by secret), marked through their
//! subject's [`SubjectCell`] (by subject), or outdated by the generation of
//! the last `invalidate_all`.

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        Arc, Weak,
        atomic::{AtomicU64, Ordering},
    },
};

use crate::credential::KeyDigest;

/// How many invalidations are remembered for the calls in flight. A call
/// that spans more is treated as invalidated.
const LOG_LEN: usize = 1024;

/// The fewest subjects kept before dead ones are swept.
const MIN_SWEEP_AT: usize = 1024;

/// What one invalidation reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Target {
    /// One secret, in every carrier.
    Secret(KeyDigest),
    /// Every identity of one subject.
    Subject(Box<str>),
    /// Everything.
    All,
}

impl Target {
    fn reaches(&self, digest: &KeyDigest, subject: Option<&str>) -> bool {
        match self {
            Self::Secret(secret) => secret == digest,
            Self::Subject(invalidated) => subject == Some(&**invalidated),
            Self::All => true,
        }
    }
}

/// Shared by every cached outcome of one subject: the generation of the
/// last invalidation of that subject.
#[derive(Debug, Default)]
pub(super) struct SubjectCell {
    invalidated: AtomicU64,
}

impl SubjectCell {
    /// Whether the subject was invalidated after generation `started`.
    pub(super) fn invalidated_after(&self, started: u64) -> bool {
        self.invalidated.load(Ordering::SeqCst) > started
    }
}

/// The invalidation bookkeeping of one cache. Lives behind the cache's
/// lock; the current generation is mirrored in an atomic for lock-free
/// reads.
#[derive(Debug)]
pub(super) struct Invalidations {
    /// The last [`LOG_LEN`] targets, the newest last; the newest has the
    /// current generation, the one before it the generation before, and so on.
    log: VecDeque<Target>,
    /// The cell of every subject that may still have cached outcomes.
    /// Dead cells (no outcome holds them any more) are swept once the map
    /// doubles, so it stays within twice the live subjects.
    subjects: HashMap<Box<str>, Weak<SubjectCell>>,
    sweep_at: usize,
}

impl Default for Invalidations {
    fn default() -> Self {
        Self {
            log: VecDeque::with_capacity(LOG_LEN),
            subjects: HashMap::new(),
            sweep_at: MIN_SWEEP_AT,
        }
    }
}

impl Invalidations {
    /// Remembers the invalidation whose generation is one more than the
    /// last one's.
    pub(super) fn push(&mut self, target: Target) {
        if self.log.len() == LOG_LEN {
            self.log.pop_front();
        }
        self.log.push_back(target);
    }

    /// Whether an invalidation after generation `started` (up to `current`)
    /// reaches an outcome for `digest` whose identity has `subject`.
    /// Invalidations too old to be remembered are assumed to.
    pub(super) fn reach(
        &self,
        started: u64,
        current: u64,
        digest: &KeyDigest,
        subject: Option<&str>,
    ) -> bool {
        let since = current.saturating_sub(started);
        if since == 0 {
            return false;
        }
        match usize::try_from(since) {
            Ok(since) if since <= self.log.len() => self
                .log
                .iter()
                .rev()
                .take(since)
                .any(|target| target.reaches(digest, subject)),
            _ => true,
        }
    }

    /// The cell of `subject`, made on first use.
    pub(super) fn cell(&mut self, subject: &str) -> Arc<SubjectCell> {
        if let Some(cell) = self.subjects.get(subject).and_then(Weak::upgrade) {
            return cell;
        }
        if self.subjects.len() >= self.sweep_at {
            self.subjects.retain(|_, cell| cell.strong_count() > 0);
            self.sweep_at = (2 * self.subjects.len()).max(MIN_SWEEP_AT);
        }
        let cell = Arc::new(SubjectCell::default());
        self.subjects.insert(subject.into(), Arc::downgrade(&cell));
        cell
    }

    /// Marks every cached outcome of `subject` as invalidated at
    /// `generation`. A subject without a live cell has none.
    pub(super) fn mark(&mut self, subject: &str, generation: u64) {
        if let Some(cell) = self.subjects.get(subject).and_then(Weak::upgrade) {
            cell.invalidated.store(generation, Ordering::SeqCst);
        }
    }

    #[cfg(test)]
    pub(super) fn subjects(&self) -> usize {
        self.subjects.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_invalidations_after_the_start_that_reach_the_outcome_count() {
        let alice = KeyDigest::of("alice-1");
        let bob = KeyDigest::of("bob-1");
        let mut log = Invalidations::default();
        log.push(Target::Secret(alice)); // generation 1
        log.push(Target::Subject("bob".into())); // generation 2
        assert!(!log.reach(2, 2, &alice, Some("alice")), "nothing since");
        assert!(log.reach(0, 2, &alice, Some("alice")), "alice's secret");
        assert!(!log.reach(1, 2, &alice, Some("alice")), "only bob since");
        assert!(log.reach(1, 2, &bob, Some("bob")), "bob's subject");
        assert!(!log.reach(1, 2, &bob, None), "an error has no subject");
        log.push(Target::All); // generation 3
        assert!(log.reach(2, 3, &alice, None));
    }

    #[test]
    fn a_call_older_than_the_log_counts_as_invalidated() {
        let mut log = Invalidations::default();
        let unrelated = KeyDigest::of("unrelated");
        for _ in 0..LOG_LEN + 1 {
            log.push(Target::Secret(unrelated));
        }
        let current = LOG_LEN as u64 + 1;
        let alice = KeyDigest::of("alice-1");
        assert!(
            !log.reach(1, current, &alice, None),
            "remembered: unrelated"
        );
        assert!(log.reach(0, current, &alice, None), "forgotten: assumed");
        assert_eq!(log.log.len(), LOG_LEN);
    }

    // R3: the subject map keeps at most twice the live subjects (and a
    // small floor), however many subjects come and go.
    #[test]
    fn dead_subjects_are_swept_so_the_map_stays_bounded() {
        let mut log = Invalidations::default();
        let mut live = Vec::new();
        for i in 0..100_000 {
            let cell = log.cell(&format!("subject-{i}"));
            if i % 1_000 == 0 {
                live.push(cell);
            }
            assert!(log.subjects() <= (2 * live.len()).max(MIN_SWEEP_AT) + 1);
        }
        let kept = log.cell("subject-0");
        assert!(Arc::ptr_eq(&kept, &live[0]), "a live cell is found again");
    }

    #[test]
    fn marking_a_subject_reaches_its_live_cell_only() {
        let mut log = Invalidations::default();
        let alice = log.cell("alice");
        let bob = log.cell("bob");
        log.mark("alice", 7);
        log.mark("carol", 8);
        assert!(alice.invalidated_after(6));
        assert!(!alice.invalidated_after(7));
        assert!(!bob.invalidated_after(0));
    }
}
