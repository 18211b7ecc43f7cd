//! Matchers → SQL under hostile label names and values (any unicode, quotes, double
//! quotes, backslashes, NUL, SQL and regex metacharacters).
//!
//! 1. In-process, many cases: the SQL the planner renders must compile in
//!    timestream-local's Timestream SQL engine against a catalog of the table, and when
//!    run over a SQLite table holding a generated set of series it must select exactly
//!    the series Prometheus semantics select (absent label == "", regexes fully anchored
//!    with `.` matching newline, unknown labels behave as "").
//! 2. End to end, fewer cases: the same oracle against series written through the
//!    connector's /write and read back through /read from a running timestream-local.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use proptest::prelude::*;
use proptest::test_runner::{Config as PtConfig, TestRunner};
use prost::Message;
use rusqlite::Connection;
use timestream_local::sql::{
    compile, Catalog, CatalogError, Column as SqlColumn, ScalarType, TableSchema,
};
use timestream_prometheus_connector::read::sql::{plan, render, Plan, PlanOptions};
use timestream_prometheus_connector::remote::pb::{
    label_matcher::Type as T, LabelMatcher, Query, ReadRequest, ReadResponse,
};

/// A series: label name → value (no empty values: empty means absent).
type Series = BTreeMap<String, String>;

/// Label names: ordinary, SQL-hostile, unicode, with NUL.
const NAMES: &[&str] = &[
    "job",
    "it's",
    "a\"b",
    "back\\slash",
    "ünï",
    "x y",
    "nul\0l",
    "SELECT",
    "--c",
];
/// Matcher-only names (never a column): unknown labels, names of store columns.
const EXTRA_MATCHER_NAMES: &[&str] = &["never_written", "time", "measure_name"];

const DB: &str = "d\"b'";
const TABLE: &str = "t\\'\"";

fn value_pool() -> Vec<String> {
    [
        "a",
        "b",
        "ab",
        "'",
        "''",
        "\"",
        "\\",
        "\\'",
        "a'b",
        "%",
        "_",
        ".*",
        "\0",
        "x\0y",
        "é",
        "É",
        "K",
        "\u{212A}",
        "a\nb",
        "\n",
        ");DROP TABLE x;--",
        "😀",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn arb_value() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(value_pool()),
        1 => any::<String>().prop_filter("non-empty", |s| !s.is_empty()),
    ]
}

fn arb_series() -> impl Strategy<Value = Series> {
    (
        prop::sample::select(vec!["m1", "m'2", "m\"3"]),
        prop::collection::btree_map(prop::sample::select(NAMES), arb_value(), 0..4),
    )
        .prop_map(|(metric, labels)| {
            let mut s: Series = labels
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
            s.insert("__name__".into(), metric.to_string());
            s
        })
}

/// Regexes in the syntax RE2 and the `regex` crate share, built around values.
fn arb_regex(values: Vec<String>) -> impl Strategy<Value = String> {
    let v = prop::sample::select(values);
    prop_oneof![
        v.clone().prop_map(|v| regex::escape(&v)),
        v.clone().prop_map(|v| format!("{}.*", regex::escape(&v))),
        v.clone().prop_map(|v| format!("(?i){}", regex::escape(&v))),
        (v.clone(), v).prop_map(|(a, b)| format!("{}|{}", regex::escape(&a), regex::escape(&b))),
        prop::sample::select(vec![
            ".*",
            ".+",
            "",
            "a|",
            "[ab]+",
            "[^a]*",
            "\\pL+",
            ".",
            "(?s:.)\\n?",
            "[[:alpha:]]*",
        ])
        .prop_map(str::to_string),
    ]
}

fn arb_matcher(values: Vec<String>) -> impl Strategy<Value = LabelMatcher> {
    let names: Vec<&str> = NAMES
        .iter()
        .chain(EXTRA_MATCHER_NAMES)
        .copied()
        .chain(["__name__", "__name__"])
        .collect();
    let mut eq_values = values.clone();
    eq_values.extend(["".to_string(), "m1".into(), "m'2".into()]);
    (
        prop::sample::select(names),
        0..4i32,
        prop::sample::select(eq_values),
        arb_regex(values),
    )
        .prop_map(|(name, ty, v, re)| LabelMatcher {
            r#type: ty,
            name: name.to_string(),
            value: if ty >= 2 { re } else { v },
        })
}

/// Universe of series and a query over it.
fn arb_case() -> impl Strategy<Value = (Vec<Series>, Vec<LabelMatcher>)> {
    prop::collection::vec(arb_series(), 1..7).prop_flat_map(|universe| {
        let mut values = value_pool();
        for s in &universe {
            values.extend(s.values().cloned());
        }
        (
            Just(universe),
            prop::collection::vec(arb_matcher(values), 1..4),
        )
    })
}

