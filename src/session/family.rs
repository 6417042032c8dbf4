//! Session families: what a store records at sign-in, and what it answers
//! when a refresh token is presented.
//!
//! A family is one sign-in: a session id, a subject, when it was created,
//! an absolute and an idle lifetime, and its chain of refresh tokens, of
//! which exactly one is current. Rotating the current token makes its
//! successor current and remembers the used token (its digest and when it
//! was used) for reuse detection: the last used token with its successor
//! wrapped for the grace window, and [`REMEMBERED`] older ones.

use std::{sync::Arc, time::Duration, time::SystemTime};

use crate::credential::KeyDigest;

use super::{list::Device, secret::SECRET_BYTES};

/// How many used tokens of a family are remembered besides the last one.
/// An older token presented again is unknown: refused (a failed attempt),
/// without revoking the family.
pub(crate) const REMEMBERED: usize = 16;

/// A family to record at sign-in.
#[derive(Debug, Clone)]
pub(crate) struct NewFamily {
    pub(crate) sid: Box<str>,
    pub(crate) subject: Arc<str>,
    /// On the wall clock: compared with a subject's cutoff.
    pub(crate) created: SystemTime,
    /// The digest of the first refresh token.
    pub(crate) token: KeyDigest,
    pub(crate) absolute: Duration,
    pub(crate) idle: Duration,
    /// How it signed in, for the list.
    pub(crate) device: Device,
}

/// A live family, as a store lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Listed {
    pub(crate) sid: Box<str>,
    pub(crate) created: SystemTime,
    /// On the wall clock: the sign-in or the last refresh.
    pub(crate) last_used: SystemTime,
    pub(crate) device: Device,
}

/// What a store tells of a family along with an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Family {
    pub(crate) subject: Arc<str>,
    pub(crate) created: SystemTime,
    /// How long the family lives unless refreshed: until the idle or the
    /// absolute lifetime ends, whichever is first.
    pub(crate) remaining: Duration,
}

/// The successor a refresh proposes: its digest, and its secret wrapped
/// under the presented token.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Next {
    pub(crate) digest: KeyDigest,
    pub(crate) wrapped: [u8; SECRET_BYTES],
}

/// What presenting a refresh token did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Rotation {
    /// It was current: the proposed successor is current now.
    Rotated(Family),
    /// It was just used, within the grace window, and its successor is
    /// still current: a racing refresh, given the same successor.
    Again {
        family: Family,
        wrapped: [u8; SECRET_BYTES],
        current: KeyDigest,
    },
    /// It was used within the grace window, but its successor was rotated
    /// already: refused, nothing revoked.
    Conflict,
    /// It was used before the grace window: the family is gone.
    Reused { subject: Arc<str> },
    /// No live family has it.
    Unknown,
}

/// What signing out with a refresh token did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ending {
    /// The family is gone.
    Ended { subject: Arc<str> },
    /// The token had been used before the grace window: the family is gone,
    /// and that is a reuse.
    Reused { subject: Arc<str> },
    /// No live family has it.
    Unknown,
}

/// A store's answer at sign-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Created {
    /// Recorded; `evicted` are the subject's least recently used families
    /// that it ended to stay within its cap.
    Created { evicted: Vec<Box<str>> },
    /// The store holds as many live families as it may.
    Full,
}
