//! Keys found through OpenID Connect discovery (feature `jwks`):
//! [OpenID Connect Discovery 1.0](https://openid.net/specs/openid-connect-discovery-1_0.html).
//!
//! The issuer's document is read from `ISSUER/.well-known/openid-configuration`
//! (§4, a trailing `/` of the issuer removed first). Its `issuer` must be
//! exactly the configured issuer (§4.3), and its `jwks_uri` names the keys,
//! which are then fetched, refreshed and refetched like any
//! [`Jwks`](super::Jwks). The document is read again when fetching the keys
//! fails, in case the issuer moved them.

use std::{
    fmt,
    future::Future,
    net::IpAddr,
    sync::{Mutex, PoisonError},
};

use bytes::Bytes;
use http::Uri;

use crate::ConfigError;

const WELL_KNOWN: &str = "/.well-known/openid-configuration";

/// Where a [`Jwks`](super::Jwks) finds its keys.
pub(super) enum Source {
    /// A JWKS URL.
    Url(Uri),
    /// The `jwks_uri` of an issuer's discovery document.
    Discovery {
        issuer: String,
        document: Uri,
        allow_http: bool,
        /// The `jwks_uri` last discovered.
        jwks_uri: Mutex<Option<Uri>>,
    },
}

/// The fields of a discovery document portcullis reads.
#[derive(serde::Deserialize)]
struct Document {
    issuer: String,
    jwks_uri: String,
}

impl Source {
    /// Discovery for `issuer`.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidName`] when the issuer is not an `https` URL
    /// without query or fragment (plain `http` only for a loopback issuer
    /// with `allow_http`).
    pub(super) fn discovery(issuer: &str, allow_http: bool) -> Result<Self, ConfigError> {
        let url = parse_url(issuer, "oidc issuer", allow_http, true)?;
        if url.query().is_some() || issuer.contains('#') {
            return Err(ConfigError::InvalidName {
                what: "oidc issuer",
                name: issuer.to_owned(),
                reason: "an issuer has no query or fragment",
            });
        }
        let document = format!("{}{WELL_KNOWN}", issuer.trim_end_matches('/'));
        let document = parse_url(&document, "oidc issuer", allow_http, true)?;
        Ok(Self::Discovery {
            issuer: issuer.to_owned(),
            document,
            allow_http,
            jwks_uri: Mutex::new(None),
        })
    }

    pub(super) fn issuer(&self) -> Option<&str> {
        match self {
            Self::Url(_) => None,
            Self::Discovery { issuer, .. } => Some(issuer),
        }
    }

    /// The URL of the keys: the configured one, or the discovered one
    /// (reading the discovery document with `get` when none is known). The
    /// error says why discovery failed.
    pub(super) async fn jwks_uri<F, Fut>(&self, get: F) -> Result<Uri, String>
    where
        F: FnOnce(Uri) -> Fut,
        Fut: Future<Output = Result<Bytes, String>>,
    {
        let (issuer, document, allow_http, jwks_uri) = match self {
            Self::Url(url) => return Ok(url.clone()),
            Self::Discovery {
                issuer,
                document,
                allow_http,
                jwks_uri,
            } => (issuer, document, *allow_http, jwks_uri),
        };
        if let Some(known) = lock(jwks_uri).clone() {
            return Ok(known);
        }
        let body = get(document.clone())
            .await
            .map_err(|e| format!("discovery: {e}"))?;
        let found: Document = serde_json::from_slice(&body)
            .map_err(|_| "discovery: no issuer and jwks_uri in the document".to_owned())?;
        // §4.3: the issuer in the document must be the one asked about,
        // exactly, or anyone serving that URL could vouch for another.
        if found.issuer != *issuer {
            return Err(format!(
                "discovery: the document is for issuer {:?}, not {issuer:?}",
                found.issuer
            ));
        }
        let url = parse_url(&found.jwks_uri, "jwks_uri", allow_http, true)
            .map_err(|e| format!("discovery: {e}"))?;
        *lock(jwks_uri) = Some(url.clone());
        tracing::debug!(issuer, jwks_uri = %url, "oidc discovery found the keys");
        Ok(url)
    }

    /// Forgets the discovered `jwks_uri`, so the next fetch reads the
    /// discovery document again.
    pub(super) fn forget(&self) {
        if let Self::Discovery { jwks_uri, .. } = self {
            *lock(jwks_uri) = None;
        }
    }
}

fn lock(uri: &Mutex<Option<Uri>>) -> std::sync::MutexGuard<'_, Option<Uri>> {
    // Updates replace the whole value; a poisoned lock is still consistent.
    uri.lock().unwrap_or_else(PoisonError::into_inner)
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Url(url) => write!(f, "{url}"),
            Self::Discovery { issuer, .. } => write!(f, "oidc issuer {issuer}"),
        }
    }
}

/// Parses an `https` URL with a host; plain `http` only with `allow_http`,
/// and then, with `loopback_only`, only for a loopback host.
pub(super) fn parse_url(
    url: &str,
    what: &'static str,
    allow_http: bool,
    loopback_only: bool,
) -> Result<Uri, ConfigError> {
    let bad = |reason| ConfigError::InvalidName {
        what,
        name: url.to_owned(),
        reason,
    };
    let parsed: Uri = url.parse().map_err(|_| bad("not a valid URL"))?;
    let Some(host) = parsed.host() else {
        return Err(bad("the URL has no host"));
    };
    match parsed.scheme_str() {
        Some("https") => Ok(parsed),
        Some("http") if allow_http && (!loopback_only || is_loopback(host)) => Ok(parsed),
        Some("http") if allow_http => Err(bad(
            "plain http is allowed for a loopback host only (tests); use https",
        )),
        Some("http") => Err(bad(
            "plain http lets anyone on the path replace the keys; use https",
        )),
        _ => Err(bad("the URL must start with https://")),
    }
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_sits_under_the_issuer_without_its_trailing_slash() {
        for issuer in ["https://id.example.com", "https://id.example.com/"] {
            let Source::Discovery { document, .. } = Source::discovery(issuer, false).unwrap()
            else {
                panic!("a discovery source");
            };
            assert_eq!(
                document,
                "https://id.example.com/.well-known/openid-configuration"
            );
        }
        let Source::Discovery { document, .. } =
            Source::discovery("https://id.example.com/tenant/", false).unwrap()
        else {
            panic!("a discovery source");
        };
        assert_eq!(
            document,
            "https://id.example.com/tenant/.well-known/openid-configuration"
        );
    }

    #[test]
    fn plain_http_is_for_loopback_only() {
        for ok in [
            "http://127.0.0.1:8080",
            "http://[::1]:8080",
            "http://localhost:1",
        ] {
            assert!(Source::discovery(ok, true).is_ok(), "{ok}");
            assert!(Source::discovery(ok, false).is_err(), "{ok}");
        }
        for bad in [
            "http://10.0.0.1",
            "http://id.example.com",
            "https://id.example.com?x=1",
            "https://id.example.com#f",
            "ftp://id.example.com",
            "not a url",
        ] {
            assert!(Source::discovery(bad, true).is_err(), "{bad}");
        }
    }
}
