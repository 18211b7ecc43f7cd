//! timestream-local throughput: ingest through the real SDK with 8 concurrent writers, then
//! queries over the 1,000,000 stored rows (selective and full scan).
//! Run: cargo bench -p timestream-local --bench local_store  (BENCH_RECORDS overrides 1,000,000)

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_timestreamquery as tsq;
use aws_sdk_timestreamwrite as tsw;
use timestream_local::{Options, Server};
use tsw::types::{Dimension, MeasureValueType, Record, TimeUnit};

const WRITERS: usize = 8;
const HOSTS: usize = 100;
const MEASURES: usize = 10;
const STEP_MS: i64 = 60_000;

fn write_client(url: &str) -> tsw::Client {
    tsw::Client::from_conf(
        tsw::Config::builder()
            .behavior_version_latest()
            .region(tsw::config::Region::new("us-east-1"))
            .endpoint_url(url)
            .credentials_provider(tsw::config::Credentials::new(
                "AKID", "secret", None, None, "bench",
            ))
            .build(),
    )
}

fn query_client(url: &str) -> tsq::Client {
    tsq::Client::from_conf(
        tsq::Config::builder()
            .behavior_version_latest()
            .region(tsq::config::Region::new("us-east-1"))
            .endpoint_url(url)
            .credentials_provider(tsq::config::Credentials::new(
                "AKID", "secret", None, None, "bench",
            ))
            .build(),
    )
}

async fn timed_query(q: &tsq::Client, sql: &str, runs: usize) -> (Duration, usize) {
    let mut times = Vec::new();
    let mut rows = 0;
    for _ in 0..runs {
        let t = Instant::now();
        let mut token: Option<String> = None;
        rows = 0;
        loop {
            let out = q
                .query()
                .query_string(sql)
                .set_next_token(token.clone())
                .send()
                .await
                .expect("query");
            rows += out.rows().len();
            token = out.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        times.push(t.elapsed());
    }
    times.sort();
    (times[times.len() / 2], rows)
}

/// CPU seconds of this process's threads whose name starts with `prefix` (Linux /proc).
fn threads_cpu_seconds(prefix: &str) -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    let mut total = 0.0;
    for e in dir.flatten() {
        let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        if !comm.starts_with(prefix) {
            continue;
        }
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<&str> = rest.split_whitespace().collect();
        total += f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
            + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    }
    total / 100.0
}

/// user + system CPU time of this process (Linux /proc; 0 elsewhere), to tell the cost of ingest
/// apart from the CPU share a busy shared machine grants.
fn process_cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    ticks / 100.0
}

