//! Shared end-to-end fixtures: a timestream-local store on 127.0.0.1:0 with a temp data dir
//! (optionally checking SigV4 against a credentials file), the connector app on
//! 127.0.0.1:0 pointed at it, remote-write request builders, and a real timestreamquery
//! client to read back what was stored.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_timestreamquery as tsq;
use aws_sdk_timestreamwrite as tsw;
use timestream_local::{FaultHandle, Options, Server};
use timestream_prometheus_connector::config::Config;
use timestream_prometheus_connector::metrics::Metrics;
use timestream_prometheus_connector::read::ReadService;
use timestream_prometheus_connector::remote::codec::encode_write_request;
use timestream_prometheus_connector::remote::pb::{Label, Sample, TimeSeries, WriteRequest};
use timestream_prometheus_connector::server::serve;
use timestream_prometheus_connector::timestream::client::{
    ClientCache, ClientCacheConfig, EndpointConfig,
};
use timestream_prometheus_connector::{app, AppState};

/// Keys the store knows (when started with a credentials file) and the tests send.
pub const AKID: &str = "AKIDTESTCONNECTOR";
/// Secret of `AKID`.
pub const SECRET: &str = "s3cr3t/Value+WithSymbols";
/// Default destination.
pub const DB: &str = "testdb";
/// Default table.
pub const TABLE: &str = "metrics";

/// A running store + connector.
pub struct Env {
    pub store: Server,
    pub dir: tempfile::TempDir,
    pub url: String,
    pub addr: SocketAddr,
    pub state: AppState,
    pub http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

/// How to start an `Env`.
pub struct EnvOptions {
    /// Extra connector flags (after --default-database/--default-table).
    pub args: Vec<String>,
    /// Make the store check SigV4 against `AKID`/`SECRET`.
    pub check_credentials: bool,
    /// Create DB.TABLE (and these extra destinations).
    pub tables: Vec<(String, String)>,
    /// The store's credentials file as text (overrides `check_credentials`; keep a line for
    /// `AKID` when `tables` are to be created), and files written beside it (e.g. the IAM
    /// policy a line names with `policy=`).
    pub credentials: Option<String>,
    pub store_files: Vec<(String, String)>,
}

impl Default for EnvOptions {
    fn default() -> Self {
        EnvOptions {
            args: vec!["--max-write-retries=2".into()],
            check_credentials: false,
            tables: vec![(DB.into(), TABLE.into())],
            credentials: None,
            store_files: Vec::new(),
        }
    }
}

pub async fn start() -> Env {
    start_with(EnvOptions::default()).await
}

pub async fn start_with(o: EnvOptions) -> Env {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut opts = Options::new(dir.path().join("store"));
    let credentials = o
        .credentials
        .or_else(|| o.check_credentials.then(|| format!("{AKID} {SECRET}\n")));
    if let Some(text) = credentials {
        let f = dir.path().join("credentials");
        std::fs::write(&f, text).unwrap();
        for (name, content) in &o.store_files {
            std::fs::write(dir.path().join(name), content).unwrap();
        }
        opts.credentials_file = Some(f);
    }
    let store = Server::start(opts).await.expect("store starts");
    let w = store_write_client(&store.url());
    for (db, table) in &o.tables {
        create_db_table(&w, db, table).await;
    }
    let mut args: Vec<String> = vec![
        "timestream-prometheus-connector".into(),
        format!("--default-database={DB}"),
        format!("--default-table={TABLE}"),
        format!("--write-base-endpoint={}", store.url()),
        format!("--query-base-endpoint={}", store.url()),
    ];
    args.extend(o.args);
    let config = Config::from_args(args).expect("valid test config");
    let state = state_for(config).await;
    let (addr, stop) = serve_app(&state).await;
    Env {
        store,
        dir,
        url: format!("http://{addr}"),
        addr,
        state,
        http: reqwest::Client::new(),
        stop: Some(stop),
    }
}

/// App state for `config` (clients against its base endpoints).
pub async fn state_for(config: Config) -> AppState {
    let metrics = Metrics::new();
    let clients = ClientCache::new(ClientCacheConfig {
        region: config.region.clone(),
        endpoints: EndpointConfig {
            write: config.write.base_endpoint.clone(),
            query: config.read.base_endpoint.clone(),
        },
        max_write_attempts: config.write.max_retries,
        max_read_attempts: config.read.max_retries,
        capacity: config.client_cache_size,
        write_request_bytes: Some(metrics.write_request_bytes.clone()),
    })
    .await;
    AppState {
        read: Arc::new(ReadService::from_config(&config)),
        config: Arc::new(config),
        metrics: Arc::new(metrics),
        clients: Arc::new(clients),
    }
}

impl Env {
    pub fn faults(&self) -> FaultHandle {
        self.store.faults()
    }

