//! Remote write signed natively for API Gateway (issue 18): Prometheus ≥ 3.5 accepts
//! `sigv4: { service_name: execute-api }`, so it can write to the connector behind API
//! Gateway with IAM authorization without a signing proxy. A front on loopback stands in
//! for API Gateway: it checks every request's SigV4 signature for `execute-api` (the
//! same verification timestream-local does for its own service), strips the stage from
//! the path and forwards to the connector running with `--enable-sigv4-auth=true` (its
//! own keys, as the Lambda function uses its role). Prometheus A signs for
//! `execute-api` and stores everything; Prometheus B leaves `service_name` out, signs
//! for `aps` (what every Prometheus before 3.5 does) and is refused with 403, so
//! nothing of it is stored: the documented reason for the proxy with older versions.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use timestream_local::signature::{check, Request};

use crate::harness::exporter::Exporter;
use crate::harness::*;

/// The keys Prometheus signs with (what an IAM user or role of the caller would be).
const NATIVE_KEY: (&str, &str) = ("AKIDPROMSIGNSEXECAPI", "native-secret/do-not-log");
const APS_KEY: (&str, &str) = ("AKIDPROMSIGNSAPS0000", "aps-secret/do-not-log");
/// API Gateway puts the stage name in front of the path.
const STAGE: &str = "/dev";

#[derive(Clone, Debug)]
struct Seen {
    access_key: String,
    /// Service of the signature's credential scope.
    service: String,
    status: u16,
}

