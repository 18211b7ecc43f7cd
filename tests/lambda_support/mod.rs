//! Fixtures for running the real connector binary as an AWS Lambda function:
//! - `RuntimeApi`: an emulator of the Lambda Runtime API (the small HTTP protocol a custom
//!   runtime speaks: it polls `GET /2018-06-01/runtime/invocation/next`, then posts the
//!   result to `.../invocation/{id}/response` or `.../invocation/{id}/error`, and reports
//!   start-up failures to `.../runtime/init/error`);
//! - `Function`: the built binary started with `AWS_LAMBDA_RUNTIME_API` pointing at it;
//! - `Store`: an in-process timestream-local with a database and table made by the real
//!   aws-sdk-timestreamwrite client, read back with the real query client;
//! - API Gateway REST (v1) and HTTP API (v2) events shaped like recorded ones, carrying
//!   snappy-compressed protobuf built with the crate's prost types.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::Credentials;
use aws_sdk_timestreamquery as tsq;
use aws_sdk_timestreamwrite as tsw;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::Engine;
use prost::Message;
use serde_json::{json, Value};
use timestream_prometheus_connector::remote::pb::{
    label_matcher, read_request::ResponseType, ChunkedReadResponse, Label, LabelMatcher, Query,
    ReadRequest, ReadResponse, Sample, TimeSeries, WriteRequest,
};
use tokio::sync::{mpsc, oneshot};

/// ARN the emulator hands out as the invoked function.
pub const FUNCTION_ARN: &str =
    "arn:aws:lambda:us-east-1:123456789012:function:PrometheusTimestreamConnector";
/// Keys of the test identity (basic auth, or the function's "role" in SigV4 mode).
pub const AKID: &str = "AKIDLAMBDATEST";
/// Secret of `AKID`.
pub const SECRET: &str = "lambda/Secret+Key=1";
/// Destination database.
pub const DB: &str = "PrometheusDatabase";
/// Destination table.
pub const TABLE: &str = "PrometheusMetricsTable";

const INVOCATION_TIMEOUT: Duration = Duration::from_secs(60);

/// What the function posted back for one invocation.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// `POST /invocation/{id}/response` with this JSON.
    Response(Value),
    /// `POST /invocation/{id}/error` with this JSON (a function error).
    Error(Value),
}

#[derive(Default)]
struct Shared {
    waiting: HashMap<String, oneshot::Sender<Outcome>>,
    init_errors: Vec<Value>,
    function_errors: Vec<Value>,
    polls: usize,
}

#[derive(Clone)]
struct EmuState {
    queue: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<(String, Value)>>>,
    shared: Arc<Mutex<Shared>>,
}

/// The Lambda Runtime API emulator.
pub struct RuntimeApi {
    /// Where it listens (`host:port`, the form Lambda puts in `AWS_LAMBDA_RUNTIME_API`).
    pub addr: SocketAddr,
    events: mpsc::UnboundedSender<(String, Value)>,
    shared: Arc<Mutex<Shared>>,
    next_id: Mutex<u64>,
    stop: Option<oneshot::Sender<()>>,
}

async fn next_invocation(State(s): State<EmuState>) -> Response {
    s.shared.lock().unwrap().polls += 1;
    // Long poll, as the real API does: the runtime waits here until an event is queued.
    let item = s.queue.lock().await.recv().await;
    let Some((id, event)) = item else {
        return (StatusCode::GONE, "emulator stopped").into_response();
    };
    let deadline = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
        + INVOCATION_TIMEOUT.as_millis();
    let mut headers = HeaderMap::new();
    headers.insert("lambda-runtime-aws-request-id", id.parse().unwrap());
    headers.insert(
        "lambda-runtime-deadline-ms",
        deadline.to_string().parse().unwrap(),
    );
    headers.insert(
        "lambda-runtime-invoked-function-arn",
        HeaderValue::from_static(FUNCTION_ARN),
    );
    headers.insert(
        "lambda-runtime-trace-id",
        HeaderValue::from_static(
            "Root=1-673fcb3a-0c2d6e1f3a5b7c9d1e2f3a4b;Parent=1a2b3c4d5e6f7a8b;Sampled=0",
        ),
    );
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    (StatusCode::OK, headers, event.to_string()).into_response()
}

fn accepted() -> Response {
    (
        StatusCode::ACCEPTED,
        [("content-type", "application/json")],
        r#"{"status":"OK"}"#,
    )
        .into_response()
}

