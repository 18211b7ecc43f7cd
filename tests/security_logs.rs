//! Credentials never leave the connector: the real binary runs at `--log.level=debug`
//! (logfmt and json) against a timestream-local that checks SigV4; good and bad
//! requests carry distinctive secrets in every shape a header can hold them (valid
//! basic auth, wrong secret, no colon, Bearer, garbage base64; session tokens, good and
//! wrong), and neither any secret or token nor its base64 forms may appear in stdout,
//! stderr, any response body or /metrics.

mod common;

use std::io::Read;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use common::*;
use prost::Message;
use timestream_local::{Options, Server};
use timestream_prometheus_connector::remote::codec::{compress, encode_write_request};
use timestream_prometheus_connector::remote::pb::{
    label_matcher::Type as T, LabelMatcher, Query, ReadRequest,
};

/// The listed user's secret (the store knows it).
const GOOD_SECRET: &str = "Zq9GoodS3cret/ForLogTest+xW7";
const USER: &str = "AKIDLOGTESTUSER";
/// Secrets the store does not know, sent in broken or wrong headers.
const WRONG_SECRET: &str = "Wr0ngS3cret/ForLogTest+Qq4";
const BEARER_SECRET: &str = "B3arerS3cretForLogTestTok";
const NOCOLON_SECRET: &str = "N0ColonS3cretForLogTest";
/// A temporary key: its session token (X-Aws-Session-Token), and a token the store rejects.
const TEMP_USER: &str = "ASIALOGTESTUSER";
const SESSION_TOKEN: &str = "IQoJLogTestS3ssionToken/Good+Zz9";
const WRONG_TOKEN: &str = "IQoJLogTestWr0ngToken/Bad+Qq1xx";

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// Every text form a secret could leak in.
fn forbidden() -> Vec<String> {
    let mut v = Vec::new();
    for t in [SESSION_TOKEN, WRONG_TOKEN] {
        v.push(t.to_string());
        v.push(t[..14].to_string());
    }
    for s in [GOOD_SECRET, WRONG_SECRET, BEARER_SECRET, NOCOLON_SECRET] {
        v.push(s.to_string());
        // A recognisable prefix catches truncated echoes.
        v.push(s[..12].to_string());
        v.push(b64(s));
        v.push(b64(&format!("{USER}:{s}")));
        v.push(
            b64(&format!("{USER}:{s}"))
                .trim_end_matches('=')
                .to_string(),
        );
    }
    v
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Running {
    child: Child,
    url: String,
}

fn spawn(store_url: &str, format: &str) -> Running {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_timestream-prometheus-connector"))
        .args([
            format!("--web.listen-address=127.0.0.1:{port}"),
            "--log.level=debug".into(),
            format!("--log.format={format}"),
            format!("--default-database={DB}"),
            format!("--default-table={TABLE}"),
            format!("--write-base-endpoint={store_url}"),
            format!("--query-base-endpoint={store_url}"),
            "--max-write-retries=1".into(),
            "--max-read-retries=1".into(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("connector binary starts");
    Running {
        child,
        url: format!("http://127.0.0.1:{port}"),
    }
}

async fn wait_ready(http: &reqwest::Client, url: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = http.get(format!("{url}/-/ready")).send().await {
            if r.status() == 200 {
                return;
            }
        }
        assert!(Instant::now() < deadline, "connector not ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn read_body() -> Vec<u8> {
    compress(
        &ReadRequest {
            queries: vec![Query {
                start_timestamp_ms: now_ms() - 3_600_000,
                end_timestamp_ms: now_ms(),
                matchers: vec![LabelMatcher {
                    r#type: T::Eq as i32,
                    name: "__name__".into(),
                    value: "log_probe".into(),
                }],
                hints: None,
            }],
            accepted_response_types: vec![],
        }
        .encode_to_vec(),
    )
}

/// Sends good and bad requests; returns every response body and the expected statuses.
async fn traffic(http: &reqwest::Client, url: &str) -> Vec<String> {
    let write = encode_write_request(&request(vec![series(
        &[("__name__", "log_probe"), ("job", "x")],
        &[(1.0, now_ms() - 1000)],
    )]));
    let basic = |u: &str, s: &str| format!("Basic {}", b64(&format!("{u}:{s}")));
    // (path, Authorization header, body, expected status)
    let cases: Vec<(&str, Option<String>, Vec<u8>, u16)> = vec![
        ("/write", Some(basic(USER, GOOD_SECRET)), write.clone(), 200),
        ("/read", Some(basic(USER, GOOD_SECRET)), read_body(), 200),
        (
            "/write",
            Some(basic(USER, WRONG_SECRET)),
            write.clone(),
            403,
        ),
        ("/read", Some(basic(USER, WRONG_SECRET)), read_body(), 403),
        (
            "/write",
            Some(basic("AKIDNOSUCHUSER", WRONG_SECRET)),
            write.clone(),
            403,
        ),
        (
            "/write",
            Some(format!("Basic {}", b64(NOCOLON_SECRET))),
            write.clone(),
            401,
        ),
        (
            "/write",
            Some(format!("Bearer {BEARER_SECRET}")),
            write.clone(),
            401,
        ),
        (
            "/read",
            Some(format!("Basic {BEARER_SECRET}!!")),
            read_body(),
            401,
        ),
        (
            "/write",
            Some(basic(USER, GOOD_SECRET)),
            b"garbage".to_vec(),
            400,
        ),
        (
            "/read",
            Some(basic(USER, GOOD_SECRET)),
            b"garbage".to_vec(),
            400,
        ),
        ("/write", None, write.clone(), 401),
    ];
    let mut bodies = Vec::new();
    for (path, auth, body, want) in cases {
        let mut r = http
            .post(format!("{url}{path}"))
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .body(body);
        if let Some(a) = &auth {
            r = r.header("Authorization", a);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = format!("{:?}", resp.headers());
        let text = String::from_utf8_lossy(&resp.bytes().await.unwrap()).into_owned();
        assert_eq!(status, want, "{path} with {auth:?}: {text}");
        bodies.push(format!("{path} {status} {headers} {text}"));
    }
    // Temporary credentials: the token travels in its own header, good and wrong.
    for (token, want) in [(SESSION_TOKEN, 200), (WRONG_TOKEN, 403)] {
        for (path, body) in [("/write", write.clone()), ("/read", read_body())] {
            let resp = http
                .post(format!("{url}{path}"))
                .header("Content-Encoding", "snappy")
                .header("Content-Type", "application/x-protobuf")
                .header("Authorization", basic(TEMP_USER, GOOD_SECRET))
                .header("X-Aws-Session-Token", token)
                .body(body)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let headers = format!("{:?}", resp.headers());
            let text = String::from_utf8_lossy(&resp.bytes().await.unwrap()).into_owned();
            assert_eq!(status, want, "{path} with a session token: {text}");
            bodies.push(format!("{path} {status} {headers} {text}"));
        }
    }
    let metrics = http
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("timestream_connector_received_samples_total"));
    bodies.push(metrics);
    bodies
}

fn stop(mut r: Running) -> (String, String) {
    // SIGTERM for a graceful exit that flushes every log line.
    let _ = Command::new("kill")
        .args(["-TERM", &r.child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(20);
    while r.child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = r.child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut out = String::new();
    let mut err = String::new();
    r.child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    r.child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (out, err)
}

async fn run(format: &str) {
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("credentials");
    std::fs::write(
        &creds,
        format!(
            "{USER} {GOOD_SECRET}\n{AKID} {SECRET}\n{TEMP_USER} {GOOD_SECRET} token={SESSION_TOKEN}\n"
        ),
    )
    .unwrap();
    let mut opts = Options::new(dir.path().join("store"));
    opts.credentials_file = Some(creds);
    let store = Server::start(opts).await.unwrap();
    create_db_table(&store_write_client(&store.url()), DB, TABLE).await;

    let running = spawn(&store.url(), format);
    let http = reqwest::Client::new();
    wait_ready(&http, &running.url).await;
    let bodies = traffic(&http, &running.url).await;
    let (out, err) = tokio::task::spawn_blocking(move || stop(running))
        .await
        .unwrap();
    // The logs are real debug logs of this traffic, not an empty capture.
    let logs = format!("{out}\n{err}");
    // "WriteRecords refused": the event's own message survives its fields (a field
    // named `message` once replaced it in logfmt and duplicated the JSON key).
    for seen in [
        "InvalidSignatureException",
        "UnrecognizedClientException",
        "undecodable write request",
        "WriteRecords refused",
    ] {
        assert!(
            logs.contains(seen),
            "no {seen:?} in the captured logs:\n{logs}"
        );
    }
    for secret in forbidden() {
        for (what, text) in [("stdout", &out), ("stderr", &err)] {
            assert!(
                !text.contains(&secret),
                "{format} {what} contains {secret:?}:\n{}",
                text.lines()
                    .filter(|l| l.contains(&secret))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
        for b in &bodies {
            assert!(!b.contains(&secret), "a response contains {secret:?}: {b}");
        }
    }
    store.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_debug_logfmt_logs_bodies_or_metrics() {
    run("logfmt").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_debug_json_logs_bodies_or_metrics() {
    run("json").await;
}
