//! Shared helpers for the SDK-driven tests: a server on an ephemeral loopback port and real
//! aws-sdk-timestreamwrite / -query clients pointed at it.
#![allow(dead_code, unused_imports)]

use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_timestreamquery as tsq;
use aws_sdk_timestreamwrite as tsw;
use timestream_local::{Options, Server};

pub use tsw::types::{Dimension, MeasureValue, MeasureValueType, Record, TimeUnit};

pub struct Local {
    pub server: Server,
    pub dir: tempfile::TempDir,
}

pub async fn start() -> Local {
    let dir = tempfile::tempdir().expect("tempdir");
    start_with(Options::new(dir.path()), dir).await
}

pub async fn start_with(opts: Options, dir: tempfile::TempDir) -> Local {
    let server = Server::start(opts).await.expect("server starts");
    Local { server, dir }
}

pub fn creds(akid: &str, secret: &str) -> tsw::config::Credentials {
    tsw::config::Credentials::new(akid, secret, None, None, "test")
}

/// Write client without retries (tests count calls and see first errors).
pub fn write_client(url: &str) -> tsw::Client {
    write_client_with(url, creds("AKIDLOCALTEST", "local-secret"), false)
}

pub fn write_client_with(url: &str, c: tsw::config::Credentials, retries: bool) -> tsw::Client {
    let retry = if retries {
        tsw::config::retry::RetryConfig::standard()
            .with_max_attempts(3)
            .with_initial_backoff(std::time::Duration::from_millis(1))
    } else {
        tsw::config::retry::RetryConfig::disabled()
    };
    let conf = tsw::Config::builder()
        .behavior_version_latest()
        .region(tsw::config::Region::new("us-east-1"))
        .endpoint_url(url)
        .credentials_provider(c)
        .retry_config(retry)
        .build();
    tsw::Client::from_conf(conf)
}

pub fn query_client(url: &str) -> tsq::Client {
    query_client_with(url, false)
}

pub fn query_client_with(url: &str, retries: bool) -> tsq::Client {
    let retry = if retries {
        tsq::config::retry::RetryConfig::standard()
            .with_max_attempts(3)
            .with_initial_backoff(std::time::Duration::from_millis(1))
    } else {
        tsq::config::retry::RetryConfig::disabled()
    };
    let conf = tsq::Config::builder()
        .behavior_version_latest()
        .region(tsq::config::Region::new("us-east-1"))
        .endpoint_url(url)
        .credentials_provider(tsq::config::Credentials::new(
            "AKIDLOCALTEST",
            "local-secret",
            None,
            None,
            "test",
        ))
        .retry_config(retry)
        .build();
    tsq::Client::from_conf(conf)
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after epoch")
        .as_millis() as i64
}

pub fn dim(name: &str, value: &str) -> Dimension {
    Dimension::builder()
        .name(name)
        .value(value)
        .build()
        .expect("dimension")
}

/// A DOUBLE record at `time_ms`.
pub fn rec(measure: &str, value: &str, time_ms: i64, dims: &[(&str, &str)]) -> Record {
    let mut b = Record::builder()
        .measure_name(measure)
        .measure_value(value)
        .measure_value_type(MeasureValueType::Double)
        .time(time_ms.to_string())
        .time_unit(TimeUnit::Milliseconds);
    for (n, v) in dims {
        b = b.dimensions(dim(n, v));
    }
    b.build()
}

/// Creates database `db` and table `table` (memory retention 24 h).
pub async fn create_db_table(w: &tsw::Client, db: &str, table: &str) {
    w.create_database()
        .database_name(db)
        .send()
        .await
        .expect("create database");
    w.create_table()
        .database_name(db)
        .table_name(table)
        .retention_properties(
            tsw::types::RetentionProperties::builder()
                .memory_store_retention_period_in_hours(24)
                .magnetic_store_retention_period_in_days(7)
                .build()
                .expect("retention"),
        )
        .send()
        .await
        .expect("create table");
}

/// The service error code of an SDK error (e.g. "ValidationException").
pub fn code<T: tsw::error::ProvideErrorMetadata>(e: &T) -> String {
    e.code().unwrap_or("<none>").to_string()
}