fn finish(s: &EmuState, id: &str, outcome: Outcome) -> Response {
    let mut shared = s.shared.lock().unwrap();
    if let Outcome::Error(e) = &outcome {
        shared.function_errors.push(e.clone());
    }
    match shared.waiting.remove(id) {
        Some(tx) => {
            let _ = tx.send(outcome);
            accepted()
        }
        // The real API answers 400 InvalidRequestID for an unknown or finished id.
        None => (
            StatusCode::BAD_REQUEST,
            r#"{"errorMessage":"Invalid request ID","errorType":"InvalidRequestID"}"#,
        )
            .into_response(),
    }
}

async fn invocation_response(
    State(s): State<EmuState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    match serde_json::from_slice::<Value>(&body) {
        Ok(v) => finish(&s, &id, Outcome::Response(v)),
        Err(e) => finish(
            &s,
            &id,
            Outcome::Error(json!({"emulator": format!("response is not JSON: {e}")})),
        ),
    }
}

async fn invocation_error(
    State(s): State<EmuState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let v = serde_json::from_slice::<Value>(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    finish(&s, &id, Outcome::Error(v))
}

async fn init_error(State(s): State<EmuState>, body: Bytes) -> Response {
    let v = serde_json::from_slice::<Value>(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    s.shared.lock().unwrap().init_errors.push(v);
    accepted()
}

impl RuntimeApi {
    /// Starts the emulator on an ephemeral loopback port.
    pub async fn start() -> RuntimeApi {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Mutex::new(Shared::default()));
        let state = EmuState {
            queue: Arc::new(tokio::sync::Mutex::new(rx)),
            shared: shared.clone(),
        };
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next_invocation))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(invocation_response),
            )
            .route(
                "/2018-06-01/runtime/invocation/{id}/error",
                post(invocation_error),
            )
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        RuntimeApi {
            addr,
            events: tx,
            shared,
            next_id: Mutex::new(0),
            stop: Some(stop),
        }
    }

    /// Queues `event`, waits for the function's answer.
    pub async fn invoke(&self, event: Value) -> Outcome {
        let id = {
            let mut n = self.next_id.lock().unwrap();
            *n += 1;
            format!("8476a536-e9f4-11e8-9739-{:012x}", *n)
        };
        let (tx, rx) = oneshot::channel();
        self.shared.lock().unwrap().waiting.insert(id.clone(), tx);
        self.events.send((id, event)).expect("emulator running");
        tokio::time::timeout(INVOCATION_TIMEOUT, rx)
            .await
            .expect("the function answered within the timeout")
            .expect("outcome delivered")
    }

    /// Start-up failures the function reported.
    pub fn init_errors(&self) -> Vec<Value> {
        self.shared.lock().unwrap().init_errors.clone()
    }

    /// Function errors the function reported.
    pub fn function_errors(&self) -> Vec<Value> {
        self.shared.lock().unwrap().function_errors.clone()
    }

    /// How many times the function asked for the next event.
    pub fn polls(&self) -> usize {
        self.shared.lock().unwrap().polls
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// The binary under test: the one cargo built for this test run, or the one named by
/// `LAMBDA_TEST_BINARY` (e.g. `bootstrap` unpacked from serverless/dist/bootstrap.zip, to
/// check the deployment artifact itself).
pub fn binary() -> PathBuf {
    std::env::var_os("LAMBDA_TEST_BINARY")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_timestream-prometheus-connector")))
}

/// The real connector binary running in Lambda mode.
pub struct Function {
    child: tokio::process::Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Function {
    /// Starts the binary with only the given variables (plus what the Lambda service always
    /// sets), so nothing from the test's own environment leaks in.
    pub fn start(api: &RuntimeApi, vars: &[(&str, &str)]) -> Function {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("function.log");
        let log_file = std::fs::File::create(&log).unwrap();
        let mut cmd = tokio::process::Command::new(binary());
        cmd.env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", api.addr.to_string())
            .env("LAMBDA_TASK_ROOT", "/var/task")
            .env("LAMBDA_RUNTIME_DIR", "/var/runtime")
            .env("AWS_LAMBDA_FUNCTION_NAME", "PrometheusTimestreamConnector")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env(
                "AWS_LAMBDA_LOG_GROUP_NAME",
                "/aws/lambda/PrometheusTimestreamConnector",
            )
            .env(
                "AWS_LAMBDA_LOG_STREAM_NAME",
                "2026/11/22/[$LATEST]0123456789abcdef",
            )
            .env("AWS_REGION", "us-east-1")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("TZ", ":UTC")
            .envs(vars.iter().copied())
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .kill_on_drop(true);
        let child = cmd.spawn().expect("the connector binary starts");
        Function {
            child,
            log,
            _dir: dir,
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("wait").is_none()
    }

    /// What the function printed so far (for assertion messages).
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// An in-process timestream-local with `DB.TABLE` created.
pub struct Store {
    pub server: timestream_local::Server,
    pub url: String,
    _dir: tempfile::TempDir,
}

fn creds() -> Credentials {
    Credentials::new(AKID, SECRET, None, None, "lambda-test")
}

/// Real write client against `url`.
pub fn write_client(url: &str) -> tsw::Client {
    tsw::Client::from_conf(
        tsw::Config::builder()
            .behavior_version(tsw::config::BehaviorVersion::latest())
            .region(tsw::config::Region::new("us-east-1"))
            .credentials_provider(creds())
            .endpoint_url(url)
            .build(),
    )
}

/// Real query client against `url`.
pub fn query_client(url: &str) -> tsq::Client {
    tsq::Client::from_conf(
        tsq::Config::builder()
            .behavior_version(tsq::config::BehaviorVersion::latest())
            .region(tsq::config::Region::new("us-east-1"))
            .credentials_provider(creds())
            .endpoint_url(url)
            .build(),
    )
}

impl Store {
    /// Starts the store; with `check_signatures` it accepts only requests signed by
    /// `AKID`/`SECRET`.
    pub async fn start(check_signatures: bool) -> Store {
        let creds = check_signatures.then(|| format!("{AKID} {SECRET}\n"));
        Store::start_with_credentials(creds, &[]).await
    }

    /// Starts the store with this credentials file (it must let `AKID` create the table)
    /// and these files beside it (e.g. a policy a line names with `policy=`).
    pub async fn start_with_credentials(
        credentials: Option<String>,
        files: &[(&str, &str)],
    ) -> Store {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = timestream_local::Options::new(dir.path().join("store"));
        if let Some(text) = credentials {
            let f = dir.path().join("credentials");
            std::fs::write(&f, text).unwrap();
            for (name, content) in files {
                std::fs::write(dir.path().join(name), content).unwrap();
            }
            opts.credentials_file = Some(f);
        }
        let server = timestream_local::Server::start(opts)
            .await
            .expect("store starts");
        let url = server.url();
        let w = write_client(&url);
        w.create_database()
            .database_name(DB)
            .send()
            .await
            .expect("create database");
        w.create_table()
            .database_name(DB)
            .table_name(TABLE)
            .send()
            .await
            .expect("create table");
        Store {
            server,
            url,
            _dir: dir,
        }
    }

    /// Rows in `DB.TABLE`, counted by the store through the real query client.
    pub async fn count(&self) -> u64 {
        let out = query_client(&self.url)
            .query()
            .query_string(format!(r#"SELECT COUNT(*) FROM "{DB}"."{TABLE}""#))
            .send()
            .await
            .expect("count query");
        out.rows()[0].data()[0]
            .scalar_value()
            .expect("a scalar")
            .parse()
            .expect("a number")
    }
}

/// Milliseconds since the epoch, `minutes_ago` minutes back (inside the memory store).
pub fn ms_ago(minutes_ago: i64) -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        - minutes_ago * 60_000
}

/// One series.
pub fn series(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> TimeSeries {
    TimeSeries {
        labels: labels
            .iter()
            .map(|(n, v)| Label {
                name: n.to_string(),
                value: v.to_string(),
            })
            .collect(),
        samples: samples
            .iter()
            .map(|&(timestamp, value)| Sample { value, timestamp })
            .collect(),
        ..Default::default()
    }
}

/// Snappy block of a WriteRequest, as Prometheus sends it.
pub fn write_body(ts: Vec<TimeSeries>) -> Vec<u8> {
    let req = WriteRequest {
        timeseries: ts,
        ..Default::default()
    };
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .unwrap()
}

/// Snappy block of a ReadRequest for `metric` over [start, end], SAMPLES only.
pub fn read_body(metric: &str, start: i64, end: i64) -> Vec<u8> {
    read_body_accepting(metric, start, end, &[ResponseType::Samples])
}

/// The same, accepting `types` in that order of preference (Prometheus ≥ 2.13 sends
/// STREAMED_XOR_CHUNKS first, then SAMPLES).
pub fn read_body_accepting(metric: &str, start: i64, end: i64, types: &[ResponseType]) -> Vec<u8> {
    let req = ReadRequest {
        queries: vec![Query {
            start_timestamp_ms: start,
            end_timestamp_ms: end,
            matchers: vec![LabelMatcher {
                r#type: label_matcher::Type::Eq as i32,
                name: "__name__".into(),
                value: metric.into(),
            }],
            hints: None,
        }],
        accepted_response_types: types.iter().map(|t| *t as i32).collect(),
    };
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .unwrap()
}

/// `Basic base64(AKID:SECRET)`.
pub fn basic_auth() -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{AKID}:{SECRET}"))
    )
}

/// Which Prometheus protocol header a request carries.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    /// `X-Prometheus-Remote-Write-Version: 0.1.0`.
    Write,
    /// `X-Prometheus-Remote-Read-Version: 0.1.0`.
    Read,
    /// Neither header.
    Neither,
}

const API_ID: &str = "a1b2c3d4e5";
const HOST: &str = "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com";

fn prometheus_headers(kind: Kind, body_len: usize, auth: Option<&str>) -> Vec<(String, String)> {
    let mut h = vec![
        ("Host".to_string(), HOST.to_string()),
        ("User-Agent".into(), "Prometheus/2.53.0".into()),
        ("Content-Encoding".into(), "snappy".into()),
        ("Content-Type".into(), "application/x-protobuf".into()),
        ("Content-Length".into(), body_len.to_string()),
        (
            "X-Amzn-Trace-Id".into(),
            "Root=1-673fcb3a-5f2e8d1c0b9a8f7e6d5c4b3a".into(),
        ),
        ("X-Forwarded-For".into(), "203.0.113.7".into()),
        ("X-Forwarded-Port".into(), "443".into()),
        ("X-Forwarded-Proto".into(), "https".into()),
    ];
    match kind {
        Kind::Write => h.push(("X-Prometheus-Remote-Write-Version".into(), "0.1.0".into())),
        Kind::Read => h.push(("X-Prometheus-Remote-Read-Version".into(), "0.1.0".into())),
        Kind::Neither => {}
    }
    if let Some(a) = auth {
        h.push(("Authorization".into(), a.to_string()));
    }
    h
}

/// An HTTP API (payload format 2.0) event as API Gateway delivers it for `POST <raw_path>`
/// on stage `stage` (raw_path includes the stage, as in recorded events).
pub fn v2_event(
    stage: &str,
    raw_path: &str,
    route_key: &str,
    kind: Kind,
    body: &[u8],
    auth: Option<&str>,
) -> Value {
    // HTTP APIs lower-case header names and always base64-encode binary bodies.
    let headers: serde_json::Map<String, Value> = prometheus_headers(kind, body.len(), auth)
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), Value::String(v)))
        .collect();
    json!({
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": raw_path,
        "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": API_ID,
            "domainName": HOST,
            "domainPrefix": API_ID,
            "http": {
                "method": "POST",
                "path": raw_path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.7",
                "userAgent": "Prometheus/2.53.0"
            },
            "requestId": "CxKXvhr9IAMEVxw=",
            "routeKey": route_key,
            "stage": stage,
            "time": "22/Nov/2026:00:40:12 +0000",
            "timeEpoch": 1795308012000u64
        },
        "body": base64::engine::general_purpose::STANDARD.encode(body),
        "isBase64Encoded": true
    })
}

