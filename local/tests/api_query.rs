//! Query through the real SDK: value fidelity, ColumnInfo, NullValue, errors, pagination.
mod common;

use std::collections::HashSet;

use aws_sdk_timestreamquery as tsq;
use aws_sdk_timestreamwrite as tsw;
use common::*;

async fn setup(db: &str, table: &str) -> (Local, tsw::Client, tsq::Client) {
    let l = start().await;
    let w = write_client(&l.server.url());
    create_db_table(&w, db, table).await;
    let q = query_client(&l.server.url());
    (l, w, q)
}

async fn write_all(w: &tsw::Client, db: &str, table: &str, records: Vec<Record>) {
    for chunk in records.chunks(100) {
        w.write_records()
            .database_name(db)
            .table_name(table)
            .set_records(Some(chunk.to_vec()))
            .send()
            .await
            .expect("write");
    }
}

fn scalar(d: &tsq::types::Datum) -> Option<&str> {
    d.scalar_value()
}

/// All rows of a query, following NextToken.
async fn query_all(
    q: &tsq::Client,
    sql: &str,
    max_rows: Option<i32>,
) -> (Vec<tsq::types::Row>, Vec<tsq::types::ColumnInfo>, usize) {
    let mut rows = Vec::new();
    let mut cols;
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let out = q
            .query()
            .query_string(sql)
            .set_max_rows(max_rows)
            .set_next_token(token.clone())
            .send()
            .await
            .expect("query");
        pages += 1;
        if let Some(m) = max_rows {
            assert!(out.rows().len() <= m as usize);
        }
        cols = out.column_info().to_vec();
        rows.extend(out.rows().iter().cloned());
        token = out.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    (rows, cols, pages)
}

#[tokio::test]
async fn tricky_values_round_trip_exactly() {
    let (l, w, q) = setup("qdb", "tricky").await;
    let t = now_ms() - 60_000;
    let dims = [
        "it's",
        "say \"hi\"",
        r"back\slash\\",
        "unicodé ✓ 日本 🙂",
        "line1\nline2\r\n\ttab",
        "%_like_chars%",
        "''",
    ];
    let doubles = [
        "5e-324",
        "1e-300",
        "-0.0",
        "0.1",
        "1e300",
        "9007199254740993",
        "-1.7976931348623157e308",
        "123456789.125",
        "1",
        "0",
    ];
    let mut records = Vec::new();
    for (i, d) in dims.iter().enumerate() {
        records.push(rec("dimval", "1", t + i as i64, &[("host", d)]));
    }
    for (i, v) in doubles.iter().enumerate() {
        records.push(rec("dbl", v, t + i as i64, &[("host", "x")]));
    }
    write_all(&w, "qdb", "tricky", records).await;

    let (rows, cols, _) = query_all(
        &q,
        r#"SELECT "host" FROM "qdb"."tricky" WHERE measure_name = 'dimval' ORDER BY time"#,
        None,
    )
    .await;
    assert_eq!(cols[0].name(), Some("host"));
    let got: Vec<&str> = rows.iter().map(|r| scalar(&r.data()[0]).unwrap()).collect();
    assert_eq!(got, dims.to_vec());

    let (rows, cols, _) = query_all(
        &q,
        r#"SELECT measure_value::double FROM "qdb"."tricky" WHERE measure_name = 'dbl' ORDER BY time"#,
        None,
    )
    .await;
    assert_eq!(
        cols[0].r#type().unwrap().scalar_type(),
        Some(&tsq::types::ScalarType::Double)
    );
    assert_eq!(rows.len(), doubles.len());
    for (r, v) in rows.iter().zip(doubles) {
        let s = scalar(&r.data()[0]).unwrap();
        let back: f64 = s
            .parse()
            .unwrap_or_else(|_| panic!("unparsable double {s}"));
        let want: f64 = v.parse().unwrap();
        assert_eq!(back.to_bits(), want.to_bits(), "{v} came back as {s}");
    }

    // Literals with embedded quotes select exactly their row.
    let (rows, _, _) = query_all(
        &q,
        r#"SELECT count(*) FROM "qdb"."tricky" WHERE "host" = 'it''s' OR "host" = ''''''"#,
        None,
    )
    .await;
    assert_eq!(scalar(&rows[0].data()[0]), Some("2"));
    l.server.shutdown().await;
}

