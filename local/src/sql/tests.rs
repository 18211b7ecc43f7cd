//! End-to-end tests: query text -> compile -> run on an in-memory SQLite view laid out like the
//! store's (series table joined to points, typeless DOUBLE column) -> rendered rows.

use super::*;
use rusqlite::Connection;

const T0_MS: i64 = 1_700_000_000_000;
const T0: i64 = T0_MS * 1_000_000;
const H: i64 = 3_600_000_000_000;
const NOW: i64 = T0 + 2 * H;

struct Db {
    conn: Connection,
}

impl Catalog for Db {
    fn table(&self, database: &str, table: &str) -> Result<TableSchema, CatalogError> {
        if database != "db" {
            return Err(CatalogError::DatabaseNotFound);
        }
        if table != "metrics" {
            return Err(CatalogError::TableNotFound);
        }
        let c = |n: &str, ty| Column { name: n.into(), ty };
        Ok(TableSchema {
            relation: "\"v_1\"".into(),
            columns: vec![
                c("host", ScalarType::Varchar),
                c("region", ScalarType::Varchar),
                c("odd\"dim", ScalarType::Varchar),
                c("measure_name", ScalarType::Varchar),
                c("time", ScalarType::Timestamp),
                c("measure_value::double", ScalarType::Double),
                c("measure_value::bigint", ScalarType::Bigint),
                c("measure_value::varchar", ScalarType::Varchar),
                c("measure_value::boolean", ScalarType::Boolean),
            ],
        })
    }
}

