//! Device cookies (OWASP): see [`DeviceCookies`].

use std::{fmt, sync::Arc, time::Duration};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use http::{HeaderValue, request::Parts};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::{
    AuthRejection, ConfigError, KeyExtractor,
    body_key::BodyField,
    extract::{Cookie, Extractor},
};

/// The shortest key accepted, in bytes.
const MIN_KEY_LEN: usize = 32;
const NONCE_LEN: usize = 16;
const TAG_LEN: usize = 16;
/// Separates these tags from any other use of the key.
const DOMAIN: &[u8] = b"portcullis device cookie v1\0";

/// Device cookies (OWASP), feature `cookie`: a browser that has signed in to
/// an account before is told apart from the rest of the world, so an
/// attacker who locks an account out locks out only the clients the account
/// never used (SECURITY.md B15).
///
/// A successful login [issues](DeviceCookies::issue) a device cookie: a
/// random nonce and an HMAC-SHA-256 tag over the account and the nonce,
/// `Secure`, `HttpOnly`, `SameSite=Strict`, for a year by default. On later login
/// attempts for the same account (the account comes from a
/// [`BodyKeyLayer`](crate::body_key::BodyKeyLayer)), a valid device cookie
/// makes the client *trusted* for that account:
///
/// - [`DeviceCookies::key`] is the key of trusted attempts: the device
///   itself, so each device has its own failure count and lockout;
/// - [`DeviceCookies::untrusted_key`] is the key of the other attempts: the
///   account, shared by every client without a device cookie for it.
///
/// Give both to one [`LockoutLayer`](super::LockoutLayer) with their own
/// policies: attempts with a valid device cookie are counted on that device
/// alone and are never refused by the account's lockout for untrusted
/// clients, while a password-spraying attacker from anywhere else locks
/// only the untrusted clients out of the account.
///
/// # Security
///
/// - The cookie is bound to the account (the tag covers it): a device
///   cookie of one account makes no one trusted for another. It holds no
///   account name and no secret; forging one takes the key.
/// - A device with too many failures is locked out itself (its own key);
///   a stolen device cookie is worth `max_failures` guesses, no more.
/// - The key must be secret, at least 32 bytes, and the same on every
///   replica; rotating it makes every device untrusted again.
/// - The cookie is `Secure` (SECURITY.md B21): a device cookie sniffed from
///   plain HTTP would be a way past the account's lockout. Turn it off
///   ([`secure(false)`](Self::secure)) only for a development server
///   reached over plain HTTP from elsewhere than `localhost`.
/// - Accounts are compared as the [`BodyKeyLayer`](crate::body_key::BodyKeyLayer)
///   keys them: trimmed and lowercased, or trimmed only with
///   [`case_sensitive(true)`](Self::case_sensitive), which must match the
///   layer's setting. If they differ, no device cookie is trusted (the
///   untrusted key applies to everyone): a device cookie of `Alice` must
///   never pass for `alice` where those are two accounts.
///
/// # Example
///
/// ```
/// use http::{Request, header};
/// use portcullis::{KeyExtractor, lockout::{DeviceCookies, LockoutLayer, Policy}};
///
/// let devices = DeviceCookies::new("device", b"a secret of at least thirty-two bytes!!")?;
/// let set_cookie = devices.issue("alice")?; // after alice signed in
/// let cookie = set_cookie.to_str().unwrap().split(';').next().unwrap().to_owned();
///
/// let (parts, ()) = Request::builder().header(header::COOKIE, cookie).body(()).unwrap().into_parts();
/// assert!(devices.device(&parts, "Alice").is_some());
/// assert!(devices.device(&parts, "bob").is_none());
///
/// let layer = LockoutLayer::new(Policy::default())
///     .key(devices.untrusted_key(), Policy::builder().max_failures(10).build()?)
///     .key(devices.key(), Policy::builder().max_failures(5).build()?);
/// # let _ = layer;
/// # Ok::<(), portcullis::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct DeviceCookies {
    cookie: Cookie,
    mac: Hmac<Sha256>,
    max_age: Duration,
    case_sensitive: bool,
}

