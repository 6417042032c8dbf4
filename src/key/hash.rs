//! The keyed hash of the limiters' tables.
//!
//! Keys are chosen by clients (addresses, usernames), so the tables hash
//! them with a secret, random key: without it an attacker could send keys
//! that all land in one bucket or one shard (HashDoS). The function is
//! SipHash-1-3, the one std's `RandomState` uses, fed the same bytes that
//! `Hash` writes; what differs is the cost of feeding it. std's hasher goes
//! through its byte-slice path for every integer a key writes (an address
//! writes two: its variant and its bits), while this one takes integers as
//! whole words, so a key of one or two integers costs the SipHash rounds and
//! little else.

use std::hash::{BuildHasher, Hasher, RandomState};

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
    type Hasher = Sip<1, 3>;

    #[inline]
    fn build_hasher(&self) -> Sip<1, 3> {
        Sip::new(self.k0, self.k1)
    }
}

/// SipHash-C-D over the bytes written, in 8-byte little-endian words.
#[derive(Debug, Clone)]
pub(crate) struct Sip<const C: usize, const D: usize> {
    v0: u64,
    v1: u64,
    v2: u64,
    v3: u64,
    /// Bytes written but not yet compressed (fewer than 8), in the low
    /// bytes.
    tail: u64,
    /// How many bytes `tail` holds.
    ntail: usize,
    /// How many bytes were written.
    length: usize,
}

impl<const C: usize, const D: usize> Sip<C, D> {
    #[inline]
    fn new(k0: u64, k1: u64) -> Self {
        Self {
            v0: k0 ^ 0x736f_6d65_7073_6575,
            v1: k1 ^ 0x646f_7261_6e64_6f6d,
            v2: k0 ^ 0x6c79_6765_6e65_7261,
            v3: k1 ^ 0x7465_6462_7974_6573,
            tail: 0,
            ntail: 0,
            length: 0,
        }
    }

    #[inline(always)]
    fn round(&mut self) {
        self.v0 = self.v0.wrapping_add(self.v1);
        self.v1 = self.v1.rotate_left(13) ^ self.v0;
        self.v0 = self.v0.rotate_left(32);
        self.v2 = self.v2.wrapping_add(self.v3);
        self.v3 = self.v3.rotate_left(16) ^ self.v2;
        self.v0 = self.v0.wrapping_add(self.v3);
        self.v3 = self.v3.rotate_left(21) ^ self.v0;
        self.v2 = self.v2.wrapping_add(self.v1);
        self.v1 = self.v1.rotate_left(17) ^ self.v2;
        self.v2 = self.v2.rotate_left(32);
    }

    /// Compresses one message word.
    #[inline(always)]
    fn compress(&mut self, m: u64) {
        self.v3 ^= m;
        for _ in 0..C {
            self.round();
        }
        self.v0 ^= m;
    }

    /// Appends the `n` low bytes of `word` (`1 <= n <= 8`, the first byte
    /// lowest).
    #[inline(always)]
    fn push(&mut self, word: u64, n: usize) {
        self.length = self.length.wrapping_add(n);
        let filled = self.tail | (word << (8 * self.ntail));
        if self.ntail + n < 8 {
            self.tail = filled;
            self.ntail += n;
            return;
        }
        self.compress(filled);
        // Bytes of `word` that went into the compressed word: 1 to 8.
        let used = 8 - self.ntail;
        self.tail = word.checked_shr(8 * used as u32).unwrap_or(0);
        self.ntail = self.ntail + n - 8;
    }
}

/// The bytes of an integer in the order `Hash` writes them (native
/// endianness), as a little-endian word.
macro_rules! word {
    ($bytes:expr) => {{
        let bytes = $bytes;
        let mut word = [0u8; 8];
        word[..bytes.len()].copy_from_slice(&bytes);
        u64::from_le_bytes(word)
    }};
}

impl<const C: usize, const D: usize> Hasher for Sip<C, D> {
    fn write(&mut self, bytes: &[u8]) {
        let mut bytes = bytes;
        // Fill the tail first, a byte at a time.
        while self.ntail != 0 {
            let Some((&first, rest)) = bytes.split_first() else {
                return;
            };
            self.push(u64::from(first), 1);
            bytes = rest;
        }
        let (words, rest) = bytes.as_chunks::<8>();
        for word in words {
            self.length = self.length.wrapping_add(8);
            self.compress(u64::from_le_bytes(*word));
        }
        if !rest.is_empty() {
            let mut word = 0;
            for (i, &byte) in rest.iter().enumerate() {
                word |= u64::from(byte) << (8 * i);
            }
            self.push(word, rest.len());
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.push(u64::from(i), 1);
    }

    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.push(word!(i.to_ne_bytes()), 2);
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.push(word!(i.to_ne_bytes()), 4);
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.push(u64::from_le_bytes(i.to_ne_bytes()), 8);
    }

    #[inline]
    fn write_u128(&mut self, i: u128) {
        let bytes = i.to_ne_bytes();
        let (words, _) = bytes.as_chunks::<8>();
        for word in words {
            self.push(u64::from_le_bytes(*word), 8);
        }
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        let bytes = i.to_ne_bytes();
        self.push(word!(bytes), bytes.len());
    }

