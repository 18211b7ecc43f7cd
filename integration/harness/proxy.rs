//! A recording HTTP(S) proxy between a real remote-read client and the connector: it
//! forwards every request unchanged (headers that matter, body) and the answer back,
//! and records what was on the wire: the request's Content-Type, the response types the
//! client accepted, the queries (time range and matchers), and the answer's status,
//! Content-Type and, for a streamed answer, how many frames and series per frame came
//! back. That is how the suite checks that Prometheus 3.x really asked for and got
//! `STREAMED_XOR_CHUNKS`, and which requests Prometheus sent at all (`read_recent`,
//! `required_matchers`), without trusting the connector's own account of it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use prost::Message;
use timestream_prometheus_connector::remote::codec::decompress;
use timestream_prometheus_connector::remote::pb::{ChunkedReadResponse, ReadRequest};

use super::tls::TestPki;

/// `ReadRequest.ResponseType` values.
pub const SAMPLES: i32 = 0;
pub const STREAMED_XOR_CHUNKS: i32 = 1;

/// One query of a recorded read request.
#[derive(Clone, Debug)]
pub struct RecordedQuery {
    pub start_ms: i64,
    pub end_ms: i64,
    /// `name<op>"value"`, op one of = != =~ !~.
    pub matchers: Vec<String>,
}

/// One request through the proxy.
#[derive(Clone, Debug)]
pub struct Record {
    pub request_content_type: Option<String>,
    /// None when the body was not a snappy ReadRequest.
    pub accepted_response_types: Option<Vec<i32>>,
    pub queries: Vec<RecordedQuery>,
    pub status: u16,
    pub response_content_type: Option<String>,
    /// Bytes of the answer's body.
    pub body_bytes: usize,
    /// Streamed answers: frames, and the most series one frame carried.
    pub frames: usize,
    pub max_series_per_frame: usize,
    /// Streamed answers: frames whose series has the same labels as the frame before
    /// (a long series continued).
    pub continued_frames: usize,
}

impl Record {
    pub fn streamed(&self) -> bool {
        self.response_content_type
            .as_deref()
            .is_some_and(|c| c.starts_with("application/x-streamed-protobuf"))
    }
}

struct Inner {
    upstream: String,
    client: reqwest::Client,
    records: Mutex<Vec<Record>>,
}

pub struct ReadProxy {
    /// Base URL of the proxy (`http://localhost:PORT` or `https://localhost:PORT`).
    pub base: String,
    inner: Arc<Inner>,
}

