//! Real processes for the integration suite: Prometheus (2.x from Debian stable, 3.x
//! from Debian unstable, see `clients`), VictoriaMetrics' vmagent, vmctl and
//! single-node server, the connector binary, an in-process timestream-local, a
//! recording proxy for remote read, and a scrape target with awkward series. Every process writes its log to the test's temp dir, which is kept
//! (and printed) when a test fails, so a red CI run can be diagnosed.

pub mod clients;
pub mod exporter;
pub mod proxy;
pub mod tls;
pub mod victoria;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const ACCESS_KEY: &str = "AKIDINTEGRATION";
pub const SECRET_KEY: &str = "integration-secret-do-not-log";
pub const DATABASE: &str = "integrationDB";
pub const TABLE: &str = "integrationTable";

/// A free loopback port. Racy in theory (another process may take it before we bind),
/// harmless in practice on a CI machine running one suite.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

/// A child process killed on drop, with its output in a log file.
pub struct Proc {
    pub name: String,
    child: Option<Child>,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(name: &str, program: &Path, args: &[String], log_dir: &Path) -> Proc {
        Proc::spawn_env(name, program, args, &[], log_dir)
    }

    /// `spawn` with extra environment variables.
    pub fn spawn_env(
        name: &str,
        program: &Path,
        args: &[String],
        env: &[(&str, &str)],
        log_dir: &Path,
    ) -> Proc {
        let log = log_dir.join(format!("{name}.log"));
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("open process log");
        let err = out.try_clone().expect("clone log handle");
        let child = Command::new(program)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name} ({}): {e}", program.display()));
        Proc {
            name: name.to_string(),
            child: Some(child),
            log,
        }
    }

    /// SIGKILL: no chance to flush or answer in-flight requests.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `f` until it returns Some or the deadline passes.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("reqwest client")
}

/// A running Prometheus server.
pub struct Prometheus {
    pub proc: Proc,
    pub url: String,
}

impl Prometheus {
    /// Starts the Prometheus binary `bin` (2.x or 3.x: the same flags work for both).
    pub async fn start(
        bin: &Path,
        name: &str,
        port: u16,
        config_yaml: &str,
        dir: &Path,
    ) -> Prometheus {
        Prometheus::start_with(bin, name, port, config_yaml, &[], dir).await
    }

    /// `start` with extra command-line flags.
    pub async fn start_with(
        bin: &Path,
        name: &str,
        port: u16,
        config_yaml: &str,
        extra_args: &[&str],
        dir: &Path,
    ) -> Prometheus {
        let cfg = dir.join(format!("{name}.yml"));
        std::fs::write(&cfg, config_yaml).expect("write prometheus config");
        let data = dir.join(format!("{name}-data"));
        let args = vec![
            format!("--config.file={}", cfg.display()),
            format!("--storage.tsdb.path={}", data.display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
            "--log.level=debug".to_string(),
        ];
        let args = [args, extra_args.iter().map(|a| a.to_string()).collect()].concat();
        let proc = Proc::spawn(name, bin, &args, dir);
        let url = format!("http://127.0.0.1:{port}");
        let client = http_client();
        let ready = format!("{url}/-/ready");
        wait_for(
            &format!("{name} ready"),
            Duration::from_secs(60),
            || async {
                match client.get(&ready).send().await {
                    Ok(r) if r.status().is_success() => Some(()),
                    _ => None,
                }
            },
        )
        .await;
        Prometheus { proc, url }
    }

    /// GET an HTTP API path and return `data`, panicking on an error status.
    pub async fn api(&self, path: &str, params: &[(&str, String)]) -> Value {
        let resp = http_client()
            .get(format!("{}{}", self.url, path))
            .query(params)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{} {path}: {e}", self.proc.name));
        let status = resp.status();
        let text = resp.text().await.expect("prometheus API body");
        let body: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} {path}: not JSON ({e}): {text}", self.proc.name));
        assert!(
            status.is_success() && body["status"] == "success",
            "{} {path} {params:?}: {status} {body}",
            self.proc.name
        );
        body["data"].clone()
    }

