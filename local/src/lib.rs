//! placeholder
pub mod sql;
