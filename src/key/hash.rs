//! The keyed hash of the limiters' tables.
//!
//! Keys are chosen by clients (addresses, usernames), so the tables hash
//! them with a secret, random key: without it an attacker could send keys
//! that all land in one bucket or one shard (HashDoS). The function is
//! SipHash-1-3, the one std's `RandomState` uses, fed the same bytes that
//! `Hash` writes; what differs is the cost of feeding it. std's hasher goes
//! through its byte-slice path for every integer a key writes (an address
//! writes two: its variant and its bits), while the `siphasher` crate's
//! takes integers up to 64 bits as whole words, so a key of one or two
//! integers costs the SipHash rounds and little else.

use std::hash::{BuildHasher, RandomState};

use siphasher::sip::SipHasher13;

/// A [`BuildHasher`] for keys chosen by clients: SipHash-1-3 under a key
/// drawn for each instance.
///
/// # Security
///
/// The 128-bit key comes from std's `RandomState` (seeded by the operating
/// system's random source once per thread, and different for every
/// instance): two SipHash outputs of a fresh `RandomState`, which nobody
/// who does not know its key can predict. The hash of a key is the SipHash
/// of the byte string its `Hash` writes, exactly as with `RandomState`, so
/// the resistance to chosen keys is SipHash's.
#[derive(Clone)]
pub(crate) struct KeyHasher {
    k0: u64,
    k1: u64,
}

impl KeyHasher {
    /// A hasher with a fresh random key.
    pub(crate) fn new() -> Self {
        let seed = RandomState::new();
        Self {
            k0: seed.hash_one(0x6b30_u64),
            k1: seed.hash_one(0x6b31_u64),
        }
    }
}

impl Default for KeyHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key is secret.
        f.debug_struct("KeyHasher").finish_non_exhaustive()
    }
}

impl BuildHasher for KeyHasher {
    type Hasher = SipHasher13;

    #[inline]
    fn build_hasher(&self) -> SipHasher13 {
        SipHasher13::new_with_keys(self.k0, self.k1)
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;

    #[test]
    fn keys_differ_between_instances_and_addresses_spread() {
        let a = KeyHasher::new();
        let b = KeyHasher::new();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert_ne!(a.hash_one(ip), b.hash_one(ip));
        assert_eq!(a.hash_one(ip), a.hash_one(ip));
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        assert_ne!(a.hash_one(ip), a.hash_one(other));
        assert_eq!(format!("{a:?}"), "KeyHasher { .. }");
    }
}
