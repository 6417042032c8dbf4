//! Floods a 100 000-entry lockout tracker with 10 million distinct client
//! addresses, one failed attempt each, and prints the entry count and the
//! peak resident memory (`VmHWM` from `/proc/self/status`, Linux) after 1M
//! and after 10M addresses: memory must stay flat, since the tables are
//! bounded by the policy's capacity whatever the number of clients. Then it
//! locks out a million more clients, to show that the lockout table is
//! bounded too.
//!
//! ```text
//! cargo run --release --example flood
//! ```

use std::{
    net::{IpAddr, Ipv6Addr},
    time::Instant,
};

use portcullis::lockout::{Policy, Tracker};

const CAPACITY: u64 = 100_000;
const CHECKPOINTS: [u64; 2] = [1_000_000, 10_000_000];
const LOCKED_OUT: u64 = 1_000_000;

/// Peak resident set size in KiB, if the platform reports it.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A distinct /64 per client, as an attacker with a large IPv6 block would
/// send.
fn client(n: u64) -> IpAddr {
    IpAddr::V6(Ipv6Addr::from(u128::from(n) << 64))
}

fn report(tracker: &Tracker<IpAddr>, label: &str, started: Instant) -> Option<u64> {
    let stats = tracker.stats();
    let rss = peak_rss_kib();
    println!(
        "{label:>24}: {:>6} counters, {:>7} lockouts, {:>8} evictions, peak RSS {} KiB, {:.1} s",
        stats.tracked,
        stats.locked_out,
        stats.evictions,
        rss.map_or_else(|| "n/a".to_owned(), |r| r.to_string()),
        started.elapsed().as_secs_f64(),
    );
    rss
}

fn main() {
    let tracker = Tracker::new(Policy::builder().capacity(CAPACITY).build().unwrap());
    let started = Instant::now();
    let mut peaks = Vec::new();
    let mut most = 0;
    for n in 1..=CHECKPOINTS[1] {
        tracker.record_failure(&client(n));
        if n % 100_000 == 0 {
            let tracked = tracker.stats().tracked;
            assert!(tracked <= CAPACITY, "{tracked} entries after {n} clients");
            most = most.max(tracked);
        }
        if CHECKPOINTS.contains(&n) {
            peaks.push(report(&tracker, &format!("{n} clients"), started));
        }
    }
    println!("most counters at any time: {most} (capacity {CAPACITY})");
    if let [Some(at_1m), Some(at_10m)] = peaks[..] {
        let growth = (at_10m as f64 - at_1m as f64) / at_1m as f64 * 100.0;
        println!("peak RSS growth from 1M to 10M clients: {growth:+.1}%");
        assert!(growth <= 10.0, "memory grew with the number of clients");
    }

    // Every client of this wave fails five times and is locked out.
    let first = CHECKPOINTS[1] + 1;
    for n in first..first + LOCKED_OUT {
        for _ in 0..5 {
            tracker.record_failure(&client(n));
        }
    }
    report(&tracker, &format!("+{LOCKED_OUT} locked out"), started);
    let stats = tracker.stats();
    assert!(
        stats.tracked <= CAPACITY && stats.locked_out <= CAPACITY,
        "{stats:?}"
    );
    assert_eq!(stats.lockouts, LOCKED_OUT);
}
