//! Allow- and deny-lists for the limiters (SECURITY.md B16).
//!
//! A [`ClientList`] matches requests by client address (CIDR ranges,
//! resolved by a [`ClientIp`] so that trusted proxies are honoured) or by a
//! predicate over the request head. Give one to
//! [`LockoutBuilder::allow`](crate::lockout::LockoutBuilder::allow) /
//! [`deny`](crate::lockout::LockoutBuilder::deny) or
//! [`RateLimitBuilder::allow`](crate::rate_limit::RateLimitBuilder::allow) /
//! [`deny`](crate::rate_limit::RateLimitBuilder::deny):
//!
//! - a request on the **allow** list passes the limiter untouched: it is
//!   neither limited nor counted (your monitoring, an office network);
//! - a request on the **deny** list is refused with 403 (gRPC
//!   `PERMISSION_DENIED`, [`RejectionKind::Denied`](crate::reject::RejectionKind::Denied))
//!   before anything else runs. The deny list wins over the allow list.
//!
//! # Example
//!
//! ```
//! use http::Request;
//! use portcullis::{ClientIp, PeerAddr, client_list::ClientList};
//!
//! let office = ClientList::cidrs(ClientIp::new(), ["192.0.2.0/24", "2001:db8::/32"])?;
//! let (inside, ()) = Request::builder()
//!     .extension(PeerAddr("192.0.2.7:40000".parse().unwrap()))
//!     .body(())
//!     .unwrap()
//!     .into_parts();
//! assert!(office.contains(&inside));
//!
//! let probes = ClientList::matching(|req| req.headers.contains_key("x-probe"));
//! assert!(!probes.contains(&inside));
//! # Ok::<(), portcullis::ConfigError>(())
//! ```

use std::{fmt, sync::Arc};

use http::request::Parts;

use crate::{ClientIp, ConfigError, client_ip::cidr::Trusted};

type Predicate = Arc<dyn Fn(&Parts) -> bool + Send + Sync>;

/// Requests matched by client address or by a predicate; see the
/// [module docs](self).
#[derive(Clone)]
pub struct ClientList {
    ranges: Option<(ClientIp, Arc<Trusted>)>,
    predicate: Option<Predicate>,
}

impl ClientList {
    /// The requests whose client address (resolved by `client_ip`) lies in
    /// one of `cidrs` (`10.0.0.0/8`, `2001:db8::/32`, `192.0.2.1`).
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidCidr`] for anything that is not a range in CIDR
    /// notation, as [`ClientIpBuilder::trust_proxies`](crate::client_ip::ClientIpBuilder::trust_proxies) checks it.
    pub fn cidrs<I, S>(client_ip: ClientIp, cidrs: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut ranges = Trusted::default();
        for cidr in cidrs {
            ranges.add(cidr.as_ref())?;
        }
        Ok(Self {
            ranges: Some((client_ip, Arc::new(ranges))),
            predicate: None,
        })
    }

    /// The requests `predicate` matches.
    pub fn matching<F>(predicate: F) -> Self
    where
        F: Fn(&Parts) -> bool + Send + Sync + 'static,
    {
        Self {
            ranges: None,
            predicate: Some(Arc::new(predicate)),
        }
    }

    /// Also matches the requests `predicate` matches.
    #[must_use]
    pub fn or_matching<F>(self, predicate: F) -> Self
    where
        F: Fn(&Parts) -> bool + Send + Sync + 'static,
    {
        let predicate: Predicate = match self.predicate {
            Some(first) => Arc::new(move |parts| first(parts) || predicate(parts)),
            None => Arc::new(predicate),
        };
        Self {
            ranges: self.ranges,
            predicate: Some(predicate),
        }
    }

    /// Whether the list matches `request`. A request without a client
    /// address matches no range.
    pub fn contains(&self, request: &Parts) -> bool {
        if let Some((client_ip, ranges)) = &self.ranges
            && client_ip
                .resolve(request)
                .is_some_and(|addr| ranges.contains(addr))
        {
            return true;
        }
        self.predicate.as_ref().is_some_and(|p| p(request))
    }
}

impl fmt::Debug for ClientList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientList")
            .field("ranges", &self.ranges.as_ref().map(|(_, r)| r.display()))
            .field("predicate", &self.predicate.is_some())
            .finish()
    }
}

/// What a limiter's lists say about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Listed {
    Allowed,
    Denied,
    Neither,
}

/// The allow- and deny-list of one limiter.
#[derive(Debug, Clone, Default)]
pub(crate) struct Lists {
    pub(crate) allow: Option<ClientList>,
    pub(crate) deny: Option<ClientList>,
}

impl Lists {
    pub(crate) fn is_empty(&self) -> bool {
        self.allow.is_none() && self.deny.is_none()
    }

    /// The deny list wins.
    pub(crate) fn check(&self, request: &Parts) -> Listed {
        if self.deny.as_ref().is_some_and(|l| l.contains(request)) {
            Listed::Denied
        } else if self.allow.as_ref().is_some_and(|l| l.contains(request)) {
            Listed::Allowed
        } else {
            Listed::Neither
        }
    }
}
