//! Per-query costs of the SQL engine: compile (runs for every Query call), the Java-regex
//! `regexp_like` per row, and value rendering per cell.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use rusqlite::types::ValueRef;
use timestream_local::sql::{self, Catalog, CatalogError, Column, ScalarType, TableSchema};

struct Cat(TableSchema);

impl Catalog for Cat {
    fn table(&self, _: &str, _: &str) -> Result<TableSchema, CatalogError> {
        Ok(self.0.clone())
    }
}

fn catalog() -> Cat {
    let mut columns: Vec<Column> = (0..10)
        .map(|i| Column {
            name: format!("label_{i}"),
            ty: ScalarType::Varchar,
        })
        .collect();
    for (n, ty) in [
        ("measure_name", ScalarType::Varchar),
        ("time", ScalarType::Timestamp),
        ("measure_value::double", ScalarType::Double),
    ] {
        columns.push(Column { name: n.into(), ty });
    }
    Cat(TableSchema {
        relation: "\"v_1\"".into(),
        columns,
    })
}

const READ_QUERY: &str = r#"SELECT "label_0", "label_1", "label_2", measure_name, time, "measure_value::double" FROM "db"."t" WHERE "measure_value::double" IS NOT NULL AND measure_name = 'http_requests_total' AND regexp_like("label_0", '\A(?:api|web)\z') AND NOT ("label_1" IS NOT NULL AND "label_1" = 'x') AND time >= from_milliseconds(1700000000000) AND time <= from_milliseconds(1700003600000) ORDER BY CASE WHEN "label_0" IS NOT NULL THEN 1 ELSE 2 END, "label_0", CASE WHEN "label_1" IS NOT NULL THEN 1 ELSE 2 END, "label_1", measure_name, time"#;

fn benches(c: &mut Criterion) {
    let cat = catalog();
    c.bench_function("compile_remote_read_query", |b| {
        b.iter(|| sql::compile(black_box(READ_QUERY), &cat, 1_700_000_000_000_000_000).unwrap())
    });
    c.bench_function("compile_count_star", |b| {
        b.iter(|| sql::compile(black_box(r#"SELECT count(*) FROM "db"."t""#), &cat, 0).unwrap())
    });
    let conn = rusqlite::Connection::open_in_memory().unwrap();
    sql::register_functions(&conn).unwrap();
    let mut st = conn.prepare("SELECT regexp_like(?1, ?2)").unwrap();
    c.bench_function("regexp_like_cached_pattern", |b| {
        b.iter(|| {
            st.query_row(["web-frontend-7", r"\A(?:web-.*|api)\z"], |r| {
                r.get::<_, bool>(0)
            })
            .unwrap()
        })
    });
    c.bench_function("render_double_and_timestamp", |b| {
        b.iter(|| {
            (
                sql::render(
                    ScalarType::Double,
                    ValueRef::Real(black_box(123_456_789.123)),
                ),
                sql::render(
                    ScalarType::Timestamp,
                    ValueRef::Integer(black_box(1_700_000_000_123_456_789)),
                ),
            )
        })
    });
}

criterion_group!(sql_benches, benches);
criterion_main!(sql_benches);
