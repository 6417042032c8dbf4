//! `GET /metrics` in the Prometheus text format, on an address of its own
//! (`PORTCULLIS_METRICS_ADDR`), never on the public listener: the counters
//! of every rejection, lockout and rate-limit refusal, from portcullis's
//! audit events through the `metrics` facade (feature `metrics`), and the
//! gauges read at each scrape (table sizes, the revocation list's health).

use std::net::IpAddr;

use portcullis::{ClientIp, lockout::Tracker, rate_limit::RateLimitLayer, revoke::Revocations};

use crate::settings::env;

/// What a scrape reads besides the counters: the limiters' table sizes and
/// the revocation list's health (warn on
/// `portcullis_revocations_state{state="stale"}`, alert on `refusing`).
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub(crate) struct Gauges {
    pub(crate) lockout: Tracker<IpAddr>,
    pub(crate) rate_limit: Option<RateLimitLayer<ClientIp>>,
    pub(crate) revocations: Revocations,
}

#[cfg(feature = "metrics")]
impl Gauges {
    fn record(&self) {
        use portcullis::events::metrics::record_stats;
        record_stats(&self.lockout.stats());
        if let Some(rate_limit) = &self.rate_limit {
            record_stats(&rate_limit.stats());
        }
        record_stats(&self.revocations.stats());
    }
}

/// Starts the metrics listener when `PORTCULLIS_METRICS_ADDR` is set, and
/// returns the line to print about it.
#[cfg(feature = "metrics")]
pub(crate) async fn start(gauges: Gauges) -> Result<Option<String>, String> {
    use axum::{Router, routing::get};
    use metrics_exporter_prometheus::PrometheusBuilder;

    let Some(addr) = env("PORTCULLIS_METRICS_ADDR")? else {
        return Ok(None);
    };
    // The recorder first: portcullis registers its metrics with it.
    let handle = PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| format!("cannot install the metrics recorder: {e}"))?;
    portcullis::events::metrics::install();
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| format!("PORTCULLIS_METRICS_ADDR: cannot listen on {addr}: {e}"))?;
    let local = listener
        .local_addr()
        .map_err(|e| format!("PORTCULLIS_METRICS_ADDR: {e}"))?;
    let gauges = std::sync::Arc::new(gauges);
    let metrics = Router::new().route(
        "/metrics",
        get(move || async move {
            gauges.record();
            handle.render()
        }),
    );
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, metrics).await {
            tracing::error!(%error, "the metrics listener stopped");
        }
    });
    Ok(Some(format!("metrics on http://{local}/metrics")))
}

/// Without the `metrics` feature there is nothing to serve: a set
/// `PORTCULLIS_METRICS_ADDR` is a configuration error.
#[cfg(not(feature = "metrics"))]
pub(crate) async fn start(_: Gauges) -> Result<Option<String>, String> {
    match env("PORTCULLIS_METRICS_ADDR")? {
        Some(_) => Err("PORTCULLIS_METRICS_ADDR needs --features metrics".to_owned()),
        None => Ok(None),
    }
}
