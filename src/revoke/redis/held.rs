//! What this replica holds, as Redis members: written again when Redis
//! comes back empty.

use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
};

use tokio::time::Instant;

/// Every live revocation the list holds (made here, received, read at a
/// catch-up), by its member, with its end: at most the list's capacity.
#[derive(Debug)]
pub(super) struct Held {
    members: Mutex<HashMap<String, Instant>>,
    capacity: usize,
}

impl Held {
    pub(super) fn new(capacity: u64) -> Self {
        Self {
            members: Mutex::new(HashMap::new()),
            capacity: usize::try_from(capacity).unwrap_or(usize::MAX),
        }
    }

    /// Remembers `member` until `until` (the later of two ends).
    pub(super) fn record(&self, member: &str, until: Instant) {
        let mut members = self.members.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(held) = members.get_mut(member) {
            *held = (*held).max(until);
            return;
        }
        if members.len() >= self.capacity {
            let now = Instant::now();
            members.retain(|_, until| *until > now);
            if members.len() >= self.capacity {
                // The table refuses it too.
                return;
            }
        }
        members.insert(member.to_owned(), until);
    }

    /// The live members and the milliseconds each has left.
    pub(super) fn live(&self) -> Vec<(String, u64)> {
        let now = Instant::now();
        let mut members = self.members.lock().unwrap_or_else(PoisonError::into_inner);
        members.retain(|_, until| *until > now);
        members
            .iter()
            .map(|(member, until)| (member.clone(), crate::redis::millis(*until - now)))
            .collect()
    }
}