fn db() -> Db {
    let conn = Connection::open_in_memory().unwrap();
    register_functions(&conn).unwrap();
    conn.execute_batch(
        r#"
        CREATE TABLE series(id INTEGER PRIMARY KEY, measure_name TEXT NOT NULL, host TEXT,
                            region TEXT, "odd""dim" TEXT);
        CREATE INDEX series_mn ON series(measure_name, host);
        CREATE TABLE points(series_id INTEGER NOT NULL, time INTEGER NOT NULL, d, b INTEGER,
                            v TEXT, bo INTEGER, PRIMARY KEY(series_id, time)) WITHOUT ROWID;
        CREATE VIEW v_1 AS SELECT s.host AS "host", s.region AS "region", s."odd""dim" AS "odd""dim",
            s.measure_name AS "measure_name", p.time AS "time", p.d AS "measure_value::double",
            p.b AS "measure_value::bigint", p.v AS "measure_value::varchar",
            p.bo AS "measure_value::boolean"
            FROM series s JOIN points p ON p.series_id = s.id;
        INSERT INTO series VALUES (1, 'cpu', 'a', 'eu', NULL), (2, 'cpu', 'b', NULL, NULL),
            (3, 'mem', 'a', 'us', NULL), (4, 'flag', 'x''y\z', NULL, 'q');
        "#,
    )
    .unwrap();
    let mut ins = conn
        .prepare("INSERT INTO points VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
        .unwrap();
    use rusqlite::types::Value as V;
    let rows: Vec<(i64, i64, V, V, V, V)> = vec![
        (1, T0, V::Real(1.5), V::Null, V::Null, V::Null),
        (1, T0 + H, V::Real(2.5), V::Null, V::Null, V::Null),
        (2, T0, V::Real(-0.0), V::Null, V::Null, V::Null),
        (2, T0 + H / 2, V::Real(1e300), V::Null, V::Null, V::Null),
        (3, T0, V::Null, V::Integer(42), V::Null, V::Null),
        (3, T0 + 1_000_000, V::Null, V::Integer(-7), V::Null, V::Null),
        (
            4,
            T0,
            V::Null,
            V::Null,
            V::Text("hello\nworld".into()),
            V::Integer(1),
        ),
    ];
    for (s, t, d, b, v, bo) in rows {
        ins.execute(rusqlite::params![s, t, d, b, v, bo]).unwrap();
    }
    drop(ins);
    Db { conn }
}

type Rows = Vec<Vec<String>>;
type Cols = Vec<(String, &'static str)>;

fn run(db: &Db, q: &str) -> Result<(Cols, Rows), QueryError> {
    let c = compile(q, db, NOW)?;
    let mut st = db
        .conn
        .prepare(&c.sql)
        .unwrap_or_else(|e| panic!("{q}\n{}\n{e}", c.sql));
    let n = c.columns.len();
    let mut rows = st
        .query(rusqlite::params_from_iter(c.params.iter()))
        .unwrap_or_else(|e| panic!("{q}\n{}\n{e}", c.sql));
    let mut out = Vec::new();
    loop {
        let row = match rows.next() {
            Ok(Some(r)) => r,
            Ok(None) => break,
            Err(e) => return Err(runtime_error(&e)),
        };
        let mut r = Vec::new();
        for i in 0..n {
            r.push(match render(c.columns[i].ty, row.get_ref(i).unwrap()) {
                Datum::Scalar(s) => s,
                Datum::Null => "NULL".into(),
            });
        }
        out.push(r);
    }
    let cols = c
        .columns
        .iter()
        .map(|c| (c.name.clone(), c.ty.as_str()))
        .collect();
    Ok((cols, out))
}

fn rows(db: &Db, q: &str) -> Vec<String> {
    run(db, q)
        .unwrap_or_else(|e| panic!("{q}: {e}"))
        .1
        .into_iter()
        .map(|r| r.join("|"))
        .collect()
}

fn err(db: &Db, q: &str) -> String {
    match run(db, q) {
        Err(QueryError::Validation(m)) => m,
        other => panic!("{q}: expected a validation error, got {other:?}"),
    }
}

#[test]
fn result_rows() {
    let db = db();
    let cases: &[(&str, &[&str])] = &[
        (
            r#"SELECT count(*) FROM "db"."metrics""#,
            &["7"],
        ),
        (
            r#"SELECT host, time, measure_value::double FROM "db"."metrics" WHERE measure_name = 'cpu' ORDER BY time, host"#,
            &[
                "a|2023-11-14 22:13:20.000000000|1.5",
                "b|2023-11-14 22:13:20.000000000|-0.0",
                "b|2023-11-14 22:43:20.000000000|1.0E300",
                "a|2023-11-14 23:13:20.000000000|2.5",
            ],
        ),
        (
            r#"SELECT "measure_value::double" FROM db.metrics WHERE measure_name = 'cpu' AND time BETWEEN from_milliseconds(1700000000000) AND from_milliseconds(1700001800000) ORDER BY 1"#,
            &["-0.0", "1.5", "1.0E300"],
        ),
        (
            r#"SELECT host, region FROM "db"."metrics" WHERE region IS NULL AND measure_name <> 'flag'"#,
            &["b|NULL", "b|NULL"],
        ),
        (
            r#"SELECT host, count(*) AS n, avg(measure_value::double), sum("measure_value::bigint"), min(time), max(measure_value::double) FROM "db"."metrics" WHERE measure_name IN ('cpu', 'mem') GROUP BY host ORDER BY host"#,
            &[
                "a|4|2.0|35|2023-11-14 22:13:20.000000000|2.5",
                "b|2|5.0E299|NULL|2023-11-14 22:13:20.000000000|1.0E300",
            ],
        ),
        (
            r#"SELECT measure_name, count(*) FROM "db"."metrics" GROUP BY 1 HAVING count(*) > 1 ORDER BY 2 DESC, 1"#,
            &["cpu|4", "mem|2"],
        ),
        (
            r#"SELECT host FROM "db"."metrics" WHERE regexp_like(host, '^[ab]$') AND NOT (measure_name = 'mem') ORDER BY host DESC LIMIT 2"#,
            &["b", "b"],
        ),
        (
            r#"SELECT DISTINCT host FROM "db"."metrics" WHERE regexp_like(host, 'y\\') OR host LIKE 'b%' ORDER BY host"#,
            &["b", "x'y\\z"],
        ),
        (
            r#"SELECT host FROM "db"."metrics" WHERE host = 'x''y\z'"#,
            &["x'y\\z"],
        ),
        (
            r#"SELECT "odd""dim", "measure_value::varchar", "measure_value::boolean" FROM "db"."metrics" WHERE "odd""dim" IS NOT NULL"#,
            &["q|hello\nworld|true"],
        ),
        (
            r#"SELECT count(*) FROM "db"."metrics" WHERE regexp_like("measure_value::varchar", '^hello$')"#,
            &["0"],
        ),
        (
            r#"SELECT count(*) FROM "db"."metrics" WHERE regexp_like("measure_value::varchar", '(?s)^hello.world$')"#,
            &["1"],
        ),
        (
            r#"SELECT count(*) FROM "db"."metrics" WHERE time >= now() - 1h"#,
            &["1"],
        ),
        (
            r#"SELECT count(*) FROM "db"."metrics" WHERE time >= ago(2h) AND time < ago(61m)"#,
            &["6"],
        ),
        (
            r#"SELECT bin(time, 1h) AS b, count(*) FROM "db"."metrics" GROUP BY bin(time, 1h) ORDER BY b"#,
            &[
                "2023-11-14 22:00:00.000000000|6",
                "2023-11-14 23:00:00.000000000|1",
            ],
        ),
        (
            r#"SELECT to_milliseconds(time), to_unixtime(time), to_nanoseconds(time) FROM "db"."metrics" WHERE measure_name = 'mem' ORDER BY time"#,
            &[
                "1700000000000|1.7E9|1700000000000000000",
                "1700000000001|1.700000000001E9|1700000000001000000",
            ],
        ),
        (
            "SELECT 1, 2.5, 'a''b', TRUE, NULL, 1 + 2 * 3, 7 / 2, 7.0 / 2, -(3), 2e3",
            &["1|2.5|a'b|true|NULL|7|3|3.5|-3|2000.0"],
        ),
        (
            r#"SELECT "measure_value::bigint" % 5, "measure_value::bigint" / 5, "measure_value::bigint" % 2.5 FROM "db"."metrics" WHERE measure_name = 'mem' ORDER BY time"#,
            &["2|8|2.0", "-2|-1|-2.0"],
        ),
        (
            "SELECT from_milliseconds(1), from_unixtime(1.5), from_nanoseconds(5), now(), current_timestamp, ago(1d)",
            &["1970-01-01 00:00:00.001000000|1970-01-01 00:00:01.500000000|1970-01-01 00:00:00.000000005|2023-11-15 00:13:20.000000000|2023-11-15 00:13:20.000000000|2023-11-14 00:13:20.000000000"],
        ),
        (
            "SELECT date_trunc('hour', from_milliseconds(1700000000000)), date_trunc('month', TIMESTAMP '2024-02-29 10:00:00'), date_trunc('week', TIMESTAMP '2024-03-02 10:00:00')",
            &["2023-11-14 22:00:00.000000000|2024-02-01 00:00:00.000000000|2024-02-26 00:00:00.000000000"],
        ),
        (
            "SELECT 'abc' LIKE 'a_c', 'abc' LIKE 'A%', 'a%c' LIKE 'a\\%c' ESCAPE '\\', 'x' NOT LIKE '%y%'",
            &["true|false|true|true"],
        ),
        (
            "SELECT 3 BETWEEN 1 AND 5, 3 NOT IN (1, 2), NULL IS NULL, 1 = 1.0, 'b' > 'a' AND 2 >= 3 OR 1 != 2",
            &["true|true|true|true|true"],
        ),
        (
            "SELECT CASE WHEN 1 > 2 THEN 'x' ELSE 'y' END, CAST('1.5' AS double), CAST(2.5 AS bigint), CAST(0.1 AS varchar), coalesce(NULL, 3)",
            &["y|1.5|3|0.1|3"],
        ),
        (
            r#"SELECT * FROM "db"."metrics" WHERE measure_name = 'mem' ORDER BY time LIMIT 1"#,
            &["a|us|NULL|mem|2023-11-14 22:13:20.000000000|NULL|42|NULL|NULL"],
        ),
        (
            // A per-row escape character with a constant pattern.
            r#"SELECT measure_name LIKE 'c%' ESCAPE CASE WHEN host = 'a' THEN '!' ELSE 'c' END FROM "db"."metrics" WHERE measure_name = 'cpu' ORDER BY host"#,
            &["true", "true", "false", "false"],
        ),
        (
            r#"SELECT count(*) FROM "db"."metrics" HAVING count(*) > 100"#,
            &[],
        ),
        (
            r#"SELECT count(DISTINCT host), count(region) FROM "db"."metrics""#,
            &["3|4"],
        ),
        (
            r#"SELECT m.host FROM "db"."metrics" AS m WHERE m.measure_name = 'flag'"#,
            &["x'y\\z"],
        ),
        (
            "SELECT from_milliseconds(1700000000000) + 1h - 30m, TIMESTAMP '2024-01-01 00:00:00' - TIMESTAMP '2023-12-31 23:00:00'",
            &["2023-11-14 22:43:20.000000000|0 01:00:00.000000000"],
        ),
        (
            "SELECT year(TIMESTAMP '2024-02-29 13:14:15.123'), month(TIMESTAMP '2024-02-29'), day(TIMESTAMP '2024-02-29'), hour(TIMESTAMP '2024-02-29 13:14:15.123'), minute(TIMESTAMP '2024-02-29 13:14:15.123'), second(TIMESTAMP '2024-02-29 13:14:15.123'), millisecond(TIMESTAMP '2024-02-29 13:14:15.123'), day_of_week(TIMESTAMP '2024-02-29'), day_of_year(TIMESTAMP '2024-02-29'), week(TIMESTAMP '2021-01-03'), quarter(TIMESTAMP '2024-08-01')",
            &["2024|2|29|13|14|15|123|4|60|53|3"],
        ),
        (
            "SELECT date_add('month', 1, TIMESTAMP '2024-01-31 10:00:00'), date_add('hour', -2, TIMESTAMP '2024-01-01 01:00:00'), date_add('year', 1, TIMESTAMP '2024-02-29'), date_diff('day', TIMESTAMP '2024-01-01', TIMESTAMP '2024-03-01'), date_diff('month', TIMESTAMP '2024-01-31', TIMESTAMP '2024-02-29'), date_diff('month', TIMESTAMP '2024-01-15', TIMESTAMP '2024-03-15')",
            &["2024-02-29 10:00:00.000000000|2023-12-31 23:00:00.000000000|2025-02-28 00:00:00.000000000|60|1|2"],
        ),
        (
            r#"SELECT hour(time), count(*) FROM "db"."metrics" GROUP BY hour(time) ORDER BY 1"#,
            &["22|6", "23|1"],
        ),
        (
            "SELECT parse_duration('42.8ms'), parse_duration('1d') + 1h, to_milliseconds(parse_duration('1.5s'))",
            &["0 00:00:00.042800000|1 01:00:00.000000000|1500"],
        ),
        (
            // Timestream's documented example value for to_unixtime.
            "SELECT to_unixtime(from_milliseconds(1655487883771))",
            &["1.6554878837710001E9"],
        ),
        (
            // The shape the connector's remote-read sends.
            r#"SELECT "host", "region", measure_name, time, "measure_value::double" FROM "db"."metrics" WHERE "measure_value::double" IS NOT NULL AND measure_name = 'cpu' AND (regexp_like("host", '\A(?:a|b)\z')) AND NOT ("region" IS NOT NULL AND "region" = 'us') AND time >= from_milliseconds(1700000000000) AND time <= from_milliseconds(1700003600000) ORDER BY CASE WHEN "host" IS NOT NULL THEN 1 ELSE 2 END, "host", measure_name, CASE WHEN "region" IS NOT NULL THEN 1 ELSE 0 END, "region", time"#,
            &[
                "a|eu|cpu|2023-11-14 22:13:20.000000000|1.5",
                "a|eu|cpu|2023-11-14 23:13:20.000000000|2.5",
                "b|NULL|cpu|2023-11-14 22:13:20.000000000|-0.0",
                "b|NULL|cpu|2023-11-14 22:43:20.000000000|1.0E300",
            ],
        ),
        (
            // NULLs sort last in both directions, as in Trino.
            r#"SELECT region FROM "db"."metrics" WHERE measure_name <> 'flag' ORDER BY region DESC"#,
            &["us", "us", "eu", "eu", "NULL", "NULL"],
        ),
        (
            r#"SELECT region FROM "db"."metrics" WHERE measure_name = 'cpu' ORDER BY region NULLS FIRST"#,
            &["NULL", "NULL", "eu", "eu"],
        ),
    ];
    for (q, want) in cases {
        assert_eq!(rows(&db, q), *want, "{q}");
    }
}

/// HAVING without GROUP BY makes every row one group (Trino's global aggregation), also when
/// nothing aggregates: SQLite refused such SQL ("HAVING clause on a non-aggregate query", an
/// internal error). Found by `token_soup_never_panics_and_emits_valid_sql` as
/// `SELECT 'a' HAVING TRUE`.
#[test]
fn having_alone_makes_one_group_of_all_rows() {
    let db = db();
    let cases: &[(&str, &[&str])] = &[
        ("SELECT 'a' HAVING TRUE", &["a"]),
        ("SELECT 'a' HAVING FALSE", &[]),
        ("SELECT 1 HAVING NULL", &[]),
        (r#"SELECT 'a' FROM "db"."metrics" HAVING TRUE"#, &["a"]),
        (
            r#"SELECT 'a' FROM "db"."metrics" WHERE host = 'nobody' HAVING TRUE"#,
            &["a"],
        ),
        (
            r#"SELECT count(*) FROM "db"."metrics" HAVING count(*) > 1"#,
            &["7"],
        ),
        (
            r#"SELECT count(*) FROM "db"."metrics" HAVING count(*) > 7"#,
            &[],
        ),
        (
            r#"SELECT 1 FROM "db"."metrics" HAVING count(*) > 1"#,
            &["1"],
        ),
        (
            r#"SELECT 1 FROM "db"."metrics" HAVING max(measure_value::double) < 0"#,
            &[],
        ),
        (
            r#"SELECT host FROM "db"."metrics" GROUP BY host HAVING host <> 'a' ORDER BY host"#,
            &["b", "x'y\\z"],
        ),
    ];
    for (q, want) in cases {
        assert_eq!(rows(&db, q), *want, "{q}");
    }
}

#[test]
fn column_info_types_and_names() {
    let db = db();
    let (cols, _) = run(
        &db,
        r#"SELECT time, measure_value::double, count(*), avg("measure_value::bigint"), sum(measure_value::bigint), host AS h, from_milliseconds(1), 1, 10000000000, 1.5, 'x', true, to_milliseconds(time), bin(time, 1m), NULL
           FROM "db"."metrics" GROUP BY time, measure_value::double, host"#,
    )
    .unwrap();
    let want: Vec<(String, &str)> = [
        ("time", "TIMESTAMP"),
        ("measure_value::double", "DOUBLE"),
        ("_col2", "BIGINT"),
        ("_col3", "DOUBLE"),
        ("_col4", "BIGINT"),
        ("h", "VARCHAR"),
        ("_col6", "TIMESTAMP"),
        ("_col7", "INTEGER"),
        ("_col8", "BIGINT"),
        ("_col9", "DOUBLE"),
        ("_col10", "VARCHAR"),
        ("_col11", "BOOLEAN"),
        ("_col12", "BIGINT"),
        ("_col13", "TIMESTAMP"),
        ("_col14", "UNKNOWN"),
    ]
    .iter()
    .map(|(n, t)| (n.to_string(), *t))
    .collect();
    assert_eq!(cols, want);
    let (cols, _) = run(&db, r#"SELECT * FROM "db"."metrics""#).unwrap();
    let names: Vec<&str> = cols.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "host",
            "region",
            "odd\"dim",
            "measure_name",
            "time",
            "measure_value::double",
            "measure_value::bigint",
            "measure_value::varchar",
            "measure_value::boolean"
        ]
    );
}

#[test]
fn validation_errors() {
    let db = db();
    let cases: &[(&str, &str)] = &[
        (
            r#"SELECT foo FROM "db"."metrics""#,
            "line 1:8: Column 'foo' does not exist",
        ),
        (
            "  SHOW TABLES FROM db",
            "line 1:3: SHOW statements are not supported by timestream-local",
        ),
        (
            "show databases",
            "line 1:1: SHOW statements are not supported by timestream-local",
        ),
        (
            "SELECT host\nFROM \"db\".\"metrics\"\nWHERE   \"newlabel\" = 'x'",
            "line 3:9: Column 'newlabel' does not exist",
        ),
        (
            r#"SELECT * FROM "nodb"."metrics""#,
            "Requested database 'nodb' not found for identifier 'nodb.metrics' at line 1:15",
        ),
        (
            r#"SELECT * FROM "db"."nope""#,
            "Requested table 'nope' not found for identifier 'db.nope' at line 1:15",
        ),
        (
            r#"SELECT * FROM "db"."metrics" WHERE host = 1"#,
            "line 1:41: '=' cannot be applied to varchar, integer",
        ),
        (
            r#"SELECT * FROM "db"."metrics" WHERE time > 5"#,
            "line 1:41: '>' cannot be applied to timestamp, integer",
        ),
        (
            r#"SELECT * FROM "db"."metrics" WHERE host"#,
            "line 1:36: WHERE clause must evaluate to a boolean: actual type varchar",
        ),
        (
            r#"SELECT host, count(*) FROM "db"."metrics""#,
            "line 1:8: 'host' must be an aggregate expression or appear in GROUP BY clause",
        ),
        (
            r#"SELECT count(*) FROM "db"."metrics" WHERE count(*) > 1"#,
            "line 1:52: WHERE clause cannot contain aggregations, window functions or grouping operations: [count(*)]",
        ),
        (
            r#"SELECT nope(1)"#,
            "line 1:8: Function 'nope' not registered",
        ),
        (
            r#"SELECT from_milliseconds('x')"#,
            "line 1:8: Unexpected parameters (varchar) for function from_milliseconds. Expected: from_milliseconds(bigint)",
        ),
        (
            r#"SELECT * FROM "db"."metrics" WHERE regexp_like(host, '(?P<n>a)')"#,
            "line 1:36: Invalid regex pattern: Unknown inline modifier near index 2",
        ),
        (
            r#"SELECT * FROM "db"."metrics" ORDER BY 12"#,
            "line 1:39: ORDER BY position 12 is not in select list",
        ),
        ("SELECT 99999999999999999999", "line 1:8: Invalid numeric literal: 99999999999999999999"),
        ("SELECT 2147483647 + 1", "line 1:19: integer arithmetic overflow"),
        (
            r#"SELECT DISTINCT host FROM "db"."metrics" ORDER BY region"#,
            "line 1:51: For SELECT DISTINCT, ORDER BY expressions must appear in select list",
        ),
        ("SELECT parse_duration('1x')", "line 1:8: Invalid duration: 1x"),
        (
            r#"SELECT host FROM "db"."metrics" HAVING host = 'a'"#,
            "line 1:8: 'host' must be an aggregate expression or appear in GROUP BY clause",
        ),
        ("SELECT from_milliseconds(-1)", "line 1:8: Negative timestamps are not supported"),
        ("SELECT from_milliseconds(0) - 1h", "line 1:29: Negative timestamps are not supported"),
        (r#"SELECT * FROM metrics"#, "line 1:15: Schema must be specified when session schema is not set"),
        ("SELECT 1 +", "line 1:11: mismatched input '<EOF>'. Expecting: <expression>"),
    ];
    for (q, want) in cases {
        assert_eq!(err(&db, q), *want, "{q}");
    }
}

#[test]
fn literals_are_bound_not_pasted() {
    let db = db();
    let c = compile(
        r#"SELECT host FROM "db"."metrics" WHERE host = 'x''); DROP TABLE points; --' AND time > from_milliseconds(5)"#,
        &db,
        NOW,
    )
    .unwrap();
    assert!(!c.sql.contains("DROP"), "{}", c.sql);
    assert_eq!(c.params.len(), 2);
    assert_eq!(c.params[1], rusqlite::types::Value::Integer(5_000_000));
}

#[test]
fn time_and_measure_predicates_use_indexes() {
    let db = db();
    let c = compile(
        r#"SELECT host, time, measure_value::double FROM "db"."metrics" WHERE measure_name = 'cpu' AND host = 'a' AND time BETWEEN from_milliseconds(1700000000000) AND from_milliseconds(1700003600000) ORDER BY time"#,
        &db,
        NOW,
    )
    .unwrap();
    let mut st = db
        .conn
        .prepare(&format!("EXPLAIN QUERY PLAN {}", c.sql))
        .unwrap();
    let plan: Vec<String> = st
        .query_map(rusqlite::params_from_iter(c.params.iter()), |r| {
            r.get::<_, String>(3)
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(
        plan.iter().all(|l| !l.starts_with("SCAN")),
        "full scan in plan: {plan:?}\n{}",
        c.sql
    );
    assert!(
        plan.iter().any(|l| l.contains("time>? AND time<?")),
        "{plan:?}"
    );
}

#[test]
fn run_time_failures_are_validation_errors() {
    let db = db();
    assert_eq!(err(&db, "SELECT 1 / 0"), "line 1:10: Division by zero");
    for (q, want) in [
        (
            r#"SELECT "measure_value::bigint" / ("measure_value::bigint" - "measure_value::bigint") FROM "db"."metrics" WHERE measure_name = 'mem'"#,
            "Division by zero",
        ),
        (
            r#"SELECT "measure_value::bigint" % 0 FROM "db"."metrics" WHERE measure_name = 'mem'"#,
            "Division by zero",
        ),
        (
            r#"SELECT CAST(host AS bigint) FROM "db"."metrics" WHERE host = 'a'"#,
            "Cannot cast 'a' to BIGINT",
        ),
        (
            r#"SELECT count(*) FROM "db"."metrics" WHERE regexp_like(host, host || '(')"#,
            "Invalid regex pattern",
        ),
    ] {
        let m = err(&db, q);
        assert!(m.starts_with(want), "{q}: {m}");
    }
    // Errors that are not the query's fault stay internal.
    let e = rusqlite::Error::InvalidColumnIndex(3);
    assert!(matches!(runtime_error(&e), QueryError::Internal(_)));
}

#[test]
fn deepest_accepted_expressions_run_on_half_a_default_thread_stack() {
    // Worker threads get 2 MiB by default; the deepest accepted query must fit in half of it.
    std::thread::Builder::new()
        .stack_size(1 << 20)
        .spawn(deepest_accepted_expressions)
        .unwrap()
        .join()
        .unwrap();
}

fn deepest_accepted_expressions() {
    let db = db();
    let sum = format!(
        r#"SELECT "measure_value::bigint"{} FROM "db"."metrics" WHERE measure_name = 'mem' ORDER BY 1"#,
        " + 1".repeat(190)
    );
    assert_eq!(rows(&db, &sum), ["183", "232"]);
    let parens = format!("SELECT {}1{}", "(".repeat(60), ")".repeat(60));
    assert_eq!(rows(&db, &parens), ["1"]);
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    const VOCAB: &[&str] = &[
        "*",
        "count(*)",
        "host",
        "region",
        "time",
        "measure_value::double",
        "\"measure_value::bigint\"",
        "measure_name",
        "FROM \"db\".\"metrics\"",
        "WHERE",
        "=",
        "<>",
        "<",
        ">=",
        "'a'",
        "'it''s'",
        "1",
        "0",
        "1.5",
        "2e3",
        "AND",
        "OR",
        "NOT",
        "(",
        ")",
        ",",
        "GROUP BY",
        "ORDER BY",
        "HAVING",
        "LIMIT",
        "1h",
        "10ms",
        "ago(",
        "now()",
        "bin(",
        "BETWEEN",
        "IN",
        "IS NULL",
        "IS NOT NULL",
        "LIKE",
        "regexp_like(",
        "-",
        "+",
        "*",
        "/",
        "%",
        "DESC",
        "AS x",
        "x",
        "DISTINCT",
        "sum(",
        "avg(",
        "min(",
        "max(",
        "from_milliseconds(",
        "to_milliseconds(",
        "CASE WHEN",
        "THEN",
        "ELSE",
        "END",
        "CAST(",
        "AS double",
        "TRUE",
        "NULL",
        "||",
        "date_trunc('hour',",
        "TIMESTAMP '2023-11-14 22:00:00'",
        "'^(a|b)$'",
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        /// Whatever the text, compile answers without panicking, and SQL it accepts is valid
        /// SQLite: running it succeeds or fails only with a query-caused (validation) error.
        #[test]
        fn token_soup_never_panics_and_emits_valid_sql(
            idx in proptest::collection::vec(0..VOCAB.len(), 1..24)
        ) {
            DB.with(|db| soup_case(db, &idx))?;
        }

        #[test]
        fn arbitrary_text_never_panics(s in "\\PC{0,80}") {
            DB.with(|db| {
                let _ = compile(&s, db, NOW);
                let _ = compile(&format!("SELECT {s} FROM \"db\".\"metrics\""), db, NOW);
            });
        }
    }

    thread_local! {
        // One database per test thread: building it per case would dominate the run time.
        static DB: Db = db();
    }

    fn soup_case(db: &Db, idx: &[usize]) -> Result<(), TestCaseError> {
        {
            let q = format!(
                "SELECT {}",
                idx.iter().map(|&i| VOCAB[i]).collect::<Vec<_>>().join(" ")
            );
            if let Ok(c) = compile(&q, db, NOW) {
                let r = db.conn.prepare(&c.sql).and_then(|mut st| {
                    let mut rows = st.query(rusqlite::params_from_iter(c.params.iter()))?;
                    while let Some(row) = rows.next()? {
                        for (i, col) in c.columns.iter().enumerate() {
                            let _ = render(col.ty, row.get_ref(i)?);
                        }
                    }
                    Ok(())
                });
                if let Err(e) = r {
                    prop_assert!(
                        matches!(runtime_error(&e), QueryError::Validation(_)),
                        "{q}\n{}\n{e}",
                        c.sql
                    );
                }
            }
        }
        Ok(())
    }
}

/// Random well-formed queries (deterministic generator): every query the engine accepts must
/// be valid SQLite whose only run-time failures are query-caused, and a fair share must compile.
#[test]
fn generated_queries_compile_to_valid_sqlite() {
    struct G(u64);
    impl G {
        fn n(&mut self, k: usize) -> usize {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((self.0 >> 33) % k as u64) as usize
        }
        fn pick<'a>(&mut self, v: &[&'a str]) -> &'a str {
            v[self.n(v.len())]
        }
        fn expr(&mut self, d: u32) -> String {
            const LEAVES: &[&str] = &[
                "host",
                "region",
                "time",
                "measure_name",
                "measure_value::double",
                "\"measure_value::bigint\"",
                "\"measure_value::boolean\"",
                "1",
                "-2",
                "1.5",
                "'a'",
                "'b%'",
                "TRUE",
                "NULL",
                "1h",
                "now()",
                "ago(30m)",
                "TIMESTAMP '2023-11-14 22:30:00'",
                "from_milliseconds(1700000000000)",
            ];
            if d == 0 || self.n(3) == 0 {
                return self.pick(LEAVES).to_string();
            }
            let a = self.expr(d - 1);
            let b = self.expr(d - 1);
            match self.n(16) {
                0 => format!("({a} {} {b})", self.pick(&["=", "<>", "<", ">=", "!="])),
                1 => format!("({a} {} {b})", self.pick(&["+", "-", "*", "/", "%"])),
                2 => format!("({a} {} {b})", self.pick(&["AND", "OR"])),
                3 => format!("NOT {a}"),
                4 => format!("{a} BETWEEN {b} AND {}", self.expr(d - 1)),
                5 => format!("{a} IN ({b}, {})", self.expr(d - 1)),
                6 => format!("{a} IS {}NULL", self.pick(&["", "NOT "])),
                7 => format!("{a} LIKE {b}"),
                8 => format!("CASE WHEN {a} THEN {b} ELSE {} END", self.expr(d - 1)),
                9 => format!(
                    "CAST({a} AS {})",
                    self.pick(&["double", "bigint", "varchar", "boolean"])
                ),
                10 => format!("bin({a}, {})", self.pick(&["1h", "1m", "10ms"])),
                11 => format!(
                    "{}({a})",
                    self.pick(&[
                        "to_milliseconds",
                        "from_milliseconds",
                        "to_unixtime",
                        "from_unixtime",
                        "abs",
                        "length",
                        "lower"
                    ])
                ),
                12 => format!(
                    "regexp_like({a}, {})",
                    self.pick(&["'^a'", "'(?i)B$'", "'\\d'", "host"])
                ),
                13 => format!("{}({a})", self.pick(&["count", "sum", "avg", "min", "max"])),
                14 => format!("coalesce({a}, {b})"),
                _ => format!("({a} || {b})"),
            }
        }
    }
    let db = db();
    let mut g = G(42);
    let (mut ok, total) = (0, 10_000);
    for _ in 0..total {
        let mut q = format!("SELECT {}, {}", g.expr(3), g.expr(2));
        q += " FROM \"db\".\"metrics\"";
        if g.n(2) == 0 {
            q += &format!(" WHERE {}", g.expr(3));
        }
        if g.n(3) == 0 {
            q += &format!(" GROUP BY {}", g.expr(1));
        }
        if g.n(2) == 0 {
            q += &format!(
                " ORDER BY {}",
                g.pick(&["1", "2 DESC", "time", "host NULLS FIRST"])
            );
        }
        if g.n(3) == 0 {
            q += " LIMIT 3";
        }
        let Ok(c) = compile(&q, &db, NOW) else {
            continue;
        };
        ok += 1;
        let r = db.conn.prepare(&c.sql).and_then(|mut st| {
            let mut rows = st.query(rusqlite::params_from_iter(c.params.iter()))?;
            while let Some(row) = rows.next()? {
                for (i, col) in c.columns.iter().enumerate() {
                    let _ = render(col.ty, row.get_ref(i)?);
                }
            }
            Ok(())
        });
        if let Err(e) = r {
            assert!(
                matches!(runtime_error(&e), QueryError::Validation(_)),
                "{q}\n{}\n{e}",
                c.sql
            );
        }
    }
    assert!(
        ok * 30 > total,
        "only {ok} of {total} generated queries compiled"
    );
}
