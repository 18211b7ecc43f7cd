//! SQLite store: catalog, per-table series/points tables and views, the single writer thread and
//! a small pool of read connections.
//!
//! Layout per Timestream table N:
//! - `s_N(id, skey UNIQUE, measure_name, d0, d1, ...)`: one row per series (dimensions + measure
//!   name); dimension k is column `dk` (TEXT, NULL when the series lacks it).
//! - `p_N(sid, t, ver, m0, m1, ...)` WITHOUT ROWID, PRIMARY KEY(sid, t): one row per point; measure
//!   column k is `mk` (`measure_value::<type>` or a multi-measure attribute).
//! - `v_N`: plain join exposing Timestream's column names (what the SQL engine queries), each
//!   under [`sql::storage_name`] so that names differing only in case stay apart in SQLite.
//!   Views are rebuilt when the store opens, so data directories written before that encoding
//!   are served the same way.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex, RwLock};
use std::thread::JoinHandle;

use rusqlite::{params, params_from_iter, Connection, OpenFlags};
use serde_json::Value;

use crate::error::ApiError;
use crate::sql;
use crate::write::{MType, NormRecord};

pub const MAX_DIMENSIONS_PER_TABLE: usize = 128;
const FUTURE_NS: i64 = 15 * 60 * 1_000_000_000;
const HOUR_NS: i64 = 3_600 * 1_000_000_000;
const MAX_READERS: usize = 8;
/// How many queued WriteRecords calls one SQLite transaction may absorb (group commit).
const GROUP_COMMIT: usize = 64;

#[derive(Debug, Clone)]
pub struct DbMeta {
    pub name: String,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub kms_key: Option<String>,
}

#[derive(Debug, Clone)]
pub struct MeasureCol {
    pub name: String,
    pub ty: MType,
}

#[derive(Debug, Clone)]
pub struct TableMeta {
    pub id: i64,
    pub database: String,
    pub name: String,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub mem_hours: i64,
    pub mag_days: i64,
    pub magnetic: Value,
    pub schema: Option<Value>,
    pub dims: Vec<String>,
    pub dim_idx: HashMap<String, usize>,
    pub measures: Vec<MeasureCol>,
    pub measure_idx: HashMap<String, usize>,
}

impl TableMeta {
    /// Record times (ns) this table accepts at `now`: memory-store retention back (or
    /// magnetic retention, when magnetic writes are on) to 15 minutes ahead.
    pub fn ingestion_window(&self, now: i64) -> (i64, i64) {
        let lower = if self.magnetic_writes_enabled() {
            now.saturating_sub(self.mag_days.saturating_mul(24 * HOUR_NS))
        } else {
            now.saturating_sub(self.mem_hours.saturating_mul(HOUR_NS))
        };
        (lower, now + FUTURE_NS)
    }