#[tokio::test]
async fn select_star_columns_types_and_nulls() {
    let (l, w, q) = setup("qdb", "star").await;
    let t = now_ms() - 60_000;
    let bigint = Record::builder()
        .measure_name("requests")
        .measure_value("42")
        .measure_value_type(MeasureValueType::Bigint)
        .time(t.to_string())
        .dimensions(dim("host", "b"))
        .dimensions(dim("zone", "z1"))
        .build();
    write_all(
        &w,
        "qdb",
        "star",
        vec![rec("cpu", "0.5", t, &[("host", "a")]), bigint],
    )
    .await;
    let (rows, cols, _) =
        query_all(&q, r#"SELECT * FROM "qdb"."star" ORDER BY "host""#, None).await;
    let names: Vec<&str> = cols.iter().map(|c| c.name().unwrap()).collect();
    assert_eq!(
        names,
        vec![
            "host",
            "zone",
            "measure_name",
            "time",
            "measure_value::double",
            "measure_value::bigint"
        ]
    );
    let types: Vec<&str> = cols
        .iter()
        .map(|c| c.r#type().unwrap().scalar_type().unwrap().as_str())
        .collect();
    assert_eq!(
        types,
        vec![
            "VARCHAR",
            "VARCHAR",
            "VARCHAR",
            "TIMESTAMP",
            "DOUBLE",
            "BIGINT"
        ]
    );
    assert_eq!(rows.len(), 2);
    let a = rows[0].data();
    assert_eq!(scalar(&a[0]), Some("a"));
    assert_eq!(a[1].null_value(), Some(true), "host a has no zone");
    assert_eq!(scalar(&a[2]), Some("cpu"));
    // time: YYYY-MM-DD HH:MM:SS.nnnnnnnnn with the written milliseconds.
    let ts = scalar(&a[3]).unwrap();
    assert_eq!(ts.len(), 29, "{ts}");
    assert!(ts.ends_with(&format!("{:03}000000", t % 1000)), "{ts}");
    assert_eq!(a[5].null_value(), Some(true));
    let b = rows[1].data();
    assert_eq!(scalar(&b[5]), Some("42"));
    assert_eq!(b[4].null_value(), Some(true));
    l.server.shutdown().await;
}

#[tokio::test]
async fn query_errors_are_validation_exceptions() {
    let (l, w, q) = setup("qdb", "errs").await;
    write_all(
        &w,
        "qdb",
        "errs",
        vec![rec("cpu", "1", now_ms(), &[("host", "a")])],
    )
    .await;
    let e = q
        .query()
        .query_string(r#"SELECT "nope" FROM "qdb"."errs""#)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "ValidationException");
    assert_eq!(e.raw_response().unwrap().status().as_u16(), 400);
    assert!(
        format!("{e:?}").contains("Column 'nope' does not exist"),
        "{e:?}"
    );
    for sql in [
        r#"SELECT * FROM "nodb"."errs""#,
        r#"SELECT * FROM "qdb"."notable""#,
        "SELEKT 1",
    ] {
        let e = q.query().query_string(sql).send().await.unwrap_err();
        assert_eq!(code(&e), "ValidationException", "{sql}");
    }
    for m in [0, 1001] {
        let e = q
            .query()
            .query_string(r#"SELECT * FROM "qdb"."errs""#)
            .max_rows(m)
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&e), "ValidationException");
    }
    let e = q
        .query()
        .query_string(r#"SELECT * FROM "qdb"."errs""#)
        .next_token("not-a-token")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "ValidationException");
    // Failures the data causes at run time are the query's fault, not the server's.
    for sql in [
        r#"SELECT measure_value::double / 0 FROM "qdb"."errs" WHERE 1 % 0 = 0"#,
        r#"SELECT CAST(host AS BIGINT) FROM "qdb"."errs""#,
    ] {
        let e = q.query().query_string(sql).send().await.unwrap_err();
        assert_eq!(code(&e), "ValidationException", "{sql}: {e:?}");
    }
    l.server.shutdown().await;
}

#[tokio::test]
async fn pagination_returns_every_row_once() {
    let (l, w, q) = setup("qdb", "pages").await;
    let t0 = now_ms() - 3_600_000;
    let n = 3000;
    let records: Vec<Record> = (0..n)
        .map(|i| {
            rec(
                "cpu",
                &i.to_string(),
                t0 + i as i64,
                &[("host", &format!("h{}", i % 7))],
            )
        })
        .collect();
    write_all(&w, "qdb", "pages", records).await;
    let sql = r#"SELECT measure_value::double, time FROM "qdb"."pages" ORDER BY time"#;
    let (rows, _, pages) = query_all(&q, sql, Some(97)).await;
    assert_eq!(rows.len(), n);
    assert!(pages >= n / 97);
    let vals: Vec<i64> = rows
        .iter()
        .map(|r| scalar(&r.data()[0]).unwrap().parse::<f64>().unwrap() as i64)
        .collect();
    assert_eq!(vals, (0..n as i64).collect::<Vec<_>>());

    // Without ORDER BY: the same set, each row once.
    let mut seen = HashSet::new();
    let (rows, _, _) = query_all(
        &q,
        r#"SELECT measure_value::double FROM "qdb"."pages""#,
        Some(250),
    )
    .await;
    for r in &rows {
        assert!(seen.insert(scalar(&r.data()[0]).unwrap().to_string()));
    }
    assert_eq!(seen.len(), n);

    // A token belongs to its query string.
    let out = q
        .query()
        .query_string(sql)
        .max_rows(10)
        .send()
        .await
        .unwrap();
    let e = q
        .query()
        .query_string(r#"SELECT time FROM "qdb"."pages""#)
        .next_token(out.next_token().unwrap())
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "ValidationException");
    // The same token can be presented again (SDK retries) and yields the same page.
    let tok = out.next_token().unwrap();
    let p1 = q
        .query()
        .query_string(sql)
        .max_rows(10)
        .next_token(tok)
        .send()
        .await
        .unwrap();
    let p2 = q
        .query()
        .query_string(sql)
        .max_rows(10)
        .next_token(tok)
        .send()
        .await
        .unwrap();
    assert_eq!(p1.rows(), p2.rows());
    assert_eq!(p1.query_id(), out.query_id());
    let c = q
        .cancel_query()
        .query_id(out.query_id())
        .send()
        .await
        .unwrap();
    assert!(c.cancellation_message().is_some());
    l.server.shutdown().await;
}

#[tokio::test]
async fn pages_are_capped_near_one_megabyte() {
    let (l, w, q) = setup("qdb", "bigrows").await;
    let t0 = now_ms() - 600_000;
    let big = "x".repeat(1900);
    let records: Vec<Record> = (0..1000)
        .map(|i| {
            Record::builder()
                .measure_name("blob")
                .measure_value(&big)
                .measure_value_type(MeasureValueType::Varchar)
                .time((t0 + i).to_string())
                .dimensions(dim("h", "a"))
                .build()
        })
        .collect();
    write_all(&w, "qdb", "bigrows", records).await;
    let out = q
        .query()
        .query_string(r#"SELECT measure_value::varchar FROM "qdb"."bigrows""#)
        .send()
        .await
        .unwrap();
    assert!(out.rows().len() < 1000 && out.next_token().is_some());
    let (rows, _, pages) = query_all(
        &q,
        r#"SELECT measure_value::varchar FROM "qdb"."bigrows""#,
        None,
    )
    .await;
    assert_eq!(rows.len(), 1000);
    assert!(pages >= 2);
    l.server.shutdown().await;
}

#[tokio::test]
async fn empty_table_answers_with_no_rows() {
    let (l, _w, q) = setup("qdb", "empty").await;
    let out = q
        .query()
        .query_string(r#"SELECT count(*) FROM "qdb"."empty""#)
        .send()
        .await
        .unwrap();
    assert_eq!(out.rows()[0].data()[0].scalar_value(), Some("0"));
    let out = q
        .query()
        .query_string(r#"SELECT * FROM "qdb"."empty""#)
        .send()
        .await
        .unwrap();
    assert!(out.rows().is_empty() && out.next_token().is_none());
    let names: Vec<&str> = out
        .column_info()
        .iter()
        .map(|c| c.name().unwrap())
        .collect();
    assert_eq!(names, vec!["measure_name", "time"]);
    l.server.shutdown().await;
}

#[tokio::test]
async fn deleted_and_recreated_table_is_queryable() {
    let (l, w, q) = setup("qdb", "cycle").await;
    write_all(
        &w,
        "qdb",
        "cycle",
        vec![rec("cpu", "1", now_ms(), &[("host", "a")])],
    )
    .await;
    w.delete_table()
        .database_name("qdb")
        .table_name("cycle")
        .send()
        .await
        .unwrap();
    let e = q
        .query()
        .query_string(r#"SELECT count(*) FROM "qdb"."cycle""#)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "ValidationException");
    w.create_table()
        .database_name("qdb")
        .table_name("cycle")
        .send()
        .await
        .unwrap();
    write_all(
        &w,
        "qdb",
        "cycle",
        vec![rec("mem", "2", now_ms(), &[("zone", "z")])],
    )
    .await;
    let (rows, cols, _) = query_all(&q, r#"SELECT * FROM "qdb"."cycle""#, None).await;
    assert_eq!(rows.len(), 1);
    let names: Vec<&str> = cols.iter().map(|c| c.name().unwrap()).collect();
    assert_eq!(
        names,
        vec!["zone", "measure_name", "time", "measure_value::double"]
    );
    l.server.shutdown().await;
}

#[tokio::test]
async fn describe_lists_dimensions_measure_columns_and_time() {
    let (l, w, q) = setup("qdb", "described").await;
    write_all(
        &w,
        "qdb",
        "described",
        vec![
            rec("cpu", "1", now_ms(), &[("host", "a")]),
            rec("cpu", "2", now_ms(), &[("host", "b"), ("region", "eu")]),
        ],
    )
    .await;
    let (rows, cols, _) = query_all(&q, r#"DESCRIBE "qdb"."described""#, None).await;
    let names: Vec<&str> = cols.iter().filter_map(|c| c.name()).collect();
    assert_eq!(names, ["Column", "Type", "Timestream attribute type"]);
    let got: Vec<Vec<&str>> = rows
        .iter()
        .map(|r| r.data().iter().filter_map(scalar).collect())
        .collect();
    assert_eq!(
        got,
        [
            vec!["host", "varchar", "DIMENSION"],
            vec!["region", "varchar", "DIMENSION"],
            vec!["measure_name", "varchar", "MEASURE_NAME"],
            vec!["time", "timestamp", "TIMESTAMP"],
            vec!["measure_value::double", "double", "MEASURE_VALUE"],
        ]
    );
    let e = q
        .query()
        .query_string(r#"DESCRIBE "qdb"."nosuchtable""#)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "ValidationException");
    l.server.shutdown().await;
}

/// Column names are kept apart case-sensitively (Timestream's quotas page: column names are
/// unique across dimensions and measures, compared case-sensitively). SQLite folds
/// identifiers, so the store must never answer `"label"` with the values of `"Label"`.
#[tokio::test]
async fn dimension_names_differing_only_in_case_stay_apart() {
    let (l, w, q) = setup("qdb", "cases").await;
    let t = now_ms() - 60_000;
    write_all(
        &w,
        "qdb",
        "cases",
        vec![
            rec("m", "1.0", t, &[("Label", "upper")]),
            rec("m", "2.0", t, &[("label", "lower")]),
            rec("m", "3.0", t, &[("LABEL", "shout"), ("a^b", "caret")]),
        ],
    )
    .await;
    let (rows, cols, _) = query_all(
        &q,
        r#"SELECT "Label", "label", "LABEL", "a^b", "measure_value::double" FROM "qdb"."cases" ORDER BY "measure_value::double""#,
        None,
    )
    .await;
    let names: Vec<&str> = cols.iter().map(|c| c.name().unwrap()).collect();
    assert_eq!(
        names,
        ["Label", "label", "LABEL", "a^b", "measure_value::double"]
    );
    let got: Vec<Vec<Option<&str>>> = rows
        .iter()
        .map(|r| r.data().iter().map(scalar).collect())
        .collect();
    assert_eq!(
        got,
        vec![
            vec![Some("upper"), None, None, None, Some("1.0")],
            vec![None, Some("lower"), None, None, Some("2.0")],
            vec![None, None, Some("shout"), Some("caret"), Some("3.0")],
        ]
    );
    // SELECT * and WHERE see the same three distinct columns.
    let (rows, cols, _) = query_all(
        &q,
        r#"SELECT * FROM "qdb"."cases" WHERE "label" = 'lower'"#,
        None,
    )
    .await;
    let names: Vec<&str> = cols.iter().map(|c| c.name().unwrap()).collect();
    assert_eq!(
        names,
        [
            "Label",
            "label",
            "LABEL",
            "a^b",
            "measure_name",
            "time",
            "measure_value::double"
        ]
    );
    assert_eq!(rows.len(), 1);
    assert_eq!(scalar(&rows[0].data()[1]), Some("lower"));
    assert_eq!(rows[0].data()[0].null_value(), Some(true));
    let (rows, _, _) = query_all(
        &q,
        r#"SELECT count(*) FROM "qdb"."cases" WHERE "Label" IS NULL AND "LABEL" IS NULL"#,
        None,
    )
    .await;
    assert_eq!(scalar(&rows[0].data()[0]), Some("1"));
    l.server.shutdown().await;
}
