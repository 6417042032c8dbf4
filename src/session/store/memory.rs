//! Session families in memory: one process, bounded, timed by tokio's
//! clock.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::{Duration, SystemTime},
};

use tokio::time::Instant;

use super::{Store, Unreachable};
use crate::{
    credential::KeyDigest,
    events::{self, Record, SessionEndReason},
    future::BoxFuture,
    session::{
        family::{Created, Ending, Family, Listed, NewFamily, Next, REMEMBERED, Rotation},
        list::Device,
        secret::{SECRET_BYTES, same},
    },
};

/// How often a full store walks its families to drop the ended ones, at
/// most.
const PURGE_EVERY: Duration = Duration::from_secs(1);

/// At most `capacity` live families, in one map behind one lock, and at
/// most `cap` per subject (an index of each subject's families): a
/// session is touched at sign-in, at each refresh (every few minutes per
/// user) and at sign-out, never on an ordinary request.
///
/// A sign-in past its subject's cap ends the subject's least recently used
/// family. When the store is full, a sign-in first drops the families
/// that ended (at most once a second), then is refused: a live family is
/// never dropped to make room for another subject.
#[derive(Debug)]
pub(crate) struct MemoryStore {
    state: Mutex<State>,
    capacity: usize,
    cap: usize,
    grace: Duration,
}

#[derive(Debug)]
struct State {
    families: HashMap<Box<str>, Entry>,
    /// The families of each subject (ended ones included until dropped).
    subjects: HashMap<Arc<str>, Vec<Box<str>>>,
    /// When a full store may walk its families again.
    next_purge: Option<Instant>,
    /// The next use's place in the order of uses.
    uses: u64,
}

/// One family.
#[derive(Debug)]
struct Entry {
    subject: Arc<str>,
    created: SystemTime,
    absolute: Instant,
    idle: Duration,
    idle_until: Instant,
    /// When it was last used, in the order of uses: the least recently
    /// used family has the lowest.
    used: u64,
    /// The sign-in or the last refresh, on the wall clock.
    last_used: SystemTime,
    device: Device,
    current: KeyDigest,
    /// The last used token, when it was used, and its successor wrapped
    /// under it.
    last: Option<(KeyDigest, Instant, [u8; SECRET_BYTES])>,
    /// Older used tokens, newest first.
    older: VecDeque<(KeyDigest, Instant)>,
}

impl Entry {
    fn ends(&self) -> Instant {
        self.absolute.min(self.idle_until)
    }

    fn family(&self, now: Instant) -> Family {
        Family {
            subject: self.subject.clone(),
            created: self.created,
            remaining: self.ends().saturating_duration_since(now),
        }
    }

    /// When `token` was used, if it is a used token of this family.
    fn used_at(&self, token: &KeyDigest) -> Option<Instant> {
        self.last
            .iter()
            .map(|(digest, at, _)| (digest, *at))
            .chain(self.older.iter().map(|(digest, at)| (digest, *at)))
            .find(|(digest, _)| same(digest, token))
            .map(|(_, at)| at)
    }
}

impl State {
    /// Removes family `sid` and its place in its subject's index.
    fn remove(&mut self, sid: &str) -> Option<Entry> {
        let entry = self.families.remove(sid)?;
        if let Some(sids) = self.subjects.get_mut(&entry.subject) {
            sids.retain(|s| &**s != sid);
            if sids.is_empty() {
                self.subjects.remove(&entry.subject);
            }
        }
        Some(entry)
    }

    /// Removes family `sid`, which ended: reported as expired.
    fn expire(&mut self, sid: &str) {
        if let Some(entry) = self.remove(sid) {
            events::emit(Record::SessionEnded {
                subject: &entry.subject,
                session: sid,
                reason: SessionEndReason::Expired,
            });
        }
    }

