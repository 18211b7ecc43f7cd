//! Remote read: Prometheus matchers → Timestream SQL, Timestream rows →
//! Prometheus series. Pure functions over plain types; the AWS calls live in
//! `crate::timestream::reader` and the HTTP glue in `crate::http::read`.

pub mod assemble;
pub mod error;
pub mod regex;
pub mod sql;

pub use error::ReadError;
