//! [`JwksBuilder`]: the settings of a [`Jwks`].

use std::{
    sync::{Arc, RwLock, atomic::AtomicBool},
    time::Duration,
};

use hyper_rustls::HttpsConnectorBuilder;
use hyper_util::{client::legacy::Client, rt::TokioExecutor};

use super::{Jwks, Shared, State};
use crate::{
    ConfigError,
    validate::jwt::oidc::{self, Source},
};

impl JwksBuilder {
    pub(super) fn new(origin: Origin) -> Self {
        Self {
            origin,
            allow_http: false,
            refresh_interval: Duration::from_secs(300),
            min_refetch_interval: Duration::from_secs(60),
            timeout: Duration::from_secs(10),
            max_size: 1 << 20,
        }
    }
}

/// Where the keys come from.
#[derive(Debug, Clone)]
pub(super) enum Origin {
    Url(String),
    Issuer(String),
}

/// Configures a [`Jwks`].
#[derive(Debug, Clone)]
#[must_use]
pub struct JwksBuilder {
    origin: Origin,
    allow_http: bool,
    refresh_interval: Duration,
    min_refetch_interval: Duration,
    timeout: Duration,
    max_size: usize,
}

impl JwksBuilder {
    /// How often the background task refetches (default 5 minutes).
    pub fn refresh_interval(mut self, interval: Duration) -> Self {
        self.refresh_interval = interval;
        self
    }

    /// The least time between two fetches caused by unknown `kid`s
    /// (default 60 seconds).
    pub fn min_refetch_interval(mut self, interval: Duration) -> Self {
        self.min_refetch_interval = interval;
        self
    }

    /// How long one fetch may take (default 10 seconds).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The largest document accepted (default 1 MiB).
    pub fn max_size(mut self, bytes: usize) -> Self {
        self.max_size = bytes;
        self
    }

    /// Allows a plain `http://` URL. With [`Jwks::discover`], only for a
    /// loopback issuer (`127.0.0.0/8`, `::1`, `localhost`) and a loopback
    /// `jwks_uri`.
    ///
    /// # Security
    ///
    /// Over plain HTTP anyone on the path can substitute their own keys and
    /// mint tokens you accept. Use it for tests against a local server only.
    pub fn allow_http(mut self, allow: bool) -> Self {
        self.allow_http = allow;
        self
    }

    /// Builds the key source. Nothing is fetched yet.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidName`] when the URL (or issuer) does not parse,
    /// has no host, or is `http://` without [`allow_http`](Self::allow_http)
    /// (for an issuer: or not on a loopback address);
    /// [`ConfigError::OutOfRange`] when an interval, the timeout or the size
    /// limit is zero.
    pub fn build(self) -> Result<Jwks, ConfigError> {
        let source = match &self.origin {
            Origin::Url(url) => {
                Source::Url(oidc::parse_url(url, "jwks url", self.allow_http, false)?)
            }
            Origin::Issuer(issuer) => Source::discovery(issuer, self.allow_http)?,
        };
        for (setting, value) in [
            ("refresh_interval", self.refresh_interval),
            ("min_refetch_interval", self.min_refetch_interval),
            ("timeout", self.timeout),
        ] {
            if value.is_zero() {
                return Err(ConfigError::out_of_range(
                    setting,
                    "must be longer than zero",
                ));
            }
        }
        if self.max_size == 0 {
            return Err(ConfigError::out_of_range(
                "max_size",
                "must be at least 1 byte",
            ));
        }
        let connector = HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
            .map_err(|e| ConfigError::InvalidKey(format!("tls setup failed: {e}").into()))?;
        let connector = if self.allow_http {
            connector.https_or_http()
        } else {
            connector.https_only()
        }
        .enable_http1()
        .build();
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Jwks {
            shared: Arc::new(Shared {
                source,
                client,
                state: RwLock::new(State::default()),
                fetching: tokio::sync::Mutex::new(()),
                background_started: AtomicBool::new(false),
                refresh_interval: self.refresh_interval,
                min_refetch_interval: self.min_refetch_interval,
                timeout: self.timeout,
                max_size: self.max_size,
            }),
        })
    }
}