    pub fn magnetic_writes_enabled(&self) -> bool {
        self.magnetic
            .get("EnableMagneticStoreWrites")
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    fn view_sql(&self) -> String {
        let id = self.id;
        let mut cols = Vec::new();
        for (k, d) in self.dims.iter().enumerate() {
            cols.push(format!("s.d{k} AS {}", quote_ident(&sql::storage_name(d))));
        }
        cols.push("s.measure_name AS \"measure_name\"".into());
        cols.push("p.t AS \"time\"".into());
        for (k, m) in self.measures.iter().enumerate() {
            cols.push(format!(
                "p.m{k} AS {}",
                quote_ident(&sql::storage_name(&m.name))
            ));
        }
        format!(
            "CREATE VIEW v_{id} AS SELECT {} FROM p_{id} AS p JOIN s_{id} AS s ON s.id = p.sid",
            cols.join(", ")
        )
    }

    pub fn schema(&self) -> sql::TableSchema {
        let mut columns = Vec::new();
        for d in &self.dims {
            columns.push(sql::Column {
                name: d.clone(),
                ty: sql::ScalarType::Varchar,
            });
        }
        columns.push(sql::Column {
            name: "measure_name".into(),
            ty: sql::ScalarType::Varchar,
        });
        columns.push(sql::Column {
            name: "time".into(),
            ty: sql::ScalarType::Timestamp,
        });
        for m in &self.measures {
            columns.push(sql::Column {
                name: m.name.clone(),
                ty: match m.ty {
                    MType::Double => sql::ScalarType::Double,
                    MType::Bigint => sql::ScalarType::Bigint,
                    MType::Varchar => sql::ScalarType::Varchar,
                    MType::Boolean => sql::ScalarType::Boolean,
                    MType::Timestamp => sql::ScalarType::Timestamp,
                },
            });
        }
        sql::TableSchema {
            relation: format!("\"v_{}\"", self.id),
            columns,
        }
    }
}

pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

#[derive(Debug, Default)]
pub struct CatalogState {
    pub dbs: BTreeMap<String, DbMeta>,
    pub tables: BTreeMap<(String, String), Arc<TableMeta>>,
}

impl sql::Catalog for CatalogState {
    fn table(&self, database: &str, table: &str) -> Result<sql::TableSchema, sql::CatalogError> {
        if !self.dbs.contains_key(database) {
            return Err(sql::CatalogError::DatabaseNotFound);
        }
        self.tables
            .get(&(database.to_string(), table.to_string()))
            .map(|t| t.schema())
            .ok_or(sql::CatalogError::TableNotFound)
    }
}

pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

pub fn now_ms() -> i64 {
    now_ns() / 1_000_000
}

fn db_err(e: rusqlite::Error) -> ApiError {
    tracing::error!(error = %e, "sqlite error");
    ApiError::internal(format!("Internal storage error: {e}"))
}

pub fn db_not_found(db: &str) -> ApiError {
    ApiError::not_found(format!("The database {db} does not exist."))
}

pub fn table_not_found(db: &str, table: &str) -> ApiError {
    ApiError::not_found(format!(
        "The table {table} does not exist in database {db}."
    ))
}

/// Result of one WriteRecords call.
#[derive(Debug, Default)]
pub struct WriteOutcome {
    pub ingested: i64,
    pub magnetic: i64,
    /// (RecordIndex, Reason, ExistingVersion)
    pub rejected: Vec<(usize, String, Option<i64>)>,
}

pub struct WriteJob {
    pub database: String,
    pub table: String,
    pub records: Vec<Result<NormRecord, String>>,
    pub reply: tokio::sync::oneshot::Sender<Result<WriteOutcome, ApiError>>,
}

type Job = Box<dyn FnOnce(&mut Writer) + Send>;

enum Msg {
    Write(WriteJob),
    Other(Job),
}

pub struct Store {
    tx: Mutex<Option<mpsc::Sender<Msg>>>,
    pub catalog: Arc<RwLock<CatalogState>>,
    readers: Mutex<Vec<Connection>>,
    path: PathBuf,
    thread: Mutex<Option<JoinHandle<()>>>,
}

fn open_conn(path: &Path, read_only: bool) -> rusqlite::Result<Connection> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    conn.execute_batch(
        "PRAGMA cache_size = -65536; PRAGMA temp_store = MEMORY; PRAGMA mmap_size = 268435456;",
    )?;
    if !read_only {
        // NORMAL: durable across process crashes (WAL), fsync only at checkpoints. A larger
        // auto-checkpoint interval copies hot pages back to the main file less often.
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = 8192;",
        )?;
    }
    conn.set_prepared_statement_cache_capacity(512);
    sql::register_functions(&conn)?;
    Ok(conn)
}

