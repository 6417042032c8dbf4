//! The credential found in a request.

use std::{borrow::Cow, fmt, sync::Arc};

use http::{HeaderName, HeaderValue};
use zeroize::Zeroize;

mod digest;
mod fingerprint;
mod secret;
mod secret_key;

pub use digest::KeyDigest;
pub use fingerprint::{Fingerprint, FingerprintKey};
pub(crate) use secret_key::{MIN_KEY_BYTES, check_key_len, random_bytes};

/// A secret found in a request, together with where it was found.
///
/// The secret is ASCII: extraction refuses non-ASCII and control bytes
/// instead of decoding them lossily.
///
/// # Security
///
/// `Debug` and `Display` never print the secret, only its [`Fingerprint`]
/// (the first 32 bits of its HMAC-SHA-256 under the process's
/// [`FingerprintKey`]), so a `Credential` may be logged or put in a span
/// safely. [`Credential::secret`] is the only way to
/// read the secret; call it only where the secret is checked.
///
/// A secret the extractors find in a header (`Authorization`, a cookie, a
/// custom header, `Sec-WebSocket-Protocol`) is read in place: the
/// credential shares the header value it came in (a reference count, no
/// copy), so portcullis has no copy of it to wipe. Those bytes are the
/// request's, which `http` does not wipe either; they are freed when the
/// last holder drops them (for `Sec-WebSocket-Protocol`, whose token entry
/// is removed from the request before it goes on, that may be the
/// credential). A secret found in the URI (a query parameter, decoded when
/// it is percent-encoded) is copied once; the clones of the credential
/// share that copy, which is overwritten with zeros when the last of them
/// is dropped, as is the decoding buffer. A `String` or `Arc<str>` handed
/// to [`Credential::new`] is shared and wiped the same way, but it is the
/// caller's: an `Arc<str>` the caller keeps is not wiped, and the buffer of
/// a `String` is copied (and freed as it is) by the conversion.
///
/// # Example
///
/// ```
/// use portcullis::{Credential, CredentialSource};
///
/// let credential = Credential::new("alice-token", CredentialSource::Bearer);
/// assert_eq!(credential.secret(), "alice-token");
/// assert!(!format!("{credential:?}").contains("alice-token"));
/// assert!(!credential.to_string().contains("alice-token"));
/// ```
#[derive(Clone)]
pub struct Credential {
    secret: secret::Secret,
    source: CredentialSource,
}

impl Credential {
    /// Creates a credential from a secret and its source.
    pub fn new(secret: impl Into<Arc<str>>, source: CredentialSource) -> Self {
        Self {
            secret: secret::Secret::copy(secret.into()),
            source,
        }
    }

    /// A credential an extractor found in bytes `start..end` of a header
    /// field value, read in place. The caller checked that they are visible
    /// ASCII.
    pub(crate) fn in_place(
        value: &HeaderValue,
        start: usize,
        end: usize,
        source: CredentialSource,
    ) -> Self {
        Self {
            secret: secret::Secret::InPlace {
                value: value.clone(),
                start,
                end,
            },
            source,
        }
    }

    /// A credential an extractor found outside the headers: borrowed from
    /// the request, or decoded from it (then that copy is wiped once
    /// copied).
    pub(crate) fn found(secret: Cow<'_, str>, source: CredentialSource) -> Self {
        let shared = Arc::from(&*secret);
        if let Cow::Owned(mut decoded) = secret {
            decoded.zeroize();
        }
        Self::new(shared, source)
    }

    /// The same credential with a copy of its secret of its own (shared by
    /// its clones and wiped when the last goes) instead of the request's
    /// header value: for what outlives the request, so that it does not
    /// keep the request's head in memory.
    pub(crate) fn detached(&self) -> Self {
        match &self.secret {
            secret::Secret::InPlace { .. } => Self::new(self.secret(), self.source.clone()),
            secret::Secret::Copy(_) => self.clone(),
        }
    }

    /// The secret itself.
    pub fn secret(&self) -> &str {
        self.secret.as_str()
    }

    /// Where the secret was found.
    pub fn source(&self) -> &CredentialSource {
        &self.source
    }

    /// A short, keyed fingerprint of the secret, for logs (see
    /// [`Fingerprint`]).
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(self.secret().as_bytes())
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("source", &self.source)
            .field("fingerprint", &self.fingerprint())
            .finish()
    }
}

impl fmt::Display for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} credential {}", self.source, self.fingerprint())
    }
}

/// Where a [`Credential`] was found.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CredentialSource {
    /// `Authorization: Bearer <token>` (RFC 6750 §2.1).
    Bearer,
    /// A named cookie (RFC 6265bis).
    Cookie(Arc<str>),
    /// A custom header such as `X-API-Key`.
    Header(HeaderName),
    /// A query parameter (RFC 6750 §2.3).
    Query(Arc<str>),
    /// An entry of the `Sec-WebSocket-Protocol` header.
    WebSocketProtocol,
}

impl fmt::Display for CredentialSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bearer => f.write_str("bearer"),
            Self::Cookie(name) => write!(f, "cookie {name}"),
            Self::Header(name) => write!(f, "header {name}"),
            Self::Query(name) => write!(f, "query parameter {name}"),
            Self::WebSocketProtocol => f.write_str("websocket protocol"),
        }
    }
}
