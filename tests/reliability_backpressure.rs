//! Backpressure and faults, in process: overload is shed with 503 + Retry-After at once and
//! nothing a 2xx acknowledged is lost; WriteRecords calls are bounded across requests; a
//! slow store yields 503 at the request timeout; store 5xx and throttling bursts are retried
//! by the SDK and counted; a store that is down and comes back is recovered from. After
//! every recovery each sample is stored exactly once (rows counted). A streamed read counts
//! in `requests_in_flight` until its body ends, not only until its headers go out.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use timestream_local::{FaultOptions, Options, Server};
use timestream_prometheus_connector::config::Config;
use timestream_prometheus_connector::remote::codec::encode_write_request;
use timestream_prometheus_connector::remote::pb::WriteRequest;
use timestream_prometheus_connector::{app, server::serve};

fn store_latency(ms: u64) -> FaultOptions {
    FaultOptions {
        latency_ms: ms,
        // Queries stay fast so the tests can count rows.
        operations: vec!["WriteRecords".into()],
        ..Default::default()
    }
}

fn one(name: &str, i: usize, t: i64) -> WriteRequest {
    request(vec![series(
        &[("__name__", name), ("i", &i.to_string()), ("job", "rel")],
        &[(i as f64, t)],
    )])
}

struct Answer {
    status: u16,
    retry_after: Option<String>,
    took: Duration,
}

async fn post(http: &reqwest::Client, url: &str, req: &WriteRequest) -> Answer {
    let started = Instant::now();
    let resp = http
        .post(format!("{url}/write"))
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .basic_auth(AKID, Some(SECRET))
        .body(encode_write_request(req))
        .send()
        .await
        .expect("connector answers");
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let _ = resp.bytes().await;
    Answer {
        status,
        retry_after,
        took: started.elapsed(),
    }
}

