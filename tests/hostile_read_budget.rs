//! One `--read.max-samples` budget for all the queries of a SAMPLES read, taken as rows
//! arrive (issue 13): a request of many queries stops at the first page past the cap,
//! instead of running every query to the end (each with the whole cap to itself, up to
//! 1,000 × the cap held at once) and refusing the total afterwards.

mod common;

use common::*;
use prost::Message;
use timestream_prometheus_connector::remote::codec::compress;
use timestream_prometheus_connector::remote::pb::{
    label_matcher::Type as T, LabelMatcher, Query, ReadRequest,
};

fn read(queries: usize) -> Vec<u8> {
    let q = Query {
        start_timestamp_ms: now_ms() - 3_600_000,
        end_timestamp_ms: now_ms() + 60_000,
        matchers: vec![LabelMatcher {
            r#type: T::Eq as i32,
            name: "__name__".into(),
            value: "budget".into(),
        }],
        hints: None,
    };
    compress(
        &ReadRequest {
            queries: vec![q; queries],
            accepted_response_types: vec![],
        }
        .encode_to_vec(),
    )
}

async fn pages(env: &Env) -> f64 {
    metric_value(
        &env.metrics_text().await,
        "timestream_connector_read_requests_total",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_samples_cap_is_shared_by_all_queries_and_stops_them_early() {
    let env = start_with(EnvOptions {
        args: vec![
            "--read.max-samples=150".into(),
            "--read.concurrency=1".into(),
        ],
        ..EnvOptions::default()
    })
    .await;
    let t = now_ms() - 60_000;
    let (st, body) = env
        .write(&request(vec![series(
            &[("__name__", "budget"), ("job", "a")],
            &(0..100).map(|i| (i as f64, t + i)).collect::<Vec<_>>(),
        )]))
        .await;
    assert_eq!(st, 200, "{body}");
    // One query of 100 samples fits.
    let (st, body) = env.post_raw("/read", read(1), Some((AKID, SECRET))).await;
    assert_eq!(st, 200, "{body}");
    // Twenty queries of 100 samples each: refused at the second, the others never run.
    let before = pages(&env).await;
    let (st, body) = env.post_raw("/read", read(20), Some((AKID, SECRET))).await;
    assert_eq!(st, 400, "{body}");
    assert!(body.contains("--read.max-samples"), "{body}");
    let ran = pages(&env).await - before;
    assert!(
        ran <= 2.0,
        "{ran} Query pages for a request refused at its second query"
    );
    env.shutdown().await;
}
