//! Refresh tokens and the random ids of sessions and access tokens.
//!
//! A refresh token is `<session id>.<secret>`: the session id (16 bytes,
//! 22 characters of base64url) names the family, the secret is 32 random
//! bytes (256 bits, 43 characters). A session id starts with its subject's
//! *tag* (3 bytes of a hash of the subject, 4 characters) and ends with 13
//! random bytes (104 bits): the Redis store keys a subject's sessions and
//! its index by the tag, so that they share a cluster slot. Stores keep its SHA-256 digest
//! only. The successor of a token is kept for the grace window *wrapped*
//! under the token it replaces (XOR with an HMAC keyed by that token), so
//! that a racing refresh of the same token can be given the same successor
//! while nobody without that token, the store's operator included, can
//! read it.

use std::fmt;

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::credential::KeyDigest;

/// Random bytes of a session id.
const ID_BYTES: usize = 16;
/// Characters of a session id (base64url, unpadded).
const ID_LEN: usize = 22;
/// Random bytes of a refresh token's secret.
pub(crate) const SECRET_BYTES: usize = 32;
/// Characters of a refresh token's secret.
const SECRET_LEN: usize = 43;
/// Separates the successor's wrapping key from any other use of a token.
const WRAP_DOMAIN: &[u8] = b"portcullis session successor v1";
/// Bytes of a subject's tag at the start of its session ids.
const TAG_BYTES: usize = 3;
/// Characters of a subject's tag (base64url of [`TAG_BYTES`]).
#[cfg(feature = "redis")] // the redis store
pub(crate) const TAG_LEN: usize = 4;
/// Separates a subject's tag from any other hash of it.
const TAG_DOMAIN: &[u8] = b"portcullis session subject tag v1";

/// `N` random bytes from the operating system, wiped when dropped.
pub(crate) fn random<const N: usize>() -> Result<Zeroizing<[u8; N]>, getrandom::Error> {
    let mut bytes = Zeroizing::new([0; N]);
    getrandom::fill(&mut *bytes)?;
    Ok(bytes)
}

/// A fresh random id (a session id, a `jti`): 16 bytes in base64url.
pub(crate) fn new_id() -> Result<String, getrandom::Error> {
    Ok(URL_SAFE_NO_PAD.encode(random::<ID_BYTES>()?))
}

/// A fresh session id of `subject`: its tag, then 13 random bytes.
pub(crate) fn new_session_id(subject: &str) -> Result<String, getrandom::Error> {
    let mut bytes = [0; ID_BYTES];
    bytes[..TAG_BYTES].copy_from_slice(&tag_bytes(subject));
    bytes[TAG_BYTES..].copy_from_slice(&*random::<{ ID_BYTES - TAG_BYTES }>()?);
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// The tag that starts every session id of `subject` (4 characters of
/// base64url): the same on every replica and across restarts.
#[cfg(feature = "redis")] // the redis store
pub(crate) fn subject_tag(subject: &str) -> String {
    URL_SAFE_NO_PAD.encode(tag_bytes(subject))
}

fn tag_bytes(subject: &str) -> [u8; TAG_BYTES] {
    let digest = Sha256::new()
        .chain_update(TAG_DOMAIN)
        .chain_update(subject.as_bytes())
        .finalize();
    let mut tag = [0; TAG_BYTES];
    tag.copy_from_slice(&digest[..TAG_BYTES]);
    tag
}

/// Whether `sid` is shaped like a session id (22 characters of base64url
/// encoding 16 bytes): ids from a request are checked before they name a
/// key.
#[cfg(feature = "redis")] // the redis store
pub(crate) fn is_session_id(sid: &str) -> bool {
    let mut id = [0; ID_BYTES];
    sid.len() == ID_LEN && URL_SAFE_NO_PAD.decode_slice(sid, &mut id) == Ok(ID_BYTES)
}

/// A refresh token this process made (or recovered): the token and its
/// digest. The token is wiped when dropped.
pub(crate) struct RefreshToken {
    token: Zeroizing<String>,
    digest: KeyDigest,
}

impl RefreshToken {
    /// A new token of session `sid`.
    pub(crate) fn generate(sid: &str) -> Result<Self, getrandom::Error> {
        Ok(Self::from_parts(sid, &*random::<SECRET_BYTES>()?))
    }

    fn from_parts(sid: &str, secret: &[u8; SECRET_BYTES]) -> Self {
        // Sized once: a reallocation would leave a copy behind.
        let mut token = Zeroizing::new(String::with_capacity(sid.len() + 1 + SECRET_LEN));
        token.push_str(sid);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(secret, &mut token);
        let digest = KeyDigest::of(&token);
        Self { token, digest }
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.token
    }

    pub(crate) fn digest(&self) -> KeyDigest {
        self.digest
    }

    pub(crate) fn into_string(self) -> Zeroizing<String> {
        self.token
    }

    /// The secret bytes, to wrap.
    fn secret(&self) -> Zeroizing<[u8; SECRET_BYTES]> {
        let encoded = &self.token[self.token.len() - SECRET_LEN..];
        let mut secret = Zeroizing::new([0; SECRET_BYTES]);
        // Encoded by `from_parts` from exactly this many bytes.
        let _ = URL_SAFE_NO_PAD.decode_slice(encoded, &mut *secret);
        secret
    }
}

impl fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshToken")
            .field("digest", &self.digest)
            .finish_non_exhaustive()
    }
}

