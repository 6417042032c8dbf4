//! What a user sees of their sessions: how each signed in ([`Device`]),
//! and the list ([`SessionList`] of [`SessionInfo`]).

use std::{
    net::IpAddr,
    time::{SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use http::{HeaderValue, Response, header};

/// The longest user agent kept, in bytes: enough to recognise a browser
/// and its system.
const MAX_USER_AGENT: usize = 256;
/// The longest label kept, in bytes.
const MAX_LABEL: usize = 64;

/// How a session signed in, as its owner will see it in the list: the
/// user agent, the client address, and a short label of the
/// application's own ("Alice's phone", "CLI").
///
/// [`Sessions::device`](super::Sessions::device) reads the user agent and
/// the address (as [`ClientIp`](crate::ClientIp) resolves it, unless
/// [`SessionsBuilder::record_address`](super::SessionsBuilder::record_address)
/// is off) from a sign-in request.
///
/// # Privacy
///
/// This is all a session records about its device, and it is kept only
/// as long as the session lives: the user agent (at most 256 bytes,
/// printable ASCII; the rest is dropped), the client address (optional),
/// and the label (at most 64 bytes). None of it is a secret, and none of
/// it decides anything.
///
/// # Example
///
/// ```
/// use portcullis::session::Device;
///
/// let device = Device::new().with_user_agent("curl/8.5.0").with_label("deploy script");
/// assert_eq!(device.user_agent(), Some("curl/8.5.0"));
/// assert_eq!(device.address(), None);
/// assert_eq!(device.label(), Some("deploy script"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Device {
    user_agent: Option<Box<str>>,
    address: Option<IpAddr>,
    label: Option<Box<str>>,
}

impl Device {
    /// Nothing known.
    pub fn new() -> Self {
        Self::default()
    }

    /// The user agent (a `User-Agent` value): printable ASCII only, at most
    /// 256 bytes; an empty one is none.
    #[must_use]
    pub fn with_user_agent(mut self, user_agent: &str) -> Self {
        self.user_agent = clean(user_agent, MAX_USER_AGENT);
        self
    }

    /// The client address.
    #[must_use]
    pub fn with_address(mut self, address: IpAddr) -> Self {
        self.address = Some(address.to_canonical());
        self
    }

    /// A short label of the application's own, at most 64 bytes (cut at a
    /// character boundary; control characters dropped).
    #[must_use]
    pub fn with_label(mut self, label: &str) -> Self {
        self.label = clean(label, MAX_LABEL);
        self
    }

    /// The user agent, if known.
    pub fn user_agent(&self) -> Option<&str> {
        self.user_agent.as_deref()
    }

    /// The client address, if recorded.
    pub fn address(&self) -> Option<IpAddr> {
        self.address
    }

    /// The application's label, if any.
    pub fn label(&self) -> Option<&str> {
        self.label.as_deref()
    }

    /// The address as a store keeps it (`""` for none).
    #[cfg(feature = "redis")] // the redis store
    pub(crate) fn address_text(&self) -> String {
        self.address.map(|a| a.to_string()).unwrap_or_default()
    }

    /// A device from what a store kept (`""` for none).
    #[cfg(feature = "redis")] // the redis store
    pub(crate) fn from_stored(user_agent: &str, address: &str, label: &str) -> Self {
        Self {
            user_agent: clean(user_agent, MAX_USER_AGENT),
            address: address.parse().ok(),
            label: clean(label, MAX_LABEL),
        }
    }
}

/// `text` without control characters (and, for user agents, without
/// anything but printable ASCII), cut to `max` bytes at a character
/// boundary; `None` when nothing is left.
fn clean(text: &str, max: usize) -> Option<Box<str>> {
    let mut kept = String::with_capacity(text.len().min(max));
    for c in text.chars().filter(|c| !c.is_control()) {
        if kept.len() + c.len_utf8() > max {
            break;
        }
        if max == MAX_USER_AGENT && !c.is_ascii() {
            continue;
        }
        kept.push(c);
    }
    let kept = kept.trim();
    (!kept.is_empty()).then(|| kept.into())
}

/// One live session of a subject, as [`Sessions::list`](super::Sessions::list)
/// shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    id: Box<str>,
    created_at: SystemTime,
    last_used_at: SystemTime,
    current: bool,
    device: Device,
}

