//! End-to-end remote read through the real connector binary.
//!
//! timestream-local runs in this process (library, temp dir); the connector runs as
//! a separate process (the release binary Cargo builds for benches, `CARGO_BIN_EXE_…`),
//! so its peak RSS (`VmHWM` of /proc/<pid>/status) and CPU time are its own. Data is
//! written straight into the store with the Timestream Write SDK: `BENCH_SERIES`
//! series (default 10,000; 5 dimensions, one of them absent on a third of the series)
//! × `BENCH_SAMPLES` samples (default 100, 15 s apart). Then one ReadRequest selecting
//! everything is sent, each time to a freshly started connector:
//! 1. SAMPLES, 1× data;  2. STREAMED_XOR_CHUNKS, 1× data;
//!    then as many samples again are written (later timestamps), and
//! 3. STREAMED_XOR_CHUNKS, 2× data;  4. SAMPLES, 2× data (for contrast).
//!
//! Every answer is decoded and its sample count checked.
//! Run: `cargo bench -p timestream-prometheus-connector --bench read_e2e`

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_timestreamwrite as tsw;
use prost::Message;
use timestream_local::{Options, Server};
use timestream_prometheus_connector::remote::pb::{
    label_matcher::Type, read_request::ResponseType, ChunkedReadResponse, LabelMatcher, Query,
    ReadRequest, ReadResponse,
};

const DB: &str = "benchdb";
const TABLE: &str = "metrics";
const STEP_MS: i64 = 15_000;
const WRITERS: usize = 8;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn write_client(url: &str) -> tsw::Client {
    tsw::Client::from_conf(
        tsw::Config::builder()
            .behavior_version_latest()
            .region(tsw::config::Region::new("us-east-1"))
            .endpoint_url(url)
            .credentials_provider(tsw::config::Credentials::new(
                "AKIDBENCH",
                "benchsecret",
                None,
                None,
                "bench",
            ))
            .build(),
    )
}

fn dims(s: usize) -> Vec<tsw::types::Dimension> {
    let d = |n: &str, v: String| {
        tsw::types::Dimension::builder()
            .name(n)
            .value(v)
            .build()
            .unwrap()
    };
    let mut out = vec![
        d(
            "instance",
            format!("host-{:04}.example.internal:9100", s / 40),
        ),
        d("job", "node".into()),
        d("cpu", format!("{}", s % 8)),
        d(
            "mode",
            ["idle", "user", "system", "iowait", "irq"][s % 5].into(),
        ),
    ];
    if !s.is_multiple_of(3) {
        out.push(d("region", "eu-west-1".into()));
    }
    out
}