/// What Prometheus selects.
fn oracle(universe: &[Series], matchers: &[LabelMatcher]) -> BTreeSet<Series> {
    universe
        .iter()
        .filter(|s| {
            matchers.iter().all(|m| {
                let v = s.get(&m.name).map(String::as_str).unwrap_or("");
                match T::try_from(m.r#type).unwrap() {
                    T::Eq => v == m.value,
                    T::Neq => v != m.value,
                    T::Re => full_match(&m.value, v),
                    T::Nre => !full_match(&m.value, v),
                }
            })
        })
        .cloned()
        .collect()
}

fn full_match(re: &str, v: &str) -> bool {
    regex::Regex::new(&format!("^(?s:{re})$"))
        .expect("generated regexes are valid")
        .is_match(v)
}

/// Dimension columns: every label name but `__name__`, in first-appearance order.
fn dimensions(universe: &[Series]) -> Vec<String> {
    let mut dims = Vec::new();
    for s in universe {
        for k in s.keys() {
            if k != "__name__" && !dims.contains(k) {
                dims.push(k.clone());
            }
        }
    }
    dims
}

struct OneTable(TableSchema);

impl Catalog for OneTable {
    fn table(&self, database: &str, table: &str) -> Result<TableSchema, CatalogError> {
        if database != DB {
            return Err(CatalogError::DatabaseNotFound);
        }
        if table != TABLE {
            return Err(CatalogError::TableNotFound);
        }
        Ok(self.0.clone())
    }
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// A SQLite database with the table as timestream-local lays it out (a relation with the
/// dimension columns, measure_name, time in ns, the double measure), one row per series.
fn load(universe: &[Series], dims: &[String], t_ms: i64) -> Connection {
    let conn = Connection::open_in_memory().unwrap();
    timestream_local::sql::register_functions(&conn).unwrap();
    // Named as the store's view names them (SQLite folds identifiers' case).
    let mut cols: Vec<String> = dims
        .iter()
        .map(|d| format!("{} TEXT", quote(&timestream_local::sql::storage_name(d))))
        .collect();
    cols.extend([
        "measure_name TEXT NOT NULL".to_string(),
        "time INTEGER NOT NULL".into(),
        "\"measure_value::double\" REAL".into(),
    ]);
    conn.execute_batch(&format!("CREATE TABLE v_1 ({});", cols.join(", ")))
        .unwrap();
    let placeholders: Vec<String> = (1..=dims.len() + 3).map(|i| format!("?{i}")).collect();
    let insert = format!("INSERT INTO v_1 VALUES ({})", placeholders.join(", "));
    for (i, s) in universe.iter().enumerate() {
        let mut row: Vec<rusqlite::types::Value> = dims
            .iter()
            .map(|d| match s.get(d) {
                Some(v) => rusqlite::types::Value::Text(v.clone()),
                None => rusqlite::types::Value::Null,
            })
            .collect();
        row.push(rusqlite::types::Value::Text(s["__name__"].clone()));
        row.push(rusqlite::types::Value::Integer(t_ms * 1_000_000));
        row.push(rusqlite::types::Value::Real(i as f64));
        conn.execute(&insert, rusqlite::params_from_iter(row))
            .unwrap();
    }
    conn
}

/// The catalog timestream-local would give for the table.
fn catalog(dims: &[String]) -> OneTable {
    let mut columns: Vec<SqlColumn> = dims
        .iter()
        .map(|d| SqlColumn {
            name: d.clone(),
            ty: ScalarType::Varchar,
        })
        .collect();
    for (name, ty) in [
        ("measure_name", ScalarType::Varchar),
        ("time", ScalarType::Timestamp),
        ("measure_value::double", ScalarType::Double),
    ] {
        columns.push(SqlColumn {
            name: name.into(),
            ty,
        });
    }
    OneTable(TableSchema {
        relation: "\"v_1\"".into(),
        columns,
    })
}

fn query(matchers: Vec<LabelMatcher>, t_ms: i64) -> Query {
    Query {
        start_timestamp_ms: t_ms - 1,
        end_timestamp_ms: t_ms + 1,
        matchers,
        hints: None,
    }
}

#[test]
fn rendered_sql_compiles_and_selects_what_prometheus_selects() {
    let t_ms = 1_700_000_000_000;
    let mut runner = TestRunner::new(PtConfig {
        cases: 1500,
        failure_persistence: None,
        ..PtConfig::default()
    });
    runner
        .run(&arb_case(), |(universe, matchers)| {
            // Series with the same label set are one series.
            let universe: Vec<Series> = universe
                .into_iter()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            let dims = dimensions(&universe);
            let known: BTreeSet<String> = dims.iter().cloned().collect();
            let want = oracle(&universe, &matchers);
            let q = query(matchers.clone(), t_ms);
            let p = plan(&q, DB, TABLE, &known, &PlanOptions::default())
                .map_err(|e| TestCaseError::fail(format!("plan {matchers:?}: {e}")))?;
            let select = match p {
                Plan::Empty => {
                    prop_assert!(want.is_empty(), "planned empty, want {:?}", want);
                    return Ok(());
                }
                Plan::Select(s) => s,
            };
            let sql = render(&select);
            let compiled = compile(&sql, &catalog(&dims), 0)
                .map_err(|e| TestCaseError::fail(format!("{sql}\n→ {e}")))?;
            if dims.iter().any(|d| d.contains('\0')) {
                // SQLite cannot name a column with a NUL; compiling is all we can check.
                return Ok(());
            }
            let conn = load(&universe, &dims, t_ms);
            let mut stmt = conn
                .prepare(&compiled.sql)
                .map_err(|e| TestCaseError::fail(format!("{}: {e}", compiled.sql)))?;
            let names: Vec<String> = compiled.columns.iter().map(|c| c.name.clone()).collect();
            let rows = stmt
                .query_map(rusqlite::params_from_iter(compiled.params.iter()), |r| {
                    let mut s = Series::new();
                    for (i, n) in names.iter().enumerate() {
                        if n == "time" || n == "measure_value::double" {
                            continue;
                        }
                        if let Some(v) = r.get::<_, Option<String>>(i)? {
                            let label = if n == "measure_name" { "__name__" } else { n };
                            s.insert(label.to_string(), v);
                        }
                    }
                    Ok(s)
                })
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| TestCaseError::fail(format!("run {sql}: {e}")))?;
            let got: BTreeSet<Series> = rows.into_iter().collect();
            prop_assert_eq!(got, want, "matchers {:?}\nsql {}", matchers, sql);
            Ok(())
        })
        .unwrap();
}