    pub async fn instant(&self, query: &str, time: f64) -> Value {
        self.api(
            "/api/v1/query",
            &[("query", query.to_string()), ("time", format!("{time:.3}"))],
        )
        .await
    }

    pub async fn range(&self, query: &str, start: f64, end: f64, step: f64) -> Value {
        self.api(
            "/api/v1/query_range",
            &[
                ("query", query.to_string()),
                ("start", format!("{start:.3}")),
                ("end", format!("{end:.3}")),
                ("step", format!("{step}")),
            ],
        )
        .await
    }

    /// The largest value of one of Prometheus' own metrics, read from its /metrics page
    /// (not from its TSDB: a Prometheus need not scrape itself).
    pub async fn own_metric_max(&self, name: &str) -> Option<f64> {
        let text = http_client()
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .reduce(f64::max)
    }

    /// Waits until this Prometheus has delivered through remote write every sample up to
    /// `t` (seconds) and a margin beyond it.
    pub async fn wait_remote_write_past(&self, t: f64) {
        wait_for(
            "remote write to deliver everything up to the evaluation time",
            Duration::from_secs(120),
            || async {
                let sent = self
                    .own_metric_max(
                        "prometheus_remote_storage_queue_highest_sent_timestamp_seconds",
                    )
                    .await?;
                (sent >= t + 1.0).then_some(())
            },
        )
        .await;
    }
}

/// The connector binary under test.
pub fn connector_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_timestream-prometheus-connector"))
}

pub struct Connector {
    pub proc: Proc,
    pub addr: SocketAddr,
    pub scheme: &'static str,
}

impl Connector {
    /// Starts the connector with `args` plus a listen address, and waits until /-/ready
    /// answers (over TLS when `tls` is given, trusting its CA).
    pub async fn start(
        name: &str,
        port: u16,
        args: &[String],
        tls: Option<&tls::TestPki>,
        dir: &Path,
    ) -> Connector {
        Connector::start_env(name, port, args, &[], tls, dir).await
    }

    /// `start` with extra environment variables (e.g. the connector's own AWS keys).
    pub async fn start_env(
        name: &str,
        port: u16,
        args: &[String],
        env: &[(&str, &str)],
        tls: Option<&tls::TestPki>,
        dir: &Path,
    ) -> Connector {
        let mut all = args.to_vec();
        all.push(format!("--web.listen-address=127.0.0.1:{port}"));
        if let Some(pki) = tls {
            all.push(format!("--tls-certificate={}", pki.server_cert.display()));
            all.push(format!("--tls-key={}", pki.server_key.display()));
        }
        let proc = Proc::spawn_env(name, &connector_bin(), &all, env, dir);
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(5));
        if let Some(pki) = tls {
            builder = builder.add_root_certificate(
                reqwest::Certificate::from_pem(&std::fs::read(&pki.ca_cert).unwrap()).unwrap(),
            );
        }
        let client = builder.build().unwrap();
        let ready = format!("{scheme}://localhost:{port}/-/ready");
        let log = proc.log.clone();
        let start = Instant::now();
        loop {
            if let Ok(r) = client.get(&ready).send().await {
                if r.status().is_success() {
                    break;
                }
            }
            if start.elapsed() > Duration::from_secs(60) {
                panic!(
                    "connector {name} not ready after 60 s; log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Connector { proc, addr, scheme }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}://localhost:{}{}", self.scheme, self.addr.port(), path)
    }
}

/// An in-process timestream-local on an ephemeral port, for tests that must keep the
/// store alive while the connector process is killed.
pub async fn start_store(dir: &Path) -> timestream_local::Server {
    timestream_local::Server::start(timestream_local::Options {
        listen_address: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.join("store"),
        default_memory_retention_hours: 24,
        credentials_file: None,
        faults: Default::default(),
        discard_writes: false,
    })
    .await
    .expect("start timestream-local")
}

/// A Timestream query client for the store, to count what was really stored.
pub async fn query_client(endpoint: &str) -> aws_sdk_timestreamquery::Client {
    let creds = aws_credential_types::Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "it");
    let conf = aws_sdk_timestreamquery::Config::builder()
        .behavior_version(aws_sdk_timestreamquery::config::BehaviorVersion::latest())
        .region(aws_sdk_timestreamquery::config::Region::new("us-east-1"))
        .credentials_provider(creds)
        .endpoint_url(endpoint)
        .build();
    aws_sdk_timestreamquery::Client::from_conf(conf)
}

