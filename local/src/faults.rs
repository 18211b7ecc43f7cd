//! Fault injection for tests: extra latency, and a share or a count of calls answered with
//! ThrottlingException / InternalServerException. Changeable at runtime.

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
