//! Mutual TLS (`--tls-client-ca`) through the real binary in front of an in-process
//! timestream-local. A test PKI is generated per run: CA "A" signs the server certificate
//! and the good client certificate; an unrelated CA "B" signs the intruder's client
//! certificate. With the flag, only A-signed clients get an HTTP answer (over TLS 1.2 and
//! 1.3); a client without a certificate or with a B-signed one is stopped by a TLS alert
//! before any request is read, and nothing is stored. Without the flag, clients without a
//! certificate are served as before. A bundle of several CAs admits clients of each.
//! Misuse of the flag fails at startup naming it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use timestream_prometheus_connector::remote::codec::encode_write_request;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_timestream-prometheus-connector");

/// PEM files of the test PKI, plus the in-memory PEMs the clients use.
struct Pki {
    server_cert: PathBuf,
    server_key: PathBuf,
    ca_a: PathBuf,
    ca_a_pem: String,
    ca_b_pem: String,
    /// Client certificate + key signed by CA A.
    client_a: (String, String),
    /// Client certificate + key signed by CA B (not trusted by the server).
    client_b: (String, String),
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap()
}

fn leaf(
    issuer: &CertifiedIssuer<'static, KeyPair>,
    cn: &str,
    sans: &[&str],
    eku: ExtendedKeyUsagePurpose,
) -> (String, String) {
    let mut p =
        CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.extended_key_usages = vec![eku];
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn pki(dir: &Path) -> Pki {
    let a = ca("connector test CA A");
    let b = ca("connector test CA B");
    let (srv_cert, srv_key) = leaf(
        &a,
        "localhost",
        &["localhost", "127.0.0.1"],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let server_cert = dir.join("server.crt");
    let server_key = dir.join("server.key");
    let ca_a = dir.join("client-ca.pem");
    std::fs::write(&server_cert, &srv_cert).unwrap();
    std::fs::write(&server_key, &srv_key).unwrap();
    std::fs::write(&ca_a, a.pem()).unwrap();
    Pki {
        server_cert,
        server_key,
        ca_a,
        ca_a_pem: a.pem(),
        ca_b_pem: b.pem(),
        client_a: leaf(&a, "prometheus", &[], ExtendedKeyUsagePurpose::ClientAuth),
        client_b: leaf(&b, "intruder", &[], ExtendedKeyUsagePurpose::ClientAuth),
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn tls_args(pki: &Pki, client_ca: bool) -> Vec<String> {
    let mut v = vec![
        format!("--tls-certificate={}", pki.server_cert.display()),
        format!("--tls-key={}", pki.server_key.display()),
    ];
    if client_ca {
        v.push(format!("--tls-client-ca={}", pki.ca_a.display()));
    }
    v
}

/// Starts the binary with `extra` against `store_url`; waits until it listens (a TCP
/// connect succeeds: with mTLS a health probe needs a certificate, which is tested apart).
async fn start_connector(store_url: &str, port: u16, extra: &[String]) -> Child {
    let mut child = Command::new(BIN)
        .arg(format!("--default-database={DB}"))
        .arg(format!("--default-table={TABLE}"))
        .arg(format!("--write-base-endpoint={store_url}"))
        .arg(format!("--query-base-endpoint={store_url}"))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--log.level=warn")
        .args(extra)
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("connector binary starts");
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return child;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("connector exited early: {status}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("connector never listened on {port}");
}

/// A reqwest client trusting CA A, pinned to one TLS version, presenting `identity`.
fn client(
    pki: &Pki,
    version: reqwest::tls::Version,
    identity: Option<&(String, String)>,
) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca_a_pem.as_bytes()).unwrap())
        .min_tls_version(version)
        .max_tls_version(version)
        // One connection per client, no reuse across the cases.
        .pool_max_idle_per_host(0);
    if let Some((cert, key)) = identity {
        b = b.identity(reqwest::Identity::from_pem(format!("{cert}{key}").as_bytes()).unwrap());
    }
    b.build().unwrap()
}

/// Remote-writes one sample named `name`: Ok(status) when an HTTP answer came back,
/// Err(error chain) when there was none.
async fn write(c: &reqwest::Client, port: u16, name: &str) -> Result<u16, String> {
    let body = encode_write_request(&request(vec![series(
        &[("__name__", name), ("job", "mtls")],
        &[(1.0, now_ms() - 1_000)],
    )]));
    c.post(format!("https://localhost:{port}/write"))
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .basic_auth(AKID, Some(SECRET))
        .body(body)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .map_err(|e| format!("{e:?}"))
}

async fn stored(env: &Env, name: &str) -> usize {
    env.rows(DB, TABLE)
        .await
        .iter()
        .filter(|r| r.get("measure_name").map(String::as_str) == Some(name))
        .count()
}

/// What a bare rustls client (no HTTP layer, so the server's alert is seen as such) got.
#[derive(Debug, PartialEq)]
enum Raw {
    /// The handshake completed and `GET /-/healthy` was answered with this status line.
    Served(String),
    /// The server ended the connection with this TLS error (an alert) instead.
    Refused(rustls::Error),
}

/// Handshakes with `identity`. When `request` is set, sends `GET /-/healthy` and reads the
/// answer; otherwise only waits for what the server sends (a refused TLS 1.3 client learns
/// the verdict only from the next record, and sending nothing keeps the server from
/// resetting the connection over unread data before the alert is read).
async fn raw_handshake(
    pki: &Pki,
    port: u16,
    version: &'static rustls::SupportedProtocolVersion,
    identity: Option<&(String, String)>,
    request: bool,
) -> Raw {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(pki.ca_a_pem.as_bytes()).unwrap())
        .unwrap();
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots);
    let cfg = match identity {
        None => b.with_no_client_auth(),
        Some((cert, key)) => b
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let io_err = match connector.connect(name, tcp).await {
        // TLS 1.2: the server checks the client certificate before its Finished, so a
        // refusal fails the client's handshake itself.
        Err(e) => e,
        Ok(mut s) if request => {
            s.write_all(b"GET /-/healthy HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
            let mut out = Vec::new();
            match s.read_to_end(&mut out).await {
                Ok(_) => {
                    let text = String::from_utf8_lossy(&out);
                    return Raw::Served(text.lines().next().unwrap_or_default().to_string());
                }
                Err(e) => e,
            }
        }
        Ok(mut s) => {
            let mut buf = [0u8; 64];
            match tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await {
                Err(_) => panic!("no verdict from the server within 10 s"),
                Ok(Ok(n)) => panic!("server sent {n} bytes of data instead of an alert"),
                Ok(Err(e)) => e,
            }
        }
    };
    let inner = io_err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
        .unwrap_or_else(|| panic!("not a TLS error: {io_err:?}"));
    Raw::Refused(inner.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_ca_admits_only_clients_with_a_certificate_from_that_ca() {
    use reqwest::tls::Version;
    use rustls::AlertDescription as A;
    let env = start().await;
    let pki = pki(env.dir.path());
    let port = free_port();
    let mut child = start_connector(&env.store.url(), port, &tls_args(&pki, true)).await;

    for (v, tag) in [(Version::TLS_1_2, "12"), (Version::TLS_1_3, "13")] {
        // The CA-signed client is served and its sample stored once.
        let good = format!("mtls_good_{tag}");
        assert_eq!(
            write(&client(&pki, v, Some(&pki.client_a)), port, &good).await,
            Ok(200),
            "TLS {tag}"
        );
        assert_eq!(stored(&env, &good).await, 1, "TLS {tag}");

        // No certificate, or one from CA B: no HTTP answer at all, nothing stored.
        for (who, id) in [("none", None), ("ca_b", Some(&pki.client_b))] {
            let name = format!("mtls_{who}_{tag}");
            let r = write(&client(&pki, v, id), port, &name).await;
            assert!(r.is_err(), "TLS {tag}, client cert {who}: answered {r:?}");
            assert_eq!(stored(&env, &name).await, 0, "TLS {tag}, {who}");
        }
    }

    // The refusal is the server's TLS alert during the handshake (read without HTTP).
    for (version, tag) in [
        (&rustls::version::TLS12, "1.2"),
        (&rustls::version::TLS13, "1.3"),
    ] {
        assert_eq!(
            raw_handshake(&pki, port, version, Some(&pki.client_a), true).await,
            Raw::Served("HTTP/1.1 200 OK".into()),
            "TLS {tag}: CA-signed client accepted"
        );
        assert_eq!(
            raw_handshake(&pki, port, version, None, false).await,
            Raw::Refused(rustls::Error::AlertReceived(A::CertificateRequired)),
            "TLS {tag}, no client certificate"
        );
        assert_eq!(
            raw_handshake(&pki, port, version, Some(&pki.client_b), false).await,
            Raw::Refused(rustls::Error::AlertReceived(A::UnknownCA)),
            "TLS {tag}, client certificate from another CA"
        );
    }

    // Refused handshakes do not stop the server: the good client is still served.
    assert_eq!(
        write(
            &client(&pki, Version::TLS_1_3, Some(&pki.client_a)),
            port,
            "mtls_after"
        )
        .await,
        Ok(200)
    );
    assert!(child.try_wait().unwrap().is_none(), "connector still runs");
    let _ = child.kill().await;
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_client_ca_clients_need_no_certificate() {
    use reqwest::tls::Version;
    let env = start().await;
    let pki = pki(env.dir.path());
    let port = free_port();
    let mut child = start_connector(&env.store.url(), port, &tls_args(&pki, false)).await;
    for (v, tag) in [(Version::TLS_1_2, "12"), (Version::TLS_1_3, "13")] {
        let name = format!("plain_tls_{tag}");
        assert_eq!(write(&client(&pki, v, None), port, &name).await, Ok(200));
        assert_eq!(stored(&env, &name).await, 1);
    }
    assert_eq!(
        raw_handshake(&pki, port, &rustls::version::TLS13, None, true).await,
        Raw::Served("HTTP/1.1 200 OK".into())
    );
    let _ = child.kill().await;
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_of_two_cas_admits_clients_of_either() {
    let env = start().await;
    let pki = pki(env.dir.path());
    let bundle = env.dir.path().join("two-cas.pem");
    std::fs::write(&bundle, format!("{}{}", pki.ca_a_pem, pki.ca_b_pem)).unwrap();
    let port = free_port();
    let mut args = tls_args(&pki, false);
    args.push(format!("--tls-client-ca={}", bundle.display()));
    let mut child = start_connector(&env.store.url(), port, &args).await;
    for (who, id) in [("a", &pki.client_a), ("b", &pki.client_b)] {
        assert_eq!(
            raw_handshake(&pki, port, &rustls::version::TLS13, Some(id), true).await,
            Raw::Served("HTTP/1.1 200 OK".into()),
            "client of CA {who}"
        );
    }
    assert_eq!(
        raw_handshake(&pki, port, &rustls::version::TLS13, None, false).await,
        Raw::Refused(rustls::Error::AlertReceived(
            rustls::AlertDescription::CertificateRequired
        ))
    );
    let _ = child.kill().await;
    env.shutdown().await;
}

#[test]
fn client_ca_misuse_fails_at_startup_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    let missing = dir.path().join("missing.pem");
    let mut cases: Vec<(Vec<String>, &str)> = vec![
        // Without a server pair there is no TLS to ask client certificates in.
        (
            vec![format!("--tls-client-ca={}", pki.ca_a.display())],
            "--tls-certificate",
        ),
        (
            [
                &tls_args(&pki, false)[..],
                &[format!("--tls-client-ca={}", missing.display())],
            ]
            .concat(),
            "missing.pem",
        ),
        (
            [
                &tls_args(&pki, false)[..],
                &[format!("--tls-client-ca={}", garbage.display())],
            ]
            .concat(),
            "garbage.pem",
        ),
    ];
    // A file with a key but no certificate is refused too.
    cases.push((
        [
            &tls_args(&pki, false)[..],
            &[format!("--tls-client-ca={}", pki.server_key.display())],
        ]
        .concat(),
        "no PEM certificate",
    ));
    for (args, expect) in cases {
        let out = std::process::Command::new(BIN)
            .args([
                "--default-database=d",
                "--default-table=t",
                "--web.listen-address=127.0.0.1:0",
            ])
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?} must exit 1");
        assert!(
            stderr.contains("--tls-client-ca") && stderr.contains(expect),
            "{args:?}: {stderr}"
        );
    }
}
