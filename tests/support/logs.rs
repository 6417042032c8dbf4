//! Captured `tracing` output, for the L1 tests (no secret in logs).
#![allow(dead_code)] // each test binary uses its own subset

use std::{
    io,
    sync::{Arc, Mutex, OnceLock},
};

/// Everything every test of this binary logged so far, at every level.
#[derive(Clone, Default)]
pub(crate) struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    /// The output so far, as text.
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Installs (once per test binary) a global subscriber that captures every
/// event, and returns its buffer.
///
/// Global rather than per test: a subscriber scoped to one test would race
/// with the callsite registrations of the tests running beside it.
pub(crate) fn capture() -> Logs {
    static LOGS: OnceLock<Logs> = OnceLock::new();
    let logs = LOGS.get_or_init(|| {
        let logs = Logs::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .expect("only this function sets a subscriber in this test binary");
        logs
    });
    // A callsite that a test beside this one registered while the
    // subscriber was being installed may have cached "nobody listens";
    // asking every callsite again makes what this test logs certain to be
    // captured.
    tracing::callsite::rebuild_interest_cache();
    logs.clone()
}
