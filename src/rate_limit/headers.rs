//! The `RateLimit` response fields: the separate `RateLimit-Limit`,
//! `-Remaining` and `-Reset` of the earlier drafts, and the structured
//! `RateLimit-Policy` and `RateLimit` of the current IETF draft
//! ([draft-ietf-httpapi-ratelimit-headers-10](https://datatracker.ietf.org/doc/draft-ietf-httpapi-ratelimit-headers/)).

use std::{sync::Arc, time::Duration};

use http::{HeaderName, HeaderValue, response};

use crate::{
    ConfigError,
    gate::Hook,
    reject::{RATELIMIT, retry_after_secs, service_limit, sf_string},
};

const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");
const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// Which `RateLimit` response fields a
/// [`RateLimitLayer`](super::RateLimitLayer) sends; see
/// [`RateLimitBuilder::header_fields`](super::RateLimitBuilder::header_fields).
///
/// For a limit of `burst` requests, one coming back every `interval`:
///
/// | field | value |
/// |---|---|
/// | `RateLimit-Limit` | the burst |
/// | `RateLimit-Remaining` | requests left right now |
/// | `RateLimit-Reset` | seconds until the whole burst is back, rounded up |
/// | `RateLimit-Policy` | `"NAME";q=BURST;w=SECONDS`: the burst, and the seconds a whole burst takes to come back (rounded up) |
/// | `RateLimit` | `"NAME";r=REMAINING;t=SECONDS`: requests left right now; `t`, when some are used, is the seconds until at least one more is allowed (rounded up, at most one interval; on a refusal it equals `Retry-After`) |
///
/// # Example
///
/// ```
/// use std::{convert::Infallible, net::SocketAddr};
/// use http::{Request, Response};
/// use portcullis::{PeerAddr, rate_limit::{HeaderFields, RateLimitLayer}};
/// use tower::{Service, ServiceBuilder, ServiceExt};
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let layer = RateLimitLayer::builder()
///     .per_minute(10)
///     .header_fields(HeaderFields::Structured)
///     .build()
///     .unwrap();
/// let mut svc = ServiceBuilder::new()
///     .layer(layer)
///     .service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });
/// let peer: SocketAddr = "192.0.2.7:40000".parse().unwrap();
/// let req = Request::builder().extension(PeerAddr(peer)).body(()).unwrap();
/// let res = svc.ready().await.unwrap().call(req).await.unwrap();
/// assert_eq!(res.headers()["ratelimit-policy"], r#""default";q=10;w=60"#);
/// assert_eq!(res.headers()["ratelimit"], r#""default";r=9;t=6"#);
/// # });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HeaderFields {
    /// `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset`, as
    /// drafts up to -06 defined them and many clients read them.
    Separate,
    /// `RateLimit-Policy` and `RateLimit`, the structured fields of the
    /// current draft.
    Structured,
    /// Both sets.
    Both,
}

impl HeaderFields {
    fn separate(self) -> bool {
        matches!(self, Self::Separate | Self::Both)
    }

    fn structured(self) -> bool {
        matches!(self, Self::Structured | Self::Both)
    }
}

/// What a layer's fields need, computed when it is built.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    fields: HeaderFields,
    /// The policy name as a structured-field string, quotes included.
    name: String,
    /// `RateLimit-Policy`, the same on every response.
    policy: HeaderValue,
    burst: u32,
    interval: Duration,
}

impl Config {
    /// # Errors
    ///
    /// [`ConfigError::InvalidName`] when `name` holds anything but
    /// printable ASCII (a structured-field string cannot carry it).
    pub(crate) fn new(
        fields: HeaderFields,
        name: &str,
        burst: u32,
        interval: Duration,
    ) -> Result<Self, ConfigError> {
        let name = sf_string(name).ok_or_else(|| ConfigError::InvalidName {
            what: "rate limit policy name",
            name: name.to_owned(),
            reason: "only printable ASCII fits a structured field string",
        })?;
        let window = retry_after_secs(interval.saturating_mul(burst));
        let policy = HeaderValue::try_from(format!("{name};q={burst};w={window}"))
            .expect("sf_string keeps printable ASCII");
        Ok(Self {
            fields,
            name,
            policy,
            burst,
            interval,
        })
    }