#[test]
fn unknown_matcher_types_and_empty_names_are_errors() {
    let known: BTreeSet<String> = ["job".to_string()].into();
    for (ty, name) in [(4, "job"), (-1, "job"), (i32::MAX, "x"), (0, "")] {
        let q = query(
            vec![LabelMatcher {
                r#type: ty,
                name: name.into(),
                value: "v".into(),
            }],
            0,
        );
        assert!(
            plan(&q, DB, TABLE, &known, &PlanOptions::default()).is_err(),
            "type {ty} name {name:?}"
        );
    }
}

async fn read(env: &Env, q: Query) -> (u16, BTreeSet<Series>, String) {
    let req = ReadRequest {
        queries: vec![q],
        accepted_response_types: vec![],
    };
    let resp = env
        .http
        .post(format!("{}/read", env.url))
        .basic_auth(AKID, Some(SECRET))
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .body(
            snap::raw::Encoder::new()
                .compress_vec(&req.encode_to_vec())
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.unwrap();
    if status != 200 {
        return (
            status,
            BTreeSet::new(),
            String::from_utf8_lossy(&bytes).into(),
        );
    }
    let raw = snap::raw::Decoder::new().decompress_vec(&bytes).unwrap();
    let rr = ReadResponse::decode(raw.as_slice()).unwrap();
    let got = rr.results[0]
        .timeseries
        .iter()
        .map(|s| {
            s.labels
                .iter()
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect()
        })
        .collect();
    (status, got, String::new())
}

/// Label names and values Timestream can store as dimensions (the write path skips
/// others, which is tested elsewhere): no NUL, not reserved, ≤ 60-byte names.
fn storable(s: &Series) -> bool {
    s.iter()
        .all(|(k, v)| !k.contains('\0') && !v.contains('\0') && v.len() <= 2048)
}

#[test]
fn end_to_end_through_the_connector() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let env = rt.block_on(start());
    let t0 = now_ms() - 3_600_000;
    // Every label name exists as a column before the first read: the reader caches a
    // table's columns (refreshing on an unknown label at most once a second), so a
    // label first written between two reads less than a second apart is not yet seen.
    let seed: Vec<(&str, &str)> = NAMES
        .iter()
        .filter(|n| !n.contains('\0'))
        .map(|n| (*n, "seed"))
        .chain([("__name__", "seed")])
        .collect();
    let (st, body) = rt.block_on(env.write(&request(vec![series(&seed, &[(0.0, t0 - 60_000)])])));
    assert!(st < 300, "seed write {st}: {body}");
    let case = std::sync::atomic::AtomicI64::new(0);
    let mut runner = TestRunner::new(PtConfig {
        cases: 24,
        failure_persistence: None,
        ..PtConfig::default()
    });
    runner
        .run(&arb_case(), |(universe, matchers)| {
            let universe: Vec<Series> = universe
                .into_iter()
                .filter(storable)
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            // Each case at its own millisecond: earlier cases' series stay out of range.
            let t = t0 + case.fetch_add(10, std::sync::atomic::Ordering::Relaxed);
            let ts = universe
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let labels: Vec<(&str, &str)> =
                        s.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                    series(&labels, &[(i as f64, t)])
                })
                .collect();
            rt.block_on(async {
                let (st, body) = env.write(&request(ts)).await;
                prop_assert!(st < 300, "write {st}: {body}");
                let want = oracle(&universe, &matchers);
                let (st, got, body) = read(&env, query(matchers.clone(), t)).await;
                prop_assert_eq!(st, 200, "read {:?}: {}", matchers, body);
                prop_assert_eq!(got, want, "matchers {:?}", matchers);
                Ok(())
            })
        })
        .unwrap();
    rt.block_on(env.shutdown());
}