    #[inline]
    fn write_i8(&mut self, i: i8) {
        self.write_u8(i.cast_unsigned());
    }

    #[inline]
    fn write_i16(&mut self, i: i16) {
        self.write_u16(i.cast_unsigned());
    }

    #[inline]
    fn write_i32(&mut self, i: i32) {
        self.write_u32(i.cast_unsigned());
    }

    #[inline]
    fn write_i64(&mut self, i: i64) {
        self.write_u64(i.cast_unsigned());
    }

    #[inline]
    fn write_i128(&mut self, i: i128) {
        self.write_u128(i.cast_unsigned());
    }

    #[inline]
    fn write_isize(&mut self, i: isize) {
        self.write_usize(i.cast_unsigned());
    }

    #[inline]
    fn finish(&self) -> u64 {
        let mut state = self.clone();
        // The last word: the remaining bytes, and the length's low byte on
        // top.
        let last = ((self.length as u64 & 0xff) << 56) | self.tail;
        state.compress(last);
        state.v2 ^= 0xff;
        for _ in 0..D {
            state.round();
        }
        state.v0 ^ state.v1 ^ state.v2 ^ state.v3
    }
}

#[cfg(test)]
mod tests {
    use std::{hash::Hash, net::IpAddr};

    use super::*;

    /// What each case writes, one call per item.
    #[derive(Debug, Clone)]
    enum Write {
        Bytes(Vec<u8>),
        U8(u8),
        U16(u16),
        U32(u32),
        U64(u64),
        U128(u128),
        Usize(usize),
        Str(&'static str),
    }

    fn feed(hasher: &mut impl Hasher, writes: &[Write]) {
        for write in writes {
            match write {
                Write::Bytes(bytes) => hasher.write(bytes),
                Write::U8(i) => hasher.write_u8(*i),
                Write::U16(i) => hasher.write_u16(*i),
                Write::U32(i) => hasher.write_u32(*i),
                Write::U64(i) => hasher.write_u64(*i),
                Write::U128(i) => hasher.write_u128(*i),
                Write::Usize(i) => hasher.write_usize(*i),
                Write::Str(s) => s.hash(hasher),
            }
        }
    }

    #[allow(deprecated)] // std's SipHash-2-4, the reference
    fn reference(k0: u64, k1: u64, writes: &[Write]) -> u64 {
        let mut hasher = std::hash::SipHasher::new_with_keys(k0, k1);
        feed(&mut hasher, writes);
        hasher.finish()
    }

    fn ours(k0: u64, k1: u64, writes: &[Write]) -> u64 {
        let mut hasher = Sip::<2, 4>::new(k0, k1);
        feed(&mut hasher, writes);
        hasher.finish()
    }

    #[test]
    fn matches_the_published_siphash_2_4_vector() {
        // SipHash paper, appendix A: key 00..0f, message 00..0e.
        let k0 = u64::from_le_bytes([0, 1, 2, 3, 4, 5, 6, 7]);
        let k1 = u64::from_le_bytes([8, 9, 10, 11, 12, 13, 14, 15]);
        let message: Vec<u8> = (0..15).collect();
        assert_eq!(
            ours(k0, k1, &[Write::Bytes(message)]),
            0xa129_ca61_49be_45e5
        );
    }

    #[test]
    fn any_split_of_the_bytes_hashes_like_std_siphash() {
        let keys = [(0, 0), (1, 2), (0x0706_0504_0302_0100, u64::MAX)];
        let cases: Vec<Vec<Write>> = vec![
            vec![],
            vec![Write::U8(7)],
            vec![Write::Usize(0), Write::U32(0x0a00_0001)],
            vec![Write::Usize(1), Write::U128(0x2001_0db8 << 96)],
            vec![Write::U16(1), Write::U64(u64::MAX), Write::U8(3)],
            vec![Write::U32(5), Write::U128(u128::MAX), Write::U32(9)],
            vec![Write::Str("alice"), Write::Usize(42)],
            vec![Write::Bytes((0..=64).collect()), Write::U16(0xbeef)],
            vec![
                Write::U8(1),
                Write::Bytes((0..23).collect()),
                Write::U64(3),
                Write::Bytes(vec![]),
                Write::Bytes(vec![9; 9]),
            ],
        ];
        for (k0, k1) in keys {
            for writes in &cases {
                assert_eq!(
                    ours(k0, k1, writes),
                    reference(k0, k1, writes),
                    "{writes:?}"
                );
            }
            // Every way to cut 0..40 in two writes.
            let bytes: Vec<u8> = (0..40).collect();
            for cut in 0..=bytes.len() {
                let (a, b) = bytes.split_at(cut);
                let writes = [Write::Bytes(a.to_vec()), Write::Bytes(b.to_vec())];
                assert_eq!(
                    ours(k0, k1, &writes),
                    reference(k0, k1, &writes),
                    "cut {cut}"
                );
            }
        }
    }

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
