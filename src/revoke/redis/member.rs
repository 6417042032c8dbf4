//! How a revocation is written in Redis: a member of the sorted set, and the
//! payload of a message.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest as _, Sha256};

use crate::{
    credential::KeyDigest,
    revoke::engine::{Revocation, Target},
};

/// What a revocation reaches, as a member of the set: `s:<digest hex>`,
/// `i:<id>` or `u:<cutoff in Unix ms>:<subject>`.
pub(super) fn encode(revocation: &Revocation) -> String {
    match &revocation.target {
        Target::Secret(digest) => format!("s:{digest}"),
        Target::Id(id) => format!("i:{id}"),
        Target::Subject(subject) => {
            let cutoff = revocation
                .cutoff
                .and_then(|cutoff| cutoff.duration_since(UNIX_EPOCH).ok())
                .map_or(u128::MAX, |d| d.as_millis());
            format!("u:{cutoff}:{subject}")
        }
    }
}

pub(super) fn decode(member: &str) -> Option<(Target, Option<SystemTime>)> {
    let (kind, rest) = member.split_once(':')?;
    match kind {
        "s" => Some((Target::Secret(KeyDigest::parse(rest).ok()?), None)),
        "i" => Some((Target::Id(rest.into()), None)),
        "u" => {
            let (cutoff, subject) = rest.split_once(':')?;
            let cutoff: u128 = cutoff.parse().ok()?;
            // A cutoff too far to represent revokes everything issued.
            let cutoff = u64::try_from(cutoff)
                .ok()
                .and_then(|ms| UNIX_EPOCH.checked_add(Duration::from_millis(ms)))
                .unwrap_or(UNIX_EPOCH + Duration::from_secs(u64::from(u32::MAX) * 1000));
            Some((Target::Subject(subject.into()), Some(cutoff)))
        }
        _ => None,
    }
}

/// How many sorted sets hold the revocations, each under its own hash tag
/// (so in its own cluster slot).
pub(super) const BUCKETS: usize = 16;

/// The bucket of a member: the same on every replica.
pub(super) fn bucket(member: &str) -> usize {
    usize::from(Sha256::digest(member.as_bytes())[0]) % BUCKETS
}

/// The key of every bucket under `prefix`: `{prefix}{revocations:<i>}`.
pub(super) fn bucket_keys(prefix: &str) -> Vec<String> {
    (0..BUCKETS)
        .map(|i| format!("{prefix}{{revocations:{i}}}"))
        .collect()
}

/// `a b rest` → `(a, b, rest)`.
pub(super) fn split3(s: &str) -> Option<(&str, &str, &str)> {
    let (a, rest) = s.split_once(' ')?;
    let (b, rest) = rest.split_once(' ')?;
    Some((a, b, rest))
}

#[cfg(test)]
mod tests {
    use tokio::time::Instant;

    use super::*;

    #[test]
    fn members_round_trip() {
        let until = Instant::now();
        let cutoff = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        for (target, cutoff) in [
            (Target::Secret(KeyDigest::of("s3cret")), None),
            (Target::Id("jti 1:2".into()), None),
            (Target::Subject("alice: the first".into()), Some(cutoff)),
        ] {
            let revocation = Revocation {
                target: target.clone(),
                cutoff,
                until,
            };
            let member = encode(&revocation);
            assert!(!member.contains("s3cret"));
            assert_eq!(decode(&member), Some((target, cutoff)));
        }
        assert_eq!(decode("x:1"), None);
        assert_eq!(decode("s:not-a-digest"), None);
        assert_eq!(split3("a 1 u:2:b c"), Some(("a", "1", "u:2:b c")));
    }

    #[test]
    fn members_spread_over_every_bucket_under_their_own_hash_tags() {
        // D7: no single key (or cluster slot) holds every revocation.
        let mut counts = [0usize; BUCKETS];
        for i in 0..16_000 {
            counts[bucket(&format!("i:{i}"))] += 1;
        }
        assert!(
            counts.iter().all(|&n| (700..1300).contains(&n)),
            "{counts:?}"
        );
        let keys = bucket_keys("p:");
        assert_eq!(keys[3], "p:{revocations:3}");
        let tags: std::collections::HashSet<_> = keys
            .iter()
            .map(|k| &k[k.find('{').unwrap()..=k.find('}').unwrap()])
            .collect();
        assert_eq!(tags.len(), BUCKETS);
    }
}
