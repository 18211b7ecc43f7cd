//! Remote-read request hygiene: a read request may not buy an unbounded number of
//! Timestream queries, and /read refuses oversized bodies (413) and unreadable media
//! types (415) with the same status /write gives for the same fault.
mod common;

use common::*;
use prost::Message;
use timestream_prometheus_connector::http::read::MAX_QUERIES_PER_REQUEST;
use timestream_prometheus_connector::remote::pb::{
    label_matcher, LabelMatcher, Query, ReadRequest,
};

fn request(n: usize) -> Vec<u8> {
    let q = Query {
        start_timestamp_ms: 0,
        end_timestamp_ms: 1,
        matchers: vec![LabelMatcher {
            r#type: label_matcher::Type::Eq as i32,
            name: "__name__".into(),
            value: "nothing_here".into(),
        }],
        hints: None,
    };
    let req = ReadRequest {
        queries: vec![q; n],
        accepted_response_types: vec![],
    };
    timestream_prometheus_connector::remote::codec::compress(&req.encode_to_vec())
}

#[tokio::test]
async fn too_many_queries_in_one_request_is_a_400_without_calling_timestream() {
    let env = start().await;
    let (status, body) = env
        .post_raw(
            "/read",
            request(MAX_QUERIES_PER_REQUEST + 1),
            Some((AKID, SECRET)),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("at most 1000"), "{body}");
    // A request with a few queries is served as usual.
    let (status, body) = env
        .post_raw("/read", request(2), Some((AKID, SECRET)))
        .await;
    assert_eq!(status, 200, "{body}");
}

/// POSTs `body` to `path` with basic auth and the given headers only (none added).
async fn post_with(
    env: &Env,
    path: &str,
    body: Vec<u8>,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let mut r = env
        .http
        .post(format!("{}{path}", env.url))
        .basic_auth(AKID, Some(SECRET))
        .body(body);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let resp = r.send().await.expect("connector answers");
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

/// What Prometheus sends with a remote-read request.
const PROMETHEUS_READ_HEADERS: &[(&str, &str)] = &[
    ("Content-Encoding", "snappy"),
    ("Content-Type", "application/x-protobuf"),
    ("X-Prometheus-Remote-Read-Version", "0.1.0"),
];

/// A snappy block whose header declares `declared` bytes but carries none of them.
fn declaring(declared: u32) -> Vec<u8> {
    let mut v = Vec::new();
    let mut n = declared;
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            v.push(b);
            break;
        }
        v.push(b | 0x80);
    }
    v
}

/// Requests this app answered on `route` with `status` (per app, unlike the global
/// by-code error counter).
fn answered(env: &Env, route: &str, status: &str) -> u64 {
    env.state
        .metrics
        .http_requests
        .with_label_values(&[route, status])
        .get()
}

#[tokio::test]
async fn read_refuses_a_declared_length_over_the_decompressed_cap_with_413_like_write() {
    let env = start_with(EnvOptions {
        args: vec!["--web.max-decompressed-bytes=4096".into()],
        ..EnvOptions::default()
    })
    .await;
    // Declared length alone: the connector must not allocate or decode it.
    for path in ["/read", "/api/v1/read", "/write"] {
        let (status, body) = post_with(&env, path, declaring(4097), PROMETHEUS_READ_HEADERS).await;
        assert_eq!(status, 413, "{path}: {body}");
        assert!(
            body.contains("4097") && body.contains("4096"),
            "{path}: {body}"
        );
    }
    // A real request that decompresses to just over the cap (a long matcher value).
    let mut big = ReadRequest::decode(
        timestream_prometheus_connector::remote::codec::decompress(&request(1), 1 << 20)
            .unwrap()
            .as_slice(),
    )
    .unwrap();
    big.queries[0].matchers[0].value = "x".repeat(4096);
    let body = timestream_prometheus_connector::remote::codec::compress(&big.encode_to_vec());
    let (status, text) = post_with(&env, "/read", body, PROMETHEUS_READ_HEADERS).await;
    assert_eq!(status, 413, "{text}");
    assert_eq!(answered(&env, "/read", "413"), 2);
    assert_eq!(answered(&env, "/api/v1/read", "413"), 1);
    // At the cap's side of the line the same request is served.
    let (status, text) = post_with(&env, "/read", request(2), PROMETHEUS_READ_HEADERS).await;
    assert_eq!(status, 200, "{text}");
    env.shutdown().await;
}