#[derive(Clone)]
struct Front {
    target: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

fn scope(headers: &HeaderMap) -> (String, String) {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let cred = auth
        .split(',')
        .find_map(|p| p.trim().split_once("Credential=").map(|(_, c)| c))
        .unwrap_or_default();
    let parts: Vec<&str> = cred.split('/').collect();
    (
        parts.first().unwrap_or(&"").to_string(),
        parts.get(3).unwrap_or(&"").to_string(),
    )
}

async fn front(
    State(f): State<Front>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (access_key, service) = scope(&headers);
    let request = Request {
        method: method.as_str(),
        path: uri.path(),
        query: uri.query().unwrap_or(""),
        headers: &headers,
        body: &body,
    };
    let secret_of = |akid: &str| {
        [NATIVE_KEY, APS_KEY]
            .iter()
            .find(|k| k.0 == akid)
            .map(|k| k.1.to_string())
    };
    let record = |status: u16| {
        f.seen.lock().unwrap().push(Seen {
            access_key: access_key.clone(),
            service: service.clone(),
            status,
        })
    };
    if let Err((status, code, message)) = check(&request, "execute-api", secret_of) {
        record(status);
        let body = serde_json::json!({ "message": message, "code": code }).to_string();
        return (StatusCode::from_u16(status).unwrap(), body).into_response();
    }
    let Some(path) = uri.path().strip_prefix(STAGE) else {
        record(404);
        return StatusCode::NOT_FOUND.into_response();
    };
    let mut req = http_client().post(format!("{}{path}", f.target)).body(body);
    for (k, v) in &headers {
        if k != "host" && k != "content-length" {
            req = req.header(k, v);
        }
    }
    let Ok(resp) = req.send().await else {
        record(502);
        return StatusCode::BAD_GATEWAY.into_response();
    };
    let status = resp.status();
    record(status.as_u16());
    (status, resp.bytes().await.unwrap_or_default()).into_response()
}

fn writer_config(
    exporter: &str,
    front: &str,
    sender: &str,
    key: (&str, &str),
    service: Option<&str>,
) -> String {
    let service_name = service
        .map(|s| format!("      service_name: {s}\n"))
        .unwrap_or_default();
    format!(
        r#"global:
  scrape_interval: 1s
  external_labels:
    sender: {sender}
scrape_configs:
  - job_name: exporter
    static_configs:
      - targets: ["{exporter}"]
remote_write:
  - url: "http://{front}{STAGE}/write"
    sigv4:
      region: us-east-1
      access_key: {akid}
      secret_key: {secret}
{service_name}    queue_config:
      batch_send_deadline: 1s
      min_backoff: 100ms
      max_backoff: 1s
"#,
        akid = key.0,
        secret = key.1,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_3_signs_remote_write_for_api_gateway_and_older_signing_is_refused() {
    let Some((prom, version)) =
        clients::require_prometheus(3, "remote write signed with sigv4 service_name")
    else {
        return;
    };
    let dir = TestDir::new("sigv4");
    let d = dir.path();
    let exporter = Exporter::start().await;
    let store_port = free_port();
    let args = local_store_args(
        d,
        store_port,
        &["--enable-sigv4-auth=true", "--log.level=debug"],
    );
    // The connector's own keys (its role, on Lambda), not the callers'.
    let env = [
        ("AWS_ACCESS_KEY_ID", "AKIDCONNECTORROLE000"),
        ("AWS_SECRET_ACCESS_KEY", "connector-role-secret"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];
    let connector = Connector::start_env("connector", free_port(), &args, &env, None, d).await;
    let f = Front {
        target: connector.url(""),
        seen: Arc::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let front_addr = listener.local_addr().unwrap().to_string();
    let app = Router::new()
        .fallback(axum::routing::any(front))
        .with_state(f.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });

    let exp = exporter.addr.to_string();
    let native = writer_config(&exp, &front_addr, "native", NATIVE_KEY, Some("execute-api"));
    let aps = writer_config(&exp, &front_addr, "aps", APS_KEY, None);
    let a = Prometheus::start(&prom, "prometheus-native", free_port(), &native, d).await;
    let b = Prometheus::start(&prom, "prometheus-aps", free_port(), &aps, d).await;
    tokio::time::sleep(Duration::from_secs(12)).await;
    let t = now_secs() - 2.0;
    a.wait_remote_write_past(t).await;

    // On the wire: A's requests verified for execute-api and stored (200); B's signed
    // for aps and refused (403) before reaching the connector.
    let seen = f.seen.lock().unwrap().clone();
    let of = |akid: &str| {
        seen.iter()
            .filter(|s| s.access_key == akid)
            .cloned()
            .collect::<Vec<_>>()
    };
    let (from_a, from_b) = (of(NATIVE_KEY.0), of(APS_KEY.0));
    assert!(!from_a.is_empty() && !from_b.is_empty(), "{seen:?}");
    assert!(
        from_a
            .iter()
            .all(|s| s.service == "execute-api" && s.status == 200),
        "{from_a:?}"
    );
    assert!(
        from_b.iter().all(|s| s.service == "aps" && s.status == 403),
        "{from_b:?}"
    );
    assert_eq!(seen.len(), from_a.len() + from_b.len(), "{seen:?}");
    // Prometheus' own account agrees.
    assert_eq!(
        a.own_metric_max("prometheus_remote_storage_samples_failed_total")
            .await,
        Some(0.0)
    );
    let b_failed = b
        .own_metric_max("prometheus_remote_storage_samples_failed_total")
        .await
        .unwrap_or(0.0);
    assert!(b_failed > 0.0, "B's refused samples are counted failed");
    // In the store: A's samples, none of B's.
    let q = query_client(&format!("http://127.0.0.1:{store_port}")).await;
    let count = |sender: &str| {
        format!("SELECT count(*) FROM \"{DATABASE}\".\"{TABLE}\" WHERE \"sender\" = '{sender}'")
    };
    let stored_a = count_rows(&q, &count("native")).await;
    assert!(stored_a > 0, "nothing of A stored");
    assert_eq!(count_rows(&q, &count("aps")).await, 0);
    clients::note(&format!(
        "sigv4 service_name: Prometheus {version} signed {} requests for execute-api ({stored_a} samples stored), {} for aps refused with 403",
        from_a.len(),
        from_b.len()
    ));
}