/// Runs a query whose single row has a single BIGINT column.
pub async fn count_rows(client: &aws_sdk_timestreamquery::Client, sql: &str) -> u64 {
    let out = client
        .query()
        .query_string(sql)
        .send()
        .await
        .unwrap_or_else(|e| panic!("query {sql}: {e:?}"));
    out.rows()[0].data()[0]
        .scalar_value()
        .expect("count is a scalar")
        .parse()
        .expect("count is an integer")
}

/// Creates the harness' database and table in a store (the connector creates nothing
/// unless it runs its own `--local-store`).
pub async fn create_destination(endpoint: &str) {
    let creds = aws_credential_types::Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "it");
    let conf = aws_sdk_timestreamwrite::Config::builder()
        .behavior_version(aws_sdk_timestreamwrite::config::BehaviorVersion::latest())
        .region(aws_sdk_timestreamwrite::config::Region::new("us-east-1"))
        .credentials_provider(creds)
        .endpoint_url(endpoint)
        .build();
    let client = aws_sdk_timestreamwrite::Client::from_conf(conf);
    client
        .create_database()
        .database_name(DATABASE)
        .send()
        .await
        .expect("create database");
    client
        .create_table()
        .database_name(DATABASE)
        .table_name(TABLE)
        .send()
        .await
        .expect("create table");
}

/// The sum of every sample of `name` whose labels include all of `labels`
/// (`key="value"` strings) on a Prometheus text-format page; 0 when none.
pub fn metric_sum(page: &str, name: &str, labels: &[&str]) -> f64 {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let (labelset, value) = if let Some(r) = rest.strip_prefix('{') {
                let end = r.rfind('}')?;
                (&r[..end], r[end + 1..].trim())
            } else if rest.starts_with(' ') {
                ("", rest.trim())
            } else {
                return None;
            };
            labels
                .iter()
                .all(|want| labelset.split(',').any(|kv| kv.trim() == *want))
                .then(|| value.split(' ').next()?.parse::<f64>().ok())?
        })
        .sum()
}

/// GETs a text page (e.g. `/metrics`), trusting the test CA for HTTPS.
pub async fn get_text(url: &str, ca: Option<&tls::TestPki>) -> String {
    let mut b = reqwest::Client::builder().timeout(Duration::from_secs(10));
    if let Some(pki) = ca {
        b = b.add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(&pki.ca_cert).unwrap()).unwrap(),
        );
    }
    b.build()
        .unwrap()
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .text()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

/// Writes series through a connector's `/write` as Prometheus would (remote write 1.0,
/// snappy, basic auth with the harness keys), in requests of at most 20,000 samples.
pub async fn write_rw1(
    url: &str,
    data: &[(
        Vec<timestream_prometheus_connector::remote::pb::Label>,
        Vec<timestream_prometheus_connector::remote::pb::Sample>,
    )],
) {
    use timestream_prometheus_connector::remote::codec::encode_write_request;
    use timestream_prometheus_connector::remote::pb::{TimeSeries, WriteRequest};
    let client = http_client();
    for (labels, samples) in data {
        for part in samples.chunks(20_000) {
            let body = encode_write_request(&WriteRequest {
                timeseries: vec![TimeSeries {
                    labels: labels.clone(),
                    samples: part.to_vec(),
                    ..Default::default()
                }],
                ..Default::default()
            });
            let r = client
                .post(url)
                .basic_auth(ACCESS_KEY, Some(SECRET_KEY))
                .header("Content-Type", "application/x-protobuf")
                .header("Content-Encoding", "snappy")
                .header("X-Prometheus-Remote-Write-Version", "0.1.0")
                .body(body)
                .send()
                .await
                .unwrap_or_else(|e| panic!("POST {url}: {e}"));
            let status = r.status();
            assert!(
                status.is_success(),
                "POST {url}: {status} {}",
                r.text().await.unwrap_or_default()
            );
        }
    }
}

