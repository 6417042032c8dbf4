//! `GET /metrics` in the Prometheus text format, on an address of its own
//! (`PORTCULLIS_METRICS_ADDR`), never on the public listener: the counters
//! of every rejection, lockout and rate-limit refusal, from portcullis's
//! audit events through the `metrics` facade (feature `metrics`).

use crate::settings::env;

/// Starts the metrics listener when `PORTCULLIS_METRICS_ADDR` is set, and
/// returns the line to print about it.
#[cfg(feature = "metrics")]
pub(crate) async fn start() -> Result<Option<String>, String> {
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
    let metrics = Router::new().route("/metrics", get(move || async move { handle.render() }));
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
pub(crate) async fn start() -> Result<Option<String>, String> {
    match env("PORTCULLIS_METRICS_ADDR")? {
        Some(_) => Err("PORTCULLIS_METRICS_ADDR needs --features metrics".to_owned()),
        None => Ok(None),
    }
}