/// A REST API (payload format 1.0, Lambda proxy integration) event for `POST <path>` on
/// stage `stage` (`path` is the resource path, without the stage, as in recorded events).
pub fn v1_event(stage: &str, path: &str, kind: Kind, body: &[u8], auth: Option<&str>) -> Value {
    let pairs = prometheus_headers(kind, body.len(), auth);
    let headers: serde_json::Map<String, Value> = pairs
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let multi: serde_json::Map<String, Value> =
        pairs.iter().map(|(k, v)| (k.clone(), json!([v]))).collect();
    json!({
        "resource": path,
        "path": path,
        "httpMethod": "POST",
        "headers": headers,
        "multiValueHeaders": multi,
        "queryStringParameters": null,
        "multiValueQueryStringParameters": null,
        "pathParameters": null,
        "stageVariables": null,
        "requestContext": {
            "resourceId": "2gxmpl",
            "resourcePath": path,
            "httpMethod": "POST",
            "extendedRequestId": "CxKXvFzsIAMFd2g=",
            "requestTime": "22/Nov/2026:00:40:12 +0000",
            "path": format!("/{stage}{path}"),
            "accountId": "123456789012",
            "protocol": "HTTP/1.1",
            "stage": stage,
            "domainPrefix": API_ID,
            "requestTimeEpoch": 1795308012000u64,
            "requestId": "e0GZu2f0-8f4e-4d5c-9a3b-7c6d5e4f3a2b",
            "identity": {
                "sourceIp": "203.0.113.7",
                "userAgent": "Prometheus/2.53.0",
                "accessKey": null,
                "accountId": null,
                "caller": null,
                "user": null,
                "userArn": null
            },
            "domainName": HOST,
            "apiId": API_ID
        },
        "body": base64::engine::general_purpose::STANDARD.encode(body),
        "isBase64Encoded": true
    })
}