/// A device that presented a valid device cookie for an account: the key of
/// its attempts.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Device {
    account: Arc<str>,
    nonce: [u8; NONCE_LEN],
}

impl Device {
    /// The account the device cookie is bound to.
    pub fn account(&self) -> &str {
        &self.account
    }
}

impl fmt::Debug for Device {
    /// The account and the nonce: they tell devices apart in logs and in
    /// Redis keys, and do not let anyone forge a cookie (that takes the
    /// key).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let id: String = self.nonce.iter().map(|b| format!("{b:02x}")).collect();
        f.debug_struct("Device")
            .field("account", &self.account)
            .field("id", &id)
            .finish()
    }
}

impl DeviceCookies {
    /// Device cookies named `name`, tagged with `key` (at least 32 secret
    /// bytes, the same on every replica).
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidKey`] for a key shorter than 32 bytes,
    /// [`ConfigError::InvalidName`] for a name that is not a cookie name.
    pub fn new(name: &str, key: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        let key = key.as_ref();
        if key.len() < MIN_KEY_LEN {
            return Err(ConfigError::InvalidKey(
                format!(
                    "a device cookie key needs at least {MIN_KEY_LEN} bytes, got {}",
                    key.len()
                )
                .into(),
            ));
        }
        Ok(Self {
            // B21: a device cookie is worth guesses; it never travels in
            // clear by default.
            cookie: Cookie::try_new(name)?.secure(true),
            mac: <Hmac<Sha256> as Mac>::new_from_slice(key)
                .expect("HMAC accepts keys of every length"),
            max_age: Duration::from_secs(365 * 24 * 3600),
            case_sensitive: false,
        })
    }

    /// Device cookies with a random key: they stay valid only as long as
    /// the process runs. For one replica and demos.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidKey`] when the random source fails, and as
    /// [`new`](Self::new).
    pub fn random(name: &str) -> Result<Self, ConfigError> {
        Self::new(name, random::<MIN_KEY_LEN>()?)
    }

    /// How long a device cookie lasts (default a year).
    #[must_use]
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// Whether the cookie is set `Secure` (default: yes). Only for a
    /// development server reached over plain HTTP: anyone who sees a device
    /// cookie on the wire gets its device's guesses at the account. Names
    /// with a `__Host-` or `__Secure-` prefix stay `Secure`.
    #[must_use]
    pub fn secure(mut self, secure: bool) -> Self {
        let name = self.cookie.name();
        let prefixed = name.starts_with("__Host-") || name.starts_with("__Secure-");
        self.cookie = self.cookie.secure(secure || prefixed);
        self
    }

    /// Keeps the account's case (default: lowercased, so `Alice` and
    /// `alice` are one account). Set it as the
    /// [`BodyKeyLayer`](crate::body_key::BodyKeyLayer)'s
    /// [`case_sensitive`](crate::body_key::BodyKeyLayer::case_sensitive):
    /// when the two differ, no device is trusted.
    #[must_use]
    pub fn case_sensitive(mut self, case_sensitive: bool) -> Self {
        self.case_sensitive = case_sensitive;
        self
    }

    /// A `Set-Cookie` value with a new device cookie for `account` (trimmed,
    /// and lowercased unless [case-sensitive](Self::case_sensitive), as
    /// [`BodyKeyLayer`](crate::body_key::BodyKeyLayer) keys it): send it
    /// with a successful login.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidKey`] when the random source fails.
    pub fn issue(&self, account: &str) -> Result<HeaderValue, ConfigError> {
        let nonce = random::<NONCE_LEN>()?;
        let tag = self.tag(&self.normalize(account), &nonce);
        let value = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(nonce),
            URL_SAFE_NO_PAD.encode(tag)
        );
        let max_age = i64::try_from(self.max_age.as_secs()).unwrap_or(i64::MAX);
        let cookie = self
            .cookie
            .set_cookie(value)
            .same_site(cookie::SameSite::Strict)
            .max_age(cookie::time::Duration::seconds(max_age))
            .build();
        Ok(HeaderValue::try_from(cookie.to_string())
            .expect("base64url values and checked attributes make a valid field value"))
    }

    /// The device of `request`, when it carries a valid device cookie for
    /// `account` (compared trimmed, and lowercased unless
    /// [case-sensitive](Self::case_sensitive)).
    pub fn device(&self, request: &Parts, account: &str) -> Option<Device> {
        let credential = Extractor::new(self.cookie.clone())
            .extract(request)
            .ok()??;
        let (nonce, tag) = credential.secret().split_once('.')?;
        let nonce: [u8; NONCE_LEN] = URL_SAFE_NO_PAD.decode(nonce).ok()?.try_into().ok()?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        let account = self.normalize(account);
        let expected = self.tag(&account, &nonce);
        bool::from(expected.ct_eq(&tag[..])).then(|| Device {
            account: account.into(),
            nonce,
        })
    }

    /// The key of attempts from trusted clients: the [`Device`], for a
    /// request with a [`BodyField`] (the account) and a valid device cookie
    /// for it; `None` otherwise.
    pub fn key(&self) -> DeviceKey {
        DeviceKey(self.clone())
    }

    /// The key of attempts from untrusted clients: the account, for a
    /// request with a [`BodyField`] and no valid device cookie for it;
    /// `None` otherwise.
    pub fn untrusted_key(&self) -> UntrustedKey {
        UntrustedKey(self.clone())
    }

    /// The device of a request whose account is `field`: `None` when the
    /// field was read with another case sensitivity than these cookies
    /// compare with (B21: never trust a cookie across two accounts).
    fn device_for(&self, request: &Parts, field: &BodyField) -> Option<Device> {
        if field.is_case_sensitive() != self.case_sensitive {
            tracing::debug!(
                target: "portcullis::lockout",
                "device cookies and the body key differ in case sensitivity: no device is trusted"
            );
            return None;
        }
        self.device(request, field.value())
    }

    /// The account as keys and tags hold it.
    fn normalize(&self, account: &str) -> String {
        let account = account.trim();
        if self.case_sensitive {
            account.to_owned()
        } else {
            account.to_lowercase()
        }
    }

    fn tag(&self, account: &str, nonce: &[u8; NONCE_LEN]) -> [u8; TAG_LEN] {
        let mut mac = self.mac.clone();
        mac.update(DOMAIN);
        mac.update(&(account.len() as u64).to_le_bytes());
        mac.update(account.as_bytes());
        mac.update(nonce);
        let full = mac.finalize().into_bytes();
        let mut tag = [0; TAG_LEN];
        tag.copy_from_slice(&full[..TAG_LEN]);
        tag
    }
}