    /// Drops the ended families of `subject`; the live ones remain.
    fn expire_subject(&mut self, subject: &str, now: Instant) {
        let ended: Vec<Box<str>> = self
            .subjects
            .get(subject)
            .into_iter()
            .flatten()
            .filter(|sid| self.families.get(&***sid).is_none_or(|e| e.ends() <= now))
            .cloned()
            .collect();
        for sid in ended {
            self.expire(&sid);
        }
    }
}

impl MemoryStore {
    pub(crate) fn new(capacity: usize, cap: usize, grace: Duration) -> Self {
        Self {
            state: Mutex::new(State {
                families: HashMap::new(),
                subjects: HashMap::new(),
                next_purge: None,
                uses: 0,
            }),
            capacity,
            cap: cap.max(1),
            grace,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the maps consistent after each
        // single operation, so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn create_now(&self, family: NewFamily) -> Created {
        let now = Instant::now();
        let mut state = self.state();
        // The subject's own families first: its ended ones go, then its
        // least recently used past the cap, so it never holds more.
        state.expire_subject(&family.subject, now);
        let mut evicted = Vec::new();
        while state
            .subjects
            .get(&family.subject)
            .is_some_and(|sids| sids.len() >= self.cap)
        {
            let oldest = state.subjects.get(&family.subject).and_then(|sids| {
                sids.iter()
                    .filter_map(|sid| state.families.get(sid).map(|e| (e.used, sid)))
                    .min()
                    .map(|(_, sid)| sid.clone())
            });
            let Some(oldest) = oldest else { break };
            state.remove(&oldest);
            evicted.push(oldest);
        }
        if evicted.is_empty() && state.families.len() >= self.capacity {
            if state.next_purge.is_none_or(|at| at <= now) {
                let ended: Vec<Box<str>> = state
                    .families
                    .iter()
                    .filter(|(_, entry)| entry.ends() <= now)
                    .map(|(sid, _)| sid.clone())
                    .collect();
                for sid in ended {
                    state.expire(&sid);
                }
                state.next_purge = Some(now + PURGE_EVERY);
            }
            if state.families.len() >= self.capacity {
                return Created::Full;
            }
        }
        let absolute = now + family.absolute;
        state.uses += 1;
        let used = state.uses;
        state
            .subjects
            .entry(family.subject.clone())
            .or_default()
            .push(family.sid.clone());
        state.families.insert(
            family.sid,
            Entry {
                subject: family.subject,
                created: family.created,
                absolute,
                idle: family.idle,
                idle_until: (now + family.idle).min(absolute),
                used,
                last_used: family.created,
                device: family.device,
                current: family.token,
                last: None,
                older: VecDeque::new(),
            },
        );
        Created::Created { evicted }
    }

    fn rotate_now(&self, sid: &str, token: &KeyDigest, next: Next) -> Rotation {
        let now = Instant::now();
        let mut state = self.state();
        state.uses += 1;
        let used = state.uses;
        let Some(entry) = live(&mut state, sid, now) else {
            return Rotation::Unknown;
        };
        if same(&entry.current, token) {
            if let Some((digest, at, _)) = entry.last.take() {
                entry.older.push_front((digest, at));
                entry.older.truncate(REMEMBERED);
            }
            entry.last = Some((*token, now, next.wrapped));
            entry.current = next.digest;
            entry.idle_until = (now + entry.idle).min(entry.absolute);
            entry.used = used;
            entry.last_used = SystemTime::now();
            return Rotation::Rotated(entry.family(now));
        }
        if let Some((digest, at, wrapped)) = &entry.last
            && same(digest, token)
            && now < *at + self.grace
        {
            return Rotation::Again {
                family: entry.family(now),
                wrapped: *wrapped,
                current: entry.current,
            };
        }
        match entry.used_at(token) {
            None => Rotation::Unknown,
            Some(at) if now < at + self.grace => Rotation::Conflict,
            Some(_) => {
                let subject = entry.subject.clone();
                state.remove(sid);
                Rotation::Reused { subject }
            }
        }
    }

    fn undo_now(&self, sid: &str, token: &KeyDigest, successor: &KeyDigest) {
        let now = Instant::now();
        let mut state = self.state();
        let Some(entry) = live(&mut state, sid, now) else {
            return;
        };
        let rotated_by_us = same(&entry.current, successor)
            && entry
                .last
                .as_ref()
                .is_some_and(|(digest, _, _)| same(digest, token));
        if rotated_by_us {
            entry.current = *token;
            entry.last = None;
        }
    }

    fn end_now(&self, sid: &str, token: &KeyDigest) -> Ending {
        let now = Instant::now();
        let mut state = self.state();
        let Some(entry) = live(&mut state, sid, now) else {
            return Ending::Unknown;
        };
        let reused = if same(&entry.current, token) {
            false
        } else {
            match entry.used_at(token) {
                None => return Ending::Unknown,
                Some(at) => now >= at + self.grace,
            }
        };
        let subject = entry.subject.clone();
        state.remove(sid);
        if reused {
            Ending::Reused { subject }
        } else {
            Ending::Ended { subject }
        }
    }

    fn list_now(&self, subject: &str) -> Vec<Listed> {
        let now = Instant::now();
        let mut state = self.state();
        state.expire_subject(subject, now);
        let Some(sids) = state.subjects.get(subject) else {
            return Vec::new();
        };
        sids.iter()
            .filter_map(|sid| {
                let entry = state.families.get(sid)?;
                Some(Listed {
                    sid: sid.clone(),
                    created: entry.created,
                    last_used: entry.last_used,
                    device: entry.device.clone(),
                })
            })
            .collect()
    }

    fn end_of_now(&self, subject: &str, sid: &str) -> bool {
        let now = Instant::now();
        let mut state = self.state();
        match state.families.get(sid) {
            Some(entry) if &*entry.subject == subject => {
                let live = entry.ends() > now;
                state.remove(sid);
                live
            }
            _ => false,
        }
    }

    fn end_all_now(&self, subject: &str, cutoff: SystemTime) -> Vec<Box<str>> {
        let now = Instant::now();
        let mut state = self.state();
        state.expire_subject(subject, now);
        let ended: Vec<Box<str>> = state
            .subjects
            .get(subject)
            .into_iter()
            .flatten()
            .filter(|sid| {
                state
                    .families
                    .get(&***sid)
                    .is_some_and(|e| e.created <= cutoff)
            })
            .cloned()
            .collect();
        for sid in &ended {
            state.remove(sid);
        }
        ended
    }
}

/// The live family `sid`; an ended one is dropped.
fn live<'a>(state: &'a mut State, sid: &str, now: Instant) -> Option<&'a mut Entry> {
    if state.families.get(sid)?.ends() <= now {
        state.expire(sid);
        return None;
    }
    state.families.get_mut(sid)
}