/// Keeps the temp dir (with every process log) when the test panics.
pub struct TestDir(pub Option<tempfile::TempDir>);

impl TestDir {
    pub fn new(name: &str) -> TestDir {
        TestDir(Some(
            tempfile::Builder::new()
                .prefix(&format!("it-{name}-"))
                .tempdir()
                .expect("temp dir"),
        ))
    }
    pub fn path(&self) -> &Path {
        self.0.as_ref().unwrap().path()
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Some(d) = self.0.take() {
                let kept = d.keep();
                eprintln!("test failed: logs kept in {}", kept.display());
                if let Ok(entries) = std::fs::read_dir(&kept) {
                    for e in entries.flatten() {
                        if e.path().extension().is_some_and(|x| x == "log") {
                            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                            let tail: Vec<&str> = text.lines().rev().take(40).collect();
                            eprintln!("---- {} (last 40 lines)", e.path().display());
                            for l in tail.into_iter().rev() {
                                eprintln!("{l}");
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Now, in seconds since the epoch (Prometheus' API time unit).
pub fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// A PromQL vector/matrix result with its series sorted by label set, so that two
/// answers compare equal whatever order each server listed them in.
pub fn normalise(data: &Value) -> Value {
    let mut data = data.clone();
    if let Some(arr) = data["result"].as_array_mut() {
        arr.sort_by_key(|s| s["metric"].to_string());
    }
    data
}

/// Whether a PromQL result holds no series.
pub fn is_empty(data: &Value) -> bool {
    data["result"].as_array().is_some_and(|a| a.is_empty())
}

/// Connector arguments for the embedded local store in `dir` (its Timestream API on
/// `store_port`, for counting what was stored) with the suite's database and table, then
/// `extra`.
pub fn local_store_args(dir: &Path, store_port: u16, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        format!("--local-store={}", dir.join("store").display()),
        format!("--local-store.listen-address=127.0.0.1:{store_port}"),
        format!("--default-database={DATABASE}"),
        format!("--default-table={TABLE}"),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}

/// Every query answers the same JSON from A (Prometheus reading through the connector) and
/// from B (its own TSDB), instant at `t_eval` and as a range from `start` to `t_eval` (step
/// 0.5 s); with `require_answers`, A's instant answer must not be empty either (a
/// comparison of two empty answers proves nothing).
pub async fn same_answers(
    a: &Prometheus,
    b: &Prometheus,
    queries: &[&str],
    start: f64,
    t_eval: f64,
    require_answers: bool,
) {
    let mut failures = Vec::new();
    for query in queries {
        let from_a = normalise(&a.instant(query, t_eval).await);
        let from_b = normalise(&b.instant(query, t_eval).await);
        let answered = from_a["result"].as_array().is_some_and(|r| !r.is_empty());
        assert!(
            !require_answers || answered,
            "A answers nothing for {query}"
        );
        if from_a != from_b {
            failures.push(format!("instant {query}:\n  A: {from_a}\n  B: {from_b}"));
        }
        let from_a = normalise(&a.range(query, start, t_eval, 0.5).await);
        let from_b = normalise(&b.range(query, start, t_eval, 0.5).await);
        if from_a != from_b {
            failures.push(format!("range {query}:\n  A: {from_a}\n  B: {from_b}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} comparisons (instant and range) differ:\n{}",
        failures.len(),
        2 * queries.len(),
        failures.join("\n")
    );
}
