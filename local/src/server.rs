//! HTTP listener: awsJson1_0 dispatch on `X-Amz-Target`, auth, faults, admin endpoint.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::faults::{FaultHandle, FaultOptions};
use crate::iam::ACCOUNT;
use crate::query::{self, QueryCache, QueryIn};
use crate::sigv4::CredentialStore;
use crate::store::{DbMeta, Store, TableMeta, WriteOutcome};
use crate::write::{parse_records, NormRecord, WriteRecordsIn};

const TARGET_PREFIX: &str = "Timestream_20181101.";
const REGION: &str = "us-east-1";

/// Server options.
#[derive(Debug, Clone)]
pub struct Options {
    pub listen_address: SocketAddr,
    pub data_dir: PathBuf,
    /// Memory-store retention of tables created without RetentionProperties.
    pub default_memory_retention_hours: i64,
    /// `ACCESS_KEY_ID SECRET_ACCESS_KEY [fields]` lines; when set, requests must be SigV4-signed
    /// by one, and a key naming permissions may only do what they allow (see `CredentialStore`).
    pub credentials_file: Option<PathBuf>,
    pub faults: FaultOptions,
    /// Validate WriteRecords calls fully but store nothing: a backend that costs (almost)
    /// nothing, for measuring a client's own cost (load benchmarks).
    pub discard_writes: bool,
}

impl Options {
    /// Loopback port 0 (ephemeral), 6 h default retention, no credentials, no faults.
    pub fn new(data_dir: impl Into<PathBuf>) -> Options {
        Options {
            listen_address: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: data_dir.into(),
            default_memory_retention_hours: 6,
            credentials_file: None,
            faults: FaultOptions::default(),
            discard_writes: false,
        }
    }
}

struct AppState {
    store: Arc<Store>,
    queries: QueryCache,
    creds: Option<CredentialStore>,
    faults: FaultHandle,
    addr: SocketAddr,
    discard_writes: bool,
}

/// A running timestream-local server.
pub struct Server {
    addr: SocketAddr,
    faults: FaultHandle,
    store: Arc<Store>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Opens the store, binds the listener (port 0 allowed) and spawns the serving task.
    pub async fn start(opts: Options) -> anyhow::Result<Server> {
        if !(1..=8766).contains(&opts.default_memory_retention_hours) {
            anyhow::bail!("default memory retention must be between 1 and 8766 hours");
        }
        opts.faults.validate().map_err(anyhow::Error::msg)?;
        let creds = match &opts.credentials_file {
            Some(p) => Some(CredentialStore::load(p)?),
            None => None,
        };
        let dir = opts.data_dir.clone();
        let hours = opts.default_memory_retention_hours;
        let store = Arc::new(tokio::task::spawn_blocking(move || Store::open(&dir, hours)).await??);
        let listener = tokio::net::TcpListener::bind(opts.listen_address).await?;
        let addr = listener.local_addr()?;
        let faults = FaultHandle::new(opts.faults.clone());
        let state = Arc::new(AppState {
            store: store.clone(),
            queries: QueryCache::default(),
            creds,
            faults: faults.clone(),
            addr,
            discard_writes: opts.discard_writes,
        });
        let app = Router::new()
            .route("/", post(handle))
            .route("/_local/faults", any(admin_faults))
            .layer(DefaultBodyLimit::max(8 << 20))
            .with_state(state);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let r = axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await;
            if let Err(e) = r {
                tracing::error!(error = %e, "server stopped");
            }
        });
        Ok(Server {
            addr,
            faults,
            store,
            stop: Some(stop),
            task,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn faults(&self) -> FaultHandle {
        self.faults.clone()
    }

    /// Stops accepting, finishes in-flight requests, flushes and closes the store.
    pub async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = (&mut self.task).await;
        let store = self.store.clone();
        let _ = tokio::task::spawn_blocking(move || store.close()).await;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

fn ok_json(body: String) -> Response {
    let mut r = (StatusCode::OK, body).into_response();
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/x-amz-json-1.0"),
    );
    r
}

async fn admin_faults(
    State(st): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    body: Bytes,
) -> Response {
    if !peer.ip().is_loopback() {
        return (
            StatusCode::FORBIDDEN,
            "admin endpoint is only served to loopback\n",
        )
            .into_response();
    }
    match method {
        Method::GET => {}
        Method::POST | Method::PUT => {
            let opts: FaultOptions = match serde_json::from_slice(&body) {
                Ok(o) => o,
                Err(e) => {
                    return (
                        StatusCode::BAD_REQUEST,
                        format!("invalid fault options: {e}\n"),
                    )
                        .into_response()
                }
            };
            if let Err(e) = opts.validate() {
                return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response();
            }
            tracing::info!(?opts, "fault injection changed");
            st.faults.set(opts);
        }
        Method::DELETE => st.faults.clear(),
        _ => return StatusCode::METHOD_NOT_ALLOWED.into_response(),
    }
    let mut r = (
        StatusCode::OK,
        serde_json::to_string(&st.faults.get()).unwrap_or_default(),
    )
        .into_response();
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    r
}

async fn handle(
    State(st): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let op = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.strip_prefix(TARGET_PREFIX))
        .unwrap_or("")
        .to_string();
    let request_id = uuid::Uuid::new_v4().to_string();
    let mut resp = match dispatch(&st, &op, &method, &uri, &headers, body).await {
        Ok(body) => ok_json(body),
        Err(e) => {
            if e.status >= 500 {
                tracing::warn!(op = %op, error = %e, "request failed");
            } else {
                tracing::debug!(op = %op, error = %e, "request rejected");
            }
            e.into_response()
        }
    };
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert("x-amzn-requestid", v);
    }
    resp
}