impl Store {
    pub fn open(data_dir: &Path, default_mem_hours: i64) -> anyhow::Result<Store> {
        std::fs::create_dir_all(data_dir)?;
        let path = data_dir.join("timestream-local.sqlite3");
        let conn = open_conn(&path, false)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS ts_databases(name TEXT PRIMARY KEY, created_ms INTEGER NOT NULL,
                updated_ms INTEGER NOT NULL, kms_key TEXT);
             CREATE TABLE IF NOT EXISTS ts_tables(id INTEGER PRIMARY KEY AUTOINCREMENT, db TEXT NOT NULL,
                name TEXT NOT NULL, created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL,
                mem_hours INTEGER NOT NULL, mag_days INTEGER NOT NULL, magnetic TEXT NOT NULL,
                schema TEXT, UNIQUE(db, name));
             CREATE TABLE IF NOT EXISTS ts_columns(table_id INTEGER NOT NULL, kind TEXT NOT NULL,
                ord INTEGER NOT NULL, name TEXT NOT NULL, ty TEXT, PRIMARY KEY(table_id, kind, ord));",
        )?;
        let catalog = load_catalog(&conn)?;
        for t in catalog.tables.values() {
            conn.execute_batch(&format!(
                "DROP VIEW IF EXISTS v_{}; {};",
                t.id,
                t.view_sql()
            ))?;
        }
        let catalog = Arc::new(RwLock::new(catalog));
        let (tx, rx) = mpsc::channel::<Msg>();
        let mut writer = Writer {
            conn,
            catalog: catalog.clone(),
            series: HashMap::new(),
            default_mem_hours,
        };
        let thread = std::thread::Builder::new()
            .name("timestream-local-writer".into())
            .spawn(move || writer.run(rx))?;
        Ok(Store {
            tx: Mutex::new(Some(tx)),
            catalog,
            readers: Mutex::new(Vec::new()),
            path,
            thread: Mutex::new(Some(thread)),
        })
    }

    fn send(&self, msg: Msg) -> Result<(), ApiError> {
        let guard = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        match guard.as_ref() {
            Some(tx) => tx
                .send(msg)
                .map_err(|_| ApiError::internal("The store is shut down.")),
            None => Err(ApiError::internal("The store is shut down.")),
        }
    }

    /// Runs `f` on the writer thread (DDL and other catalog changes).
    pub async fn exec<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Writer) -> Result<R, ApiError> + Send + 'static,
    ) -> Result<R, ApiError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(Msg::Other(Box::new(move |w| {
            let _ = tx.send(f(w));
        })))?;
        rx.await
            .map_err(|_| ApiError::internal("The store stopped while handling the request."))?
    }

    pub async fn write(
        &self,
        database: String,
        table: String,
        records: Vec<Result<NormRecord, String>>,
    ) -> Result<WriteOutcome, ApiError> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.send(Msg::Write(WriteJob {
            database,
            table,
            records,
            reply,
        }))?;
        rx.await
            .map_err(|_| ApiError::internal("The store stopped while handling the request."))?
    }

    /// Borrows a read connection (opened on demand, at most MAX_READERS kept).
    pub fn reader(&self) -> Result<Connection, ApiError> {
        if let Some(c) = self.readers.lock().unwrap_or_else(|e| e.into_inner()).pop() {
            return Ok(c);
        }
        open_conn(&self.path, true).map_err(db_err)
    }

    pub fn give_back(&self, conn: Connection) {
        let mut r = self.readers.lock().unwrap_or_else(|e| e.into_inner());
        if r.len() < MAX_READERS {
            r.push(conn);
        }
    }

    pub fn table_meta(&self, db: &str, table: &str) -> Result<Arc<TableMeta>, ApiError> {
        let cat = self.catalog.read().unwrap_or_else(|e| e.into_inner());
        if !cat.dbs.contains_key(db) {
            return Err(db_not_found(db));
        }
        cat.tables
            .get(&(db.to_string(), table.to_string()))
            .cloned()
            .ok_or_else(|| table_not_found(db, table))
    }

    /// Stops the writer thread after it drained queued work.
    pub fn close(&self) {
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = t.join();
        }
        self.readers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.close();
    }
}

fn load_catalog(conn: &Connection) -> rusqlite::Result<CatalogState> {
    let mut state = CatalogState::default();
    let mut st = conn.prepare("SELECT name, created_ms, updated_ms, kms_key FROM ts_databases")?;
    let rows = st.query_map([], |r| {
        Ok(DbMeta {
            name: r.get(0)?,
            created_ms: r.get(1)?,
            updated_ms: r.get(2)?,
            kms_key: r.get(3)?,
        })
    })?;
    for d in rows {
        let d = d?;
        state.dbs.insert(d.name.clone(), d);
    }
    let mut st = conn.prepare(
        "SELECT id, db, name, created_ms, updated_ms, mem_hours, mag_days, magnetic, schema FROM ts_tables",
    )?;
    let rows = st.query_map([], |r| {
        let magnetic: String = r.get(7)?;
        let schema: Option<String> = r.get(8)?;
        Ok(TableMeta {
            id: r.get(0)?,
            database: r.get(1)?,
            name: r.get(2)?,
            created_ms: r.get(3)?,
            updated_ms: r.get(4)?,
            mem_hours: r.get(5)?,
            mag_days: r.get(6)?,
            magnetic: serde_json::from_str(&magnetic).unwrap_or(Value::Null),
            schema: schema.and_then(|s| serde_json::from_str(&s).ok()),
            dims: Vec::new(),
            dim_idx: HashMap::new(),
            measures: Vec::new(),
            measure_idx: HashMap::new(),
        })
    })?;
    let mut tables = Vec::new();
    for t in rows {
        tables.push(t?);
    }
    let mut st = conn
        .prepare("SELECT kind, name, ty FROM ts_columns WHERE table_id = ?1 ORDER BY kind, ord")?;
    for mut t in tables {
        let cols = st.query_map([t.id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?,
            ))
        })?;
        for c in cols {
            let (kind, name, ty) = c?;
            if kind == "dim" {
                t.dim_idx.insert(name.clone(), t.dims.len());
                t.dims.push(name);
            } else {
                let ty = ty
                    .as_deref()
                    .and_then(MType::parse)
                    .unwrap_or(MType::Varchar);
                t.measure_idx.insert(name.clone(), t.measures.len());
                t.measures.push(MeasureCol { name, ty });
            }
        }
        state
            .tables
            .insert((t.database.clone(), t.name.clone()), Arc::new(t));
    }
    Ok(state)
}

/// Owner of the single read-write connection. All mutations run here, in order.
pub struct Writer {
    pub conn: Connection,
    pub catalog: Arc<RwLock<CatalogState>>,
    /// table id -> series key -> series id
    series: HashMap<i64, HashMap<Box<str>, i64>>,
    pub default_mem_hours: i64,
}

