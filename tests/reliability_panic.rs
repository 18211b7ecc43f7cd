//! A panic in a request handler: answered 500 (not a dropped connection), logged, and the
//! process keeps serving; the request's concurrency slot is released as the panic unwinds
//! (with `--web.max-concurrent-requests=1`, the next requests get through).
//!
//! The panicking route exists only with the `test-panic-route` cargo feature, which only
//! this test builds with (`cargo test --features test-panic-route --test reliability_panic`).

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_answers_500_and_the_next_request_succeeds() {
    let env = start_with(EnvOptions {
        args: vec!["--web.max-concurrent-requests=1".into()],
        ..EnvOptions::default()
    })
    .await;
    let t = now_ms();
    for i in 0..3 {
        let resp = env
            .http
            .post(format!("{}/-/test/panic", env.url))
            .body("x")
            .send()
            .await
            .expect("an answer, not a dropped connection");
        assert_eq!(resp.status().as_u16(), 500);
        let body = resp.text().await.unwrap();
        assert!(body.contains("internal error"), "{body}");
        // The slot was released: a write (the only one allowed at a time) succeeds.
        let (st, body) = env
            .write(&request(vec![series(
                &[("__name__", "after_panic"), ("i", &i.to_string())],
                &[(i as f64, t)],
            )]))
            .await;
        assert_eq!(st, 200, "write after panic {i}: {body}");
    }
    let health = env
        .http
        .get(format!("{}/-/healthy", env.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
    let metrics = env.metrics_text().await;
    assert!(
        metric_value(
            &metrics,
            "timestream_connector_http_requests_total{code=\"500\",handler=\"/-/test/panic\"}"
        ) >= 3.0,
        "{metrics}"
    );
    let rows = env.rows(DB, TABLE).await;
    assert_eq!(rows.len(), 3, "{rows:?}");
    env.shutdown().await;
}
