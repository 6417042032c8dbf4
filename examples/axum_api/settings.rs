//! The example's settings, read from the environment.

use std::{fmt::Display, str::FromStr, time::Duration};

use portcullis::{
    ClientIp,
    lockout::{LockoutBuilder, LockoutLayer, Policy},
    rate_limit::RateLimitLayer,
    reject::DefaultRenderer,
    validate::{GeneratedKey, KeyDigest},
};

use crate::users::{API_KEY_HOWTO, API_KEY_MIN_RANDOM, API_KEY_PREFIX};
#[cfg(feature = "jwt")]
use crate::users::{JWT_AUDIENCE, JWT_ISSUER, TokenClaims};

/// The example's configuration, read from the environment.
pub(crate) struct Config {
    pub(crate) addr: String,
    /// `ci-bot`'s key, as its digest only.
    pub(crate) api_key: KeyDigest,
    /// Whether the key came from `PORTCULLIS_API_KEY` (else it was generated).
    pub(crate) api_key_from_env: bool,
    /// Set when `PORTCULLIS_JWT_SECRET` is set.
    #[cfg(feature = "jwt")]
    pub(crate) jwt: Option<portcullis::validate::JwtValidator<TokenClaims>>,
    /// `PORTCULLIS_JWT_SECRET` is set in a build without JWT support.
    #[cfg(not(feature = "jwt"))]
    pub(crate) jwt_secret_ignored: bool,
    pub(crate) limits: Limits,
}