impl ReadProxy {
    /// Listens on an ephemeral loopback port (HTTPS with the test PKI's server
    /// certificate when `tls` is given) and forwards to `upstream` (a base URL; trusting
    /// `upstream_ca` when it is HTTPS).
    pub async fn start(
        upstream: &str,
        upstream_ca: Option<&TestPki>,
        tls: Option<&TestPki>,
    ) -> ReadProxy {
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .no_proxy();
        if let Some(pki) = upstream_ca {
            builder = builder.add_root_certificate(
                reqwest::Certificate::from_pem(&std::fs::read(&pki.ca_cert).unwrap()).unwrap(),
            );
        }
        let inner = Arc::new(Inner {
            upstream: upstream.trim_end_matches('/').to_string(),
            client: builder.build().unwrap(),
            records: Mutex::new(Vec::new()),
        });
        let app = Router::new().fallback(forward).with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let tls_config = tls.map(|pki| {
            timestream_prometheus_connector::server::load_tls(&pki.server_cert, &pki.server_key)
                .expect("proxy TLS config")
        });
        let scheme = if tls.is_some() { "https" } else { "http" };
        tokio::spawn(async move {
            let _ = timestream_prometheus_connector::server::serve(
                listener,
                app,
                tls_config,
                std::future::pending(),
            )
            .await;
        });
        ReadProxy {
            base: format!("{scheme}://localhost:{port}"),
            inner,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn records(&self) -> Vec<Record> {
        self.inner.records.lock().unwrap().clone()
    }

    pub fn clear(&self) {
        self.inner.records.lock().unwrap().clear();
    }
}

fn header(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn matcher_text(m: &timestream_prometheus_connector::remote::pb::LabelMatcher) -> String {
    let op = match m.r#type {
        0 => "=",
        1 => "!=",
        2 => "=~",
        3 => "!~",
        _ => "?",
    };
    format!("{}{op}{:?}", m.name, m.value)
}

/// Reads `uvarint length, u32 CRC32C, message` frames; stops at the first malformed one.
fn frames(body: &[u8]) -> Vec<ChunkedReadResponse> {
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        let mut len: u64 = 0;
        let mut shift = 0;
        let mut i = 0;
        loop {
            let Some(&b) = rest.get(i) else {
                return out;
            };
            len |= u64::from(b & 0x7f) << shift;
            i += 1;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
            if shift > 63 {
                return out;
            }
        }
        let len = len as usize;
        if rest.len() < i + 4 + len {
            return out;
        }
        let msg = &rest[i + 4..i + 4 + len];
        match ChunkedReadResponse::decode(msg) {
            Ok(m) => out.push(m),
            Err(_) => return out,
        }
        rest = &rest[i + 4 + len..];
    }
}

async fn forward(
    State(inner): State<Arc<Inner>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let request: Option<ReadRequest> = decompress(&body, 64 << 20)
        .ok()
        .and_then(|raw| ReadRequest::decode(raw.as_slice()).ok());
    let mut req = inner
        .client
        .request(method, format!("{}{}", inner.upstream, path))
        .body(body.clone());
    for name in [
        "authorization",
        "content-type",
        "content-encoding",
        "accept-encoding",
        "user-agent",
        "x-prometheus-remote-read-version",
    ] {
        if let Some(v) = headers.get(name) {
            req = req.header(name, v.clone());
        }
    }
    let (status, resp_headers, resp_body) = match req.send().await {
        Ok(r) => {
            let status = r.status();
            let h = r.headers().clone();
            match r.bytes().await {
                Ok(b) => (status, h, b),
                // The upstream aborted the body: abort ours too.
                Err(e) => {
                    return (StatusCode::BAD_GATEWAY, format!("upstream body: {e}")).into_response()
                }
            }
        }
        Err(e) => {
            return (StatusCode::BAD_GATEWAY, format!("upstream: {e}")).into_response();
        }
    };
    let response_content_type = resp_headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut record = Record {
        request_content_type: header(&headers, "content-type"),
        accepted_response_types: request.as_ref().map(|r| r.accepted_response_types.clone()),
        queries: request
            .as_ref()
            .map(|r| {
                r.queries
                    .iter()
                    .map(|q| RecordedQuery {
                        start_ms: q.start_timestamp_ms,
                        end_ms: q.end_timestamp_ms,
                        matchers: q.matchers.iter().map(matcher_text).collect(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        status: status.as_u16(),
        response_content_type: response_content_type.clone(),
        body_bytes: resp_body.len(),
        frames: 0,
        max_series_per_frame: 0,
        continued_frames: 0,
    };
    if record.streamed() && status.is_success() {
        let fs = frames(&resp_body);
        record.frames = fs.len();
        record.max_series_per_frame = fs.iter().map(|f| f.chunked_series.len()).max().unwrap_or(0);
        record.continued_frames = fs
            .windows(2)
            .filter(|w| {
                let last = w[0].chunked_series.last().map(|s| &s.labels);
                let first = w[1].chunked_series.first().map(|s| &s.labels);
                last.is_some() && last == first && w[0].query_index == w[1].query_index
            })
            .count();
    }
    inner.records.lock().unwrap().push(record);
    let mut out = Response::builder().status(status.as_u16());
    for name in ["content-type", "content-encoding"] {
        if let Some(v) = resp_headers.get(name) {
            out = out.header(name, v.clone());
        }
    }
    out.body(axum::body::Body::from(resp_body)).unwrap()
}
