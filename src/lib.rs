//! Prometheus remote-storage connector for Amazon Timestream for LiveAnalytics.
//!
//! Layers, outermost first: `http` (axum router, auth, limits) → `write` / `read`
//! (pure translation between Prometheus and Timestream shapes) → `timestream`
//! (AWS SDK clients, batching, retries, error classification). `remote` holds the
//! Prometheus wire protocol and is used by the translation layer only.

pub mod config;
pub mod error;
pub mod histogram;
pub mod http;
pub mod lambda;
pub mod metrics;
pub mod read;
pub mod remote;
pub mod server;
pub mod special;
pub mod telemetry;
pub mod timestream;
pub mod write;

pub use http::{app, AppState};