/// How many rows each value of label `i` has for metric `name`.
async fn rows_by_i(env: &Env, name: &str) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for r in env.rows(DB, TABLE).await {
        if r.get("measure_name").map(String::as_str) == Some(name) {
            *m.entry(r["i"].clone()).or_default() += 1;
        }
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overload_is_shed_at_once_with_retry_after_and_nothing_acknowledged_is_lost() {
    let env = start_with(EnvOptions {
        args: vec![
            "--max-write-retries=2".into(),
            "--web.max-concurrent-requests=4".into(),
        ],
        ..Default::default()
    })
    .await;
    env.faults().set(store_latency(1_500));
    let t = now_ms() - 10_000;
    const N: usize = 40;
    let tasks: Vec<_> = (0..N)
        .map(|i| {
            let http = env.http.clone();
            let url = env.url.clone();
            tokio::spawn(async move { (i, post(&http, &url, &one("overload", i, t)).await) })
        })
        .collect();
    // Health and metrics are exempt from the limit and answer while it is reached.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let health = env
        .http
        .get(format!("{}/-/healthy", env.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let in_flight = metric_value(
        &env.metrics_text().await,
        "timestream_connector_requests_in_flight",
    );
    assert!(
        in_flight <= 4.0,
        "at most 4 requests handled at once, saw {in_flight}"
    );

    let mut ok = Vec::new();
    let mut shed = Vec::new();
    for task in tasks {
        let (i, a) = task.await.unwrap();
        match a.status {
            200 => ok.push(i),
            503 => {
                assert_eq!(
                    a.retry_after.as_deref(),
                    Some("1"),
                    "503 must carry Retry-After"
                );
                // Shed before any store call: well under the store's 1.5 s latency.
                assert!(
                    a.took < Duration::from_millis(1_000),
                    "503 took {:?}",
                    a.took
                );
                shed.push(i);
            }
            s => panic!("request {i}: unexpected status {s}"),
        }
    }
    assert!(ok.len() >= 4, "the first requests are served: {ok:?}");
    assert!(
        shed.len() >= N / 2,
        "most of {N} must be shed, got {shed:?}"
    );
    let text = env.metrics_text().await;
    assert_eq!(
        metric_value(&text, "timestream_connector_requests_shed_total") as usize,
        shed.len()
    );

    // Every acknowledged sample is stored, and only those.
    env.faults().clear();
    let stored = rows_by_i(&env, "overload").await;
    for i in &ok {
        assert_eq!(
            stored.get(&i.to_string()),
            Some(&1),
            "2xx sample {i} stored once"
        );
    }
    assert_eq!(stored.len(), ok.len(), "shed requests wrote nothing");
    // The table's key folds a re-written sample into one row, so the rows alone cannot
    // show a double write; the backend's count of records it accepted can.
    assert_eq!(
        env.faults().records_written() as usize,
        ok.len(),
        "each acknowledged sample reached the backend exactly once, shed ones never"
    );

    // A sender that retries its 503s (as Prometheus does) ends with every sample once.
    for i in shed {
        let mut tries = 0;
        loop {
            let a = post(&env.http, &env.url, &one("overload", i, t)).await;
            if a.status == 200 {
                break;
            }
            tries += 1;
            assert!(tries < 20, "request {i} never accepted");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let stored = rows_by_i(&env, "overload").await;
    assert_eq!(stored.len(), N);
    assert!(stored.values().all(|&n| n == 1), "{stored:?}");
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn write_records_calls_are_bounded_across_requests() {
    // 6 requests × 4 batches of ≤100 records, 4 calls per request allowed, 3 in total.
    let env = start_with(EnvOptions {
        args: vec![
            "--max-write-retries=1".into(),
            "--write.concurrency=4".into(),
            "--write.max-inflight-calls=3".into(),
        ],
        ..Default::default()
    })
    .await;
    const LATENCY_MS: u64 = 250;
    env.faults().set(store_latency(LATENCY_MS));
    let t = now_ms() - 10_000;
    let started = Instant::now();
    let tasks: Vec<_> = (0..6)
        .map(|r| {
            let http = env.http.clone();
            let url = env.url.clone();
            let req = request(
                (0..400)
                    .map(|k| {
                        series(
                            &[
                                ("__name__", "bounded"),
                                ("i", &format!("{r}-{k}")),
                                ("job", "rel"),
                            ],
                            &[(k as f64, t)],
                        )
                    })
                    .collect(),
            );
            tokio::spawn(async move { post(&http, &url, &req).await.status })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), 200);
    }
    let took = started.elapsed();
    let text = env.metrics_text().await;
    let calls = metric_value(&text, "timestream_connector_write_requests_total");
    assert!(calls >= 24.0, "{calls} WriteRecords calls");
    // Counted where it matters, at the store: never more than 3 calls at once, and the
    // bound was reached (6 requests of 4 calls each would overlap without it).
    let most = env.faults().max_in_flight("WriteRecords");
    assert_eq!(
        most, 3,
        "{calls} calls in {took:?}: at most 3 may be in flight at the store, saw {most}"
    );
    assert_eq!(
        metric_value(&text, "timestream_connector_write_call_slots_in_use"),
        0.0,
        "slots are given back"
    );
    env.faults().clear();
    assert_eq!(rows_by_i(&env, "bounded").await.len(), 2_400);
    env.shutdown().await;
}

#[tokio::test]
async fn a_store_slower_than_the_request_timeout_yields_503_then_the_retry_stores_once() {
    let env = start_with(EnvOptions {
        args: vec![
            "--max-write-retries=1".into(),
            "--web.request-timeout=1s".into(),
        ],
        ..Default::default()
    })
    .await;
    env.faults().set(store_latency(4_000));
    let t = now_ms() - 10_000;
    let a = post(&env.http, &env.url, &one("slow", 1, t)).await;
    assert_eq!(a.status, 503);
    assert_eq!(a.retry_after.as_deref(), Some("1"));
    assert!(
        a.took >= Duration::from_millis(1_000) && a.took < Duration::from_millis(1_800),
        "answered after {:?}, expected the 1 s timeout",
        a.took
    );
    let text = env.metrics_text().await;
    assert_eq!(
        metric_value(&text, "timestream_connector_request_timeouts_total"),
        1.0
    );
    assert!(
        text.contains(
            "timestream_connector_http_requests_total{code=\"503\",handler=\"/write\"} 1"
        ),
        "{text}"
    );

    // The sender retries the same request once the store is fast again.
    env.faults().clear();
    assert_eq!(
        post(&env.http, &env.url, &one("slow", 1, t)).await.status,
        200
    );
    // Whatever the cut call did meanwhile, the sample is stored exactly once.
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    let stored = rows_by_i(&env, "slow").await;
    assert_eq!(stored, BTreeMap::from([("1".to_string(), 1)]));
    env.shutdown().await;
}

#[tokio::test]
async fn store_5xx_and_throttling_bursts_are_retried_and_counted() {
    let env = start_with(EnvOptions {
        args: vec!["--max-write-retries=5".into()],
        ..Default::default()
    })
    .await;
    let t = now_ms() - 10_000;
    env.faults().set(FaultOptions {
        internal_error_count: 3,
        operations: vec!["WriteRecords".into()],
        ..Default::default()
    });
    let a = post(&env.http, &env.url, &one("burst", 1, t)).await;
    assert_eq!(
        a.status, 200,
        "3 InternalServerExceptions are within 5 attempts"
    );
    assert_eq!(
        env.faults().get().internal_error_count,
        0,
        "the burst was consumed"
    );
    env.faults().set(FaultOptions {
        throttle_count: 2,
        operations: vec!["WriteRecords".into()],
        ..Default::default()
    });
    let a = post(&env.http, &env.url, &one("burst", 2, t)).await;
    assert_eq!(
        a.status, 200,
        "2 ThrottlingExceptions are within 5 attempts"
    );

    let text = env.metrics_text().await;
    // Two calls, seven attempts: the body-size histogram observes each attempt.
    assert_eq!(
        metric_value(&text, "timestream_connector_write_requests_total"),
        2.0
    );
    assert_eq!(
        metric_value(&text, "timestream_connector_write_request_bytes_count"),
        7.0,
        "every SDK retry is an attempt in the metrics"
    );
    assert!(
        !text.contains("timestream_connector_write_errors_total{"),
        "no call failed after retries:\n{text}"
    );
    let stored = rows_by_i(&env, "burst").await;
    assert_eq!(
        stored,
        BTreeMap::from([("1".to_string(), 1), ("2".to_string(), 1)])
    );
    env.shutdown().await;
}

#[tokio::test]
async fn a_store_that_is_down_then_up_gives_503_then_200() {
    // A port where nothing listens (yet).
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let store_url = format!("http://127.0.0.1:{port}");
    let config = Config::from_args([
        "timestream-prometheus-connector".to_string(),
        format!("--default-database={DB}"),
        format!("--default-table={TABLE}"),
        format!("--write-base-endpoint={store_url}"),
        format!("--query-base-endpoint={store_url}"),
        "--max-write-retries=2".to_string(),
    ])
    .unwrap();
    let state = state_for(config).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let router = app(state.clone());
    tokio::spawn(async move { serve(listener, router, None, std::future::pending()).await });
    let http = reqwest::Client::new();
    let t = now_ms() - 10_000;

    let a = post(&http, &url, &one("outage", 1, t)).await;
    assert_eq!(a.status, 503, "store down: retryable");
    assert_eq!(a.retry_after.as_deref(), Some("1"));
    assert!(a.took < Duration::from_secs(10), "took {:?}", a.took);

    let dir = tempfile::tempdir().unwrap();
    let mut opts = Options::new(dir.path().join("store"));
    opts.listen_address = ([127, 0, 0, 1], port).into();
    let store = Server::start(opts)
        .await
        .expect("store starts on the freed port");
    create_db_table(&store_write_client(&store.url()), DB, TABLE).await;
    // The sender retries the same request; it now succeeds.
    let a = post(&http, &url, &one("outage", 1, t)).await;
    assert_eq!(a.status, 200);
    let rows = query_rows(
        &store.url(),
        &format!(r#"SELECT i FROM "{DB}"."{TABLE}" WHERE measure_name = 'outage'"#),
    )
    .await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    let text = state.metrics.encode();
    assert!(
        text.contains(
            "timestream_connector_http_requests_total{code=\"503\",handler=\"/write\"} 1"
        ),
        "{text}"
    );
    store.shutdown().await;
}

#[tokio::test]
async fn a_slow_remote_read_is_503_at_the_request_timeout() {
    use prost::Message;
    use timestream_prometheus_connector::remote::pb::{
        label_matcher::Type, read_request::ResponseType, LabelMatcher, Query, ReadRequest,
    };
    let env = start_with(EnvOptions {
        args: vec![
            "--max-read-retries=1".into(),
            "--web.request-timeout=1s".into(),
        ],
        ..Default::default()
    })
    .await;
    let t = now_ms() - 10_000;
    assert_eq!(
        post(&env.http, &env.url, &one("slow_read", 1, t))
            .await
            .status,
        200
    );
    let req = ReadRequest {
        queries: vec![Query {
            start_timestamp_ms: t - 1_000,
            end_timestamp_ms: t + 1_000,
            matchers: vec![LabelMatcher {
                r#type: Type::Eq as i32,
                name: "__name__".into(),
                value: "slow_read".into(),
            }],
            hints: None,
        }],
        accepted_response_types: vec![ResponseType::Samples as i32],
    };
    let body = snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .unwrap();
    let read = || async {
        let started = Instant::now();
        let r = env
            .http
            .post(format!("{}/api/v1/read", env.url))
            .basic_auth(AKID, Some(SECRET))
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), started.elapsed())
    };
    env.faults().set(FaultOptions {
        latency_ms: 4_000,
        operations: vec!["Query".into()],
        ..Default::default()
    });
    let (status, took) = read().await;
    assert_eq!(status, 503);
    assert!(
        took >= Duration::from_millis(1_000) && took < Duration::from_millis(1_800),
        "{took:?}"
    );
    env.faults().clear();
    assert_eq!(read().await.0, 200);
    assert_eq!(
        metric_value(
            &env.metrics_text().await,
            "timestream_connector_request_timeouts_total"
        ),
        1.0
    );
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_read_counts_as_in_flight_until_its_body_ends() {
    use prost::Message;
    use timestream_prometheus_connector::remote::pb::{
        label_matcher::Type, read_request::ResponseType, LabelMatcher, Query, ReadRequest,
    };
    let env = start().await;
    let t = now_ms() - 10_000;
    assert_eq!(
        post(&env.http, &env.url, &one("in_flight", 1, t))
            .await
            .status,
        200
    );
    // Three queries of 700 ms each: the headers go out with the first frame (~0.7 s), the
    // body ends after the third (~2.1 s).
    let query = Query {
        start_timestamp_ms: t - 1_000,
        end_timestamp_ms: t + 1_000,
        matchers: vec![LabelMatcher {
            r#type: Type::Eq as i32,
            name: "__name__".into(),
            value: "in_flight".into(),
        }],
        hints: None,
    };
    let req = ReadRequest {
        queries: vec![query; 3],
        accepted_response_types: vec![ResponseType::StreamedXorChunks as i32],
    };
    let body = snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .unwrap();
    env.faults().set(FaultOptions {
        latency_ms: 700,
        operations: vec!["Query".into()],
        ..Default::default()
    });
    let in_flight = || async {
        metric_value(
            &env.metrics_text().await,
            "timestream_connector_requests_in_flight",
        )
    };
    let resp = env
        .http
        .post(format!("{}/read", env.url))
        .basic_auth(AKID, Some(SECRET))
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        in_flight().await,
        1.0,
        "the headers are out, the body is still being sent"
    );
    let body = resp.bytes().await.expect("the whole body");
    assert!(!body.is_empty());
    assert_eq!(in_flight().await, 0.0, "the body has ended");
    env.faults().clear();
    env.shutdown().await;
}