/// A refresh token as a client presented it, checked for shape only.
pub(crate) struct Presented<'a> {
    token: &'a str,
    sid: &'a str,
    digest: KeyDigest,
}

impl<'a> Presented<'a> {
    /// `token` when it is shaped like a refresh token: a session id, a dot
    /// and a secret of the right lengths in base64url.
    pub(crate) fn parse(token: &'a str) -> Option<Self> {
        let (sid, secret) = token.split_once('.')?;
        let mut id = [0; ID_BYTES];
        let mut bytes = [0; SECRET_BYTES];
        if sid.len() != ID_LEN
            || secret.len() != SECRET_LEN
            || URL_SAFE_NO_PAD.decode_slice(sid, &mut id) != Ok(ID_BYTES)
            || URL_SAFE_NO_PAD.decode_slice(secret, &mut bytes) != Ok(SECRET_BYTES)
        {
            return None;
        }
        Some(Self {
            token,
            sid,
            digest: KeyDigest::of(token),
        })
    }

    /// The session id the token names (not a secret).
    pub(crate) fn sid(&self) -> &'a str {
        self.sid
    }

    pub(crate) fn digest(&self) -> KeyDigest {
        self.digest
    }

    /// `successor`'s secret, wrapped under this token.
    pub(crate) fn wrap(&self, successor: &RefreshToken) -> [u8; SECRET_BYTES] {
        let mut wrapped = *successor.secret();
        xor(&mut wrapped, &self.wrapping_key());
        wrapped
    }

    /// The successor wrapped under this token, when its digest is
    /// `expected` (compared in constant time).
    pub(crate) fn unwrap(
        &self,
        wrapped: &[u8; SECRET_BYTES],
        expected: &KeyDigest,
    ) -> Option<RefreshToken> {
        let mut secret = Zeroizing::new(*wrapped);
        xor(&mut secret, &self.wrapping_key());
        let successor = RefreshToken::from_parts(self.sid, &secret);
        same(&successor.digest, expected).then_some(successor)
    }

    fn wrapping_key(&self) -> Zeroizing<[u8; SECRET_BYTES]> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.token.as_bytes())
            .expect("HMAC accepts keys of every length");
        mac.update(WRAP_DOMAIN);
        Zeroizing::new(mac.finalize().into_bytes().into())
    }
}

/// Whether two digests are equal, in constant time.
pub(crate) fn same(a: &KeyDigest, b: &KeyDigest) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

fn xor(a: &mut [u8; SECRET_BYTES], b: &[u8; SECRET_BYTES]) {
    for (a, b) in a.iter_mut().zip(b) {
        *a ^= b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_a_session_id_and_256_random_bits() {
        let sid = new_session_id("alice").unwrap();
        assert_eq!(sid.len(), ID_LEN);
        assert_ne!(new_session_id("alice").unwrap(), sid);
        let token = RefreshToken::generate(&sid).unwrap();
        let presented = Presented::parse(token.as_str()).unwrap();
        assert_eq!(presented.sid(), sid);
        assert_eq!(presented.digest(), token.digest());
        assert_eq!(token.as_str().len(), ID_LEN + 1 + SECRET_LEN);
        assert_ne!(
            RefreshToken::generate(&sid).unwrap().as_str(),
            token.as_str()
        );
        assert!(!format!("{token:?}").contains(&token.as_str()[ID_LEN + 1..]));
    }

    #[cfg(feature = "redis")]
    #[test]
    fn a_session_id_starts_with_its_subjects_tag() {
        let sid = new_session_id("alice").unwrap();
        assert!(is_session_id(&sid));
        assert!(!is_session_id(&sid[1..]));
        assert!(sid.starts_with(&subject_tag("alice")));
        assert_eq!(subject_tag("alice").len(), TAG_LEN);
        assert_ne!(subject_tag("alice"), subject_tag("bob"));
    }

    #[test]
    fn only_well_shaped_tokens_parse() {
        let sid = new_id().unwrap();
        let token = RefreshToken::generate(&sid).unwrap().into_string();
        for bad in [
            "",
            ".",
            "abc",
            &token[1..],
            &format!("{}x", *token),
            &token.replacen('.', "!", 1),
            &format!("{}+{}", &token[..ID_LEN + 1], &token[ID_LEN + 2..]),
        ] {
            assert!(Presented::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn a_successor_is_unwrapped_only_with_the_token_it_replaces() {
        let sid = new_id().unwrap();
        let first = RefreshToken::generate(&sid).unwrap();
        let successor = RefreshToken::generate(&sid).unwrap();
        let presented = Presented::parse(first.as_str()).unwrap();
        let wrapped = presented.wrap(&successor);
        assert_ne!(wrapped, *successor.secret());
        let unwrapped = presented.unwrap(&wrapped, &successor.digest()).unwrap();
        assert_eq!(unwrapped.as_str(), successor.as_str());

        let other = RefreshToken::generate(&sid).unwrap();
        let other = Presented::parse(other.as_str()).unwrap();
        assert!(other.unwrap(&wrapped, &successor.digest()).is_none());
    }
}
