//! Bodies larger than one decode window (8,192 series or 65,536 labels; issue 13) go
//! through the real connector and a real timestream-local store: every sample is stored
//! exactly once, the 2.0 written count covers every window, and what refuses a request in
//! its last window still refuses it before the first window is written.

mod common;

use common::*;
use timestream_prometheus_connector::remote::codec::{compress, encode_write_request_v2};
use timestream_prometheus_connector::remote::pb::WriteRequest;

/// Series in the bodies: a little over two windows.
const SERIES: usize = 20_000;

fn many_series(t: i64) -> WriteRequest {
    request(
        (0..SERIES)
            .map(|i| {
                let i = i.to_string();
                series(
                    &[("__name__", "windowed"), ("i", &i), ("job", "j")],
                    &[(1.5, t)],
                )
            })
            .collect(),
    )
}

async fn post(env: &Env, body: Vec<u8>, content_type: &str) -> reqwest::Response {
    env.http
        .post(format!("{}/write", env.url))
        .basic_auth(AKID, Some(SECRET))
        .header("Content-Encoding", "snappy")
        .header("Content-Type", content_type)
        .body(body)
        .send()
        .await
        .expect("connector answers")
}

#[tokio::test]
async fn a_body_of_several_windows_is_stored_exactly_once_in_both_protocols() {
    let env = start().await;
    let t = now_ms();
    let (status, body) = env.write(&many_series(t)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(env.faults().records_written() as usize, SERIES);
    let rows = env.rows(DB, TABLE).await;
    assert_eq!(rows.len(), SERIES);

    let resp = post(
        &env,
        encode_write_request_v2(&many_series(t + 1)),
        "application/x-protobuf;proto=io.prometheus.write.v2.Request",
    )
    .await;
    assert_eq!(resp.status().as_u16(), 204);
    let written = resp.headers()["x-prometheus-remote-write-samples-written"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(written, SERIES.to_string());
    assert_eq!(env.faults().records_written() as usize, 2 * SERIES);
    let m = env.metrics_text().await;
    assert_eq!(
        metric_value(&m, "timestream_connector_received_samples_total"),
        (2 * SERIES) as f64
    );
    env.shutdown().await;
}

#[tokio::test]
async fn a_refusal_in_the_last_window_writes_nothing() {
    let env = start().await;
    let t = now_ms();
    // The last series has no metric name.
    let mut nameless = many_series(t);
    nameless
        .timeseries
        .push(series(&[("i", "last"), ("job", "j")], &[(1.0, t)]));
    let (status, body) = env.write(&nameless).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("no __name__"), "{body}");
    // One malformed byte after the last series.
    let mut raw = prost::Message::encode_to_vec(&many_series(t));
    raw.push(0x0a);
    let (status, body) = env
        .post_raw("/write", compress(&raw), Some((AKID, SECRET)))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains(&format!("at byte {}", raw.len())), "{body}");
    assert_eq!(env.faults().records_written(), 0);
    // Refused requests still count what they carried.
    let m = env.metrics_text().await;
    assert_eq!(
        metric_value(&m, "timestream_connector_received_samples_total"),
        (SERIES + 1) as f64
    );
    // And the same data, well formed, is then written whole.
    let (status, body) = env.write(&many_series(t)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(env.faults().records_written() as usize, SERIES);
    env.shutdown().await;
}
