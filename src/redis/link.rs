//! The connection to Redis, one node or a Redis Cluster behind one
//! `ConnectionLike`, and the cluster slot of a key.

use ::redis::{
    Cmd, Pipeline, RedisFuture, Value,
    aio::{ConnectionLike, ConnectionManager},
    cluster_async::ClusterConnection,
};
use sha2::{Digest, Sha256};

/// The number of hash slots of a Redis Cluster.
pub(crate) const SLOTS: usize = 16384;

/// A connection to one Redis server (reconnected by the manager) or to a
/// Redis Cluster (commands routed by the slot of their first key, MOVED and
/// ASK redirections followed, the slot map refreshed by the cluster client).
#[derive(Clone)]
pub(crate) enum Link {
    Node(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Link {
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }
}

impl ConnectionLike for Link {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Node(con) => con.req_packed_command(cmd),
            Self::Cluster(con) => con.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Node(con) => con.req_packed_commands(pipeline, offset, count),
            Self::Cluster(con) => con.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Node(con) => con.get_db(),
            Self::Cluster(con) => con.get_db(),
        }
    }
}

/// `{prefix}{key}`: the limiter key in a hash tag, so that every Redis key
/// made from it by appending a suffix without braces shares its cluster
/// slot.
///
/// A key whose `Debug` form starts with `}` (or a prefix holding `{}`)
/// would make an empty hash tag, which Redis ignores, hashing each whole
/// key instead: such a base starts with a tag of its own, a digest of
/// itself.
pub(crate) fn key_base(prefix: &str, key: &impl std::fmt::Debug) -> String {
    let base = format!("{prefix}{{{key:?}}}");
    if hash_tag(base.as_bytes()).is_some() {
        return base;
    }
    let digest = Sha256::digest(base.as_bytes());
    let mut tag = String::with_capacity(16);
    for byte in &digest[..8] {
        tag.push_str(&format!("{byte:02x}"));
    }
    format!("{{{tag}}}{base}")
}

/// The cluster slot of a Redis key: CRC16 (XMODEM) of its hash tag, or of
/// the whole key when it has none, modulo 16384.
pub(crate) fn slot(key: &[u8]) -> u16 {
    // SLOTS is 2^14.
    crc16(hash_tag(key).unwrap_or(key)) & 0x3fff
}

/// What Redis hashes of a key: what lies between its first `{` and the
/// first `}` after it, when that is not empty.
fn hash_tag(key: &[u8]) -> Option<&[u8]> {
    let open = key.iter().position(|&b| b == b'{')?;
    let len = key[open + 1..].iter().position(|&b| b == b'}')?;
    let tag = &key[open + 1..open + 1 + len];
    (!tag.is_empty()).then_some(tag)
}

/// CRC16-CCITT (XMODEM: polynomial 0x1021, initial value 0), the checksum
/// of Redis Cluster's key slots.
fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 == 0 {
                crc << 1
            } else {
                (crc << 1) ^ 0x1021
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_is_xmodem() {
        // The check value of CRC-16/XMODEM.
        assert_eq!(crc16(b"123456789"), 0x31c3);
    }

    #[test]
    fn slots_match_redis() {
        // `CLUSTER KEYSLOT foo` and `CLUSTER KEYSLOT bar` on a real server.
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"bar"), 5061);
        assert_eq!(slot(b"{foo}:anything"), 12182);
        assert_ne!(slot(b"{}foo"), slot(b"foo"));
    }

    #[test]
    fn a_key_base_always_has_a_tag_that_its_suffixes_share() {
        let weird = [
            "plain".to_owned(),
            "}starts with a brace".to_owned(),
            "{}".to_owned(),
            String::new(),
        ];
        for prefix in ["p:", "p{}:", "p{", "p}", ""] {
            for key in &weird {
                let base = key_base(prefix, &format_args!("{key}"));
                assert!(hash_tag(base.as_bytes()).is_some(), "{base}");
                let slot_of = |suffix: &str| slot(format!("{base}{suffix}").as_bytes());
                assert_eq!(slot_of(":f"), slot_of(":i"), "{base}");
                assert_eq!(slot_of(":l"), slot_of(":d:12ab"), "{base}");
            }
        }
        // An ordinary key keeps the documented form.
        assert_eq!(key_base("p:", &"k"), "p:{\"k\"}");
    }
}