impl SessionInfo {
    pub(crate) fn new(
        id: Box<str>,
        created_at: SystemTime,
        last_used_at: SystemTime,
        current: bool,
        device: Device,
    ) -> Self {
        Self {
            id,
            created_at,
            last_used_at,
            current,
            device,
        }
    }

    /// The session id (the `sid` of its access tokens; not a secret): what
    /// [`Sessions::end`](super::Sessions::end) takes.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// When it signed in.
    pub fn created_at(&self) -> SystemTime {
        self.created_at
    }

    /// When it signed in or last refreshed.
    pub fn last_used_at(&self) -> SystemTime {
        self.last_used_at
    }

    /// Whether it is the session of the caller.
    pub fn is_current(&self) -> bool {
        self.current
    }

    /// How it signed in.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The JSON object of the list: `id`, `created_at` and `last_used_at`
    /// (Unix seconds), `current`, `user_agent`, `address` and `label`
    /// (strings or null).
    pub fn json(&self) -> serde_json::Value {
        let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        serde_json::json!({
            "id": self.id,
            "created_at": secs(self.created_at),
            "last_used_at": secs(self.last_used_at),
            "current": self.current,
            "user_agent": self.device.user_agent(),
            "address": self.device.address().map(|a| a.to_string()),
            "label": self.device.label(),
        })
    }
}

/// The live sessions of a subject, most recently used first: the answer of
/// [`Sessions::list`](super::Sessions::list).
///
/// As a response (`Response::from(list)`, or returned from an axum
/// handler): 200, `Cache-Control: no-store`, a JSON array of
/// [`SessionInfo::json`] objects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionList {
    sessions: Vec<SessionInfo>,
}

impl SessionList {
    pub(crate) fn new(mut sessions: Vec<SessionInfo>) -> Self {
        sessions.sort_by(|a, b| {
            b.last_used_at
                .cmp(&a.last_used_at)
                .then_with(|| a.id.cmp(&b.id))
        });
        Self { sessions }
    }

    /// The sessions, most recently used first.
    pub fn iter(&self) -> std::slice::Iter<'_, SessionInfo> {
        self.sessions.iter()
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// The JSON array.
    pub fn body(&self) -> String {
        serde_json::Value::Array(self.sessions.iter().map(SessionInfo::json).collect()).to_string()
    }
}

impl<'a> IntoIterator for &'a SessionList {
    type Item = &'a SessionInfo;
    type IntoIter = std::slice::Iter<'a, SessionInfo>;

    fn into_iter(self) -> Self::IntoIter {
        self.sessions.iter()
    }
}

impl IntoIterator for SessionList {
    type Item = SessionInfo;
    type IntoIter = std::vec::IntoIter<SessionInfo>;

    fn into_iter(self) -> Self::IntoIter {
        self.sessions.into_iter()
    }
}

impl From<SessionList> for Response<Bytes> {
    fn from(list: SessionList) -> Self {
        let mut response = Response::new(Bytes::from(list.body()));
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_keep_printable_text_within_bounds() {
        let device = Device::new()
            .with_user_agent("Mozilla/5.0 \u{1}(X11)\u{e9}")
            .with_label(&"é".repeat(40));
        assert_eq!(device.user_agent(), Some("Mozilla/5.0 (X11)"));
        assert_eq!(device.label().map(str::len), Some(64));
        assert_eq!(
            Device::new()
                .with_user_agent(&"a".repeat(1000))
                .user_agent()
                .map(str::len),
            Some(256)
        );
        assert_eq!(Device::new().with_user_agent(" \t").user_agent(), None);
    }
}
