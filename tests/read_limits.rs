//! A read request may not buy an unbounded number of Timestream queries.
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