impl Store for MemoryStore {
    fn create(&self, family: NewFamily) -> BoxFuture<Result<Created, Unreachable>> {
        let created = self.create_now(family);
        Box::pin(std::future::ready(Ok(created)))
    }

    fn rotate(
        &self,
        sid: &str,
        token: KeyDigest,
        next: Next,
    ) -> BoxFuture<Result<Rotation, Unreachable>> {
        let rotation = self.rotate_now(sid, &token, next);
        Box::pin(std::future::ready(Ok(rotation)))
    }

    fn undo(
        &self,
        sid: &str,
        token: KeyDigest,
        successor: KeyDigest,
    ) -> BoxFuture<Result<(), Unreachable>> {
        self.undo_now(sid, &token, &successor);
        Box::pin(std::future::ready(Ok(())))
    }

    fn end(&self, sid: &str, token: KeyDigest) -> BoxFuture<Result<Ending, Unreachable>> {
        let ending = self.end_now(sid, &token);
        Box::pin(std::future::ready(Ok(ending)))
    }

    fn remove(&self, sid: &str) -> BoxFuture<Result<bool, Unreachable>> {
        let now = Instant::now();
        let removed = self
            .state()
            .remove(sid)
            .is_some_and(|entry| entry.ends() > now);
        Box::pin(std::future::ready(Ok(removed)))
    }