/// Writes samples `k0..k1` of every series (100 records per call, `WRITERS` at once).
async fn write(url: &str, series: usize, base: i64, k0: usize, k1: usize) {
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let client = write_client(url);
        tasks.push(tokio::spawn(async move {
            let mut batch = Vec::with_capacity(100);
            for s in (w..series).step_by(WRITERS) {
                let d = dims(s);
                for k in k0..k1 {
                    batch.push(
                        tsw::types::Record::builder()
                            .set_dimensions(Some(d.clone()))
                            .measure_name(format!("node_cpu_seconds_total_{}", s / 400))
                            .measure_value(format!("{:?}", (s * 31 + k) as f64 * 0.37))
                            .measure_value_type(tsw::types::MeasureValueType::Double)
                            .time((base + k as i64 * STEP_MS).to_string())
                            .time_unit(tsw::types::TimeUnit::Milliseconds)
                            .build(),
                    );
                    if batch.len() == 100 {
                        send(&client, std::mem::take(&mut batch)).await;
                    }
                }
            }
            if !batch.is_empty() {
                send(&client, batch).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

async fn send(client: &tsw::Client, records: Vec<tsw::types::Record>) {
    client
        .write_records()
        .database_name(DB)
        .table_name(TABLE)
        .set_records(Some(records))
        .send()
        .await
        .unwrap_or_else(|e| panic!("WriteRecords: {}", tsw::error::DisplayErrorContext(&e)));
}

struct Connector {
    child: Child,
    url: String,
}

impl Connector {
    fn start(store: &str) -> Connector {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(env!("CARGO_BIN_EXE_timestream-prometheus-connector"))
            .args([
                format!("--default-database={DB}"),
                format!("--default-table={TABLE}"),
                format!("--query-base-endpoint={store}"),
                format!("--write-base-endpoint={store}"),
                format!("--web.listen-address=127.0.0.1:{port}"),
                "--web.request-timeout=20m".into(),
                "--log.level=warn".into(),
            ])
            .env("AWS_ACCESS_KEY_ID", "AKIDBENCH")
            .env("AWS_SECRET_ACCESS_KEY", "benchsecret")
            .stdout(Stdio::null())
            .spawn()
            .expect("connector binary starts");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "connector did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Connector { child, url }
    }

    fn status(&self, field: &str) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        s.lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// utime + stime in seconds.
    fn cpu_seconds(&self) -> f64 {
        let s = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        let after = &s[s.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = after.split(' ').collect();
        // Fields 14 and 15 of stat; `after` starts at field 3.
        let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
        ticks as f64 / 100.0
    }
}

impl Drop for Connector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Samples in a streamed body: frames of `uvarint len ‖ crc32c ‖ ChunkedReadResponse`;
/// an XOR chunk starts with its sample count (big-endian u16).
fn streamed_samples(body: &[u8]) -> usize {
    let mut rest = body;
    let mut n = 0;
    while !rest.is_empty() {
        let len = prost::encoding::decode_varint(&mut rest).unwrap() as usize;
        let msg = ChunkedReadResponse::decode(&rest[4..4 + len]).unwrap();
        rest = &rest[4 + len..];
        for s in &msg.chunked_series {
            for c in &s.chunks {
                n += usize::from(u16::from_be_bytes([c.data[0], c.data[1]]));
            }
        }
    }
    n
}

async fn read(c: &Connector, start: i64, end: i64, kind: ResponseType, expected: usize) {
    let req = ReadRequest {
        queries: vec![Query {
            start_timestamp_ms: start,
            end_timestamp_ms: end,
            matchers: vec![LabelMatcher {
                r#type: Type::Re as i32,
                name: "__name__".into(),
                value: "node_cpu_seconds_total_.*".into(),
            }],
            hints: None,
        }],
        accepted_response_types: vec![kind as i32],
    };
    let body = snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .unwrap();
    let rss_before = c.status("VmRSS:");
    let cpu_before = c.cpu_seconds();
    let t0 = Instant::now();
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v1/read", c.url))
        .basic_auth("AKIDBENCH", Some("benchsecret"))
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Read-Version", "0.1.0")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "read failed");
    let bytes = resp.bytes().await.unwrap();
    let wall = t0.elapsed();
    let cpu = c.cpu_seconds() - cpu_before;
    let hwm = c.status("VmHWM:");
    let got = match kind {
        ResponseType::Samples => {
            let raw = snap::raw::Decoder::new().decompress_vec(&bytes).unwrap();
            ReadResponse::decode(raw.as_slice()).unwrap().results[0]
                .timeseries
                .iter()
                .map(|t| t.samples.len())
                .sum()
        }
        ResponseType::StreamedXorChunks => streamed_samples(&bytes),
    };
    assert_eq!(got, expected, "samples in the answer");
    println!(
        "{:<20} {:>9} samples  wall {:>7.2} s  {:>6.2} M samples/s  connector CPU {:>6.2} s  \
         RSS before {:>4} MB  peak RSS {:>4} MB  body {:>5.1} MB",
        format!("{kind:?}"),
        expected,
        wall.as_secs_f64(),
        expected as f64 / wall.as_secs_f64() / 1e6,
        cpu,
        rss_before / 1024,
        hwm / 1024,
        bytes.len() as f64 / 1e6,
    );
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").unwrap_or_default()
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not: skip the heavy run there.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let series = env_usize("BENCH_SERIES", 10_000);
    let samples = env_usize("BENCH_SAMPLES", 100);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store = Server::start(Options::new(dir.path().join("store")))
            .await
            .unwrap();
        let url = store.url();
        let w = write_client(&url);
        w.create_database().database_name(DB).send().await.unwrap();
        w.create_table()
            .database_name(DB)
            .table_name(TABLE)
            .retention_properties(
                tsw::types::RetentionProperties::builder()
                    .memory_store_retention_period_in_hours(24)
                    .magnetic_store_retention_period_in_days(7)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        // 2 × samples steps ending a minute ago, aligned to the step.
        let base = (now - 60_000 - 2 * samples as i64 * STEP_MS) / STEP_MS * STEP_MS;
        println!("load average before: {}", loadavg().trim());
        let t = Instant::now();
        write(&url, series, base, 0, samples).await;
        println!(
            "wrote {} samples in {:.1} s",
            series * samples,
            t.elapsed().as_secs_f64()
        );
        let end1 = base + samples as i64 * STEP_MS - 1;
        for kind in [ResponseType::Samples, ResponseType::StreamedXorChunks] {
            let c = Connector::start(&url);
            read(&c, base, end1, kind, series * samples).await;
        }
        let t = Instant::now();
        write(&url, series, base, samples, 2 * samples).await;
        println!(
            "wrote {} more samples in {:.1} s",
            series * samples,
            t.elapsed().as_secs_f64()
        );
        let end2 = base + 2 * samples as i64 * STEP_MS - 1;
        for kind in [ResponseType::StreamedXorChunks, ResponseType::Samples] {
            let c = Connector::start(&url);
            read(&c, base, end2, kind, 2 * series * samples).await;
        }
        println!("load average after: {}", loadavg().trim());
        store.shutdown().await;
    });
}
