//! SigV4 verification (credentials file) and fault injection, through the real SDK.
mod common;

use std::time::{Duration, Instant};

use aws_sdk_timestreamquery as tsq;
use aws_sdk_timestreamwrite as tsw;
use common::*;
use timestream_local::{FaultOptions, Options};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn start_with_credentials() -> Local {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("credentials");
    std::fs::write(
        &file,
        "# test keys\nAKIDGOOD0000000000 good-secret-key\n\nAKIDOTHER000000000 other/secret+key\n",
    )
    .unwrap();
    let mut opts = Options::new(dir.path().join("data"));
    opts.credentials_file = Some(file);
    start_with(opts, dir).await
}

#[tokio::test]
async fn sigv4_accepts_listed_keys() {
    let l = start_with_credentials().await;
    for (akid, secret) in [
        ("AKIDGOOD0000000000", "good-secret-key"),
        ("AKIDOTHER000000000", "other/secret+key"),
    ] {
        let w = write_client_with(&l.server.url(), creds(akid, secret), false);
        w.list_databases()
            .send()
            .await
            .expect("signed request accepted");
    }
    // Write with a body, then a query-service call: both sign with service "timestream".
    let w = write_client_with(
        &l.server.url(),
        creds("AKIDGOOD0000000000", "good-secret-key"),
        false,
    );
    create_db_table(&w, "authdb", "authtable").await;
    w.write_records()
        .database_name("authdb")
        .table_name("authtable")
        .records(rec("m", "1", now_ms(), &[("h", "a \"quoted\" ü")]))
        .send()
        .await
        .unwrap();
    let qconf = tsq::Config::builder()
        .behavior_version_latest()
        .region(tsq::config::Region::new("eu-west-1"))
        .endpoint_url(l.server.url())
        .credentials_provider(tsq::config::Credentials::new(
            "AKIDGOOD0000000000",
            "good-secret-key",
            None,
            None,
            "test",
        ))
        .build();
    tsq::Client::from_conf(qconf)
        .describe_endpoints()
        .send()
        .await
        .expect("query client signature (other region) accepted");
    l.server.shutdown().await;
}

#[tokio::test]
async fn sigv4_rejects_unknown_key_and_wrong_secret() {
    let l = start_with_credentials().await;
    let w = write_client_with(&l.server.url(), creds("AKIDUNKNOWN0000000", "x"), false);
    let e = w.list_databases().send().await.unwrap_err();
    assert_eq!(code(&e), "UnrecognizedClientException");
    assert_eq!(e.raw_response().unwrap().status().as_u16(), 403);
    assert!(format!("{e:?}").contains("The security token included in the request is invalid."));

    let w = write_client_with(
        &l.server.url(),
        creds("AKIDGOOD0000000000", "not-the-secret"),
        false,
    );
    let e = w.list_databases().send().await.unwrap_err();
    assert_eq!(code(&e), "InvalidSignatureException");
    // Secrets never appear in answers.
    let body = format!("{e:?}");
    assert!(!body.contains("good-secret-key") && !body.contains("not-the-secret"));
    l.server.shutdown().await;
}

#[tokio::test]
async fn without_credentials_file_anything_goes() {
    let l = start().await;
    let w = write_client_with(&l.server.url(), creds("ANY", "thing"), false);
    w.list_databases().send().await.unwrap();
    l.server.shutdown().await;
}

#[tokio::test]
async fn throttle_count_is_seen_after_sdk_retries() {
    let l = start().await;
    let w = write_client(&l.server.url());
    create_db_table(&w, "fdb", "ftable").await;
    let faults = l.server.faults();

    // Without retries: exactly one call consumed per error.
    faults.set(FaultOptions {
        throttle_count: 2,
        ..Default::default()
    });
    for _ in 0..2 {
        let e = w
            .write_records()
            .database_name("fdb")
            .table_name("ftable")
            .records(rec("m", "1", now_ms(), &[("h", "a")]))
            .send()
            .await
            .unwrap_err();
        assert!(
            e.as_service_error().unwrap().is_throttling_exception(),
            "{e:?}"
        );
        assert_eq!(e.raw_response().unwrap().status().as_u16(), 429);
    }
    w.write_records()
        .database_name("fdb")
        .table_name("ftable")
        .records(rec("m", "1", now_ms(), &[("h", "a")]))
        .send()
        .await
        .expect("faults used up");

    // With standard retries (3 attempts): 2 throttles are absorbed, 5 are not.
    let wr = write_client_with(&l.server.url(), creds("AKID", "s"), true);
    faults.set(FaultOptions {
        throttle_count: 2,
        ..Default::default()
    });
    wr.write_records()
        .database_name("fdb")
        .table_name("ftable")
        .records(rec("m", "1", now_ms(), &[("h", "b")]))
        .send()
        .await
        .expect("retried past two throttles");
    faults.set(FaultOptions {
        throttle_count: 5,
        ..Default::default()
    });
    let e = wr
        .write_records()
        .database_name("fdb")
        .table_name("ftable")
        .records(rec("m", "1", now_ms(), &[("h", "c")]))
        .send()
        .await
        .unwrap_err();
    assert!(e.as_service_error().unwrap().is_throttling_exception());
    assert_eq!(faults.get().throttle_count, 2, "3 attempts were made");

    // Query is affected too; DescribeEndpoints and DDL are not.
    faults.set(FaultOptions {
        throttle_rate: 1.0,
        ..Default::default()
    });
    let q = query_client(&l.server.url());
    let e = q.query().query_string("SELECT 1").send().await.unwrap_err();
    assert!(
        e.as_service_error().unwrap().is_throttling_exception(),
        "{e:?}"
    );
    w.describe_endpoints().send().await.unwrap();
    w.list_tables().send().await.unwrap();
    l.server.shutdown().await;
}