/// The settings of the limiters.
pub(crate) struct Limits {
    /// Failures that lock a client out.
    pub(crate) max_failures: u32,
    /// How long a first lockout lasts.
    pub(crate) lockout: Duration,
    /// Clients each limiter's tables remember at most.
    pub(crate) capacity: u64,
    /// How both limiters find the client's address.
    pub(crate) client_ip: ClientIp,
    /// `PORTCULLIS_TRUSTED_PROXIES`, as given, for the startup lines.
    pub(crate) trusted_proxies: Vec<String>,
    /// Requests per second and burst; `None` turns rate limiting off.
    pub(crate) rate: Option<(u32, u32)>,
    /// `PORTCULLIS_REDIS_URL` or `PORTCULLIS_REDIS_CLUSTER`: which one is
    /// set, and its value (it may hold a password: never printed).
    pub(crate) redis_url: Option<(&'static str, String)>,
    /// The shared store, once connected.
    #[cfg(feature = "redis")]
    pub(crate) redis: Option<portcullis::RedisStore>,
}

impl Limits {
    pub(crate) fn from_env() -> Result<Self, String> {
        let max_failures = number("PORTCULLIS_MAX_FAILURES", 1, 5)?;
        let lockout = Duration::from_secs(number("PORTCULLIS_LOCKOUT_SECS", 1, 60)?);
        let capacity = number("PORTCULLIS_CAPACITY", 1, 100_000)?;
        let trusted_proxies: Vec<String> = env("PORTCULLIS_TRUSTED_PROXIES")?
            .map(|list| {
                list.split(',')
                    .map(str::trim)
                    .filter(|cidr| !cidr.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let client_ip = ClientIp::builder()
            .trust_proxies(&trusted_proxies)
            .build()
            .map_err(|e| format!("PORTCULLIS_TRUSTED_PROXIES: {e}"))?;
        let rate = match (
            optional_number::<u32>("PORTCULLIS_RATE_PER_SEC", 1)?,
            optional_number::<u32>("PORTCULLIS_RATE_BURST", 1)?,
        ) {
            (None, None) => None,
            (Some(per_sec), burst) => Some((per_sec, burst.unwrap_or(per_sec))),
            (None, Some(_)) => {
                return Err(
                    "PORTCULLIS_RATE_BURST is set without PORTCULLIS_RATE_PER_SEC; set both \
                     to turn rate limiting on"
                        .to_owned(),
                );
            }
        };
        Ok(Self {
            max_failures,
            lockout,
            capacity,
            client_ip,
            trusted_proxies,
            rate,
            redis_url: redis_from_env()?,
            #[cfg(feature = "redis")]
            redis: None,
        })
    }

    /// Connects to `PORTCULLIS_REDIS_URL` (one server) or
    /// `PORTCULLIS_REDIS_CLUSTER` (a Redis Cluster), when one is set.
    #[cfg(feature = "redis")]
    pub(crate) async fn connect_redis(&mut self) -> Result<(), String> {
        use portcullis::RedisStore;
        if let Some((var, value)) = &self.redis_url {
            let store = if *var == "PORTCULLIS_REDIS_CLUSTER" {
                RedisStore::connect_cluster(value.split(',').map(str::trim)).await
            } else {
                RedisStore::connect(value).await
            };
            // The error names the node by host and port, never by its URL
            // (it may hold a password).
            self.redis = Some(store.map_err(|e| format!("{var}: {e}"))?);
        }
        Ok(())
    }

    /// Without Redis support there is nothing to connect to.
    #[cfg(not(feature = "redis"))]
    pub(crate) async fn connect_redis(&mut self) -> Result<(), String> {
        Ok(())
    }

    /// The `LockoutLayer`'s settings: keyed by the client's address, it
    /// counts the credentials `AuthLayer` rejects and the 401s of `/login`.
    pub(crate) fn lockout(
        &self,
        renderer: &DefaultRenderer,
    ) -> Result<LockoutBuilder<ClientIp>, String> {
        let policy = Policy::builder()
            .max_failures(self.max_failures)
            .lockout(self.lockout)
            // Repeat offenders wait longer, up to a day (or the first
            // lockout, if that is longer).
            .max_lockout(self.lockout.max(Policy::default().max_lockout()))
            .capacity(self.capacity)
            .build()
            .map_err(|e| format!("PORTCULLIS_LOCKOUT_SECS / PORTCULLIS_CAPACITY: {e}"))?;
        let lockout = LockoutLayer::builder(policy)
            .key(self.client_ip.clone())
            .renderer(renderer.clone());
        // With the key prefix `portcullis:lockout:`.
        #[cfg(feature = "redis")]
        if let Some(store) = &self.redis {
            return Ok(lockout.redis(store.clone()));
        }
        Ok(lockout)
    }

    /// A `RateLimitLayer`, when rate limiting is on.
    pub(crate) fn rate_limit(
        &self,
        renderer: &DefaultRenderer,
    ) -> Result<Option<RateLimitLayer<ClientIp>>, String> {
        let Some((per_sec, burst)) = self.rate else {
            return Ok(None);
        };
        let builder = RateLimitLayer::builder()
            .per_second(per_sec)
            .burst(burst)
            .max_capacity(self.capacity)
            .key(self.client_ip.clone())
            .renderer(renderer.clone());
        // With the key prefix `portcullis:rate:`.
        #[cfg(feature = "redis")]
        let builder = match &self.redis {
            Some(store) => builder.redis(store.clone()),
            None => builder,
        };
        builder
            .build()
            .map(Some)
            .map_err(|e| format!("PORTCULLIS_RATE_PER_SEC / PORTCULLIS_RATE_BURST: {e}"))
    }

    pub(crate) fn describe(&self, lines: &mut Vec<String>) {
        lines.push(format!(
            "lockout: {} failed attempts lock a client out for {} s (doubling for repeat \
             offenders); at most {} clients are tracked",
            self.max_failures,
            self.lockout.as_secs(),
            self.capacity
        ));
        lines.push(match self.rate {
            Some((per_sec, burst)) => {
                format!("rate limit: {per_sec}/s per client, burst {burst}")
            }
            None => {
                "rate limit: off (set PORTCULLIS_RATE_PER_SEC and PORTCULLIS_RATE_BURST)".to_owned()
            }
        });
        #[cfg(feature = "redis")]
        lines.push(if self.redis.is_some() {
            "shared state: redis (the limiters count together with every instance using the \
             same server; each falls back to counting on its own while redis is unavailable)"
                .to_owned()
        } else {
            "shared state: off (set PORTCULLIS_REDIS_URL or PORTCULLIS_REDIS_CLUSTER to share \
             the limiters with other instances)"
                .to_owned()
        });
        #[cfg(not(feature = "redis"))]
        lines.push(if let Some((var, _)) = &self.redis_url {
            format!(
                "shared state: {var} is set, but this build has no Redis support, so this \
                 instance counts on its own; run with `--features redis` to share the limiters"
            )
        } else {
            "shared state: off (build with `--features redis` and set PORTCULLIS_REDIS_URL to \
             share the limiters with other instances)"
                .to_owned()
        });
        lines.push(if self.trusted_proxies.is_empty() {
            "trusted proxies: none (the client is the socket peer)".to_owned()
        } else {
            format!(
                "trusted proxies: {} (X-Forwarded-For / Forwarded are read from them)",
                self.trusted_proxies.join(", ")
            )
        });
    }
}

/// Reads variable `name`; unset and empty are both `None`.
/// `PORTCULLIS_REDIS_CLUSTER` (the comma-separated URLs of a Redis
/// Cluster's nodes) or `PORTCULLIS_REDIS_URL` (one server): which one is set,
/// and its value.
fn redis_from_env() -> Result<Option<(&'static str, String)>, String> {
    match (
        env("PORTCULLIS_REDIS_URL")?,
        env("PORTCULLIS_REDIS_CLUSTER")?,
    ) {
        (Some(_), Some(_)) => Err(
            "set PORTCULLIS_REDIS_URL (one server) or PORTCULLIS_REDIS_CLUSTER (a cluster), \
             not both"
                .to_owned(),
        ),
        (Some(url), None) => Ok(Some(("PORTCULLIS_REDIS_URL", url))),
        (None, Some(nodes)) => Ok(Some(("PORTCULLIS_REDIS_CLUSTER", nodes))),
        (None, None) => Ok(None),
    }
}

pub(crate) fn env(name: &str) -> Result<Option<String>, String> {
    match std::env::var(name) {
        Ok(value) if value.is_empty() => Ok(None),
        Ok(value) => Ok(Some(value)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(format!("{name} is not valid UTF-8")),
    }
}

/// Reads a whole number of at least `min` from variable `name`.
pub(crate) fn optional_number<T>(name: &str, min: T) -> Result<Option<T>, String>
where
    T: FromStr + PartialOrd + Display,
{
    let Some(value) = env(name)? else {
        return Ok(None);
    };
    match value.trim().parse::<T>() {
        Ok(n) if n >= min => Ok(Some(n)),
        _ => Err(format!(
            "{name} must be a whole number, at least {min}; got {value:?}"
        )),
    }
}

/// Like [`optional_number`], with a default for an unset variable.
pub(crate) fn number<T>(name: &str, min: T, default: T) -> Result<T, String>
where
    T: FromStr + PartialOrd + Display,
{
    Ok(optional_number(name, min)?.unwrap_or(default))
}

impl Config {
    pub(crate) fn from_env() -> Result<Self, String> {
        let addr = env("PORTCULLIS_ADDR")?.unwrap_or_else(|| "127.0.0.1:3000".to_owned());

        let (api_key, api_key_from_env) = match env("PORTCULLIS_API_KEY")? {
            Some(key) => {
                check_api_key(&key)?;
                (KeyDigest::of(&key), true)
            }
            None => {
                // Nobody learns this key: it stands for "ci-bot has a key".
                let key = GeneratedKey::new(API_KEY_PREFIX)
                    .map_err(|e| format!("cannot generate an API key: {e}"))?;
                (key.digest(), false)
            }
        };

        #[cfg(feature = "jwt")]
        let jwt = match env("PORTCULLIS_JWT_SECRET")? {
            None => None,
            Some(secret) => {
                use portcullis::validate::jwt::{Algorithm, JwtKey, JwtValidator};
                let validator = JwtValidator::<TokenClaims>::builder()
                    .algorithm(Algorithm::HS256)
                    .key(JwtKey::secret(secret.as_bytes()))
                    .issuer(JWT_ISSUER)
                    .audience(JWT_AUDIENCE)
                    .build()
                    // The error names lengths and algorithms, never the secret.
                    .map_err(|e| format!("PORTCULLIS_JWT_SECRET: {e}"))?;
                Some(validator)
            }
        };
        #[cfg(not(feature = "jwt"))]
        let jwt_secret_ignored = env("PORTCULLIS_JWT_SECRET")?.is_some();

        let limits = Limits::from_env()?;

        Ok(Self {
            addr,
            api_key,
            api_key_from_env,
            #[cfg(feature = "jwt")]
            jwt,
            #[cfg(not(feature = "jwt"))]
            jwt_secret_ignored,
            limits,
        })
    }

    /// What the server accepts, for the lines after `listening on`.
    pub(crate) fn describe(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if self.api_key_from_env {
            lines.push(
                "api key of ci-bot: from PORTCULLIS_API_KEY (only its SHA-256 digest is kept)"
                    .to_owned(),
            );
        } else {
            lines.push(format!(
                "api key of ci-bot: generated {API_KEY_PREFIX}… (not shown); to call as ci-bot, \
                 set PORTCULLIS_API_KEY to a key you generated, e.g. {API_KEY_HOWTO}"
            ));
        }
        #[cfg(feature = "jwt")]
        lines.push(if self.jwt.is_some() {
            format!("jwt: HS256 tokens with iss={JWT_ISSUER} and aud={JWT_AUDIENCE} are accepted")
        } else {
            "jwt: off (set PORTCULLIS_JWT_SECRET, at least 32 bytes, to accept HS256 tokens)"
                .to_owned()
        });
        #[cfg(not(feature = "jwt"))]
        lines.push(if self.jwt_secret_ignored {
            "jwt: PORTCULLIS_JWT_SECRET is set, but this build has no JWT support, so every JWT \
             is refused; run with `--features jwt` to accept them"
                .to_owned()
        } else {
            "jwt: off (build with `--features jwt` and set PORTCULLIS_JWT_SECRET to accept JWTs)"
                .to_owned()
        });
        self.limits.describe(&mut lines);
        lines
    }
}

/// Checks a user-supplied API key without ever echoing it.
pub(crate) fn check_api_key(key: &str) -> Result<(), String> {
    let random = key.strip_prefix(API_KEY_PREFIX);
    let ok = random.is_some_and(|random| {
        random.len() >= API_KEY_MIN_RANDOM
            && random
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "PORTCULLIS_API_KEY must be \"{API_KEY_PREFIX}\" followed by at least \
             {API_KEY_MIN_RANDOM} characters from A-Z a-z 0-9 - _ (the value was not shown); \
             make one with: {API_KEY_HOWTO}"
        ))
    }
}