    /// POSTs a snappy-compressed body to `path` with basic auth `AKID:SECRET`.
    pub async fn post_raw(
        &self,
        path: &str,
        body: Vec<u8>,
        auth: Option<(&str, &str)>,
    ) -> (u16, String) {
        let mut r = self
            .http
            .post(format!("{}{path}", self.url))
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .body(body);
        if let Some((u, p)) = auth {
            r = r.basic_auth(u, Some(p));
        }
        let resp = r.send().await.expect("connector answers");
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap_or_default())
    }

    /// Remote-writes `req` with the good credentials.
    pub async fn write(&self, req: &WriteRequest) -> (u16, String) {
        self.post_raw("/write", encode_write_request(req), Some((AKID, SECRET)))
            .await
    }

    /// Connector metrics text.
    pub async fn metrics_text(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Every row of `SELECT * FROM db.table`, as column → value (NULLs omitted).
    pub async fn rows(&self, db: &str, table: &str) -> Vec<BTreeMap<String, String>> {
        query_rows(
            &self.store.url(),
            &format!(r#"SELECT * FROM "{db}"."{table}" ORDER BY time, measure_name"#),
        )
        .await
    }

    pub async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.store.shutdown().await;
    }
}

/// Runs `sql` against the store with the real query SDK and returns rows as maps.
pub async fn query_rows(url: &str, sql: &str) -> Vec<BTreeMap<String, String>> {
    let q = store_query_client(url);
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = q
            .query()
            .query_string(sql)
            .set_next_token(token.clone())
            .send()
            .await
            .unwrap_or_else(|e| panic!("query {sql}: {}", tsq::error::DisplayErrorContext(&e)));
        let cols: Vec<String> = page
            .column_info()
            .iter()
            .map(|c| c.name().unwrap_or_default().to_string())
            .collect();
        for row in page.rows() {
            let mut m = BTreeMap::new();
            for (c, d) in cols.iter().zip(row.data()) {
                if let Some(v) = d.scalar_value() {
                    m.insert(c.clone(), v.to_string());
                }
            }
            out.push(m);
        }
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    out
}

pub fn store_write_client(url: &str) -> tsw::Client {
    tsw::Client::from_conf(
        tsw::Config::builder()
            .behavior_version_latest()
            .region(tsw::config::Region::new("us-east-1"))
            .endpoint_url(url)
            .credentials_provider(tsw::config::Credentials::new(
                AKID, SECRET, None, None, "test",
            ))
            .build(),
    )
}

pub fn store_query_client(url: &str) -> tsq::Client {
    tsq::Client::from_conf(
        tsq::Config::builder()
            .behavior_version_latest()
            .region(tsq::config::Region::new("us-east-1"))
            .endpoint_url(url)
            .credentials_provider(tsq::config::Credentials::new(
                AKID, SECRET, None, None, "test",
            ))
            .build(),
    )
}

pub async fn create_db_table(w: &tsw::Client, db: &str, table: &str) {
    match w.create_database().database_name(db).send().await {
        Ok(_) => {}
        Err(e)
            if e.as_service_error()
                .and_then(|s| tsw::error::ProvideErrorMetadata::code(s))
                == Some("ConflictException") => {}
        Err(e) => panic!("create database: {}", tsw::error::DisplayErrorContext(&e)),
    }
    w.create_table()
        .database_name(db)
        .table_name(table)
        .retention_properties(
            tsw::types::RetentionProperties::builder()
                .memory_store_retention_period_in_hours(24)
                .magnetic_store_retention_period_in_days(7)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap_or_else(|e| panic!("create table: {}", tsw::error::DisplayErrorContext(&e)));
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A series from `(name, value)` label pairs and `(value, ts)` samples.
pub fn series(labels: &[(&str, &str)], samples: &[(f64, i64)]) -> TimeSeries {
    TimeSeries {
        labels: labels
            .iter()
            .map(|(n, v)| Label {
                name: n.to_string(),
                value: v.to_string(),
            })
            .collect(),
        samples: samples
            .iter()
            .map(|&(value, timestamp)| Sample { value, timestamp })
            .collect(),
        ..Default::default()
    }
}

pub fn request(ts: Vec<TimeSeries>) -> WriteRequest {
    WriteRequest {
        timeseries: ts,
        ..Default::default()
    }
}

/// Value of a metric line (`name{labels} value`) in a text exposition; 0 when absent.
pub fn metric_value(text: &str, line_prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(line_prefix) && l[line_prefix.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Serves `state`'s app on a loopback port: its address, and the sender that stops it.
pub async fn serve_app(state: &AppState) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let router = app(state.clone());
    tokio::spawn(async move {
        serve(listener, router, None, async {
            let _ = stopped.await;
        })
        .await
        .expect("serve");
    });
    (addr, stop)
}
