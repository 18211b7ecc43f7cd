//! Remote write 2.0 end to end: the connector and a real timestream-local store, requests
//! built as Prometheus 3.x builds them. A 2.0 body is stored exactly like the same data in
//! 1.0; the three `X-Prometheus-Remote-Write-*-Written` headers carry exact counts; the
//! status mapping is the 1.0 one; Content-Type negotiation answers 415 where the
//! Prometheus compliance suite expects it and keeps the 1.0 fallbacks working.

mod common;

use common::*;
use prost::Message;
use timestream_local::FaultOptions;
use timestream_prometheus_connector::remote::codec::{
    compress, encode_write_request, encode_write_request_v2, to_v2,
};
use timestream_prometheus_connector::remote::pb::{Exemplar, Histogram, Label, WriteRequest};

const V2: &str = "application/x-protobuf;proto=io.prometheus.write.v2.Request";

struct Answer {
    status: u16,
    body: String,
    headers: reqwest::header::HeaderMap,
}

impl Answer {
    /// The three written counts, `None` for a missing header.
    fn written(&self) -> [Option<u64>; 3] {
        [
            "x-prometheus-remote-write-samples-written",
            "x-prometheus-remote-write-histograms-written",
            "x-prometheus-remote-write-exemplars-written",
        ]
        .map(|h| {
            self.headers
                .get(h)
                .map(|v| v.to_str().unwrap().parse().unwrap())
        })
    }
}

async fn post(env: &Env, path: &str, body: Vec<u8>, headers: &[(&str, &str)]) -> Answer {
    let mut r = env
        .http
        .post(format!("{}{path}", env.url))
        .basic_auth(AKID, Some(SECRET))
        .body(body);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let resp = r.send().await.expect("connector answers");
    Answer {
        status: resp.status().as_u16(),
        headers: resp.headers().clone(),
        body: resp.text().await.unwrap_or_default(),
    }
}

/// As Prometheus 3.x sends a 2.0 request.
async fn write_v2(env: &Env, req: &WriteRequest) -> Answer {
    post(
        env,
        "/api/v1/write",
        encode_write_request_v2(req),
        &[
            ("Content-Encoding", "snappy"),
            ("Content-Type", V2),
            ("X-Prometheus-Remote-Write-Version", "2.0.0"),
        ],
    )
    .await
}

/// Real-looking traffic plus everything a 2.0 sender may add: a stale marker (stored as
/// a special value), an unstorable series, a native histogram, an exemplar.
fn mixed_request(t: i64) -> WriteRequest {
    let long_label = "l".repeat(61);
    let mut with_exemplar = series(
        &[
            ("__name__", "http_requests_total"),
            ("code", "200"),
            ("instance", "a:9100"),
            ("job", "api"),
        ],
        &[(10.0, t), (12.5, t + 15_000)],
    );
    with_exemplar.exemplars.push(Exemplar {
        labels: vec![Label {
            name: "trace_id".into(),
            value: "abc".into(),
        }],
        value: 1.0,
        timestamp: t,
    });
    let mut histogram = series(&[("__name__", "latency"), ("job", "api")], &[]);
    histogram.histograms.push(Histogram {
        sum: 3.0,
        timestamp: t,
        ..Default::default()
    });
    request(vec![
        with_exemplar,
        series(
            &[("__name__", "up"), ("instance", "a:9100"), ("job", "api")],
            &[
                (1.0, t),
                (f64::from_bits(0x7ff0_0000_0000_0002), t + 15_000),
            ],
        ),
        series(
            &[
                ("__name__", "node_load1"),
                ("instance", "b:9100"),
                ("job", "node"),
            ],
            &[(0.25, t)],
        ),
        series(
            &[("__name__", "m"), (long_label.as_str(), "v")],
            &[(1.0, t)],
        ),
        histogram,
    ])
}

