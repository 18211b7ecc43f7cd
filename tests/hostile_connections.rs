//! Hostile clients at the connection level (issue 13), against the real server loop:
//! - slow loris: a client that never finishes its headers (or sends nothing) is
//!   disconnected after `--web.header-read-timeout`;
//! - `--web.max-connections`: connections beyond the cap are not served until one closes;
//! - slow reader: a streamed remote read read one byte a second keeps its concurrency slot
//!   while its body runs (`--web.max-concurrent-requests=1`: a write meanwhile gets 503),
//!   is cut at `--read.stream-timeout` (the body never ends with its last chunk, so the
//!   client cannot take it for a whole answer), and the slot is free again after the cut.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use prost::Message;
use timestream_local::FaultOptions;
use timestream_prometheus_connector::config::Config;
use timestream_prometheus_connector::remote::codec::compress;
use timestream_prometheus_connector::remote::pb::{
    label_matcher::Type as T, LabelMatcher, Query, ReadRequest,
};
use timestream_prometheus_connector::server::{serve_with, ServeOptions};
use timestream_prometheus_connector::{app, AppState};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Starts the connector's own server loop on 127.0.0.1:0 with `args` and `options`.
async fn server(env: &Env, args: &[&str], options: ServeOptions) -> (SocketAddr, AppState) {
    let mut argv: Vec<String> = vec![
        "timestream-prometheus-connector".into(),
        format!("--default-database={DB}"),
        format!("--default-table={TABLE}"),
        format!("--write-base-endpoint={}", env.store.url()),
        format!("--query-base-endpoint={}", env.store.url()),
    ];
    argv.extend(args.iter().map(|a| a.to_string()));
    let state = state_for(Config::from_args(argv).unwrap()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = app(state.clone());
    tokio::spawn(serve_with(
        listener,
        router,
        None,
        std::future::pending(),
        Duration::from_secs(1),
        None,
        options,
    ));
    (addr, state)
}

/// Reads until the server closes the connection (EOF or reset) or `limit` passes;
/// returns when it closed, if it did.
async fn closed_within(s: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        let left = limit.checked_sub(start.elapsed())?;
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

fn opts(header_read_timeout: Duration, max_connections: usize) -> ServeOptions {
    ServeOptions {
        header_read_timeout,
        max_connections,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_loris_clients_are_disconnected_after_the_header_read_timeout() {
    let env = start().await;
    let (addr, _) = server(&env, &[], opts(Duration::from_secs(1), 64)).await;
    let t0 = Instant::now();
    // Headers begun but never finished (the request line and one header, then silence).
    let mut partial = TcpStream::connect(addr).await.unwrap();
    partial
        .write_all(b"POST /write HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n")
        .await
        .unwrap();
    // Nothing at all.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    // One header byte a time, every 300 ms (never completing).
    let mut dribble = TcpStream::connect(addr).await.unwrap();
    let dribbler = tokio::spawn(async move {
        let line = b"POST /write HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        let start = Instant::now();
        for b in line {
            if dribble.write_all(&[*b]).await.is_err() {
                return Some(start.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        closed_within(&mut dribble, Duration::from_secs(5)).await
    });
    for (name, s) in [("partial headers", &mut partial), ("silent", &mut silent)] {
        closed_within(s, Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("{name}: still open after 5 s"));
        let t = t0.elapsed();
        assert!(
            t >= Duration::from_millis(800) && t < Duration::from_secs(3),
            "{name}: closed after {t:?}"
        );
    }
    let t = dribbler
        .await
        .unwrap()
        .expect("dribbling client disconnected");
    assert!(
        t < Duration::from_secs(4),
        "dribbling client closed after {t:?}"
    );
    // A normal client is served meanwhile and afterwards.
    let r = reqwest::get(format!("http://{addr}/-/healthy"))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_wait_until_one_closes() {
    let env = start().await;
    let (addr, _) = server(&env, &[], opts(Duration::from_secs(30), 4)).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    // Let the server accept them (they now hold every slot).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let url = format!("http://{addr}/-/healthy");
    let blocked = tokio::time::timeout(Duration::from_millis(700), client.get(&url).send()).await;
    assert!(
        blocked.is_err(),
        "a fifth connection was served while four held every slot"
    );
    // One closes: the next connection is served.
    held.pop();
    let started = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(5), client.get(&url).send())
        .await
        .expect("served once a slot is free")
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(started.elapsed() < Duration::from_secs(2));
    drop(held);
    env.shutdown().await;
}

fn streamed_read(queries: usize) -> Vec<u8> {
    let q = Query {
        start_timestamp_ms: now_ms() - 3_600_000,
        end_timestamp_ms: now_ms() + 60_000,
        matchers: vec![LabelMatcher {
            r#type: T::Eq as i32,
            name: "__name__".into(),
            value: "slow_reader".into(),
        }],
        hints: None,
    };
    compress(
        &ReadRequest {
            queries: vec![q; queries],
            accepted_response_types: vec![1],
        }
        .encode_to_vec(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_holds_its_slot_until_the_stream_timeout_cuts_the_body() {
    let env = start().await;
    let (addr, _) = server(
        &env,
        &[
            "--web.max-concurrent-requests=1",
            "--read.stream-timeout=3s",
        ],
        opts(Duration::from_secs(10), 64),
    )
    .await;
    let t = now_ms() - 60_000;
    let (st, body) = env
        .write(&request(vec![series(
            &[("__name__", "slow_reader"), ("job", "a")],
            &(0..200).map(|i| (i as f64, t + i)).collect::<Vec<_>>(),
        )]))
        .await;
    assert_eq!(st, 200, "{body}");
    // Every Query call takes 700 ms: 10 queries make a body of ~7 s, past the 3 s cut.
    env.faults().set(FaultOptions {
        latency_ms: 700,
        operations: vec!["Query".into()],
        ..Default::default()
    });
    let body = streamed_read(10);
    let mut s = TcpStream::connect(addr).await.unwrap();
    let auth = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(format!("{AKID}:{SECRET}"))
    };
    let head = format!(
        "POST /read HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\n\
         Content-Encoding: snappy\r\nContent-Type: application/x-protobuf\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    let started = Instant::now();
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&body).await.unwrap();
    let url = format!("http://{addr}/write");
    let write_status = || async {
        let mut r = reqwest::Client::new()
            .post(&url)
            .basic_auth(AKID, Some(SECRET))
            .header("Content-Encoding", "snappy")
            .body(
                timestream_prometheus_connector::remote::codec::encode_write_request(&request(
                    vec![series(&[("__name__", "w")], &[(1.0, now_ms())])],
                )),
            );
        r = r.timeout(Duration::from_secs(5));
        r.send().await.unwrap().status().as_u16()
    };
    // One byte a second; meanwhile the slot is held.
    let mut got = Vec::new();
    let mut saw_503 = false;
    while started.elapsed() < Duration::from_millis(2500) {
        let mut b = [0u8; 1];
        if let Ok(Ok(1)) = tokio::time::timeout(Duration::from_secs(2), s.read(&mut b)).await {
            got.push(b[0]);
        }
        if started.elapsed() > Duration::from_millis(1500) && !saw_503 {
            saw_503 = write_status().await == 503;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(
        saw_503,
        "the streamed read did not hold its concurrency slot"
    );
    // Past the cut: the slot is free again although the client has not read the body.
    tokio::time::sleep(Duration::from_millis(
        3500u64.saturating_sub(started.elapsed().as_millis() as u64),
    ))
    .await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    env.faults().clear();
    let st = write_status().await;
    assert_eq!(st, 200, "slot still held after --read.stream-timeout");
    // The body was cut: read the rest; it never ends with the last chunk.
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest)).await;
    got.extend(rest);
    assert!(
        got.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    assert!(
        !got.ends_with(b"0\r\n\r\n"),
        "a cut body must not end like a complete one ({} bytes)",
        got.len()
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    env.shutdown().await;
}
