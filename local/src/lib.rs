//! timestream-local: a local, SQLite-backed server speaking the Amazon Timestream for
//! LiveAnalytics write and query APIs (awsJson1_0), for tests and for trying the connector
//! without an AWS account.

mod error;
mod faults;
mod iam;
mod query;
mod server;
mod sigv4;
pub mod sql;
mod store;
mod write;

pub use faults::{FaultHandle, FaultOptions};
pub use server::{Options, Server};