#[tokio::test]
async fn internal_errors_and_latency() {
    let l = start().await;
    let w = write_client(&l.server.url());
    create_db_table(&w, "fdb", "ftable").await;
    let faults = l.server.faults();
    faults.set(FaultOptions {
        internal_error_count: 1,
        ..Default::default()
    });
    let e = w
        .write_records()
        .database_name("fdb")
        .table_name("ftable")
        .records(rec("m", "1", now_ms(), &[("h", "a")]))
        .send()
        .await
        .unwrap_err();
    assert!(e.as_service_error().unwrap().is_internal_server_exception());
    assert_eq!(e.raw_response().unwrap().status().as_u16(), 500);

    faults.set(FaultOptions {
        latency_ms: 300,
        ..Default::default()
    });
    let t0 = Instant::now();
    w.write_records()
        .database_name("fdb")
        .table_name("ftable")
        .records(rec("m", "1", now_ms(), &[("h", "a")]))
        .send()
        .await
        .unwrap();
    assert!(t0.elapsed() >= Duration::from_millis(300));
    faults.clear();

    // Operations can be chosen explicitly.
    faults.set(FaultOptions {
        internal_error_rate: 1.0,
        operations: vec!["ListDatabases".into()],
        ..Default::default()
    });
    assert!(w.list_databases().send().await.is_err());
    w.write_records()
        .database_name("fdb")
        .table_name("ftable")
        .records(rec("m", "1", now_ms(), &[("h", "a")]))
        .send()
        .await
        .unwrap();
    l.server.shutdown().await;
}

async fn http(addr: std::net::SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

#[tokio::test]
async fn admin_endpoint_switches_faults() {
    let l = start().await;
    let addr = l.server.local_addr();
    let w = write_client(&l.server.url());
    create_db_table(&w, "fdb", "ftable").await;
    let (st, body) = http(addr, "POST", "/_local/faults", r#"{"throttle_count": 1}"#).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(l.server.faults().get().throttle_count, 1);
    let e = w
        .write_records()
        .database_name("fdb")
        .table_name("ftable")
        .records(rec("m", "1", now_ms(), &[("h", "a")]))
        .send()
        .await
        .unwrap_err();
    assert!(e.as_service_error().unwrap().is_throttling_exception());
    let (st, body) = http(addr, "GET", "/_local/faults", "").await;
    assert_eq!(st, 200);
    assert!(body.contains("\"throttle_count\":0"), "{body}");
    let (st, _) = http(addr, "POST", "/_local/faults", r#"{"throttle_rate": 2}"#).await;
    assert_eq!(st, 400);
    let (st, _) = http(addr, "POST", "/_local/faults", r#"{"bogus": 1}"#).await;
    assert_eq!(st, 400);
    let (st, _) = http(addr, "DELETE", "/_local/faults", "").await;
    assert_eq!(st, 200);
    assert_eq!(l.server.faults().get(), FaultOptions::default());
    l.server.shutdown().await;
}

#[tokio::test]
async fn error_bodies_carry_type_and_header() {
    let l = start().await;
    let (st, body) = http(l.server.local_addr(), "POST", "/", "{}").await;
    assert_eq!(st, 400);
    assert!(body.contains("UnknownOperationException"), "{body}");
    let w = write_client(&l.server.url());
    let e = w
        .describe_database()
        .database_name("missing")
        .send()
        .await
        .unwrap_err();
    let raw = e.raw_response().unwrap();
    assert_eq!(raw.status().as_u16(), 404);
    assert_eq!(
        raw.headers().get("x-amzn-errortype"),
        Some("ResourceNotFoundException")
    );
    let _ = tsw::Client::clone(&w);
    l.server.shutdown().await;
}