async fn dispatch(
    st: &Arc<AppState>,
    op: &str,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<String, ApiError> {
    if let Some(creds) = &st.creds {
        let caller = creds.verify(
            method.as_str(),
            uri.path(),
            uri.query().unwrap_or(""),
            headers,
            &body,
        )?;
        // IAM decides before the service looks at the resource: a refused caller learns
        // nothing about whether it exists.
        if let Some(policy) = &caller.policy {
            if let Some(need) = crate::iam::need(op, &body, &caller.region) {
                policy.authorize(&caller.principal, &need)?;
            }
        }
    }
    let _in_flight = st.faults.enter(op);
    let decision = st.faults.decide(op);
    if decision.latency_ms > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(decision.latency_ms)).await;
    }
    if let Some(e) = decision.error {
        return Err(e);
    }
    let body: &[u8] = if body.iter().all(|b| b.is_ascii_whitespace()) {
        b"{}"
    } else {
        &body
    };
    match op {
        "DescribeEndpoints" => Ok(describe_endpoints(st, headers)),
        "CreateDatabase" => create_database(st, parse(body)?).await,
        "DescribeDatabase" => describe_database(st, parse(body)?),
        "ListDatabases" => list_databases(st, parse(body)?),
        "UpdateDatabase" => update_database(st, parse(body)?).await,
        "DeleteDatabase" => delete_database(st, parse(body)?).await,
        "CreateTable" => create_table(st, parse(body)?).await,
        "DescribeTable" => describe_table(st, parse(body)?),
        "ListTables" => list_tables(st, parse(body)?),
        "UpdateTable" => update_table(st, parse(body)?).await,
        "DeleteTable" => delete_table(st, parse(body)?).await,
        "WriteRecords" => write_records(st, parse(body)?).await,
        "Query" => {
            let req: QueryIn = parse(body)?;
            let st2 = st.clone();
            tokio::task::spawn_blocking(move || query::run(&st2.store, &st2.queries, req))
                .await
                .map_err(|_| ApiError::internal("The query failed unexpectedly."))?
        }
        "CancelQuery" => cancel_query(st, parse(body)?),
        "ListTagsForResource" => Ok(json!({"Tags": []}).to_string()),
        "TagResource" | "UntagResource" => Ok("{}".into()),
        _ => Err(ApiError {
            code: "UnknownOperationException",
            status: 400,
            message: if op.is_empty() {
                "Missing or malformed X-Amz-Target header.".into()
            } else {
                format!("Unknown operation {op}.")
            },
            extra: None,
        }),
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError {
        code: "SerializationException",
        status: 400,
        message: format!("Cannot parse the request body: {e}"),
        extra: None,
    })
}