impl Writer {
    fn run(&mut self, rx: mpsc::Receiver<Msg>) {
        let mut backlog: Option<Msg> = None;
        loop {
            let msg = match backlog.take() {
                Some(m) => m,
                None => match rx.recv() {
                    Ok(m) => m,
                    Err(_) => return,
                },
            };
            match msg {
                Msg::Other(job) => {
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(self)));
                    if r.is_err() {
                        tracing::error!("writer job panicked");
                        self.recover();
                    }
                }
                Msg::Write(first) => {
                    let mut jobs = vec![first];
                    while jobs.len() < GROUP_COMMIT {
                        match rx.try_recv() {
                            Ok(Msg::Write(j)) => jobs.push(j),
                            Ok(other) => {
                                backlog = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    self.write_group(jobs);
                }
            }
        }
    }

    /// Reloads in-memory state from disk after a failed transaction.
    fn recover(&mut self) {
        let _ = self.conn.execute_batch("ROLLBACK");
        self.series.clear();
        match load_catalog(&self.conn) {
            Ok(c) => *self.catalog.write().unwrap_or_else(|e| e.into_inner()) = c,
            Err(e) => tracing::error!(error = %e, "cannot reload catalog"),
        }
    }

    fn write_group(&mut self, jobs: Vec<WriteJob>) {
        let now = now_ns();
        let mut pending: HashMap<(String, String), TableMeta> = HashMap::new();
        let mut results = Vec::with_capacity(jobs.len());
        let mut failed = None;
        if let Err(e) = self.conn.execute_batch("BEGIN IMMEDIATE") {
            failed = Some(db_err(e));
        } else {
            for job in &jobs {
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    self.write_one(&mut pending, job, now)
                }));
                match r {
                    Ok(Ok(o)) => results.push(Ok(o)),
                    Ok(Err(e)) if e.status < 500 => results.push(Err(e)),
                    Ok(Err(e)) => {
                        failed = Some(e);
                        break;
                    }
                    Err(_) => {
                        failed = Some(ApiError::internal("Internal error while writing records."));
                        break;
                    }
                }
            }
            if failed.is_none() {
                if let Err(e) = self.conn.execute_batch("COMMIT") {
                    failed = Some(db_err(e));
                }
            }
        }
        if let Some(err) = failed {
            self.recover();
            for job in jobs {
                let _ = job.reply.send(Err(err.clone()));
            }
            return;
        }
        if !pending.is_empty() {
            let mut cat = self.catalog.write().unwrap_or_else(|e| e.into_inner());
            for (k, t) in pending {
                cat.tables.insert(k, Arc::new(t));
            }
        }
        for (job, r) in jobs.into_iter().zip(results) {
            let _ = job.reply.send(r);
        }
    }

    fn ensure_series_cache(&mut self, id: i64) -> rusqlite::Result<()> {
        if self.series.contains_key(&id) {
            return Ok(());
        }
        let mut map = HashMap::new();
        let mut st = self.conn.prepare(&format!("SELECT skey, id FROM s_{id}"))?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        for row in rows {
            let (k, v) = row?;
            map.insert(k.into_boxed_str(), v);
        }
        drop(st);
        self.series.insert(id, map);
        Ok(())
    }

    /// Ingests one WriteRecords call inside the group's transaction: each record is refused
    /// (RejectedRecords) or stored, adding the columns it brings first.
    fn write_one(
        &mut self,
        pending: &mut HashMap<(String, String), TableMeta>,
        job: &WriteJob,
        now: i64,
    ) -> Result<WriteOutcome, ApiError> {
        let meta = self.table_for_group(pending, &job.database, &job.table)?;
        self.ensure_series_cache(meta.id).map_err(db_err)?;
        let mut out = WriteOutcome::default();
        let (lower, upper) = meta.ingestion_window(now);
        let mem_lower = now.saturating_sub(meta.mem_hours.saturating_mul(HOUR_NS));
        for (idx, rec) in job.records.iter().enumerate() {
            let rec = match rec {
                Err(reason) => {
                    out.rejected.push((idx, reason.clone(), None));
                    continue;
                }
                Ok(r) => r,
            };
            // Every refusal is decided before the schema or the data is touched.
            if let Some(reason) = table_refusal(meta, rec, lower, upper) {
                out.rejected.push((idx, reason, None));
                continue;
            }
            self.add_new_columns(meta, rec).map_err(db_err)?;
            let sid = self.series_id(meta, rec).map_err(db_err)?;
            match self.upsert_point(meta, sid, rec).map_err(db_err)? {
                None => {
                    out.ingested += 1;
                    if rec.time_ns < mem_lower {
                        out.magnetic += 1;
                    }
                }
                Some((reason, existing)) => out.rejected.push((idx, reason, Some(existing))),
            }
        }
        Ok(out)
    }

    /// The table as this write group sees it: a copy taken from the catalog at its first write
    /// in the group, which then gains the group's new columns and replaces the catalog's entry
    /// only when the group commits.
    fn table_for_group<'p>(
        &self,
        pending: &'p mut HashMap<(String, String), TableMeta>,
        database: &str,
        table: &str,
    ) -> Result<&'p mut TableMeta, ApiError> {
        let key = (database.to_string(), table.to_string());
        if !pending.contains_key(&key) {
            let cat = self.catalog.read().unwrap_or_else(|e| e.into_inner());
            if !cat.dbs.contains_key(database) {
                return Err(db_not_found(database));
            }
            let t = cat
                .tables
                .get(&key)
                .ok_or_else(|| table_not_found(database, table))?;
            let t = (**t).clone();
            drop(cat);
            pending.insert(key.clone(), t);
        }
        Ok(pending.get_mut(&key).expect("inserted above"))
    }

    /// Adds the dimension and measure columns `rec` is the first to use, and rebuilds the view
    /// if it gained any.
    fn add_new_columns(&mut self, meta: &mut TableMeta, rec: &NormRecord) -> rusqlite::Result<()> {
        let id = meta.id;
        let mut view_dirty = false;
        for (n, _) in &rec.dims {
            if meta.dim_idx.contains_key(n) {
                continue;
            }
            let k = meta.dims.len();
            self.conn.execute_batch(&format!(
                "ALTER TABLE s_{id} ADD COLUMN d{k} TEXT; CREATE INDEX s_{id}_d{k} ON s_{id}(d{k}, measure_name);"
            ))?;
            self.conn.execute(
                "INSERT INTO ts_columns(table_id, kind, ord, name, ty) VALUES (?1, 'dim', ?2, ?3, NULL)",
                params![id, k as i64, n],
            )?;
            meta.dim_idx.insert(n.clone(), k);
            meta.dims.push(n.clone());
            view_dirty = true;
        }
        for v in &rec.values {
            if meta.measure_idx.contains_key(&v.name) {
                continue;
            }
            let k = meta.measures.len();
            self.conn.execute_batch(&format!(
                "ALTER TABLE p_{id} ADD COLUMN m{k} {}",
                v.ty.sql_decl()
            ))?;
            self.conn.execute(
                "INSERT INTO ts_columns(table_id, kind, ord, name, ty) VALUES (?1, 'measure', ?2, ?3, ?4)",
                params![id, k as i64, v.name, v.ty.as_str()],
            )?;
            meta.measure_idx.insert(v.name.clone(), k);
            meta.measures.push(MeasureCol {
                name: v.name.clone(),
                ty: v.ty,
            });
            view_dirty = true;
        }
        if view_dirty {
            // The view must be current before the next statement that might read it.
            self.conn
                .execute_batch(&format!("DROP VIEW IF EXISTS v_{id}; {};", meta.view_sql()))?;
        }
        Ok(())
    }

    fn series_id(&mut self, meta: &TableMeta, rec: &NormRecord) -> rusqlite::Result<i64> {
        let key = series_key(&rec.measure_name, &rec.dims);
        let cache = self.series.get_mut(&meta.id).expect("loaded");
        if let Some(id) = cache.get(key.as_str()) {
            return Ok(*id);
        }
        let id = meta.id;
        let mut cols = String::from("skey, measure_name");
        let mut marks = String::from("?1, ?2");
        let mut vals: Vec<&str> = vec![key.as_str(), rec.measure_name.as_str()];
        // Stable column order so the cached statement is reused for the same dimension set.
        let mut dims: Vec<(usize, &str)> = rec
            .dims
            .iter()
            .map(|(n, v)| (meta.dim_idx[n], v.as_str()))
            .collect();
        dims.sort_unstable();
        for (i, (k, v)) in dims.iter().enumerate() {
            cols.push_str(&format!(", d{k}"));
            marks.push_str(&format!(", ?{}", i + 3));
            vals.push(v);
        }
        let sql = format!("INSERT INTO s_{id}({cols}) VALUES ({marks})");
        let mut st = self.conn.prepare_cached(&sql)?;
        st.execute(params_from_iter(vals.iter()))?;
        let sid = self.conn.last_insert_rowid();
        self.series
            .get_mut(&meta.id)
            .expect("loaded")
            .insert(key.into_boxed_str(), sid);
        Ok(sid)
    }

    /// Inserts or upserts a point. Returns Some((reason, existing_version)) on rejection.
    fn upsert_point(
        &mut self,
        meta: &TableMeta,
        sid: i64,
        rec: &NormRecord,
    ) -> rusqlite::Result<Option<(String, i64)>> {
        let id = meta.id;
        let mut cols = String::from("sid, t, ver");
        let mut marks = String::from("?1, ?2, ?3");
        let mut vals: Vec<rusqlite::types::Value> =
            vec![sid.into(), rec.time_ns.into(), rec.version.into()];
        for (i, v) in rec.values.iter().enumerate() {
            cols.push_str(&format!(", m{}", meta.measure_idx[&v.name]));
            marks.push_str(&format!(", ?{}", i + 4));
            vals.push(v.val.to_sql());
        }
        let sql =
            format!("INSERT INTO p_{id}({cols}) VALUES ({marks}) ON CONFLICT(sid, t) DO NOTHING");
        let n = self
            .conn
            .prepare_cached(&sql)?
            .execute(params_from_iter(vals.iter()))?;
        if n == 1 {
            return Ok(None);
        }
        // A point exists: compare every measure column.
        let all: Vec<String> = (0..meta.measures.len()).map(|k| format!("m{k}")).collect();
        let sql = format!(
            "SELECT ver, {} FROM p_{id} WHERE sid = ?1 AND t = ?2",
            all.join(", ")
        );
        let (existing_ver, existing): (i64, Vec<rusqlite::types::Value>) = self
            .conn
            .prepare_cached(&sql)?
            .query_row(params![sid, rec.time_ns], |r| {
                let mut vals = Vec::with_capacity(all.len());
                for k in 0..all.len() {
                    vals.push(r.get::<_, rusqlite::types::Value>(k + 1)?);
                }
                Ok((r.get(0)?, vals))
            })?;
        let mut wanted: Vec<Option<&crate::write::SqlVal>> = vec![None; meta.measures.len()];
        for v in &rec.values {
            wanted[meta.measure_idx[&v.name]] = Some(&v.val);
        }
        let identical = wanted.iter().zip(&existing).all(|(w, e)| match w {
            None => matches!(e, rusqlite::types::Value::Null),
            Some(w) => w.same_as(e),
        });
        if identical {
            if rec.version > existing_ver {
                self.conn
                    .prepare_cached(&format!(
                        "UPDATE p_{id} SET ver = ?3 WHERE sid = ?1 AND t = ?2"
                    ))?
                    .execute(params![sid, rec.time_ns, rec.version])?;
            }
            return Ok(None);
        }
        if rec.version > existing_ver {
            let sets: Vec<String> = (0..meta.measures.len())
                .map(|k| format!("m{k} = ?{}", k + 4))
                .collect();
            let sql = format!(
                "UPDATE p_{id} SET ver = ?3, {} WHERE sid = ?1 AND t = ?2",
                sets.join(", ")
            );
            let mut vals: Vec<rusqlite::types::Value> =
                vec![sid.into(), rec.time_ns.into(), rec.version.into()];
            for w in wanted {
                vals.push(
                    w.map(|v| v.to_sql())
                        .unwrap_or(rusqlite::types::Value::Null),
                );
            }
            self.conn
                .prepare_cached(&sql)?
                .execute(params_from_iter(vals.iter()))?;
            return Ok(None);
        }
        let reason = if rec.version == existing_ver {
            "A record already exists with the same time, dimensions, measure name, and record version. A higher record version must be specified in order to update the measure value.".to_string()
        } else {
            format!(
                "The record version {} is lower than the existing version {existing_ver}. A higher version is required to update the measure value.",
                rec.version
            )
        };
        Ok(Some((reason, existing_ver)))
    }

    // ---- catalog operations (run on the writer thread) ----

    pub fn create_database(&mut self, name: &str, kms: Option<String>) -> Result<DbMeta, ApiError> {
        let mut cat = self.catalog.write().unwrap_or_else(|e| e.into_inner());
        if cat.dbs.contains_key(name) {
            return Err(ApiError::conflict(format!(
                "A database with name {name} already exists."
            )));
        }
        let now = now_ms();
        self.conn
            .execute(
                "INSERT INTO ts_databases(name, created_ms, updated_ms, kms_key) VALUES (?1, ?2, ?2, ?3)",
                params![name, now, kms],
            )
            .map_err(db_err)?;
        let d = DbMeta {
            name: name.to_string(),
            created_ms: now,
            updated_ms: now,
            kms_key: kms,
        };
        cat.dbs.insert(name.to_string(), d.clone());
        Ok(d)
    }

    pub fn delete_database(&mut self, name: &str) -> Result<(), ApiError> {
        let mut cat = self.catalog.write().unwrap_or_else(|e| e.into_inner());
        if !cat.dbs.contains_key(name) {
            return Err(db_not_found(name));
        }
        if cat.tables.keys().any(|(d, _)| d == name) {
            return Err(ApiError::validation(format!(
                "Cannot delete database {name}: it still has tables. Delete all tables first."
            )));
        }
        self.conn
            .execute("DELETE FROM ts_databases WHERE name = ?1", [name])
            .map_err(db_err)?;
        cat.dbs.remove(name);
        Ok(())
    }

    pub fn update_database(&mut self, name: &str, kms: String) -> Result<DbMeta, ApiError> {
        let mut cat = self.catalog.write().unwrap_or_else(|e| e.into_inner());
        let now = now_ms();
        let d = cat.dbs.get_mut(name).ok_or_else(|| db_not_found(name))?;
        self.conn
            .execute(
                "UPDATE ts_databases SET kms_key = ?2, updated_ms = ?3 WHERE name = ?1",
                params![name, kms, now],
            )
            .map_err(db_err)?;
        d.kms_key = Some(kms);
        d.updated_ms = now;
        Ok(d.clone())
    }

    pub fn create_table(
        &mut self,
        db: &str,
        name: &str,
        mem_hours: Option<i64>,
        mag_days: Option<i64>,
        magnetic: Option<Value>,
        schema: Option<Value>,
    ) -> Result<Arc<TableMeta>, ApiError> {
        let mut cat = self.catalog.write().unwrap_or_else(|e| e.into_inner());
        if !cat.dbs.contains_key(db) {
            return Err(db_not_found(db));
        }
        if cat.tables.contains_key(&(db.to_string(), name.to_string())) {
            return Err(ApiError::conflict(format!(
                "A table with name {name} already exists in database {db}."
            )));
        }
        let now = now_ms();
        let mem_hours = mem_hours.unwrap_or(self.default_mem_hours);
        let mag_days = mag_days.unwrap_or(73_000);
        let magnetic =
            magnetic.unwrap_or_else(|| serde_json::json!({"EnableMagneticStoreWrites": false}));
        let tx = self.conn.transaction().map_err(db_err)?;
        tx.execute(
            "INSERT INTO ts_tables(db, name, created_ms, updated_ms, mem_hours, mag_days, magnetic, schema)
             VALUES (?1, ?2, ?3, ?3, ?4, ?5, ?6, ?7)",
            params![
                db,
                name,
                now,
                mem_hours,
                mag_days,
                magnetic.to_string(),
                schema.as_ref().map(|s| s.to_string())
            ],
        )
        .map_err(db_err)?;
        let id = tx.last_insert_rowid();
        let meta = TableMeta {
            id,
            database: db.to_string(),
            name: name.to_string(),
            created_ms: now,
            updated_ms: now,
            mem_hours,
            mag_days,
            magnetic,
            schema,
            dims: Vec::new(),
            dim_idx: HashMap::new(),
            measures: Vec::new(),
            measure_idx: HashMap::new(),
        };
        tx.execute_batch(&format!(
            "CREATE TABLE s_{id}(id INTEGER PRIMARY KEY, skey TEXT NOT NULL UNIQUE, measure_name TEXT NOT NULL);
             CREATE INDEX s_{id}_mn ON s_{id}(measure_name);
             CREATE TABLE p_{id}(sid INTEGER NOT NULL, t INTEGER NOT NULL, ver INTEGER NOT NULL,
                PRIMARY KEY(sid, t)) WITHOUT ROWID;
             {};",
            meta.view_sql()
        ))
        .map_err(db_err)?;
        tx.commit().map_err(db_err)?;
        let meta = Arc::new(meta);
        cat.tables
            .insert((db.to_string(), name.to_string()), meta.clone());
        self.series.insert(id, HashMap::new());
        Ok(meta)
    }

    pub fn update_table(
        &mut self,
        db: &str,
        name: &str,
        mem_hours: Option<i64>,
        mag_days: Option<i64>,
        magnetic: Option<Value>,
        schema: Option<Value>,
    ) -> Result<Arc<TableMeta>, ApiError> {
        let mut cat = self.catalog.write().unwrap_or_else(|e| e.into_inner());
        if !cat.dbs.contains_key(db) {
            return Err(db_not_found(db));
        }
        let key = (db.to_string(), name.to_string());
        let mut t = (**cat
            .tables
            .get(&key)
            .ok_or_else(|| table_not_found(db, name))?)
        .clone();
        if let Some(h) = mem_hours {
            t.mem_hours = h;
        }
        if let Some(d) = mag_days {
            t.mag_days = d;
        }
        if let Some(m) = magnetic {
            t.magnetic = m;
        }
        if schema.is_some() {
            t.schema = schema;
        }
        t.updated_ms = now_ms();
        self.conn
            .execute(
                "UPDATE ts_tables SET mem_hours = ?2, mag_days = ?3, magnetic = ?4, schema = ?5, updated_ms = ?6 WHERE id = ?1",
                params![
                    t.id,
                    t.mem_hours,
                    t.mag_days,
                    t.magnetic.to_string(),
                    t.schema.as_ref().map(|s| s.to_string()),
                    t.updated_ms
                ],
            )
            .map_err(db_err)?;
        let t = Arc::new(t);
        cat.tables.insert(key, t.clone());
        Ok(t)
    }

    pub fn delete_table(&mut self, db: &str, name: &str) -> Result<(), ApiError> {
        let mut cat = self.catalog.write().unwrap_or_else(|e| e.into_inner());
        if !cat.dbs.contains_key(db) {
            return Err(db_not_found(db));
        }
        let key = (db.to_string(), name.to_string());
        let id = cat
            .tables
            .get(&key)
            .ok_or_else(|| table_not_found(db, name))?
            .id;
        let tx = self.conn.transaction().map_err(db_err)?;
        tx.execute_batch(&format!(
            "DROP VIEW IF EXISTS v_{id}; DROP TABLE IF EXISTS p_{id}; DROP TABLE IF EXISTS s_{id};
             DELETE FROM ts_columns WHERE table_id = {id}; DELETE FROM ts_tables WHERE id = {id};"
        ))
        .map_err(db_err)?;
        tx.commit().map_err(db_err)?;
        cat.tables.remove(&key);
        self.series.remove(&id);
        Ok(())
    }
}

