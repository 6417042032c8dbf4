//! The keys a [`ClientIp`] derives, compared with another extractor's: a
//! rate limiter and a lockout on one Redis store that provably count the
//! same keys ask Redis together on a key's first contact (see
//! [`RedisStore`](crate::RedisStore), "A new client").

use std::any::Any;

use super::ClientIp;
use crate::{KeyExtractor, redis::KeySpace};

/// The keys `extractor` derives, when the crate can tell: a [`ClientIp`]'s
/// are known; a closure's or another type's are not, and nothing is ever
/// matched with them.
pub(crate) fn key_space<E: KeyExtractor>(extractor: &E) -> Option<KeySpace> {
    let any: &dyn Any = extractor;
    any.downcast_ref::<ClientIp>()
        .map(|ip| KeySpace::new(ip.keys_form()))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use std::sync::{Arc, Weak};

    use super::*;
    use crate::redis::{Prefetch, Prefetchers};

    struct Counting(AtomicUsize);

    impl Prefetch<std::net::IpAddr> for Counting {
        fn prefetch(&self, _: &std::net::IpAddr) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn space(ip: ClientIp) -> KeySpace {
        key_space(&ip).expect("a ClientIp has a key space")
    }

    #[test]
    fn only_extractors_that_derive_the_same_keys_are_matched() {
        let registry = Arc::new(Prefetchers::default());
        let lockout = Arc::new(Counting(AtomicUsize::new(0)));
        let weak: Weak<dyn Prefetch<std::net::IpAddr>> =
            Arc::downgrade(&lockout) as Weak<dyn Prefetch<std::net::IpAddr>>;
        registry.register(space(ClientIp::new()), weak);
        let key: std::net::IpAddr = "192.0.2.1".parse().unwrap();

        registry.for_space(space(ClientIp::new())).prefetch(&key);
        assert_eq!(lockout.0.load(Ordering::Relaxed), 1, "the same defaults");

        let others = [
            ClientIp::builder().ipv6_prefix(56).build().unwrap(),
            ClientIp::builder().ipv4_prefix(24).build().unwrap(),
            ClientIp::builder()
                .trust_proxies(["10.0.0.0/8"])
                .build()
                .unwrap(),
        ];
        for other in others {
            registry.for_space(space(other)).prefetch(&key);
        }
        assert_eq!(lockout.0.load(Ordering::Relaxed), 1, "other keys");

        // Another key type under the same space is not called either.
        registry
            .for_space::<String>(space(ClientIp::new()))
            .prefetch(&"192.0.2.1".to_owned());
        assert_eq!(lockout.0.load(Ordering::Relaxed), 1);

        let closure = |_: &http::request::Parts| Ok::<_, crate::AuthRejection>(0u8);
        assert!(key_space(&closure).is_none(), "a closure is unknown");

        drop(lockout);
        registry.for_space(space(ClientIp::new())).prefetch(&key);
    }

    #[test]
    fn the_same_trusted_ranges_in_another_order_are_the_same_keys() {
        let given = |ranges: &[&str]| {
            space(
                ClientIp::builder()
                    .trust_proxies(ranges.iter().copied())
                    .build()
                    .unwrap(),
            )
        };
        assert_eq!(
            given(&["10.0.0.0/8", "fd00::/8", "192.0.2.1"]),
            given(&["192.0.2.1/32", "fd00::/8", "10.0.0.0/8", "10.0.0.0/8"])
        );
        assert_ne!(given(&["10.0.0.0/8"]), given(&["10.0.0.0/16"]));
    }
}
