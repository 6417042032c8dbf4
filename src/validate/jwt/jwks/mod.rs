//! Verification keys fetched from a JWKS URL (feature `jwks`).

use std::{
    fmt,
    sync::{
        Arc, RwLock, Weak,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http::{Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use jsonwebtoken::{Algorithm, AlgorithmFamily, jwk::JwkSet};
use tokio::time::Instant;

mod builder;

pub use builder::JwksBuilder;
use builder::Origin;

use super::{
    key::{JwtKey, KeySet, Selected},
    oidc::Source,
};
use crate::{ValidationError, validate::identity::deadline_after};

pub(super) type HttpClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// Keys published at a JWKS URL, fetched on first use and kept fresh.
///
/// Give it to [`JwtValidatorBuilder::jwks`](super::JwtValidatorBuilder::jwks).
/// Fetching uses HTTPS through rustls (ring) with the Mozilla root
/// certificates (webpki-roots); no OpenSSL.
///
/// # Behaviour
///
/// - **First use.** The first token to verify fetches the document (or call
///   [`refresh`](Self::refresh) at start-up to fail fast).
/// - **Background refresh.** A task on the tokio runtime refetches every
///   [`refresh_interval`](JwksBuilder::refresh_interval) (default 5
///   minutes). It stops when the last handle is dropped.
/// - **Unknown `kid`.** A token whose key is not in the set triggers a
///   refetch (key rotation), at most once per
///   [`min_refetch_interval`](JwksBuilder::min_refetch_interval) (default 60
///   seconds), so a flood of tokens with made-up `kid`s costs the issuer at
///   most one request per interval. Concurrent misses share one fetch.
/// - **Failures.** When a fetch fails, the keys from the last successful
///   fetch stay in use. A token is answered
///   [`unavailable`](ValidationError::unavailable) only when no key fits it
///   and the last fetch failed; with a reachable endpoint an unknown `kid`
///   is [`invalid`](ValidationError::invalid).
/// - **Only public keys.** Symmetric (`oct`) keys and encryption keys in the
///   document are ignored; documents larger than
///   [`max_size`](JwksBuilder::max_size) (default 1 MiB) are refused.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use portcullis::validate::jwt::{Algorithm, Jwks, JwtValidator};
///
/// # #[derive(serde::Deserialize)] struct MyClaims {}
/// let jwks = Jwks::builder("https://auth.example.com/.well-known/jwks.json")
///     .refresh_interval(Duration::from_secs(600))
///     .build()?;
/// let validator = JwtValidator::<MyClaims>::builder()
///     .algorithm(Algorithm::RS256)
///     .jwks(jwks)
///     .issuer("https://auth.example.com")
///     .build()?;
///
/// // Plain http is refused unless explicitly allowed (for tests).
/// assert!(Jwks::builder("http://auth.example.com/jwks.json").build().is_err());
/// # Ok::<(), portcullis::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct Jwks {
    shared: Arc<Shared>,
}

pub(super) struct Shared {
    source: Source,
    client: HttpClient,
    state: RwLock<State>,
    /// Serialises fetches: concurrent unknown-kid misses share one.
    fetching: tokio::sync::Mutex<()>,
    background_started: AtomicBool,
    refresh_interval: Duration,
    min_refetch_interval: Duration,
    timeout: Duration,
    max_size: usize,
}

#[derive(Default)]
pub(super) struct State {
    keys: Arc<KeySet>,
    last_attempt: Option<Instant>,
    last_ok: bool,
}

/// Why a JWKS fetch failed.
#[derive(Debug, thiserror::Error)]
#[error("jwks fetch failed: {0}")]
pub struct JwksError(pub(super) String);

impl Jwks {
    /// Starts configuring the keys published at `url` (`https://…`).
    pub fn builder(url: impl Into<String>) -> JwksBuilder {
        JwksBuilder::new(Origin::Url(url.into()))
    }

    /// Starts configuring the keys of the OpenID Connect issuer `issuer`
    /// (`https://…`), found through its discovery document; see
    /// [OIDC discovery](super#oidc-discovery).
    ///
    /// # Example
    ///
    /// ```
    /// use portcullis::validate::jwt::{Algorithm, Jwks, JwtValidator};
    ///
    /// # #[derive(serde::Deserialize)] struct MyClaims {}
    /// let jwks = Jwks::discover("https://accounts.example.com").build()?;
    /// assert_eq!(jwks.issuer(), Some("https://accounts.example.com"));
    /// // `iss` must be the issuer, since none is configured explicitly.
    /// let validator = JwtValidator::<MyClaims>::builder()
    ///     .algorithm(Algorithm::RS256)
    ///     .jwks(jwks)
    ///     .audience("my-client-id")
    ///     .build()?;
    ///
    /// // Plain http only for a loopback issuer, and only when allowed.
    /// assert!(Jwks::discover("http://accounts.example.com").allow_http(true).build().is_err());
    /// assert!(Jwks::discover("http://127.0.0.1:8080").allow_http(true).build().is_ok());
    /// # Ok::<(), portcullis::ConfigError>(())
    /// ```
    pub fn discover(issuer: impl Into<String>) -> JwksBuilder {
        JwksBuilder::new(Origin::Issuer(issuer.into()))
    }

    /// The issuer whose discovery document names the keys, for keys from
    /// [`discover`](Self::discover).
    pub fn issuer(&self) -> Option<&str> {
        self.shared.source.issuer()
    }
}

impl Jwks {
    /// Fetches the document now and returns the number of usable keys.
    /// Also starts the background refresh.
    ///
    /// # Errors
    ///
    /// The endpoint could not be reached in time, did not answer 200, or
    /// the document held no usable key. The keys fetched before stay in use.
    pub async fn refresh(&self) -> Result<usize, JwksError> {
        self.ensure_background();
        let _fetching = self.shared.fetching.lock().await;
        self.shared.refresh_locked().await
    }

    /// The number of keys currently in use.
    pub fn key_count(&self) -> usize {
        self.shared.read().keys.len()
    }

    /// The keys at hand, if one fits a token with `kid` and `alg`.
    pub(super) fn keys_now(&self, kid: Option<&str>, alg: Algorithm) -> Option<Arc<KeySet>> {
        self.ensure_background();
        let keys = self.shared.read().keys.clone();
        matches!(keys.select(kid, alg), Selected::Key(_)).then_some(keys)
    }

    /// The keys to verify a token with `kid` and `alg`, refetching on a
    /// miss when allowed.
    pub(super) async fn keys_for(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Arc<KeySet>, ValidationError> {
        self.ensure_background();
        let fits = |keys: &KeySet| matches!(keys.select(kid, alg), Selected::Key(_));
        let keys = self.shared.read().keys.clone();
        if fits(&keys) {
            return Ok(keys);
        }
        let _fetching = self.shared.fetching.lock().await;
        let (keys, last_attempt, mut last_ok) = {
            let state = self.shared.read();
            (state.keys.clone(), state.last_attempt, state.last_ok)
        };
        if fits(&keys) {
            // Fetched by another request while we waited.
            return Ok(keys);
        }
        let now = Instant::now();
        let next_allowed =
            last_attempt.map(|t| deadline_after(t, self.shared.min_refetch_interval));
        if next_allowed.is_none_or(|t| now >= t) {
            tracing::debug!(kid = ?kid, "no key fits the token, refetching the jwks");
            last_ok = self.shared.refresh_locked().await.is_ok();
        }
        let keys = self.shared.read().keys.clone();
        if fits(&keys) || last_ok {
            return Ok(keys);
        }
        let retry_after = next_allowed
            .filter(|t| *t > now)
            .map_or(self.shared.min_refetch_interval, |t| t - now);
        Err(ValidationError::unavailable()
            .with_retry_after(retry_after)
            .with_reason("jwks endpoint unreachable and no cached key fits the token"))
    }

    fn ensure_background(&self) {
        if self.shared.background_started.load(Ordering::Relaxed) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.shared.background_started.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak: Weak<Shared> = Arc::downgrade(&self.shared);
        let interval = self.shared.refresh_interval;
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let Some(shared) = weak.upgrade() else { break };
                let _fetching = shared.fetching.lock().await;
                let _ = shared.refresh_locked().await;
            }
        });
    }
}

