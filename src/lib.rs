//! Prometheus remote-storage connector for Amazon Timestream for LiveAnalytics.
//!
//! Layers, outermost first: `http` (axum router, auth, tower limit layers) → `write`
//! (pure translation of a request into WriteRecords batches) / `read` (the read service:
//! planning, column knowledge, budgets, grouping, frames, over the `read::storage::Storage`
//! trait) → `timestream` (AWS SDK clients, batching, retries, error classification, and the
//! `Storage` implementation). `remote` holds the Prometheus wire protocol and knows neither
//! HTTP nor AWS. `error::ApiError` is the one HTTP-facing error and status mapping.

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
