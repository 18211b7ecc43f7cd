//! Fault injection for tests: extra latency, and a share or a count of calls answered with
//! ThrottlingException / InternalServerException. Changeable at runtime. Also counts the
//! calls of each operation in flight at once, so a test can check a client's concurrency
//! bound where it matters (at the backend) instead of inferring it from wall time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// Fault settings. `Default` = no faults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultOptions {
    /// Extra latency added before answering each affected call.
    pub latency_ms: u64,
    /// Probability (0..=1) that an affected call is answered with ThrottlingException.
    pub throttle_rate: f64,
    /// Probability (0..=1) that an affected call is answered with InternalServerException.
    pub internal_error_rate: f64,
    /// The next N affected calls are answered with ThrottlingException (consumed first).
    pub throttle_count: u64,
    /// The next N affected calls are answered with InternalServerException (after throttle_count).
    pub internal_error_count: u64,
    /// Operations affected; empty = WriteRecords and Query (DescribeEndpoints and DDL are spared).
    pub operations: Vec<String>,
}

impl FaultOptions {
    pub fn is_none(&self) -> bool {
        self.latency_ms == 0
            && self.throttle_rate <= 0.0
            && self.internal_error_rate <= 0.0
            && self.throttle_count == 0
            && self.internal_error_count == 0
    }

    fn affects(&self, op: &str) -> bool {
        if self.operations.is_empty() {
            op == "WriteRecords" || op == "Query"
        } else {
            self.operations.iter().any(|o| o == op || o == "*")
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        for (n, r) in [
            ("throttle_rate", self.throttle_rate),
            ("internal_error_rate", self.internal_error_rate),
        ] {
            if !(0.0..=1.0).contains(&r) {
                return Err(format!("{n} must be between 0 and 1"));
            }
        }
        Ok(())
    }
}

/// Handle to the live fault settings of a running server.
#[derive(Debug, Clone, Default)]
pub struct FaultHandle {
    inner: Arc<Mutex<FaultOptions>>,
    /// Per operation: (calls in flight now, most in flight at once since the last reset).
    in_flight: Arc<Mutex<HashMap<String, (u64, u64)>>>,
    /// Records of WriteRecords calls answered with success, duplicates included (the
    /// table's key folds an identical re-write into one row; this count does not, so a
    /// test can tell "written once" from "written twice").
    records_written: Arc<std::sync::atomic::AtomicU64>,
}

/// One call in flight; leaving it (drop) decrements the count.
pub(crate) struct InFlight {
    map: Arc<Mutex<HashMap<String, (u64, u64)>>>,
    op: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut m = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = m.get_mut(&self.op) {
            e.0 = e.0.saturating_sub(1);
        }
    }
}

/// What to do with one call.
pub(crate) struct Decision {
    pub latency_ms: u64,
    pub error: Option<ApiError>,
}

impl FaultHandle {
    pub fn new(opts: FaultOptions) -> Self {
        FaultHandle {
            inner: Arc::new(Mutex::new(opts)),
            in_flight: Arc::default(),
            records_written: Arc::default(),
        }
    }

    /// Records of successful WriteRecords calls since the start, duplicates included.
    pub fn records_written(&self) -> u64 {
        self.records_written
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn count_records_written(&self, n: u64) {
        self.records_written
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }

    /// Counts one call of `op` in flight until the returned guard is dropped.
    pub(crate) fn enter(&self, op: &str) -> InFlight {
        let mut m = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        let e = m.entry(op.to_string()).or_default();
        e.0 += 1;
        e.1 = e.1.max(e.0);
        InFlight {
            map: self.in_flight.clone(),
            op: op.to_string(),
        }
    }

    /// Most calls of `op` that were in flight at once since the last
    /// [`reset_max_in_flight`](Self::reset_max_in_flight) (or the start).
    pub fn max_in_flight(&self, op: &str) -> u64 {
        let m = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        m.get(op).map_or(0, |e| e.1)
    }

    /// Restarts every maximum from the calls in flight now.
    pub fn reset_max_in_flight(&self) {
        let mut m = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        for e in m.values_mut() {
            e.1 = e.0;
        }
    }

    /// Replace the settings (counts restart from the given values).
    pub fn set(&self, opts: FaultOptions) {
        *self.lock() = opts;
    }

    /// Current settings (counts show what is left).
    pub fn get(&self) -> FaultOptions {
        self.lock().clone()
    }

    /// Remove every fault.
    pub fn clear(&self) {
        self.set(FaultOptions::default());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FaultOptions> {
        // A poisoned lock only means a panic elsewhere; the settings are still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn decide(&self, op: &str) -> Decision {
        let mut f = self.lock();
        if f.is_none() || !f.affects(op) {
            return Decision {
                latency_ms: 0,
                error: None,
            };
        }
        let latency_ms = f.latency_ms;
        let error = if f.throttle_count > 0 {
            f.throttle_count -= 1;
            Some(throttle())
        } else if f.internal_error_count > 0 {
            f.internal_error_count -= 1;
            Some(internal())
        } else {
            let r: f64 = rand::random();
            if r < f.throttle_rate {
                Some(throttle())
            } else if r < f.throttle_rate + f.internal_error_rate {
                Some(internal())
            } else {
                None
            }
        };
        Decision { latency_ms, error }
    }
}

fn throttle() -> ApiError {
    ApiError::throttling("Rate exceeded (injected fault)")
}

fn internal() -> ApiError {
    ApiError::internal("Internal server error (injected fault)")
}
