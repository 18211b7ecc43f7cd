//! Every status the write path can answer, driven through timestream-local's credential
//! check and fault injection, plus hostile bodies; the server keeps serving after each.

mod common;

use common::*;
use timestream_local::FaultOptions;
use timestream_prometheus_connector::remote::codec::{compress, encode_write_request};

fn one_sample(name: &str, t: i64) -> timestream_prometheus_connector::remote::pb::WriteRequest {
    request(vec![series(
        &[("__name__", name), ("job", "status")],
        &[(1.0, t)],
    )])
}

async fn still_serves(env: &Env) {
    let (status, body) = env
        .write(&one_sample("still_alive", now_ms() - 1_000))
        .await;
    assert_eq!(status, 200, "server must keep serving: {body}");
}

#[tokio::test]
async fn auth_statuses_and_per_credential_clients() {
    let env = start_with(EnvOptions {
        check_credentials: true,
        ..Default::default()
    })
    .await;
    let t = now_ms() - 10_000;
    let body = encode_write_request(&one_sample("auth", t));

    let resp = env
        .http
        .post(format!("{}/write", env.url))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let challenge = resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(challenge.starts_with("Basic realm="), "{challenge}");

    let resp = env
        .http
        .post(format!("{}/write", env.url))
        .header("Authorization", "Basic !!notbase64")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    // Wrong secret for a known key, and an unknown key: refused by the store → 403.
    let (status, text) = env
        .post_raw("/write", body.clone(), Some((AKID, "wrong-secret")))
        .await;
    assert_eq!(status, 403, "{text}");
    assert!(
        !text.contains("wrong-secret") && !text.contains(SECRET),
        "{text}"
    );
    let (status, text) = env
        .post_raw("/write", body.clone(), Some(("AKIDUNKNOWN", "x")))
        .await;
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("0 of 1"), "{text}");

    let (status, text) = env
        .post_raw("/write", body.clone(), Some((AKID, SECRET)))
        .await;
    assert_eq!(status, 200, "{text}");
    let (status, _) = env
        .post_raw("/write", body.clone(), Some((AKID, SECRET)))
        .await;
    assert_eq!(status, 200);
    // Three distinct credentials seen → three cached client sets; the good one was reused.
    assert_eq!(env.state.clients.len(), 3);
    assert_eq!(env.rows(DB, TABLE).await.len(), 1);
    env.shutdown().await;
}

#[tokio::test]
async fn throttling_and_internal_errors_beyond_retries_are_503() {
    let env = start().await; // --max-write-retries=2
    let t = now_ms() - 10_000;
    env.faults().set(FaultOptions {
        throttle_rate: 1.0,
        ..Default::default()
    });
    let (status, body) = env.write(&one_sample("throttled", t)).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("ThrottlingException"), "{body}");

    env.faults().set(FaultOptions {
        internal_error_rate: 1.0,
        ..Default::default()
    });
    let (status, body) = env.write(&one_sample("internal", t)).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("InternalServerException"), "{body}");

    // One throttled attempt is absorbed by the SDK's retry: the request succeeds.
    env.faults().set(FaultOptions {
        throttle_count: 1,
        ..Default::default()
    });
    let (status, body) = env.write(&one_sample("retried", t)).await;
    assert_eq!(status, 200, "{body}");
    env.faults().clear();

    let m = env.metrics_text().await;
    assert!(
        metric_value(
            &m,
            "timestream_connector_write_errors_total{code=\"ThrottlingException\"}"
        ) >= 1.0,
        "{m}"
    );
    assert!(
        metric_value(
            &m,
            "timestream_connector_write_errors_total{code=\"InternalServerException\"}"
        ) >= 1.0
    );
    still_serves(&env).await;
    env.shutdown().await;
}

#[tokio::test]
async fn missing_table_is_404_and_rejected_records_are_400() {
    let env = start_with(EnvOptions {
        tables: vec![(DB.into(), TABLE.into())],
        args: vec![
            "--default-table=nosuchtable".into(),
            "--max-write-retries=1".into(),
        ],
        ..Default::default()
    })
    .await;
    let (status, body) = env.write(&one_sample("m", now_ms() - 1_000)).await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body.contains("nosuchtable") || body.contains("ResourceNotFound"),
        "{body}"
    );
    env.shutdown().await;

    let env = start().await;
    let t = now_ms() - 10_000;
    let (status, _) = env.write(&one_sample("conflict", t)).await;
    assert_eq!(status, 200);
    // Same series and time, different value: Timestream rejects the record (no Version).
    let req = request(vec![
        series(&[("__name__", "conflict"), ("job", "status")], &[(2.0, t)]),
        series(&[("__name__", "fine"), ("job", "status")], &[(3.0, t)]),
    ]);
    let (status, body) = env.write(&req).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("wrote 1 of 2"), "{body}");
    assert!(body.contains("conflict"), "{body}");
    // The accepted record of the partially rejected call is stored.
    let rows = env.rows(DB, TABLE).await;
    assert!(rows.iter().any(|r| r["measure_name"] == "fine"), "{rows:?}");

    // Too old for the memory store (24 h retention in these tests).
    let (status, body) = env
        .write(&one_sample("old", now_ms() - 48 * 3_600_000))
        .await;
    assert_eq!(status, 400, "{body}");
    still_serves(&env).await;
    env.shutdown().await;
}

