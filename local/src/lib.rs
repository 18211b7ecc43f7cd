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

/// SigV4 verification as AWS front doors do it, for tests that stand in for one (API
/// Gateway's IAM authorization checks `execute-api` signatures the same way).
pub mod signature {
    pub use crate::sigv4::{Request, Signed};

    /// Checks the `Authorization` header of `r` for `service`; `secret_of` gives the secret
    /// of an access key id. The error is (HTTP status, AWS error code, message).
    pub fn check(
        r: &Request<'_>,
        service: &str,
        secret_of: impl Fn(&str) -> Option<String>,
    ) -> Result<Signed, (u16, &'static str, String)> {
        crate::sigv4::check(r, service, secret_of).map_err(|e| (e.status, e.code, e.message))
    }
}
