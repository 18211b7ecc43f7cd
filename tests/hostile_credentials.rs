//! Per-credential caches are keyed by the whole credential (issue 13): a request with
//! someone's access key id and a made-up secret must not be served from the column list
//! cached for the real credential. Before, a read whose matchers the cached list decided
//! locally (a label no series has → nothing can match) answered 200 without any AWS call,
//! revealing which labels exist; now that credential has its own entry, whose DESCRIBE
//! Timestream refuses (403).

mod common;

use common::*;
use prost::Message;
use timestream_prometheus_connector::remote::codec::compress;
use timestream_prometheus_connector::remote::pb::{
    label_matcher::Type as T, LabelMatcher, Query, ReadRequest,
};

fn read_body(matchers: Vec<LabelMatcher>) -> Vec<u8> {
    compress(
        &ReadRequest {
            queries: vec![Query {
                start_timestamp_ms: 0,
                end_timestamp_ms: now_ms(),
                matchers,
                hints: None,
            }],
            accepted_response_types: vec![],
        }
        .encode_to_vec(),
    )
}

fn eq(name: &str, value: &str) -> LabelMatcher {
    LabelMatcher {
        r#type: T::Eq as i32,
        name: name.into(),
        value: value.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_never_reads_the_column_cache_of_the_right_one() {
    let env = start_with(EnvOptions {
        check_credentials: true,
        ..EnvOptions::default()
    })
    .await;
    let (st, body) = env
        .write(&request(vec![series(
            &[("__name__", "cached"), ("job", "a")],
            &[(1.0, now_ms())],
        )]))
        .await;
    assert_eq!(st, 200, "{body}");
    // The right credential fills the column cache; a matcher on a label no series has is
    // then decided locally.
    let unknown = read_body(vec![eq("__name__", "cached"), eq("no_such_label", "x")]);
    let (st, body) = env
        .post_raw("/read", unknown.clone(), Some((AKID, SECRET)))
        .await;
    assert_eq!(st, 200, "{body}");
    // Same key id, wrong secret: refused by Timestream, never answered from the cache.
    let (st, body) = env
        .post_raw("/read", unknown, Some((AKID, "not-the-secret")))
        .await;
    assert_eq!(st, 403, "answered from another credential's cache: {body}");
    let (st, _) = env
        .post_raw(
            "/read",
            read_body(vec![eq("__name__", "cached")]),
            Some((AKID, "not-the-secret")),
        )
        .await;
    assert_eq!(st, 403);
    env.shutdown().await;
}