impl Shared {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        // Updates replace whole fields; a poisoned lock is still consistent.
        self.state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Fetches and installs the document. Call with `fetching` held.
    async fn refresh_locked(&self) -> Result<usize, JwksError> {
        self.write().last_attempt = Some(Instant::now());
        let outcome = match tokio::time::timeout(self.timeout, self.fetch()).await {
            Ok(outcome) => outcome,
            Err(_) => Err(JwksError(format!("no answer within {:?}", self.timeout))),
        };
        let mut state = self.write();
        match outcome {
            Ok(keys) => {
                let count = keys.len();
                state.keys = Arc::new(keys);
                state.last_ok = true;
                tracing::debug!(source = %self.source, keys = count, "jwks fetched");
                Ok(count)
            }
            Err(e) => {
                state.last_ok = false;
                tracing::warn!(
                    source = %self.source,
                    error = %e,
                    kept_keys = state.keys.len(),
                    "jwks fetch failed, keeping the keys fetched before"
                );
                Err(e)
            }
        }
    }

    async fn fetch(&self) -> Result<KeySet, JwksError> {
        let url = self
            .source
            .jwks_uri(async |document| {
                self.get(document, "application/json")
                    .await
                    .map_err(|e| e.0)
            })
            .await
            .map_err(JwksError)?;
        let body = match self
            .get(url, "application/jwk-set+json, application/json")
            .await
        {
            Ok(body) => body,
            Err(e) => {
                // The issuer may have moved its keys: discover again next
                // time.
                self.source.forget();
                return Err(e);
            }
        };
        let set: JwkSet = serde_json::from_slice(&body)
            .map_err(|_| JwksError("the document is not a JWK set".into()))?;
        let keys: Vec<JwtKey> = JwtKey::from_jwk_set(&set)
            .into_iter()
            .filter(|key| key.family() != AlgorithmFamily::Hmac)
            .collect();
        if keys.is_empty() {
            return Err(JwksError(
                "the document holds no usable signature key".into(),
            ));
        }
        Ok(KeySet::new(keys))
    }

    /// GETs `url` and returns the body of a 200 answer, at most `max_size`
    /// bytes.
    pub(super) async fn get(&self, url: Uri, accept: &'static str) -> Result<Bytes, JwksError> {
        let request = Request::get(url)
            .header(header::ACCEPT, accept)
            .body(Empty::new())
            .map_err(|e| JwksError(e.to_string()))?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| JwksError(format!("request failed: {e}")))?;
        if response.status() != StatusCode::OK {
            return Err(JwksError(format!("status {}", response.status())));
        }
        Ok(Limited::new(response.into_body(), self.max_size)
            .collect()
            .await
            .map_err(|e| JwksError(format!("reading the body failed: {e}")))?
            .to_bytes())
    }
}

impl fmt::Debug for Jwks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.shared.read();
        f.debug_struct("Jwks")
            .field("source", &format_args!("{}", self.shared.source))
            .field("keys", &state.keys.len())
            .field("last_fetch_ok", &state.last_ok)
            .field("refresh_interval", &self.shared.refresh_interval)
            .field("min_refetch_interval", &self.shared.min_refetch_interval)
            .finish()
    }
}
