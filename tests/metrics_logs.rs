//! After real traffic: the six upstream metric names and our labelled ones are exposed with
//! the right counts, and no credential appears anywhere in the captured logs.

mod common;

use std::sync::{Arc, Mutex};

use base64::Engine;
use common::*;
use timestream_local::FaultOptions;
use timestream_prometheus_connector::config::{LogConfig, LogFormat, LogLevel};
use timestream_prometheus_connector::remote::codec::encode_write_request;
use timestream_prometheus_connector::telemetry;
use tracing_subscriber::fmt::MakeWriter;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

#[tokio::test]
async fn metrics_after_traffic_and_no_secret_in_logs() {
    let logs = Captured::default();
    let sub = telemetry::subscriber(
        &LogConfig {
            enabled: true,
            level: LogLevel::Debug,
            format: LogFormat::Logfmt,
        },
        logs.clone(),
    )
    .expect("enabled");
    tracing::subscriber::set_global_default(sub).expect("only test in this binary");

    let env = start_with(EnvOptions {
        check_credentials: true,
        ..Default::default()
    })
    .await;
    let t = now_ms() - 5_000;
    let req = request(vec![
        series(
            &[("__name__", "a"), ("x", "1")],
            &[(1.0, t), (2.0, t + 1), (f64::NAN, t + 2)],
        ),
        series(&[("__name__", "b"), ("x", "1")], &[(3.0, t)]),
    ]);
    let (s, b) = env.write(&req).await;
    assert_eq!(s, 200, "{b}");
    let wrong_secret = "WRONG-secret-value-123";
    let (s, _) = env
        .post_raw(
            "/write",
            encode_write_request(&req),
            Some((AKID, wrong_secret)),
        )
        .await;
    assert_eq!(s, 403);
    env.faults().set(FaultOptions {
        throttle_rate: 1.0,
        ..Default::default()
    });
    let (s, _) = env.write(&req).await;
    assert_eq!(s, 503);
    env.faults().clear();
    let (s, _) = env
        .post_raw("/write", b"garbage".to_vec(), Some((AKID, SECRET)))
        .await;
    assert_eq!(s, 400);

    let m = env.metrics_text().await;
    // Upstream names (SPEC §1.4).
    assert_eq!(
        metric_value(&m, "timestream_connector_received_samples_total"),
        12.0,
        "{m}"
    );
    // NaN is stored as a special value (issue 14): nothing ignored.
    assert_eq!(
        metric_value(&m, "timestream_connector_ignored_samples_total"),
        0.0
    );
    assert!(metric_value(&m, "timestream_connector_write_requests_total") >= 3.0);
    assert!(metric_value(&m, "timestream_connector_write_duration_seconds_count") >= 3.0);
    assert!(m.contains("# TYPE timestream_connector_read_requests_total counter"));
    assert!(m.contains("# TYPE timestream_connector_read_duration_seconds histogram"));
    // Ours.
    assert_eq!(
        metric_value(&m, "timestream_connector_records_written_total"),
        4.0
    );
    // Counted when planned, in each of the three requests that got that far.
    assert_eq!(
        metric_value(
            &m,
            "timestream_connector_special_samples_total{kind=\"nan\"}"
        ),
        3.0
    );
    assert!(
        metric_value(
            &m,
            "timestream_connector_write_errors_total{code=\"ThrottlingException\"}"
        ) >= 1.0
    );
    assert!(
        m.contains("timestream_connector_write_errors_total{code=\"")
            && m.contains("timestream_connector_write_batch_records_bucket")
    );
    assert_eq!(
        metric_value(&m, "timestream_connector_requests_in_flight"),
        0.0
    );
    for code in ["200", "400", "403", "503"] {
        assert!(
            metric_value(&m, &format!("timestream_connector_http_requests_total{{code=\"{code}\",handler=\"/write\"}}")) >= 1.0,
            "{code}: {m}"
        );
    }
    for secret in [SECRET, wrong_secret] {
        assert!(!m.contains(secret));
    }

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains("WriteRecords"),
        "the failures were logged: {text}"
    );
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{AKID}:{SECRET}"));
    let basic_wrong =
        base64::engine::general_purpose::STANDARD.encode(format!("{AKID}:{wrong_secret}"));
    for needle in [SECRET, wrong_secret, basic.as_str(), basic_wrong.as_str()] {
        assert!(
            !text.contains(needle),
            "{needle:?} leaked into the logs:\n{text}"
        );
    }
    env.shutdown().await;
}
