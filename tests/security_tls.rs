//! TLS versions: the HTTPS server accepts TLS 1.2 and 1.3 and refuses TLS 1.0 and 1.1.
//! Accepting clients are rustls (reqwest) pinned to one version; the refusing ones are
//! `openssl s_client` offering only the old version (at security level 0, so it really
//! sends that ClientHello), whose handshake must end with the server's alert and no
//! ServerHello. Without an `openssl` binary the old-version half is skipped with a notice.

mod common;
#[path = "support/tools.rs"]
mod tools;

use std::process::{Command, Stdio};

use common::*;
use timestream_prometheus_connector::app;
use timestream_prometheus_connector::server::{load_tls, serve};

struct Tls {
    port: u16,
    cert_pem: String,
    stop: tokio::sync::oneshot::Sender<()>,
    env: Env,
}

async fn start_tls() -> Tls {
    let env = start().await;
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = env.dir.path().join("tls.crt");
    let key = env.dir.path().join("tls.key");
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    let tls = load_tls(&cert, &key).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(listener, app(env.state.clone()), Some(tls), async {
        let _ = stopped.await;
    }));
    Tls {
        port,
        cert_pem: ck.cert.pem(),
        stop,
        env,
    }
}

async fn rustls_get(t: &Tls, version: reqwest::tls::Version) -> Result<u16, String> {
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(t.cert_pem.as_bytes()).unwrap())
        .min_tls_version(version)
        .max_tls_version(version)
        .build()
        .unwrap();
    client
        .get(format!("https://localhost:{}/-/healthy", t.port))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .map_err(|e| format!("{e:?}"))
}

/// `openssl s_client` with one protocol version; (handshake completed, output).
fn openssl(port: u16, flag: &str) -> Option<(bool, String)> {
    let out = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            flag,
            "-cipher",
            "DEFAULT@SECLEVEL=0",
            "-msg",
        ])
        .stdin(Stdio::null())
        .output()
        .ok()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let completed = text.contains("Cipher is ") && !text.contains("Cipher is (NONE)");
    Some((completed, text))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_1_2_and_1_3_accepted_old_versions_refused() {
    let t = start_tls().await;
    assert_eq!(
        rustls_get(&t, reqwest::tls::Version::TLS_1_2).await,
        Ok(200)
    );
    assert_eq!(
        rustls_get(&t, reqwest::tls::Version::TLS_1_3).await,
        Ok(200)
    );

    let port = t.port;
    let results = tokio::task::spawn_blocking(move || {
        ["-tls1_2", "-tls1_3", "-tls1", "-tls1_1"].map(|f| (f, openssl(port, f)))
    })
    .await
    .unwrap();
    let missing = results.iter().any(|(_, r)| r.is_none());
    if missing
        && !tools::require(
            "TLS 1.0/1.1 refusal",
            "openssl",
            &["version"],
            "apt-get install openssl",
        )
    {
        // Skipped, reported by tools::require.
    } else {
        for (flag, r) in results {
            let (completed, text) = r.unwrap();
            match flag {
                "-tls1_2" | "-tls1_3" => assert!(completed, "{flag} must complete:\n{text}"),
                _ => {
                    // The client really offered the old version …
                    assert!(
                        text.contains("ClientHello"),
                        "{flag}: no ClientHello sent:\n{text}"
                    );
                    // … and the server refused it.
                    assert!(!completed, "{flag} must be refused:\n{text}");
                    // rustls answers an old-only ClientHello with an alert
                    // (handshake_failure or protocol_version), never a ServerHello.
                    let lower = text.to_ascii_lowercase();
                    assert!(
                        lower.contains("alert handshake failure")
                            || lower.contains("alert protocol version"),
                        "{flag}: expected the server's alert:\n{text}"
                    );
                    assert!(!text.contains("ServerHello"), "{flag}:\n{text}");
                }
            }
        }
    }
    let _ = t.stop.send(());
    t.env.shutdown().await;
}