/// A function answer, as API Gateway would read it.
#[derive(Debug)]
pub struct HttpAnswer {
    pub status: u16,
    /// Header names lower-cased.
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
    pub base64: bool,
}

impl HttpAnswer {
    /// The body as text (for error messages).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as streamed remote-read frames (uvarint length, big-endian CRC32C of the
    /// message, ChunkedReadResponse), checksums verified.
    pub fn frames(&self) -> Vec<ChunkedReadResponse> {
        let mut rest: &[u8] = &self.body;
        let mut out = Vec::new();
        while !rest.is_empty() {
            let len = prost::encoding::decode_varint(&mut rest).expect("frame length") as usize;
            assert!(rest.len() >= 4 + len, "truncated frame");
            let crc = u32::from_be_bytes(rest[..4].try_into().unwrap());
            let msg = &rest[4..4 + len];
            assert_eq!(crc, crc32c::crc32c(msg), "frame checksum");
            let frame = ChunkedReadResponse::decode(msg).expect("ChunkedReadResponse");
            // Prometheus' client reads only chunked_series[0] of a frame.
            assert_eq!(frame.chunked_series.len(), 1, "one series per frame");
            out.push(frame);
            rest = &rest[4 + len..];
        }
        out
    }

    /// The body as a remote-read answer: snappy → ReadResponse.
    pub fn read_response(&self) -> ReadResponse {
        let raw = snap::raw::Decoder::new()
            .decompress_vec(&self.body)
            .expect("snappy body");
        ReadResponse::decode(raw.as_slice()).expect("ReadResponse")
    }
}