#[tokio::test]
async fn a_2_0_body_is_stored_exactly_like_the_same_data_in_1_0_with_exact_written_headers() {
    let t = now_ms() - 60_000;
    let req = mixed_request(t);

    let v1 = start().await;
    let (status, body) = v1.write(&req).await;
    assert_eq!(status, 200, "{body}");
    let rows_v1 = v1.rows(DB, TABLE).await;
    v1.shutdown().await;

    let v2 = start().await;
    let a = write_v2(&v2, &req).await;
    assert_eq!(a.status, 204, "{}", a.body);
    assert!(a.body.is_empty(), "{}", a.body);
    let rows_v2 = v2.rows(DB, TABLE).await;
    assert_eq!(rows_v2, rows_v1);
    // 4 numbers, the stale marker (stored as a special value) and the native histogram.
    assert_eq!(rows_v2.len(), 6, "{rows_v2:?}");
    assert!(rows_v2
        .iter()
        .any(|r| r["measure_name"] == "__native_histogram__" && r["__name__"] == "latency"));
    // Samples: 5 stored + the unstorable series' sample (settled by a skip rule, see
    // src/http/write.rs); the native histogram stored; the exemplar settled by a skip rule.
    assert_eq!(a.written(), [Some(6), Some(1), Some(1)]);

    let m = v2.metrics_text().await;
    for (line, n) in [
        (
            "timestream_connector_remote_write_requests_total{protocol=\"2.0\"}",
            1.0,
        ),
        (
            "timestream_connector_remote_write_requests_total{protocol=\"1.0\"}",
            0.0,
        ),
        ("timestream_connector_received_samples_total", 7.0),
        (
            "timestream_connector_ignored_samples_by_reason_total{reason=\"native_histogram\"}",
            0.0,
        ),
        (
            "timestream_connector_ignored_samples_by_reason_total{reason=\"long_label_name\"}",
            1.0,
        ),
        ("timestream_connector_records_written_total", 6.0),
    ] {
        assert_eq!(metric_value(&m, line), n, "{line}\n{m}");
    }
    // The same data again: idempotent, same answer, nothing new stored.
    let again = write_v2(&v2, &req).await;
    assert_eq!((again.status, again.written()), (204, a.written()));
    assert_eq!(v2.rows(DB, TABLE).await.len(), 6);
    v2.shutdown().await;
}

#[tokio::test]
async fn content_type_negotiation_415_cases_and_1_0_fallbacks() {
    let env = start().await;
    let t = now_ms() - 30_000;
    let req = request(vec![series(
        &[("__name__", "neg"), ("job", "x")],
        &[(1.0, t)],
    )]);
    let v1_body = encode_write_request(&req);
    // The compliance suite's cases, vmagent's zstd probe, an unknown proto, and more.
    for (ct, enc) in [
        ("application/json", "snappy"),
        ("image/png", "snappy"),
        ("text/plain", "snappy"),
        ("application/x-protobuf", "gzip"),
        ("application/x-protobuf", "deflate"),
        ("application/x-protobuf", "zstd"),
        (V2, "zstd"),
        (
            "application/x-protobuf;proto=io.prometheus.write.v3.Request",
            "snappy",
        ),
        (
            "application/x-protobuf;proto=prometheus.ReadRequest",
            "snappy",
        ),
    ] {
        for path in ["/write", "/api/v1/write"] {
            let a = post(
                &env,
                path,
                v1_body.clone(),
                &[("Content-Type", ct), ("Content-Encoding", enc)],
            )
            .await;
            assert_eq!(a.status, 415, "{ct} {enc} {path}: {}", a.body);
            assert!(
                a.body.contains("proto=io.prometheus.write.v2.Request")
                    && a.body.contains("snappy"),
                "the 415 names what is accepted: {}",
                a.body
            );
            assert_eq!(a.written(), [None; 3], "no protocol was agreed");
        }
    }
    // 1.0: Prometheus' own headers, the explicit proto, no Content-Type (hand-made
    // requests), curl's default, tolerant parameter syntax.
    for headers in [
        vec![
            ("Content-Type", "application/x-protobuf"),
            ("Content-Encoding", "snappy"),
        ],
        vec![(
            "Content-Type",
            "application/x-protobuf;proto=prometheus.WriteRequest",
        )],
        vec![],
        vec![("Content-Type", "application/x-www-form-urlencoded")],
        vec![(
            "Content-Type",
            "Application/X-Protobuf ; Proto=\"prometheus.WriteRequest\"",
        )],
    ] {
        let a = post(&env, "/write", v1_body.clone(), &headers).await;
        assert_eq!(a.status, 200, "{headers:?}: {}", a.body);
        assert_eq!(a.written(), [None; 3], "1.0 answers are unchanged");
    }
    // 2.0 with parameter whitespace and case.
    let a = post(
        &env,
        "/write",
        encode_write_request_v2(&req),
        &[(
            "Content-Type",
            "application/x-protobuf ; PROTO=io.prometheus.write.v2.request",
        )],
    )
    .await;
    assert_eq!((a.status, a.written()), (204, [Some(1), Some(0), Some(0)]));
    // vmagent: zstd first, then (after the 415) snappy 1.0 — stored.
    let rows = env.rows(DB, TABLE).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    let m = env.metrics_text().await;
    assert_eq!(
        metric_value(
            &m,
            "timestream_connector_remote_write_requests_total{protocol=\"1.0\"}"
        ),
        5.0
    );
    assert_eq!(
        metric_value(
            &m,
            "timestream_connector_remote_write_requests_total{protocol=\"2.0\"}"
        ),
        1.0
    );
    env.shutdown().await;
}

