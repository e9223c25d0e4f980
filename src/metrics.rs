//! Metrics: a no-op stand-in with the final API; the Prometheus registry lands with the monitoring work (issue 3).
use crate::clock::Timestamp;
use std::time::Duration;
pub enum RestartResult {
    Ok,
    Failed,
    Skipped,
}
#[derive(Default)]
pub struct Metrics;
impl Metrics {
    pub fn new() -> Metrics {
        Metrics
    }
    pub fn observe_probe(&self, _p: &str, _o: &str, _d: Duration) {}
    pub fn set_session(&self, _p: &str, _s: &str, _st: &str, _f: u32, _l: Option<Timestamp>) {}
    pub fn retire_session(&self, _p: &str, _s: &str) {}
    pub fn restart_result(&self, _p: &str, _r: RestartResult) {}
    pub fn desync_detected(&self, _p: &str) {}
    pub fn recovered(&self, _p: &str, _d: Duration) {}
    pub fn set_provider(&self, _p: &str, _u: bool, _o: bool) {}
    pub fn encode(&self) -> Result<String, String> {
        Ok(String::new())
    }
}
