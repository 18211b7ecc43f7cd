//! `remote-write-load`: sends realistic Prometheus remote-write 1.0 requests (node_exporter-
//! like series, N labels each, snappy + protobuf, basic auth) to a running connector with a
//! fixed number of concurrent senders for a fixed time, then prints samples/s and request
//! latency percentiles. Each sender owns distinct series (its own `instance`) and advances
//! the timestamp on every request, so no two requests write the same record.
//! Only meant for targets on this machine (loopback); it stops by itself.
//!
//! Series labels are encoded once; a request is built by appending each series' pre-encoded
//! labels and its new sample, then snappy, so the generator spends little CPU of the machine
//! it shares with the connector. With `--connector-pid` it also reports the connector's CPU
//! time per sample and its resident memory (from /proc), with `--metrics-url` the
//! WriteRecords bytes per sample (from the connector's own metrics); all measured after
//! `--warmup`.
//!
//! With `--heavy-senders` it also keeps that many requests of one large body (`--heavy-mib`
//! decompressed, default just under the connector's 64 MiB cap) in flight the whole time,
//! reported apart: the light requests' latency then shows what a large decode does to other
//! requests (issue 13). `--heavy-kind malformed` ends the body with a truncated field, so the
//! connector decodes all of it and answers 400 (decode cost only); `valid` writes it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use prost::Message;
use timestream_prometheus_connector::remote::codec::compress;
use timestream_prometheus_connector::remote::pb::{Label, Sample};

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
    /// Load sent before measuring starts (connections, caches, allocator warm).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// PID of the connector: report its CPU seconds per million samples and its RSS.
    #[arg(long)]
    connector_pid: Option<u32>,
    /// PID of the backend (e.g. timestream-local): report its CPU too.
    #[arg(long)]
    backend_pid: Option<u32>,
    /// The connector's /metrics URL: report WriteRecords JSON bytes per sample.
    #[arg(long)]
    metrics_url: Option<String>,
    /// Extra senders that post one large body over and over (reported apart).
    #[arg(long, default_value_t = 0)]
    heavy_senders: usize,
    /// Decompressed size of the large body, in MiB.
    #[arg(long, default_value_t = 63)]
    heavy_mib: usize,
    /// `malformed` (truncated at the very end: decoded in full, then 400) or `valid`.
    #[arg(long, default_value = "malformed", value_parser = ["malformed", "valid"])]
    heavy_kind: String,
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

/// Field 1 (`timeseries`) of WriteRequest, field 1 (`labels`) and 2 (`samples`) of TimeSeries.
const TAG_TIMESERIES: u8 = 0x0a;
const TAG_LABELS: u8 = 0x0a;
const TAG_SAMPLES: u8 = 0x12;

/// One series' labels as protobuf `labels` fields, encoded once.
fn encode_labels(labels: &[Label]) -> Vec<u8> {
    let mut out = Vec::new();
    for l in labels {
        out.push(TAG_LABELS);
        prost::encoding::encode_varint(l.encoded_len() as u64, &mut out);
        l.encode(&mut out).expect("Vec grows");
    }
    out
}

/// Builds one snappy-compressed WriteRequest: every series with one new sample.
fn build_body(series: &[Vec<u8>], raw: &mut Vec<u8>, value_base: f64, t: i64) -> Vec<u8> {
    raw.clear();
    let mut sample = Vec::with_capacity(24);
    for (i, labels) in series.iter().enumerate() {
        sample.clear();
        Sample {
            value: value_base + i as f64 * 0.001,
            timestamp: t,
        }
        .encode(&mut sample)
        .expect("Vec grows");
        let len = labels.len()
            + 1
            + prost::encoding::encoded_len_varint(sample.len() as u64)
            + sample.len();
        raw.push(TAG_TIMESERIES);
        prost::encoding::encode_varint(len as u64, raw);
        raw.extend_from_slice(labels);
        raw.push(TAG_SAMPLES);
        prost::encoding::encode_varint(sample.len() as u64, raw);
        raw.extend_from_slice(&sample);
    }
    compress(raw)
}

