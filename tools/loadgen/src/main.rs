//! `remote-write-load`: sends realistic Prometheus remote-write 1.0 requests (node_exporter-
//! like series, N labels each, snappy + protobuf, basic auth) to a running connector with a
//! fixed number of concurrent senders for a fixed time, then prints samples/s and request
//! latency percentiles. Each sender owns distinct series (its own `instance`) and advances
//! the timestamp on every request, so no two requests write the same record.
//! Only meant for targets on this machine (loopback); it stops by itself.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use timestream_prometheus_connector::remote::codec::encode_write_request;
use timestream_prometheus_connector::remote::pb::{Label, Sample, TimeSeries, WriteRequest};

#[derive(Debug, Parser)]
#[command(name = "remote-write-load", about = "Remote-write load generator")]
struct Args {
    /// Remote-write URL of the connector.
    #[arg(long, default_value = "http://127.0.0.1:9201/write")]
    url: String,
    /// Series per request (one sample each, like Prometheus' max_samples_per_send).
    #[arg(long, default_value_t = 2000)]
    series: usize,
    /// Labels per series, `__name__` included (at least 3).
    #[arg(long, default_value_t = 8)]
    labels: usize,
    /// Concurrent senders (Prometheus shards).
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// How long to send.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Basic-auth user name (AWS access key id).
    #[arg(long, default_value = "local")]
    username: String,
    /// Basic-auth password (AWS secret access key).
    #[arg(long, default_value = "local")]
    password: String,
    /// Per-request timeout.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

const NAMES: [&str; 6] = [
    "node_cpu_seconds_total",
    "node_network_receive_bytes_total",
    "node_filesystem_avail_bytes",
    "node_disk_io_time_seconds_total",
    "node_memory_MemAvailable_bytes",
    "node_scrape_collector_duration_seconds",
];
const EXTRA: [(&str, &str); 5] = [
    ("cluster", "prod-eu-1"),
    ("env", "production"),
    ("job", "node-exporter"),
    ("region", "eu-west-1"),
    ("team", "platform"),
];

/// Label sets of one sender: distinct per sender and series.
fn label_sets(sender: usize, series: usize, labels: usize) -> Vec<Vec<Label>> {
    let labels = labels.max(3);
    (0..series)
        .map(|i| {
            let host = i / 500;
            let mut l = vec![
                ("__name__".to_string(), NAMES[i % NAMES.len()].to_string()),
                (
                    "instance".to_string(),
                    format!("ip-10-{sender}-{host}.eu-west-1.compute.internal:9100"),
                ),
                ("series".to_string(), (i % 500).to_string()),
            ];
            for k in 0..labels - 3 {
                let (n, v) = EXTRA
                    .get(k)
                    .map(|(n, v)| (n.to_string(), v.to_string()))
                    .unwrap_or_else(|| (format!("extra{k}"), format!("value{k}")));
                l.push((n, v));
            }
            l.sort();
            l.into_iter()
                .map(|(name, value)| Label { name, value })
                .collect()
        })
        .collect()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after epoch")
        .as_millis() as i64
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let client = reqwest::Client::builder()
        .timeout(args.timeout)
        .pool_max_idle_per_host(args.concurrency)
        .build()
        .expect("HTTP client");
    let ok_samples = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + args.duration;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for sender in 0..args.concurrency {
        let client = client.clone();
        let url = args.url.clone();
        let (user, pass) = (args.username.clone(), args.password.clone());
        let sets = label_sets(sender, args.series, args.labels);
        let ok_samples = ok_samples.clone();
        let failed = failed.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut last_t = 0i64;
            let mut statuses: Vec<(u16, u64)> = Vec::new();
            let mut round = 0u64;
            while Instant::now() < deadline {
                let t = now_ms().max(last_t + 1);
                last_t = t;
                round += 1;
                let req = WriteRequest {
                    timeseries: sets
                        .iter()
                        .enumerate()
                        .map(|(i, labels)| TimeSeries {
                            labels: labels.clone(),
                            samples: vec![Sample {
                                value: (round as f64) * 1.5 + i as f64 * 0.001,
                                timestamp: t,
                            }],
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                };
                let body = encode_write_request(&req);
                let n = req.timeseries.len() as u64;
                drop(req);
                let sent = Instant::now();
                let resp = client
                    .post(&url)
                    .basic_auth(&user, Some(&pass))
                    .header("Content-Encoding", "snappy")
                    .header("Content-Type", "application/x-protobuf")
                    .header("X-Prometheus-Remote-Write-Version", "0.1.0")
                    .body(body)
                    .send()
                    .await;
                let code = match resp {
                    Ok(r) => {
                        let c = r.status().as_u16();
                        let _ = r.bytes().await;
                        c
                    }
                    Err(_) => 0,
                };
                latencies.push(sent.elapsed());
                if (200..300).contains(&code) {
                    ok_samples.fetch_add(n, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                match statuses.iter_mut().find(|(c, _)| *c == code) {
                    Some((_, k)) => *k += 1,
                    None => statuses.push((code, 1)),
                }
            }
            (latencies, statuses)
        }));
    }
    let mut latencies = Vec::new();
    let mut statuses: Vec<(u16, u64)> = Vec::new();
    for t in tasks {
        let (l, s) = t.await.expect("sender task");
        latencies.extend(l);
        for (code, k) in s {
            match statuses.iter_mut().find(|(c, _)| *c == code) {
                Some((_, n)) => *n += k,
                None => statuses.push((code, k)),
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    statuses.sort();
    let ok = ok_samples.load(Ordering::Relaxed);
    println!(
        "requests: {} ({} failed); statuses: {}",
        latencies.len(),
        failed.load(Ordering::Relaxed),
        statuses
            .iter()
            .map(|(c, n)| format!(
                "{}={n}",
                if *c == 0 {
                    "error".to_string()
                } else {
                    c.to_string()
                }
            ))
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "samples written: {ok} in {elapsed:.1} s = {:.0} samples/s ({} series × {} labels per request, {} senders)",
        ok as f64 / elapsed,
        args.series,
        args.labels,
        args.concurrency
    );
    println!(
        "request latency: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.90).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
}