/// Why the table refuses `rec` (RejectedRecords), if it does: a time outside the ingestion
/// window `[lower, upper]`, too many dimensions, or a column of another kind or type.
fn table_refusal(meta: &TableMeta, rec: &NormRecord, lower: i64, upper: i64) -> Option<String> {
    if rec.time_ns < lower || rec.time_ns > upper {
        return Some(outside_window(lower, upper));
    }
    let new_dims = rec
        .dims
        .iter()
        .filter(|(n, _)| !meta.dim_idx.contains_key(n))
        .count();
    if meta.dims.len() + new_dims > MAX_DIMENSIONS_PER_TABLE {
        return Some(format!(
            "The number of dimensions in the table would exceed the maximum of {MAX_DIMENSIONS_PER_TABLE}."
        ));
    }
    schema_conflict(meta, rec)
}

/// Multi-measure attribute names share the column namespace with dimensions and must keep
/// one type per table.
fn schema_conflict(meta: &TableMeta, rec: &NormRecord) -> Option<String> {
    for v in &rec.values {
        if let Some(k) = meta.measure_idx.get(&v.name) {
            let existing = meta.measures[*k].ty;
            if existing != v.ty {
                return Some(format!(
                    "Measure '{}' has type {} in this table; a value of type {} cannot be written.",
                    v.name,
                    existing.as_str(),
                    v.ty.as_str()
                ));
            }
        }
        if rec.multi && meta.dim_idx.contains_key(&v.name) {
            return Some(format!(
                "Measure name '{}' is already used as a dimension name in this table.",
                v.name
            ));
        }
    }
    for (n, _) in &rec.dims {
        if meta.measure_idx.contains_key(n) {
            return Some(format!(
                "Dimension name '{n}' is already used as a measure name in this table."
            ));
        }
    }
    None
}