fn describe_endpoints(st: &AppState, headers: &HeaderMap) -> String {
    // The address the client reached us at; the SDKs prepend the scheme themselves.
    let address = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| st.addr.to_string());
    // botocore (AWS CLI, boto3) keeps a scheme given in Address but prefixes "https://" to a bare
    // host; this listener is plain HTTP, so those clients get an explicit "http://". Other SDKs
    // (Rust, Go) always prefix "https://" themselves and get the service's bare host:port.
    let botocore = headers
        .get("user-agent")
        .and_then(|h| h.to_str().ok())
        .is_some_and(|ua| ua.to_ascii_lowercase().contains("botocore"));
    let address = if botocore {
        format!("http://{address}")
    } else {
        address
    };
    json!({"Endpoints": [{"Address": address, "CachePeriodInMinutes": 1440}]}).to_string()
}

fn secs(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

fn db_json(d: &DbMeta, table_count: usize) -> Value {
    let mut v = json!({
        "Arn": format!("arn:aws:timestream:{REGION}:{ACCOUNT}:database/{}", d.name),
        "DatabaseName": d.name,
        "TableCount": table_count,
        "CreationTime": secs(d.created_ms),
        "LastUpdatedTime": secs(d.updated_ms),
    });
    v["KmsKeyId"] = Value::String(d.kms_key.clone().unwrap_or_else(|| {
        format!("arn:aws:kms:{REGION}:{ACCOUNT}:key/00000000-0000-0000-0000-000000000000")
    }));
    v
}

fn table_json(t: &TableMeta) -> Value {
    json!({
        "Arn": format!("arn:aws:timestream:{REGION}:{ACCOUNT}:database/{}/table/{}", t.database, t.name),
        "TableName": t.name,
        "DatabaseName": t.database,
        "TableStatus": "ACTIVE",
        "RetentionProperties": {
            "MemoryStoreRetentionPeriodInHours": t.mem_hours,
            "MagneticStoreRetentionPeriodInDays": t.mag_days,
        },
        "CreationTime": secs(t.created_ms),
        "LastUpdatedTime": secs(t.updated_ms),
        "MagneticStoreWriteProperties": t.magnetic,
        "Schema": t.schema.clone().unwrap_or_else(|| json!({"CompositePartitionKey": [{"Type": "MEASURE"}]})),
    })
}

fn check_name(field: &str, v: &Option<String>) -> Result<String, ApiError> {
    let Some(s) = v else {
        return Err(ApiError::validation(format!(
            "1 validation error detected: Value null at '{field}' failed to satisfy constraint: Member must not be null"
        )));
    };
    if s.len() < 3 || s.len() > 256 {
        return Err(ApiError::validation(format!(
            "1 validation error detected: Value '{s}' at '{field}' failed to satisfy constraint: Member must have length between 3 and 256"
        )));
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
    {
        return Err(ApiError::validation(format!(
            "1 validation error detected: Value '{s}' at '{field}' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+"
        )));
    }
    Ok(s.clone())
}

/// Looked-up names need only be present (a wrong one is simply not found).
fn need(field: &str, v: &Option<String>) -> Result<String, ApiError> {
    v.clone().ok_or_else(|| {
        ApiError::validation(format!(
            "1 validation error detected: Value null at '{field}' failed to satisfy constraint: Member must not be null"
        ))
    })
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct DbIn {
    database_name: Option<String>,
    kms_key_id: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct RetentionIn {
    memory_store_retention_period_in_hours: Option<i64>,
    magnetic_store_retention_period_in_days: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct TableIn {
    database_name: Option<String>,
    table_name: Option<String>,
    retention_properties: Option<RetentionIn>,
    magnetic_store_write_properties: Option<Value>,
    schema: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct ListIn {
    database_name: Option<String>,
    max_results: Option<i64>,
    next_token: Option<String>,
}

async fn create_database(st: &AppState, req: DbIn) -> Result<String, ApiError> {
    let name = check_name("databaseName", &req.database_name)?;
    let kms = req.kms_key_id.clone();
    let d = st
        .store
        .exec(move |w| w.create_database(&name, kms))
        .await?;
    Ok(json!({"Database": db_json(&d, 0)}).to_string())
}

fn table_count(st: &AppState, db: &str) -> usize {
    let cat = st.store.catalog.read().unwrap_or_else(|e| e.into_inner());
    cat.tables.keys().filter(|(d, _)| d == db).count()
}

fn describe_database(st: &AppState, req: DbIn) -> Result<String, ApiError> {
    let name = need("databaseName", &req.database_name)?;
    let d = {
        let cat = st.store.catalog.read().unwrap_or_else(|e| e.into_inner());
        cat.dbs
            .get(&name)
            .cloned()
            .ok_or_else(|| crate::store::db_not_found(&name))?
    };
    Ok(json!({"Database": db_json(&d, table_count(st, &name))}).to_string())
}

async fn update_database(st: &AppState, req: DbIn) -> Result<String, ApiError> {
    let name = need("databaseName", &req.database_name)?;
    let kms = need("kmsKeyId", &req.kms_key_id)?;
    let n2 = name.clone();
    let d = st.store.exec(move |w| w.update_database(&n2, kms)).await?;
    Ok(json!({"Database": db_json(&d, table_count(st, &name))}).to_string())
}

async fn delete_database(st: &AppState, req: DbIn) -> Result<String, ApiError> {
    let name = need("databaseName", &req.database_name)?;
    st.store.exec(move |w| w.delete_database(&name)).await?;
    Ok("{}".into())
}

/// Name-ordered listing with an opaque token (hex of the last name returned).
fn paginate<T>(
    items: Vec<(String, T)>,
    max: Option<i64>,
    token: Option<String>,
) -> Result<(Vec<T>, Option<String>), ApiError> {
    let max = match max {
        None => 20usize,
        Some(m) if (1..=20).contains(&m) => m as usize,
        Some(m) => {
            return Err(ApiError::validation(format!(
                "1 validation error detected: Value '{m}' at 'maxResults' failed to satisfy constraint: Member must have value between 1 and 20"
            )))
        }
    };
    let after = match token {
        Some(t) => Some(
            hex::decode(&t)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| ApiError::validation("Invalid pagination token."))?,
        ),
        None => None,
    };
    let mut out = Vec::new();
    let mut last = None;
    let mut more = false;
    for (k, v) in items {
        if after.as_ref().is_some_and(|a| k <= *a) {
            continue;
        }
        if out.len() == max {
            more = true;
            break;
        }
        last = Some(k);
        out.push(v);
    }
    Ok((out, if more { last.map(hex::encode) } else { None }))
}

fn list_databases(st: &AppState, req: ListIn) -> Result<String, ApiError> {
    let items: Vec<(String, Value)> = {
        let cat = st.store.catalog.read().unwrap_or_else(|e| e.into_inner());
        cat.dbs
            .values()
            .map(|d| {
                let n = cat.tables.keys().filter(|(db, _)| *db == d.name).count();
                (d.name.clone(), db_json(d, n))
            })
            .collect()
    };
    let (page, next) = paginate(items, req.max_results, req.next_token)?;
    let mut v = json!({ "Databases": page });
    if let Some(n) = next {
        v["NextToken"] = Value::String(n);
    }
    Ok(v.to_string())
}

fn retention(req: &TableIn) -> Result<(Option<i64>, Option<i64>), ApiError> {
    let Some(r) = &req.retention_properties else {
        return Ok((None, None));
    };
    let (Some(h), Some(d)) = (
        r.memory_store_retention_period_in_hours,
        r.magnetic_store_retention_period_in_days,
    ) else {
        return Err(ApiError::validation(
            "RetentionProperties requires MemoryStoreRetentionPeriodInHours and MagneticStoreRetentionPeriodInDays.",
        ));
    };
    if !(1..=8766).contains(&h) {
        return Err(ApiError::validation(format!(
            "1 validation error detected: Value '{h}' at 'retentionProperties.memoryStoreRetentionPeriodInHours' failed to satisfy constraint: Member must have value between 1 and 8766"
        )));
    }
    if !(1..=73000).contains(&d) {
        return Err(ApiError::validation(format!(
            "1 validation error detected: Value '{d}' at 'retentionProperties.magneticStoreRetentionPeriodInDays' failed to satisfy constraint: Member must have value between 1 and 73000"
        )));
    }
    Ok((Some(h), Some(d)))
}

async fn create_table(st: &AppState, req: TableIn) -> Result<String, ApiError> {
    let db = need("databaseName", &req.database_name)?;
    let name = check_name("tableName", &req.table_name)?;
    let (h, d) = retention(&req)?;
    let mag = req.magnetic_store_write_properties.clone();
    let schema = req.schema.clone();
    let t = st
        .store
        .exec(move |w| w.create_table(&db, &name, h, d, mag, schema))
        .await?;
    Ok(json!({"Table": table_json(&t)}).to_string())
}

fn describe_table(st: &AppState, req: TableIn) -> Result<String, ApiError> {
    let db = need("databaseName", &req.database_name)?;
    let name = need("tableName", &req.table_name)?;
    let t = st.store.table_meta(&db, &name)?;
    Ok(json!({"Table": table_json(&t)}).to_string())
}

async fn update_table(st: &AppState, req: TableIn) -> Result<String, ApiError> {
    let db = need("databaseName", &req.database_name)?;
    let name = need("tableName", &req.table_name)?;
    let (h, d) = retention(&req)?;
    let mag = req.magnetic_store_write_properties.clone();
    let schema = req.schema.clone();
    let t = st
        .store
        .exec(move |w| w.update_table(&db, &name, h, d, mag, schema))
        .await?;
    Ok(json!({"Table": table_json(&t)}).to_string())
}

fn list_tables(st: &AppState, req: ListIn) -> Result<String, ApiError> {
    let items: Vec<(String, Value)> = {
        let cat = st.store.catalog.read().unwrap_or_else(|e| e.into_inner());
        if let Some(db) = &req.database_name {
            if !cat.dbs.contains_key(db) {
                return Err(crate::store::db_not_found(db));
            }
        }
        cat.tables
            .iter()
            .filter(|((d, _), _)| req.database_name.as_ref().is_none_or(|x| x == d))
            .map(|((d, n), t)| (format!("{d}\u{0}{n}"), table_json(t)))
            .collect()
    };
    let (page, next) = paginate(items, req.max_results, req.next_token)?;
    let mut v = json!({ "Tables": page });
    if let Some(n) = next {
        v["NextToken"] = Value::String(n);
    }
    Ok(v.to_string())
}

async fn delete_table(st: &AppState, req: TableIn) -> Result<String, ApiError> {
    let db = need("databaseName", &req.database_name)?;
    let name = need("tableName", &req.table_name)?;
    st.store.exec(move |w| w.delete_table(&db, &name)).await?;
    Ok("{}".into())
}

async fn write_records(st: &AppState, req: WriteRecordsIn) -> Result<String, ApiError> {
    let db = need("databaseName", &req.database_name)?;
    let table = need("tableName", &req.table_name)?;
    // Existence first: a missing table wins over record problems, as in the service.
    let meta = st.store.table_meta(&db, &table)?;
    let records = parse_records(&req)?;
    let records_n = records.len();
    let out = if st.discard_writes {
        discard(&meta, records)
    } else {
        st.store.write(db, table, records).await?
    };
    if !out.rejected.is_empty() {
        let list: Vec<Value> = out
            .rejected
            .iter()
            .map(|(i, reason, ev)| {
                let mut v = json!({"RecordIndex": i, "Reason": reason});
                if let Some(e) = ev {
                    v["ExistingVersion"] = json!(e);
                }
                v
            })
            .collect();
        return Err(ApiError::rejected(Value::Array(list)));
    }
    st.faults.count_records_written(records_n as u64);
    Ok(json!({"RecordsIngested": {
        "Total": out.ingested,
        "MemoryStore": out.ingested - out.magnetic,
        "MagneticStore": out.magnetic,
    }})
    .to_string())
}

/// Discard mode: the answer the store would give for records that are all new, with the
/// records that fail validation or fall outside the ingestion window rejected as usual.
fn discard(meta: &TableMeta, records: Vec<Result<NormRecord, String>>) -> WriteOutcome {
    let total = records.len();
    let (lower, upper) = meta.ingestion_window(crate::store::now_ns());
    let rejected: Vec<_> = records
        .into_iter()
        .enumerate()
        .filter_map(|(i, r)| match r {
            Err(reason) => Some((i, reason, None)),
            Ok(r) if r.time_ns < lower || r.time_ns > upper => {
                Some((i, crate::store::outside_window(lower, upper), None))
            }
            Ok(_) => None,
        })
        .collect();
    WriteOutcome {
        ingested: (total - rejected.len()) as i64,
        magnetic: 0,
        rejected,
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct CancelIn {
    query_id: Option<String>,
}

fn cancel_query(st: &AppState, req: CancelIn) -> Result<String, ApiError> {
    let id = need("queryId", &req.query_id)?;
    st.queries.cancel(&id);
    Ok(json!({"CancellationMessage": format!("Query {id} has been cancelled.")}).to_string())
}