#[tokio::test]
async fn hostile_bodies_are_400_or_413_and_the_server_survives() {
    let env = start_with(EnvOptions {
        args: vec![
            "--web.max-request-bytes=65536".into(),
            "--web.max-decompressed-bytes=262144".into(),
        ],
        ..Default::default()
    })
    .await;
    let auth = Some((AKID, SECRET));
    // Not snappy.
    let (s, b) = env
        .post_raw("/write", b"this is not snappy".to_vec(), auth)
        .await;
    assert_eq!(s, 400, "{b}");
    // Snappy, but not protobuf.
    let (s, b) = env.post_raw("/write", compress(&[0xff; 64]), auth).await;
    assert_eq!(s, 400, "{b}");
    assert!(b.contains("protobuf"), "{b}");
    // Truncated snappy block.
    let mut good = encode_write_request(&one_sample("x", now_ms()));
    good.truncate(good.len() / 2);
    let (s, _) = env.post_raw("/write", good, auth).await;
    assert_eq!(s, 400);
    // A few bytes declaring 4 GiB: refused before allocating.
    let (s, b) = env
        .post_raw("/write", vec![0xff, 0xff, 0xff, 0xff, 0x0f, 0x00], auth)
        .await;
    assert_eq!(s, 413, "{b}");
    // Genuinely decompresses past the cap.
    let (s, b) = env
        .post_raw("/write", compress(&vec![0u8; 300_000]), auth)
        .await;
    assert_eq!(s, 413, "{b}");
    // Compressed body past the cap.
    let (s, _) = env.post_raw("/write", vec![7u8; 70_000], auth).await;
    assert_eq!(s, 413);
    // Empty body = empty snappy block? No: zero bytes is not a snappy block.
    let (s, _) = env.post_raw("/write", Vec::new(), auth).await;
    assert_eq!(s, 400);
    // An empty WriteRequest is fine (upstream: TestWriteNoData).
    let (s, _) = env
        .post_raw("/write", encode_write_request(&request(vec![])), auth)
        .await;
    assert_eq!(s, 200);
    // A 1.0 body labelled remote write 2.0 reads as an empty 2.0 request (the 2.0 schema
    // reserves 1.0's field numbers): 204, nothing written (tests/write_rw2.rs has the rest).
    let resp = env
        .http
        .post(format!("{}/api/v1/write", env.url))
        .basic_auth(AKID, Some(SECRET))
        .header(
            "Content-Type",
            "application/x-protobuf;proto=io.prometheus.write.v2.Request",
        )
        .header("Content-Encoding", "snappy")
        .body(encode_write_request(&request(vec![])))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(
        resp.headers()["x-prometheus-remote-write-samples-written"],
        "0"
    );
    // Wrong method and unknown path.
    let resp = env
        .http
        .get(format!("{}/write", env.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    let resp = env
        .http
        .get(format!("{}/nope", env.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    for p in ["/-/healthy", "/-/ready"] {
        let resp = env
            .http
            .get(format!("{}{p}", env.url))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{p}");
    }
    still_serves(&env).await;
    env.shutdown().await;
}

#[tokio::test]
async fn invalid_series_are_400_naming_the_problem() {
    let env = start_with(EnvOptions {
        args: vec![
            "--fail-on-long-label=true".into(),
            "--fail-on-invalid-sample-value".into(),
            "true".into(),
            // Upstream's meaning: refuse the NaN/±Inf that would be skipped. With special
            // values on (the default) none is skipped, so there is nothing to refuse.
            "--write.special-values=false".into(),
        ],
        ..Default::default()
    })
    .await;
    let t = now_ms() - 1_000;
    let (s, b) = env
        .write(&request(vec![series(&[("job", "x")], &[(1.0, t)])]))
        .await;
    assert_eq!(s, 400, "{b}");
    assert!(b.contains("__name__"), "{b}");

    let long = "n".repeat(61);
    let (s, b) = env
        .write(&request(vec![series(
            &[("__name__", "m"), (long.as_str(), "v")],
            &[(1.0, t)],
        )]))
        .await;
    assert_eq!(s, 400, "{b}");
    assert!(b.contains(&long) && b.contains("60"), "{b}");

    let (s, b) = env
        .write(&request(vec![series(
            &[("__name__", "m"), ("ts_id", "v")],
            &[(1.0, t)],
        )]))
        .await;
    assert_eq!(s, 400, "{b}");
    assert!(b.contains("reserved"), "{b}");

    let (s, b) = env
        .write(&request(vec![series(
            &[("__name__", "m")],
            &[(f64::NAN, t)],
        )]))
        .await;
    assert_eq!(s, 400, "{b}");
    assert!(b.contains("NaN"), "{b}");
    // Stale markers are Prometheus' normal operation, never a 400.
    let (s, b) = env
        .write(&request(vec![series(
            &[("__name__", "m")],
            &[(f64::from_bits(0x7ff0_0000_0000_0002), t)],
        )]))
        .await;
    assert_eq!(s, 200, "{b}");
    // Nothing of a refused request was written.
    assert!(env.rows(DB, TABLE).await.is_empty());
    still_serves(&env).await;
    env.shutdown().await;
}