impl fmt::Debug for DeviceCookies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceCookies")
            .field("name", &self.cookie.name())
            .field("max_age", &self.max_age)
            .field("case_sensitive", &self.case_sensitive)
            .finish_non_exhaustive()
    }
}

/// The key of attempts with a valid device cookie; see
/// [`DeviceCookies::key`].
#[derive(Clone, Debug)]
pub struct DeviceKey(DeviceCookies);

impl KeyExtractor for DeviceKey {
    type Key = Option<Device>;

    fn extract(&self, request: &Parts) -> Result<Option<Device>, AuthRejection> {
        Ok(BodyField::of(request).and_then(|field| self.0.device_for(request, field)))
    }
}

/// The key of attempts without a valid device cookie; see
/// [`DeviceCookies::untrusted_key`]. The key is the account as the
/// [`BodyKeyLayer`](crate::body_key::BodyKeyLayer) read it, so it honours
/// the layer's case sensitivity (B21).
#[derive(Clone, Debug)]
pub struct UntrustedKey(DeviceCookies);

impl KeyExtractor for UntrustedKey {
    type Key = Option<String>;

    fn extract(&self, request: &Parts) -> Result<Option<String>, AuthRejection> {
        Ok(BodyField::of(request)
            .filter(|field| self.0.device_for(request, field).is_none())
            .map(|field| field.value().to_owned()))
    }
}

/// `N` random bytes, wiped when dropped.
fn random<const N: usize>() -> Result<Zeroizing<[u8; N]>, ConfigError> {
    let mut bytes = Zeroizing::new([0; N]);
    getrandom::fill(&mut *bytes)
        .map_err(|e| ConfigError::InvalidKey(format!("the random source failed: {e}").into()))?;
    Ok(bytes)
}