#[tokio::test]
async fn refusals_and_failures_use_the_1_0_status_mapping_and_carry_the_headers() {
    let env = start().await;
    let t = now_ms() - 20_000;
    let ok = request(vec![series(
        &[("__name__", "s"), ("job", "x")],
        &[(1.0, t)],
    )]);
    let v2 = [("Content-Type", V2), ("Content-Encoding", "snappy")];

    // Malformed 2.0 bodies: 400 naming the field and byte, nothing written.
    let mut bad_ref = to_v2(&ok);
    bad_ref.timeseries[0].labels_refs[1] = 99;
    let mut odd = to_v2(&ok);
    odd.timeseries[0].labels_refs.pop();
    let mut first = to_v2(&ok);
    first.symbols[0] = "x".into();
    for (req, needle) in [
        (bad_ref, "symbol reference 99 out of range"),
        (odd, "odd number of label references"),
        (first, "symbols[0] must be the empty string"),
    ] {
        let a = post(&env, "/write", compress(&req.encode_to_vec()), &v2).await;
        assert_eq!(a.status, 400, "{}", a.body);
        assert!(a.body.contains(needle), "{}", a.body);
        assert!(a.body.contains(" at byte "), "{}", a.body);
        assert_eq!(a.written(), [Some(0); 3]);
    }
    // Not snappy: 400; over the decompressed cap: 413.
    let a = post(&env, "/write", b"not snappy".to_vec(), &v2).await;
    assert_eq!((a.status, a.written()), (400, [Some(0); 3]));
    let a = post(
        &env,
        "/write",
        vec![0xff, 0xff, 0xff, 0xff, 0x0f, 0x00],
        &v2,
    )
    .await;
    assert_eq!(a.status, 413, "{}", a.body);
    // A series without __name__: the planner's 400, as in 1.0.
    let nameless = request(vec![series(&[("job", "x")], &[(1.0, t)])]);
    let a = post(&env, "/write", encode_write_request_v2(&nameless), &v2).await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(a.body.contains("__name__"), "{}", a.body);

    // Throttled beyond retries: 503 (Prometheus retries), nothing counted as written.
    env.faults().set(FaultOptions {
        throttle_rate: 1.0,
        ..Default::default()
    });
    let a = post(&env, "/write", encode_write_request_v2(&ok), &v2).await;
    assert_eq!(a.status, 503, "{}", a.body);
    assert_eq!(a.written(), [Some(0); 3]);
    env.faults().clear();
    let a = post(&env, "/write", encode_write_request_v2(&ok), &v2).await;
    assert_eq!((a.status, a.written()), (204, [Some(1), Some(0), Some(0)]));

    // Partial rejection (same series and time, another value): 400 saying what was
    // rejected; the header counts the one record that was stored.
    let conflict = request(vec![
        series(&[("__name__", "s"), ("job", "x")], &[(2.0, t)]),
        series(&[("__name__", "fine"), ("job", "x")], &[(3.0, t)]),
    ]);
    let a = post(&env, "/write", encode_write_request_v2(&conflict), &v2).await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(a.body.contains("wrote 1 of 2"), "{}", a.body);
    assert_eq!(a.written(), [Some(1), Some(0), Some(0)]);
    env.shutdown().await;
}
