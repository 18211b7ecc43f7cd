//! Memory under sustained overload: the real binary with `--web.max-concurrent-requests=16`
//! is driven by 48 senders (3× the limit) that resend at once after a 503, for
//! `RELIABILITY_OVERLOAD_SECS` (default 20) against a store with 200 ms latency. Its
//! resident memory (VmRSS sampled, VmHWM at the end, from /proc) must stay bounded and
//! stop growing, and every acknowledged sample must be stored.

mod common;

use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use timestream_local::FaultOptions;
use timestream_prometheus_connector::remote::codec::encode_write_request;
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_timestream-prometheus-connector");
const LIMIT: usize = 16;
const SENDERS: usize = 3 * LIMIT;
const SAMPLES_PER_REQUEST: usize = 500;

/// A field of /proc/<pid>/status in kB.
fn proc_kb(pid: u32, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{field} not in /proc/{pid}/status"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rss_stays_bounded_at_three_times_the_concurrency_limit() {
    if !std::path::Path::new("/proc/self/status").exists() {
        eprintln!("no /proc: skipped");
        return;
    }
    let secs: u64 = std::env::var("RELIABILITY_OVERLOAD_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let env = start().await;
    env.faults().set(FaultOptions {
        latency_ms: 200,
        operations: vec!["WriteRecords".into()],
        ..Default::default()
    });
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut child = Command::new(BIN)
        .arg(format!("--default-database={DB}"))
        .arg(format!("--default-table={TABLE}"))
        .arg(format!("--write-base-endpoint={}", env.store.url()))
        .arg(format!("--query-base-endpoint={}", env.store.url()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg(format!("--web.max-concurrent-requests={LIMIT}"))
        .arg("--log.level=error")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    for i in 0..200 {
        if http.get(format!("{url}/-/healthy")).send().await.is_ok() {
            break;
        }
        assert!(i < 199, "connector did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rss_idle = proc_kb(pid, "VmRSS:");

    let ok = Arc::new(AtomicU64::new(0));
    let shed = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs(secs);
    let t0 = now_ms() - 60_000;
    let senders: Vec<_> = (0..SENDERS)
        .map(|s| {
            let (http, url, ok, shed) = (http.clone(), url.clone(), ok.clone(), shed.clone());
            tokio::spawn(async move {
                let mut n = 0i64;
                while Instant::now() < until {
                    // Distinct (series, time) per accepted request, so rows can be counted.
                    let req = request(
                        (0..SAMPLES_PER_REQUEST)
                            .map(|k| {
                                series(
                                    &[
                                        ("__name__", "overload_mem"),
                                        ("sender", &s.to_string()),
                                        ("k", &k.to_string()),
                                    ],
                                    &[(k as f64, t0 + n)],
                                )
                            })
                            .collect(),
                    );
                    let body = encode_write_request(&req);
                    loop {
                        let r = http
                            .post(format!("{url}/write"))
                            .header("Content-Encoding", "snappy")
                            .header("Content-Type", "application/x-protobuf")
                            .basic_auth(AKID, Some(SECRET))
                            .body(body.clone())
                            .send()
                            .await
                            .expect("connector answers");
                        match r.status().as_u16() {
                            200 => {
                                ok.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                            503 => {
                                shed.fetch_add(1, Ordering::Relaxed);
                                if Instant::now() >= until {
                                    return;
                                }
                                tokio::time::sleep(Duration::from_millis(5)).await;
                            }
                            s => panic!("unexpected status {s}"),
                        }
                    }
                    n += 1;
                }
            })
        })
        .collect();

    let mut samples = Vec::new();
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(500)).await;
        samples.push(proc_kb(pid, "VmRSS:"));
    }
    for s in senders {
        s.await.unwrap();
    }
    let hwm = proc_kb(pid, "VmHWM:");
    let (ok, shed) = (ok.load(Ordering::Relaxed), shed.load(Ordering::Relaxed));
    let half = samples.len() / 2;
    let first_half_max = *samples[..half].iter().max().unwrap();
    let second_half_max = *samples[half..].iter().max().unwrap();
    eprintln!(
        "overload {secs}s, {SENDERS} senders, limit {LIMIT}: {ok} requests accepted ({} samples), \
         {shed} shed; RSS idle {rss_idle} kB, max first half {first_half_max} kB, \
         max second half {second_half_max} kB, VmHWM {hwm} kB; samples {samples:?}",
        ok * SAMPLES_PER_REQUEST as u64
    );
    assert!(
        ok > 0 && shed > 0,
        "the run must be overloaded: {ok} ok, {shed} shed"
    );
    assert!(hwm < 256 * 1024, "VmHWM {hwm} kB");
    // Bounded, not merely large: the second half grows no further than noise.
    assert!(
        second_half_max <= first_half_max + first_half_max / 4 + 8 * 1024,
        "RSS kept growing: {first_half_max} → {second_half_max} kB"
    );

    child.kill().await.unwrap();
    env.faults().clear();
    let rows = query_rows(
        &env.store.url(),
        &format!(
            r#"SELECT COUNT(*) AS n FROM "{DB}"."{TABLE}" WHERE measure_name = 'overload_mem'"#
        ),
    )
    .await;
    assert_eq!(
        rows[0]["n"],
        (ok * SAMPLES_PER_REQUEST as u64).to_string(),
        "every acknowledged sample stored once"
    );
    env.shutdown().await;
}