/// Canonical identity of a series: measure name + dimensions sorted by name, length-prefixed so
/// that no choice of characters can make two different series collide.
fn series_key(measure: &str, dims: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = dims.iter().collect();
    sorted.sort();
    let mut k = String::with_capacity(64);
    k.push_str(&measure.len().to_string());
    k.push(':');
    k.push_str(measure);
    for (n, v) in sorted {
        k.push_str(&n.len().to_string());
        k.push(':');
        k.push_str(n);
        k.push_str(&v.len().to_string());
        k.push(':');
        k.push_str(v);
    }
    k
}

/// RFC 3339 UTC with milliseconds, for messages.
/// RejectedRecords reason for a time outside the ingestion window.
pub fn outside_window(lower: i64, upper: i64) -> String {
    format!(
        "The record timestamp is outside the time range [{}, {}) of the data ingestion window.",
        iso(lower),
        iso(upper)
    )
}

pub fn iso(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let ms = ns.rem_euclid(1_000_000_000) / 1_000_000;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60
    )
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_keys_do_not_collide() {
        let a = series_key("m", &[("a".into(), "b:1".into())]);
        let b = series_key("m", &[("a".into(), "b".into()), ("1".into(), "".into())]);
        assert_ne!(a, b);
        let c = series_key("m", &[("y".into(), "2".into()), ("x".into(), "1".into())]);
        let d = series_key("m", &[("x".into(), "1".into()), ("y".into(), "2".into())]);
        assert_eq!(c, d);
    }

    #[test]
    fn iso_formats_utc() {
        assert_eq!(iso(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso(1_700_000_000_123_000_000), "2023-11-14T22:13:20.123Z");
    }
}
