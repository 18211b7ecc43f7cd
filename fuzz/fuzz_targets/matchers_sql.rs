//! Matchers → SQL with arbitrary names and values: planning never panics, and every
//! SQL it renders compiles in timestream-local's Timestream SQL engine.
#![no_main]

use std::collections::BTreeSet;

use libfuzzer_sys::fuzz_target;
use timestream_local::sql::{compile, Catalog, CatalogError, Column, ScalarType, TableSchema};
use timestream_prometheus_connector::read::sql::{plan, render, Plan, PlanOptions};
use timestream_prometheus_connector::remote::pb::{LabelMatcher, Query};

struct Table(Vec<String>);

impl Catalog for Table {
    fn table(&self, _db: &str, _table: &str) -> Result<TableSchema, CatalogError> {
        let mut columns: Vec<Column> = self
            .0
            .iter()
            .map(|d| Column {
                name: d.clone(),
                ty: ScalarType::Varchar,
            })
            .collect();
        for (name, ty) in [
            ("measure_name", ScalarType::Varchar),
            ("time", ScalarType::Timestamp),
            ("measure_value::double", ScalarType::Double),
        ] {
            columns.push(Column {
                name: name.into(),
                ty,
            });
        }
        Ok(TableSchema {
            relation: "\"v_1\"".into(),
            columns,
        })
    }
}

fuzz_target!(|data: &[u8]| {
    // Input, after lossy UTF-8 decoding (an invalid byte becomes U+FFFD): dimension
    // names separated by \u{1}, then per U+FFFD a matcher: type char, name \u{2} value.
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\u{FFFD}');
    let dims: Vec<String> = parts
        .next()
        .unwrap_or("")
        .split('\u{1}')
        .filter(|d| !d.is_empty() && !d.contains('\0'))
        .map(str::to_string)
        .collect();
    let matchers: Vec<LabelMatcher> = parts
        .map(|m| {
            let ty = m.bytes().next().unwrap_or(0) as i32 % 5;
            let rest = m.get(1..).unwrap_or("");
            let (name, value) = rest.split_once('\u{2}').unwrap_or((rest, ""));
            LabelMatcher {
                r#type: ty,
                name: name.to_string(),
                value: value.to_string(),
            }
        })
        .collect();
    let known: BTreeSet<String> = dims
        .iter()
        .filter(|d| !["measure_name", "time", "measure_value::double"].contains(&d.as_str()))
        .cloned()
        .collect();
    let q = Query {
        start_timestamp_ms: 0,
        end_timestamp_ms: 1_000,
        matchers,
        hints: None,
    };
    if let Ok(Plan::Select(s)) = plan(&q, "db", "t", &known, &PlanOptions::default()) {
        let sql = render(&s);
        let cat = Table(known.into_iter().collect());
        if let Err(e) = compile(&sql, &cat, 0) {
            panic!("{sql}\n{e}");
        }
    }
});