#[tokio::main]
async fn main() {
    let total: usize = std::env::var("BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(Options::new(dir.path())).await.unwrap();
    let url = server.url();
    let w = write_client(&url);
    w.create_database()
        .database_name("bench")
        .send()
        .await
        .unwrap();
    w.create_table()
        .database_name("bench")
        .table_name("metrics")
        .retention_properties(
            tsw::types::RetentionProperties::builder()
                .memory_store_retention_period_in_hours(48)
                .magnetic_store_retention_period_in_days(1)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();

    // HOSTS x MEASURES series, points STEP_MS apart ending now; batches of 100 records of one
    // (host, time) across measures and neighbouring hosts, as a remote-write chunk would look.
    let series = HOSTS * MEASURES;
    let points = total.div_ceil(series);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let start = now - points as i64 * STEP_MS;
    let mut batches: Vec<Vec<Record>> = Vec::new();
    let mut cur = Vec::with_capacity(100);
    'outer: for p in 0..points {
        for h in 0..HOSTS {
            for m in 0..MEASURES {
                if batches.len() * 100 + cur.len() >= total {
                    break 'outer;
                }
                cur.push(
                    Record::builder()
                        .dimensions(
                            Dimension::builder()
                                .name("host")
                                .value(format!("host-{h}"))
                                .build()
                                .unwrap(),
                        )
                        .dimensions(
                            Dimension::builder()
                                .name("region")
                                .value(format!("region-{}", h % 4))
                                .build()
                                .unwrap(),
                        )
                        .dimensions(
                            Dimension::builder()
                                .name("job")
                                .value("node")
                                .build()
                                .unwrap(),
                        )
                        .measure_name(format!("metric_{m}"))
                        .measure_value(format!("{}.{}", p, h))
                        .measure_value_type(MeasureValueType::Double)
                        .time((start + p as i64 * STEP_MS).to_string())
                        .time_unit(TimeUnit::Milliseconds)
                        .build(),
                );
                if cur.len() == 100 {
                    batches.push(std::mem::replace(&mut cur, Vec::with_capacity(100)));
                }
            }
        }
    }
    if !cur.is_empty() {
        batches.push(cur);
    }
    let n_records: usize = batches.iter().map(Vec::len).sum();
    let mut per_writer: Vec<Vec<Vec<Record>>> = (0..WRITERS).map(|_| Vec::new()).collect();
    for (i, b) in batches.into_iter().enumerate() {
        per_writer[i % WRITERS].push(b);
    }
    let cpu0 = process_cpu_seconds();
    let writer0 = threads_cpu_seconds("timestream-loca");
    let t = Instant::now();
    let mut tasks = Vec::new();
    for work in per_writer {
        let client = write_client(&url);
        tasks.push(tokio::spawn(async move {
            for b in work {
                client
                    .write_records()
                    .database_name("bench")
                    .table_name("metrics")
                    .set_records(Some(b))
                    .send()
                    .await
                    .expect("write");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let el = t.elapsed();
    let cpu = process_cpu_seconds() - cpu0;
    let writer = threads_cpu_seconds("timestream-loca") - writer0;
    println!(
        "ingest: {n_records} records, {WRITERS} SDK writers, {:.2} s, {:.0} records/s; \
         process CPU {:.2} s (clients + server), {:.0} records per CPU-second",
        el.as_secs_f64(),
        n_records as f64 / el.as_secs_f64(),
        cpu,
        n_records as f64 / cpu
    );
    println!(
        "ingest: SQLite writer thread CPU {writer:.2} s, {:.0} records per writer CPU-second",
        n_records as f64 / writer
    );

    let q = query_client(&url);
    let hour_start = start + (points as i64 / 2) * STEP_MS;
    let selective = format!(
        "SELECT time, measure_value::double FROM \"bench\".\"metrics\" WHERE measure_name = 'metric_3' \
         AND \"host\" = 'host-42' AND time BETWEEN from_milliseconds({hour_start}) AND from_milliseconds({}) ORDER BY time",
        hour_start + 3_600_000
    );
    let (d, rows) = timed_query(&q, &selective, 21).await;
    println!(
        "query selective (1 measure, 1 host, 1 hour): {rows} rows, median {:.1} ms",
        d.as_secs_f64() * 1e3
    );
    let (d, rows) = timed_query(&q, "SELECT count(*) FROM \"bench\".\"metrics\"", 5).await;
    println!(
        "query full scan count(*): {rows} row, median {:.1} ms",
        d.as_secs_f64() * 1e3
    );
    let (d, _) = timed_query(
        &q,
        "SELECT avg(measure_value::double), max(time) FROM \"bench\".\"metrics\"",
        5,
    )
    .await;
    println!(
        "query full scan avg(measure_value::double), max(time): median {:.1} ms",
        d.as_secs_f64() * 1e3
    );
    let (d, rows) = timed_query(
        &q,
        "SELECT \"host\", measure_name, time, measure_value::double FROM \"bench\".\"metrics\" WHERE measure_name = 'metric_3' AND \"region\" = 'region-1'",
        3,
    )
    .await;
    println!(
        "query one measure, one region, all time ({rows} rows, all pages): median {:.1} ms",
        d.as_secs_f64() * 1e3
    );
    let (d, rows) = timed_query(&q, "SELECT * FROM \"bench\".\"metrics\"", 1).await;
    println!(
        "query SELECT * fetching all {rows} rows through NextToken pages: {:.2} s",
        d.as_secs_f64()
    );
    server.shutdown().await;
}
