//! The per-credential client cache can never serve one caller with another's keys.
//!
//! timestream-local checks SigV4 against a credentials file listing two users, A and B.
//! After A has written (so A's clients are cached), requests that carry A's access key
//! id with a wrong secret, B's key id with A's secret, or an unknown key must be
//! refused — were the cache keyed by key id alone, they would be signed with A's
//! cached keys and succeed. B's own requests succeed (signed with B's keys), including
//! when all of these are interleaved concurrently, on /write and on /read.

mod common;

use std::sync::Arc;

use common::*;
use prost::Message;
use timestream_local::{Options, Server};
use timestream_prometheus_connector::app;
use timestream_prometheus_connector::config::Config;
use timestream_prometheus_connector::remote::codec::{compress, encode_write_request};
use timestream_prometheus_connector::remote::pb::{
    label_matcher::Type as T, LabelMatcher, Query, ReadRequest,
};
use timestream_prometheus_connector::server::serve;

/// User B (user A is `common::AKID` / `common::SECRET`).
const AKID_B: &str = "AKIDSECONDUSER";
const SECRET_B: &str = "b-secret/Other+Value";

struct Setup {
    store: Server,
    _dir: tempfile::TempDir,
    url: String,
    http: reqwest::Client,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("credentials");
    std::fs::write(&creds, format!("{AKID} {SECRET}\n{AKID_B} {SECRET_B}\n")).unwrap();
    let mut opts = Options::new(dir.path().join("store"));
    opts.credentials_file = Some(creds);
    let store = Server::start(opts).await.unwrap();
    create_db_table(&store_write_client(&store.url()), DB, TABLE).await;
    let config = Config::from_args([
        "timestream-prometheus-connector".to_string(),
        format!("--default-database={DB}"),
        format!("--default-table={TABLE}"),
        format!("--write-base-endpoint={}", store.url()),
        format!("--query-base-endpoint={}", store.url()),
        "--max-write-retries=1".into(),
        "--max-read-retries=1".into(),
    ])
    .unwrap();
    let state = state_for(config).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let router = app(state.clone());
    tokio::spawn(serve(listener, router, None, std::future::pending()));
    Setup {
        store,
        _dir: dir,
        url,
        http: reqwest::Client::new(),
    }
}

async fn write_as(s: &Setup, user: &str, secret: &str, metric: &str) -> (u16, String) {
    let body = encode_write_request(&request(vec![series(
        &[("__name__", metric), ("user", user)],
        &[(1.0, now_ms() - 1000)],
    )]));
    let resp = s
        .http
        .post(format!("{}/write", s.url))
        .basic_auth(user, Some(secret))
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .body(body)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

async fn read_as(s: &Setup, user: &str, secret: &str) -> (u16, String) {
    let req = ReadRequest {
        queries: vec![Query {
            start_timestamp_ms: now_ms() - 3_600_000,
            end_timestamp_ms: now_ms(),
            matchers: vec![LabelMatcher {
                r#type: T::Eq as i32,
                name: "__name__".into(),
                value: "cache_probe".into(),
            }],
            hints: None,
        }],
        accepted_response_types: vec![],
    };
    let resp = s
        .http
        .post(format!("{}/read", s.url))
        .basic_auth(user, Some(secret))
        .body(compress(&req.encode_to_vec()))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp.bytes().await.unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// (user, secret, should succeed)
fn callers() -> Vec<(&'static str, &'static str, bool)> {
    vec![
        (AKID, SECRET, true),
        (AKID, "wrong-secret-for-A", false),
        (AKID, SECRET_B, false),
        (AKID_B, SECRET_B, true),
        (AKID_B, SECRET, false),
        (AKID_B, "wrong-secret-for-B", false),
        ("AKIDUNKNOWN", SECRET, false),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_clients_never_serve_other_credentials_on_write() {
    let s = setup().await;
    // A first: its clients are now cached.
    let (st, body) = write_as(&s, AKID, SECRET, "cache_probe").await;
    assert_eq!(st, 200, "A writes: {body}");
    for (user, secret, ok) in callers() {
        let (st, body) = write_as(&s, user, secret, "cache_probe").await;
        if ok {
            assert_eq!(st, 200, "{user} with its own secret: {body}");
        } else {
            assert!(
                (400..500).contains(&st),
                "{user} with secret {secret:?} must be refused 4xx, got {st}: {body}"
            );
        }
    }
    // Only the two legitimate users' rows exist.
    let rows = s_rows(&s).await;
    assert!(!rows.is_empty());
    for r in &rows {
        let u = r.get("user").map(String::as_str);
        assert!(u == Some(AKID) || u == Some(AKID_B), "{r:?}");
    }
    s.store.shutdown().await;
}

async fn s_rows(s: &Setup) -> Vec<std::collections::BTreeMap<String, String>> {
    query_rows(
        &s.store.url(),
        &format!(r#"SELECT * FROM "{DB}"."{TABLE}" ORDER BY time"#),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_clients_never_serve_other_credentials_on_read() {
    let s = setup().await;
    let (st, body) = write_as(&s, AKID, SECRET, "cache_probe").await;
    assert_eq!(st, 200, "{body}");
    let (st, body) = read_as(&s, AKID, SECRET).await;
    assert_eq!(st, 200, "A reads: {body}");
    for (user, secret, ok) in callers() {
        let (st, body) = read_as(&s, user, secret).await;
        if ok {
            assert_eq!(st, 200, "{user} reads with its own secret: {body}");
        } else {
            assert!(
                (400..500).contains(&st),
                "{user} read with secret {secret:?} must be refused 4xx, got {st}: {body}"
            );
        }
    }
    s.store.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interleaved_concurrent_callers_each_get_their_own_outcome() {
    let s = Arc::new(setup().await);
    let mut tasks = Vec::new();
    for round in 0..8 {
        for (i, (user, secret, ok)) in callers().into_iter().enumerate() {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                let (st, body) = if (round + i) % 2 == 0 {
                    write_as(&s, user, secret, "cache_probe").await
                } else {
                    read_as(&s, user, secret).await
                };
                (user, secret, ok, st, body)
            }));
        }
    }
    for t in tasks {
        let (user, secret, ok, st, body) = t.await.unwrap();
        if ok {
            assert_eq!(st, 200, "{user}: {body}");
        } else {
            assert!((400..500).contains(&st), "{user}/{secret:?}: {st} {body}");
        }
    }
}