/// The large body of `--heavy-senders`: distinct series (their own `instance`) with one
/// sample each, up to `mib` MiB decompressed; `malformed` appends the key of a `timeseries`
/// field that claims more bytes than follow, which the decoder finds only at the end.
fn heavy_body(mib: usize, labels: usize, malformed: bool) -> Vec<u8> {
    let want = mib << 20;
    let mut raw = Vec::with_capacity(want + 64);
    let mut sample = Vec::with_capacity(24);
    let t = now_ms();
    let mut i = 0usize;
    loop {
        let mut ls = label_sets(1000 + i / 100_000, 1, labels).remove(0);
        for l in &mut ls {
            if l.name == "series" {
                l.value = i.to_string();
            }
        }
        let labels = encode_labels(&ls);
        sample.clear();
        Sample {
            value: i as f64,
            timestamp: t,
        }
        .encode(&mut sample)
        .expect("Vec grows");
        let len = labels.len() + 2 + sample.len();
        if raw.len() + len + 8 > want {
            break;
        }
        raw.push(TAG_TIMESERIES);
        prost::encoding::encode_varint(len as u64, &mut raw);
        raw.extend_from_slice(&labels);
        raw.push(TAG_SAMPLES);
        prost::encoding::encode_varint(sample.len() as u64, &mut raw);
        raw.extend_from_slice(&sample);
        i += 1;
    }
    if malformed {
        raw.extend_from_slice(&[TAG_TIMESERIES, 0x7f]);
    }
    compress(&raw)
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name (which may contain spaces).
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // /proc reports in USER_HZ, which Linux fixes at 100 for user space on every arch we run.
    Some(ticks / 100.0)
}