    fn list(&self, subject: &str) -> BoxFuture<Result<Vec<Listed>, Unreachable>> {
        let listed = self.list_now(subject);
        Box::pin(std::future::ready(Ok(listed)))
    }

    fn end_of(&self, subject: &str, sid: &str) -> BoxFuture<Result<bool, Unreachable>> {
        let ended = self.end_of_now(subject, sid);
        Box::pin(std::future::ready(Ok(ended)))
    }

    fn end_all(
        &self,
        subject: &str,
        cutoff: SystemTime,
    ) -> BoxFuture<Result<Vec<Box<str>>, Unreachable>> {
        let ended = self.end_all_now(subject, cutoff);
        Box::pin(std::future::ready(Ok(ended)))
    }

    fn families(&self) -> Option<u64> {
        let now = Instant::now();
        let state = self.state();
        Some(state.families.values().filter(|e| e.ends() > now).count() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn family(sid: &str, token: &str) -> NewFamily {
        NewFamily {
            sid: sid.into(),
            subject: sid.into(),
            created: SystemTime::now(),
            token: KeyDigest::of(token),
            absolute: Duration::from_secs(100),
            idle: Duration::from_secs(10),
            device: Device::new(),
        }
    }

    fn next(token: &str) -> Next {
        Next {
            digest: KeyDigest::of(token),
            wrapped: [7; SECRET_BYTES],
        }
    }

    #[tokio::test(start_paused = true)]
    async fn rotation_remembers_used_tokens_for_reuse_detection() {
        let store = MemoryStore::new(10, 32, Duration::from_secs(5));
        assert_eq!(
            store.create_now(family("s", "t0")),
            Created::Created { evicted: vec![] }
        );
        for i in 1..=20 {
            let rotation = store.rotate_now(
                "s",
                &KeyDigest::of(&format!("t{}", i - 1)),
                next(&format!("t{i}")),
            );
            assert!(
                matches!(rotation, Rotation::Rotated(_)),
                "{i}: {rotation:?}"
            );
        }
        // t19 is the last used: within the grace window, the same successor.
        assert!(matches!(
            store.rotate_now("s", &KeyDigest::of("t19"), next("x")),
            Rotation::Again { .. }
        ));
        // t18 within the window, its successor rotated already: conflict.
        assert_eq!(
            store.rotate_now("s", &KeyDigest::of("t18"), next("x")),
            Rotation::Conflict
        );
        // Older than what is remembered: unknown, the family lives on.
        assert_eq!(
            store.rotate_now("s", &KeyDigest::of("t1"), next("x")),
            Rotation::Unknown
        );
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(matches!(
            store.rotate_now("s", &KeyDigest::of("t18"), next("x")),
            Rotation::Reused { .. }
        ));
        assert_eq!(
            store.rotate_now("s", &KeyDigest::of("t20"), next("x")),
            Rotation::Unknown
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_store_drops_ended_families_but_never_a_live_one() {
        let ms = Duration::from_millis;
        let store = MemoryStore::new(2, 32, Duration::ZERO);
        assert_eq!(
            store.create_now(family("a", "a")),
            Created::Created { evicted: vec![] }
        );
        tokio::time::advance(ms(5000)).await;
        assert_eq!(
            store.create_now(family("b", "b")),
            Created::Created { evicted: vec![] }
        );
        tokio::time::advance(ms(4500)).await;
        assert_eq!(store.create_now(family("c", "c")), Created::Full);
        // "a" idled out at 10 s; the next walk waits for its second.
        tokio::time::advance(ms(700)).await;
        assert_eq!(store.create_now(family("c", "c")), Created::Full);
        tokio::time::advance(ms(300)).await;
        assert_eq!(
            store.create_now(family("c", "c")),
            Created::Created { evicted: vec![] }
        );
        assert_eq!(store.families(), Some(2));
    }
}
