//! Prometheus remote-storage connector for Amazon Timestream for LiveAnalytics.
//!
//! Layers, outermost first: `http` (axum router, auth, limits) → `write` / `read`
//! (pure translation between Prometheus and Timestream shapes) → `timestream`
//! (AWS SDK clients, batching, retries, error classification). `remote` holds the
//! Prometheus wire protocol and is used by the translation layer only.

pub mod read;
pub mod remote;