/// A `Vm…:` line of /proc/<pid>/status, in MiB.
fn vm_mib(pid: u32, key: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Sum of every sample of `name` (all label sets) in a Prometheus text exposition.
fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with(' ') || r.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// (WriteRecords request bytes, records written) from the connector's metrics.
async fn write_bytes_and_records(client: &reqwest::Client, url: &str) -> Option<(f64, f64)> {
    let text = client.get(url).send().await.ok()?.text().await.ok()?;
    Some((
        metric_sum(&text, "timestream_connector_write_request_bytes_sum"),
        metric_sum(&text, "timestream_connector_records_written_total"),
    ))
}

/// What is read from /proc and /metrics at the start and end of the measured window.
#[derive(Debug, Clone, Copy, Default)]
struct Snapshot {
    at: Option<Instant>,
    ok_samples: u64,
    connector_cpu: Option<f64>,
    backend_cpu: Option<f64>,
    write_bytes: Option<(f64, f64)>,
}

async fn snapshot(args: &Args, client: &reqwest::Client, ok: &AtomicU64) -> Snapshot {
    Snapshot {
        at: Some(Instant::now()),
        ok_samples: ok.load(Ordering::Relaxed),
        connector_cpu: args.connector_pid.and_then(cpu_seconds),
        backend_cpu: args.backend_pid.and_then(cpu_seconds),
        write_bytes: match &args.metrics_url {
            Some(u) => write_bytes_and_records(client, u).await,
            None => None,
        },
    }
}

#[tokio::main]
async fn main() {
    let args = Arc::new(Args::parse());
    let client = reqwest::Client::builder()
        .timeout(args.timeout)
        .pool_max_idle_per_host(args.concurrency)
        .build()
        .expect("HTTP client");
    let ok_samples = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let measure_from = started + args.warmup;
    let deadline = measure_from + args.duration;
    let mut tasks = Vec::new();
    for sender in 0..args.concurrency {
        let client = client.clone();
        let args = args.clone();
        let series: Vec<Vec<u8>> = label_sets(sender, args.series, args.labels)
            .iter()
            .map(|l| encode_labels(l))
            .collect();
        let ok_samples = ok_samples.clone();
        let failed = failed.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut last_t = 0i64;
            let mut statuses: Vec<(u16, u64)> = Vec::new();
            let mut round = 0u64;
            let mut raw = Vec::new();
            while Instant::now() < deadline {
                let t = now_ms().max(last_t + 1);
                last_t = t;
                round += 1;
                let body = build_body(&series, &mut raw, round as f64 * 1.5, t);
                let n = series.len() as u64;
                let sent = Instant::now();
                let resp = client
                    .post(&args.url)
                    .basic_auth(&args.username, Some(&args.password))
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
                if sent < measure_from {
                    if (200..300).contains(&code) {
                        ok_samples.fetch_add(n, Ordering::Relaxed);
                    }
                    continue;
                }
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
    let heavy = (args.heavy_senders > 0).then(|| {
        let body = bytes::Bytes::from(heavy_body(
            args.heavy_mib,
            args.labels,
            args.heavy_kind == "malformed",
        ));
        let mut tasks = Vec::new();
        for _ in 0..args.heavy_senders {
            let (client, args, body) = (client.clone(), args.clone(), body.clone());
            tasks.push(tokio::spawn(async move {
                let mut done: Vec<(u16, Duration)> = Vec::new();
                while Instant::now() < deadline {
                    let sent = Instant::now();
                    let code = match client
                        .post(&args.url)
                        .basic_auth(&args.username, Some(&args.password))
                        .header("Content-Encoding", "snappy")
                        .header("Content-Type", "application/x-protobuf")
                        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
                        .body(body.clone())
                        .send()
                        .await
                    {
                        Ok(r) => {
                            let c = r.status().as_u16();
                            let _ = r.bytes().await;
                            c
                        }
                        Err(_) => 0,
                    };
                    if sent >= measure_from {
                        done.push((code, sent.elapsed()));
                    }
                }
                done
            }));
        }
        (body.len(), tasks)
    });
    // Measured window: snapshots at its start and end, RSS sampled every second.
    tokio::time::sleep_until(measure_from.into()).await;
    let first = snapshot(&args, &client, &ok_samples).await;
    let rss_start = args.connector_pid.and_then(|p| vm_mib(p, "VmRSS:"));
    let half = measure_from + args.duration / 2;
    let (mut rss_first_half, mut rss_second_half) = (0.0f64, 0.0f64);
    let mut last = first;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1).min(deadline - Instant::now())).await;
        if let Some(r) = args.connector_pid.and_then(|p| vm_mib(p, "VmRSS:")) {
            if Instant::now() < half {
                rss_first_half = rss_first_half.max(r);
            } else {
                rss_second_half = rss_second_half.max(r);
            }
        }
        // Taken before the senders' last requests complete: the window ends here.
        if Instant::now() >= deadline {
            last = snapshot(&args, &client, &ok_samples).await;
        }
    }
    if last.at == first.at {
        last = snapshot(&args, &client, &ok_samples).await;
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
    let window = last
        .at
        .zip(first.at)
        .map_or(0.0, |(b, a)| (b - a).as_secs_f64());
    let samples = last.ok_samples.saturating_sub(first.ok_samples);
    latencies.sort();
    statuses.sort();
    println!(
        "load: {} series × {} labels per request, {} senders, {:.0} s warm-up, {:.1} s measured",
        args.series,
        args.labels,
        args.concurrency,
        args.warmup.as_secs_f64(),
        window
    );
    println!(
        "requests: {} ({} not 2xx); statuses: {}",
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
        "throughput: {samples} samples acknowledged = {:.0} samples/s",
        samples as f64 / window.max(1e-9)
    );
    println!(
        "request latency: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.90).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
    let per_sample = |a: Option<f64>, b: Option<f64>| {
        a.zip(b).map(|(a, b)| (b - a) / samples.max(1) as f64 * 1e6)
    };
    if let Some((compressed, tasks)) = heavy {
        let mut done = Vec::new();
        for t in tasks {
            done.extend(t.await.expect("heavy sender task"));
        }
        let mut codes: Vec<u16> = done.iter().map(|(c, _)| *c).collect();
        codes.sort();
        codes.dedup();
        let mean =
            done.iter().map(|(_, d)| d.as_secs_f64()).sum::<f64>() / done.len().max(1) as f64;
        println!(
            "heavy: {} senders × {} MiB decompressed ({:.1} MiB snappy, {}), {} requests in the window, statuses {:?}, mean {:.0} ms each",
            args.heavy_senders,
            args.heavy_mib,
            compressed as f64 / (1 << 20) as f64,
            args.heavy_kind,
            done.len(),
            codes,
            mean * 1e3
        );
    }
    if let Some(us) = per_sample(first.connector_cpu, last.connector_cpu) {
        println!(
            "connector CPU: {:.2} s = {us:.2} µs per sample ({us:.2} CPU-s per million samples), {:.2} cores",
            last.connector_cpu.unwrap_or(0.0) - first.connector_cpu.unwrap_or(0.0),
            (last.connector_cpu.unwrap_or(0.0) - first.connector_cpu.unwrap_or(0.0)) / window.max(1e-9)
        );
    }
    if let Some(pid) = args.connector_pid {
        println!(
            "connector RSS: {:.1} MiB at window start, max {:.1} MiB first half, max {:.1} MiB second half, peak (VmHWM) {:.1} MiB",
            rss_start.unwrap_or(0.0),
            rss_first_half,
            rss_second_half,
            vm_mib(pid, "VmHWM:").unwrap_or(0.0)
        );
    }
    if let Some(us) = per_sample(first.backend_cpu, last.backend_cpu) {
        println!("backend CPU: {us:.2} µs per sample");
    }
    if let (Some((b0, r0)), Some((b1, r1))) = (first.write_bytes, last.write_bytes) {
        let records = r1 - r0;
        if records > 0.0 {
            println!(
                "WriteRecords: {:.1} bytes of request per sample ({:.0} records written in the window)",
                (b1 - b0) / records,
                records
            );
        }
    }
}
