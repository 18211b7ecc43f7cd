//! HTTPS with certificates generated during the test: handshake + write through rustls;
//! unreadable or mismatched pairs fail at startup with a clear message (exit code 1).

mod common;

use std::process::Command;

use common::*;
use timestream_prometheus_connector::app;
use timestream_prometheus_connector::remote::codec::encode_write_request;
use timestream_prometheus_connector::server::{load_tls, serve};

fn write_pair(
    dir: &std::path::Path,
    name: &str,
) -> (std::path::PathBuf, std::path::PathBuf, String) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    (cert, key, ck.cert.pem())
}

#[tokio::test]
async fn https_handshake_and_write() {
    let env = start().await;
    let (cert, key, cert_pem) = write_pair(env.dir.path(), "server");
    let tls = load_tls(&cert, &key).expect("generated pair loads");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let router = app(env.state.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, router, Some(tls), async {
        let _ = stopped.await;
    }));

    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let t = now_ms() - 1_000;
    let body = encode_write_request(&request(vec![series(
        &[("__name__", "over_tls")],
        &[(1.5, t)],
    )]));
    let resp = client
        .post(format!("https://localhost:{port}/write"))
        .basic_auth(AKID, Some(SECRET))
        .body(body)
        .send()
        .await
        .expect("TLS handshake with the generated certificate");
    assert_eq!(resp.status(), 200);
    let rows = env.rows(DB, TABLE).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["measure_name"], "over_tls");

    // A client that does not trust the certificate fails the handshake; the server goes on.
    let untrusting = reqwest::Client::new();
    assert!(untrusting
        .get(format!("https://localhost:{port}/-/healthy"))
        .send()
        .await
        .is_err());
    // Plain HTTP to the TLS port is not served.
    let plain_ok = reqwest::get(format!("http://localhost:{port}/-/healthy"))
        .await
        .map(|r| r.status().is_success())
        .unwrap_or(false);
    assert!(!plain_ok);
    let resp = client
        .get(format!("https://localhost:{port}/-/healthy"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    let _ = stop.send(());
    server.await.unwrap().unwrap();
    env.shutdown().await;
}

#[test]
fn mismatched_or_unreadable_pairs_fail_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let (cert_a, _key_a, _) = write_pair(dir.path(), "a");
    let (_cert_b, key_b, _) = write_pair(dir.path(), "b");
    let err = format!("{:#}", load_tls(&cert_a, &key_b).unwrap_err());
    assert!(err.contains("does not match"), "{err}");
    let missing = dir.path().join("missing.pem");
    let err = format!("{:#}", load_tls(&missing, &key_b).unwrap_err());
    assert!(
        err.contains("--tls-certificate") && err.contains("missing.pem"),
        "{err}"
    );
    let garbage = dir.path().join("garbage.key");
    std::fs::write(&garbage, "not a key").unwrap();
    let err = format!("{:#}", load_tls(&cert_a, &garbage).unwrap_err());
    assert!(err.contains("--tls-key"), "{err}");

    // The binary exits 1 with the message, before serving anything.
    let out = Command::new(env!("CARGO_BIN_EXE_timestream-prometheus-connector"))
        .args([
            "--default-database=d",
            "--default-table=t",
            "--web.listen-address=127.0.0.1:0",
            "--enable-logging=false",
        ])
        .arg(format!("--tls-certificate={}", cert_a.display()))
        .arg(format!("--tls-key={}", key_b.display()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("does not match"), "{stderr}");
}