#[tokio::test]
async fn read_refuses_a_compressed_body_over_the_request_cap_with_413_like_write() {
    let env = start_with(EnvOptions {
        args: vec!["--web.max-request-bytes=1024".into()],
        ..EnvOptions::default()
    })
    .await;
    // Incompressible bytes, so the snappy body itself exceeds the cap.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect();
    let mut req = ReadRequest::decode(
        timestream_prometheus_connector::remote::codec::decompress(&request(1), 1 << 20)
            .unwrap()
            .as_slice(),
    )
    .unwrap();
    req.queries[0].matchers[0].value = noise.iter().map(|b| char::from(b'a' + b % 26)).collect();
    let body = timestream_prometheus_connector::remote::codec::compress(&req.encode_to_vec());
    assert!(body.len() > 1024, "{}", body.len());
    for path in ["/read", "/write"] {
        let (status, text) = post_with(&env, path, body.clone(), PROMETHEUS_READ_HEADERS).await;
        assert_eq!(status, 413, "{path}: {text}");
    }
    let (status, text) = post_with(&env, "/read", request(1), PROMETHEUS_READ_HEADERS).await;
    assert_eq!(status, 200, "{text}");
    env.shutdown().await;
}

#[tokio::test]
async fn read_answers_415_for_a_content_encoding_it_cannot_read_like_write() {
    let env = start().await;
    for enc in ["gzip", "identity", "zstd"] {
        let headers = [
            ("Content-Encoding", enc),
            ("Content-Type", "application/x-protobuf"),
            ("X-Prometheus-Remote-Read-Version", "0.1.0"),
        ];
        let (read, text) = post_with(&env, "/read", request(1), &headers).await;
        assert_eq!(read, 415, "{enc}: {text}");
        assert!(text.contains(enc), "{text}");
        let (write, text) = post_with(&env, "/write", request(1), &headers).await;
        assert_eq!(write, read, "/write and /read disagree on {enc}: {text}");
    }
    assert_eq!(answered(&env, "/read", "415"), 3);
    env.shutdown().await;
}

#[tokio::test]
async fn read_answers_415_for_a_body_naming_another_protobuf_message() {
    let env = start().await;
    let headers = [
        ("Content-Encoding", "snappy"),
        (
            "Content-Type",
            "application/x-protobuf;proto=io.prometheus.write.v2.Request",
        ),
    ];
    let (status, text) = post_with(&env, "/read", request(1), &headers).await;
    assert_eq!(status, 415, "{text}");
    // Naming the right message (any case, spaces, quotes) is fine.
    let headers = [
        ("Content-Encoding", "snappy"),
        (
            "Content-Type",
            "application/x-protobuf; Proto=\"prometheus.ReadRequest\"",
        ),
    ];
    let (status, text) = post_with(&env, "/read", request(1), &headers).await;
    assert_eq!(status, 200, "{text}");
    // vmctl --remote-read-use-stream sends the streamed *response* type as its request
    // Content-Type (Prometheus' handler ignores it): accepted, on both paths.
    let headers = [(
        "Content-Type",
        "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse",
    )];
    for path in ["/read", "/api/v1/read"] {
        let (status, text) = post_with(&env, path, request(1), &headers).await;
        assert_eq!(status, 200, "{path}: {text}");
    }
    // A remote-write 1.0 body posted to /read names its message: refused, saying why.
    let headers = [(
        "Content-Type",
        "application/x-protobuf;proto=prometheus.WriteRequest",
    )];
    let (status, text) = post_with(&env, "/read", request(1), &headers).await;
    assert_eq!(status, 415, "{text}");
    assert!(text.contains("prometheus.WriteRequest"), "{text}");
    env.shutdown().await;
}

#[tokio::test]
async fn read_is_lenient_about_headers_prometheus_sends_but_other_clients_omit() {
    let env = start().await;
    let (status, text) = post_with(&env, "/read", request(1), PROMETHEUS_READ_HEADERS).await;
    assert_eq!(status, 200, "{text}");
    // No header at all (as /write accepts): snappy is assumed.
    let (status, text) = post_with(&env, "/read", request(1), &[]).await;
    assert_eq!(status, 200, "{text}");
    // curl --data-binary's default Content-Type, no version header.
    let (status, text) = post_with(
        &env,
        "/api/v1/read",
        request(1),
        &[("Content-Type", "application/x-www-form-urlencoded")],
    )
    .await;
    assert_eq!(status, 200, "{text}");
    // Garbage that is snappy-encoded per the headers is still a 400, not 415/413.
    let (status, text) = post_with(
        &env,
        "/read",
        b"not snappy at all".to_vec(),
        PROMETHEUS_READ_HEADERS,
    )
    .await;
    assert_eq!(status, 400, "{text}");
    env.shutdown().await;
}