/// Decodes a response payload (v1 or v2 shape); panics on a function error.
pub fn http_answer(outcome: Outcome, logs: &str) -> HttpAnswer {
    let v = match outcome {
        Outcome::Response(v) => v,
        Outcome::Error(e) => panic!("function error instead of an HTTP answer: {e}\nlogs:\n{logs}"),
    };
    let status = v["statusCode"].as_u64().expect("statusCode") as u16;
    let mut headers = BTreeMap::new();
    if let Some(h) = v["headers"].as_object() {
        for (k, val) in h {
            headers.insert(
                k.to_ascii_lowercase(),
                val.as_str().unwrap_or("").to_string(),
            );
        }
    }
    if let Some(h) = v["multiValueHeaders"].as_object() {
        for (k, vals) in h {
            if let Some(first) = vals
                .as_array()
                .and_then(|a| a.first())
                .and_then(|x| x.as_str())
            {
                headers
                    .entry(k.to_ascii_lowercase())
                    .or_insert_with(|| first.to_string());
            }
        }
    }
    let base64 = v["isBase64Encoded"].as_bool().unwrap_or(false);
    let body = v["body"].as_str().unwrap_or("");
    let body = if base64 {
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .expect("base64 body")
    } else {
        body.as_bytes().to_vec()
    };
    HttpAnswer {
        status,
        headers,
        body,
        base64,
    }
}

/// A series as (labels by name, (timestamp ms, value) samples).
pub type SeriesData = (BTreeMap<String, String>, Vec<(i64, f64)>);

/// The series of a read answer, all queries together.
pub fn series_of(resp: &ReadResponse) -> Vec<SeriesData> {
    resp.results
        .iter()
        .flat_map(|r| r.timeseries.iter())
        .map(|ts| {
            (
                ts.labels
                    .iter()
                    .map(|l| (l.name.clone(), l.value.clone()))
                    .collect(),
                ts.samples.iter().map(|s| (s.timestamp, s.value)).collect(),
            )
        })
        .collect()
}

/// Labels as a map, for comparisons.
pub fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
