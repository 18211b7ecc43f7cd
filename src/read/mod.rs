//! Remote read: the read service (`service`: planning, column knowledge, the samples
//! budget, grouping, SAMPLES results and chunk frames) over pure translation functions
//! (`sql`: matchers → SQL; `assemble`: rows → series). Storage is reached through the
//! `storage::Storage` trait, which `crate::timestream::query` implements with the AWS SDK;
//! `crate::http::read` decodes the request, negotiates and streams the body. Knows neither
//! HTTP nor the SDK.

pub mod assemble;
pub mod columns;
pub mod error;
pub mod regex;
pub mod service;
pub mod sql;
pub mod storage;

pub use error::ReadError;
pub use service::{ReadOptions, ReadService};
