//! Stopping and killing the real binary (signals need a process of its own) in front of an
//! in-process timestream-local with added latency: SIGTERM lets in-flight writes finish with
//! 2xx and their data stored, refuses new connections and exits 0; at the shutdown deadline
//! (SIGINT here) unfinished writes are answered 503, never 2xx; after SIGKILL and a restart
//! a retrying sender ends with every sample stored exactly once.

mod common;

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use timestream_local::FaultOptions;
use timestream_prometheus_connector::remote::codec::encode_write_request;
use timestream_prometheus_connector::remote::pb::WriteRequest;
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_timestream-prometheus-connector");

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Starts the binary on `port` against `store_url` and waits until it answers.
async fn start_connector(store_url: &str, port: u16, extra: &[&str]) -> Child {
    let mut cmd = Command::new(BIN);
    cmd.arg(format!("--default-database={DB}"))
        .arg(format!("--default-table={TABLE}"))
        .arg(format!("--write-base-endpoint={store_url}"))
        .arg(format!("--query-base-endpoint={store_url}"))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--max-write-retries=1")
        .arg("--log.level=warn")
        .args(extra)
        .stdout(Stdio::null())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("connector binary starts");
    let http = reqwest::Client::new();
    for _ in 0..200 {
        if let Ok(r) = http
            .get(format!("http://127.0.0.1:{port}/-/healthy"))
            .send()
            .await
        {
            if r.status() == 200 {
                return child;
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("connector exited early: {status}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("connector did not become healthy");
}

fn signal(child: &Child, sig: &str) {
    let pid = child.id().expect("still running").to_string();
    let st = std::process::Command::new("kill")
        .args([sig, &pid])
        .status()
        .expect("kill runs");
    assert!(st.success(), "kill {sig} {pid}");
}

fn one(name: &str, i: usize, t: i64) -> WriteRequest {
    request(vec![series(
        &[("__name__", name), ("i", &i.to_string()), ("job", "rel")],
        &[(i as f64, t)],
    )])
}

/// Status of a remote write, or None when the connection failed without an answer.
async fn post(port: u16, req: &WriteRequest) -> Option<u16> {
    // A fresh client per request: one connection each, like Prometheus' shards.
    let resp = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/write"))
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .basic_auth(AKID, Some(SECRET))
        .body(encode_write_request(req))
        .send()
        .await
        .ok()?;
    Some(resp.status().as_u16())
}

async fn in_flight(port: u16) -> f64 {
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    metric_value(&text, "timestream_connector_requests_in_flight")
}

async fn wait_in_flight(port: u16, n: f64) {
    for _ in 0..100 {
        if in_flight(port).await >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{n} requests never got in flight");
}

async fn rows_by_i(env: &Env, name: &str) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for r in env.rows(DB, TABLE).await {
        if r.get("measure_name").map(String::as_str) == Some(name) {
            *m.entry(r["i"].clone()).or_default() += 1;
        }
    }
    m
}

fn store_latency(ms: u64) -> FaultOptions {
    FaultOptions {
        latency_ms: ms,
        operations: vec!["WriteRecords".into()],
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_finishes_in_flight_writes_refuses_new_connections_and_exits_0() {
    let env = start().await;
    let port = free_port();
    let mut child = start_connector(&env.store.url(), port, &["--web.shutdown-timeout=10s"]).await;
    env.faults().set(store_latency(2_000));
    let t = now_ms() - 10_000;
    let writes: Vec<_> = (0..5)
        .map(|i| tokio::spawn(async move { post(port, &one("drain", i, t)).await }))
        .collect();
    wait_in_flight(port, 5.0).await;

    let stopped_at = Instant::now();
    signal(&child, "-TERM");
    // The listener closes at once: new connections are refused while the writes drain.
    let mut refused = false;
    for _ in 0..50 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "new connections must be refused after SIGTERM");
    assert!(
        stopped_at.elapsed() < Duration::from_millis(1_500),
        "refused before the in-flight writes could finish"
    );

    for (i, w) in writes.into_iter().enumerate() {
        assert_eq!(w.await.unwrap(), Some(200), "in-flight write {i} completes");
    }
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("exits within the deadline")
        .unwrap();
    assert!(status.success(), "exit status {status}");
    env.faults().clear();
    let stored = rows_by_i(&env, "drain").await;
    assert_eq!(stored.len(), 5, "{stored:?}");
    assert!(stored.values().all(|&n| n == 1));
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigint_deadline_answers_unfinished_writes_503_and_exits_0() {
    let env = start().await;
    let port = free_port();
    let mut child = start_connector(&env.store.url(), port, &["--web.shutdown-timeout=1s"]).await;
    env.faults().set(store_latency(8_000));
    let t = now_ms() - 10_000;
    let writes: Vec<_> = (0..3)
        .map(|i| tokio::spawn(async move { post(port, &one("cut", i, t)).await }))
        .collect();
    wait_in_flight(port, 3.0).await;
    let stopped_at = Instant::now();
    signal(&child, "-INT");
    for w in writes {
        let s = w.await.unwrap();
        // 503, or a connection closed without an answer: both make Prometheus retry.
        assert!(matches!(s, Some(503) | None), "cut write answered {s:?}");
        assert_eq!(s, Some(503), "the deadline answers 503");
    }
    let status = tokio::time::timeout(Duration::from_secs(5), child.wait())
        .await
        .expect("exits soon after the deadline")
        .unwrap();
    let took = stopped_at.elapsed();
    assert!(status.success(), "exit status {status}");
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_millis(3_500),
        "exited {took:?} after SIGINT with a 1 s deadline"
    );
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_sigkill_and_restart_a_retrying_sender_stores_every_sample_once() {
    let env = start().await;
    let port = free_port();
    let mut child = start_connector(&env.store.url(), port, &[]).await;
    env.faults().set(store_latency(1_000));
    let t = now_ms() - 10_000;
    const N: usize = 6;
    let writes: Vec<_> = (0..N)
        .map(|i| tokio::spawn(async move { post(port, &one("killed", i, t)).await }))
        .collect();
    wait_in_flight(port, N as f64).await;
    signal(&child, "-KILL");
    let _ = child.wait().await;
    let mut pending = Vec::new();
    for (i, w) in writes.into_iter().enumerate() {
        match w.await.unwrap() {
            Some(200) => {}
            // Killed mid-request: no answer, so the sender must retry.
            None => pending.push(i),
            Some(s) => panic!("write {i}: {s}"),
        }
    }
    assert!(!pending.is_empty(), "SIGKILL cut the in-flight writes");

    let mut child = start_connector(&env.store.url(), port, &[]).await;
    for i in pending {
        let mut tries = 0;
        while post(port, &one("killed", i, t)).await != Some(200) {
            tries += 1;
            assert!(tries < 10, "write {i} never accepted after restart");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // Calls the killed process had sent may still land; wait them out, then count.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    env.faults().clear();
    let stored = rows_by_i(&env, "killed").await;
    assert_eq!(stored.len(), N, "{stored:?}");
    assert!(stored.values().all(|&n| n == 1), "{stored:?}");
    signal(&child, "-TERM");
    assert!(child.wait().await.unwrap().success());
    env.shutdown().await;
}

/// The HTTPS server path (its own accept loop): drain within the deadline, refuse new
/// connections, and answer 503 to what is cut at the deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn https_shutdown_drains_refuses_and_cuts_at_the_deadline() {
    use timestream_prometheus_connector::http::{app_with_limits, limits::Limits};
    use timestream_prometheus_connector::server::{load_tls, serve_graceful};

    let env = start().await;
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert, key) = (env.dir.path().join("s.crt"), env.dir.path().join("s.key"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ck.cert.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let t = now_ms() - 10_000;

    // (latency, grace, expected status of the in-flight writes)
    for (round, (latency, grace, expected)) in [(1_000u64, 10u64, 200u16), (6_000, 1, 503)]
        .into_iter()
        .enumerate()
    {
        env.faults().set(store_latency(latency));
        let tls = load_tls(&cert, &key).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let limits = Limits::new(&env.state.config.limits, env.state.metrics.clone());
        let router = app_with_limits(env.state.clone(), limits.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_graceful(
            listener,
            router,
            Some(tls),
            async {
                let _ = stopped.await;
            },
            Duration::from_secs(grace),
            Some(limits),
        ));
        let writes: Vec<_> = (0..3)
            .map(|i| {
                let client = client.clone();
                let body = encode_write_request(&one("tls_stop", round * 10 + i, t));
                tokio::spawn(async move {
                    client
                        .post(format!("https://localhost:{port}/write"))
                        .basic_auth(AKID, Some(SECRET))
                        .body(body)
                        .send()
                        .await
                        .map(|r| r.status().as_u16())
                        .ok()
                })
            })
            .collect();
        for _ in 0..100 {
            if env.state.metrics.requests_in_flight.get() >= 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let stopped_at = Instant::now();
        let _ = stop.send(());
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_err(),
            "round {round}: new connections refused after the stop"
        );
        for w in writes {
            assert_eq!(w.await.unwrap(), Some(expected), "round {round}");
        }
        tokio::time::timeout(Duration::from_secs(grace + 3), server)
            .await
            .expect("serve returns after the deadline")
            .unwrap()
            .unwrap();
        let took = stopped_at.elapsed();
        assert!(
            took < Duration::from_secs(grace) + Duration::from_millis(1_500),
            "round {round}: {took:?}"
        );
    }
    assert_eq!(
        env.state.metrics.requests_cut_at_shutdown.get(),
        3,
        "the three writes of the second round were cut"
    );
    env.faults().clear();
    let stored = rows_by_i(&env, "tls_stop").await;
    for i in 0..3 {
        assert_eq!(stored.get(&i.to_string()), Some(&1), "{stored:?}");
    }
    env.shutdown().await;
}