    /// The fields of an allowed request with `remaining` requests left.
    pub(crate) fn allowed(self: &Arc<Self>, remaining: u32) -> Headers {
        let used = self.burst.saturating_sub(remaining);
        // GCRA gives one request's allowance back every interval: the whole
        // burst is back after one interval per used request, and at least
        // one more request after one interval (the exact time is not
        // exposed).
        Headers {
            config: Arc::clone(self),
            remaining,
            reset: retry_after_secs(self.interval.saturating_mul(used)),
            next: if used > 0 {
                retry_after_secs(self.interval)
            } else {
                NOTHING_COMING
            },
        }
    }

    /// The fields of a refused request: nothing left, one more request
    /// after `retry_after`, and the whole burst one burst's tolerance later.
    pub(crate) fn refused(self: &Arc<Self>, retry_after: Duration) -> Headers {
        let tolerance = self.interval.saturating_mul(self.burst.saturating_sub(1));
        Headers {
            config: Arc::clone(self),
            remaining: 0,
            reset: retry_after_secs(retry_after.saturating_add(tolerance)),
            next: retry_after_secs(retry_after),
        }
    }
}

/// `Headers::next` when no allowance is coming back (none is used).
const NOTHING_COMING: u64 = 0;

/// The `RateLimit` fields of one response, written when its head goes by.
///
/// Small, because it travels in every response future: the values are
/// formatted only in [`Hook::on_response`].
#[derive(Debug, Clone)]
pub(crate) struct Headers {
    config: Arc<Config>,
    remaining: u32,
    /// Seconds until the whole burst is back, rounded up.
    reset: u64,
    /// Seconds until at least one more request is allowed, rounded up, or
    /// [`NOTHING_COMING`].
    next: u64,
}

impl Hook for Headers {
    fn on_response(self, response: &mut response::Parts) {
        let headers = &mut response.headers;
        let config = &*self.config;
        if config.fields.separate() {
            headers.insert(RATELIMIT_LIMIT, HeaderValue::from(config.burst));
            headers.insert(RATELIMIT_REMAINING, HeaderValue::from(self.remaining));
            headers.insert(RATELIMIT_RESET, HeaderValue::from(self.reset));
        }
        if config.fields.structured() {
            let next = (self.next != NOTHING_COMING).then_some(self.next);
            headers.insert(RATELIMIT_POLICY, config.policy.clone());
            headers.insert(RATELIMIT, service_limit(&config.name, self.remaining, next));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(headers: Headers) -> Vec<(String, String)> {
        assert!(size_of::<Headers>() <= 32, "the hook stays small");
        let (mut parts, ()) = http::Response::new(()).into_parts();
        headers.on_response(&mut parts);
        let mut out: Vec<_> = parts
            .headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        out.sort();
        out
    }

    #[test]
    fn structured_fields_follow_the_draft_syntax() {
        let config = Arc::new(
            Config::new(
                HeaderFields::Structured,
                "default",
                10,
                Duration::from_millis(1500),
            )
            .unwrap(),
        );
        assert_eq!(
            fields(config.allowed(10)),
            [
                ("ratelimit".into(), r#""default";r=10"#.into()),
                ("ratelimit-policy".into(), r#""default";q=10;w=15"#.into())
            ]
        );
        assert_eq!(fields(config.allowed(7))[0].1, r#""default";r=7;t=2"#);
        assert_eq!(
            fields(config.refused(Duration::from_millis(200)))[0].1,
            r#""default";r=0;t=1"#
        );
    }

    #[test]
    fn both_sets_can_go_together() {
        let config = Arc::new(
            Config::new(HeaderFields::Both, "per-ip", 2, Duration::from_secs(30)).unwrap(),
        );
        let names: Vec<_> = fields(config.allowed(1))
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(
            names,
            [
                "ratelimit",
                "ratelimit-limit",
                "ratelimit-policy",
                "ratelimit-remaining",
                "ratelimit-reset"
            ]
        );
    }

    #[test]
    fn policy_names_are_structured_field_strings() {
        assert_eq!(sf_string(r#"a"b\c"#).unwrap(), r#""a\"b\\c""#);
        assert_eq!(sf_string("tab\there"), None);
        assert_eq!(sf_string("caf\u{e9}"), None);
        assert!(
            Config::new(
                HeaderFields::Structured,
                "caf\u{e9}",
                1,
                Duration::from_secs(1)
            )
            .is_err()
        );
    }
}
