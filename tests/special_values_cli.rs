//! The special-value layout as documented (documentation/special-values.md), seen with the AWS
//! CLI: samples written through the connector's /write, then the SQL of the document's "What
//! SQL users see" section run with `aws timestream-query query` against timestream-local.
//! Without `aws`: fails when `CI` is set, otherwise skips loudly (tests/support/tools.rs).

mod common;
#[path = "support/tools.rs"]
mod tools;

use std::process::Command;

use common::*;

/// The ```sql blocks of the document that query the default table, with our names.
fn documented_queries() -> Vec<String> {
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("documentation/special-values.md"),
    )
    .expect("special-values.md");
    doc.split("```sql\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .filter(|q| q.contains(r#""prometheusDatabase"."prometheusMetricsTable""#))
        .map(|q| {
            q.replace(
                r#""prometheusDatabase"."prometheusMetricsTable""#,
                &format!(r#""{DB}"."{TABLE}""#),
            )
        })
        .collect()
}

/// `aws timestream-query query` → rows of ScalarValues (None = NullValue).
fn aws_query(url: &str, sql: &str) -> Vec<Vec<Option<String>>> {
    let o = Command::new("aws")
        .args(["timestream-query", "query", "--endpoint-url", url])
        .args(["--query-string", sql])
        .env("AWS_ACCESS_KEY_ID", AKID)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL")
        .env("AWS_PAGER", "")
        .output()
        .expect("run aws");
    assert!(
        o.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON output");
    v["Rows"]
        .as_array()
        .expect("Rows")
        .iter()
        .map(|r| {
            r["Data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["ScalarValue"].as_str().map(str::to_string))
                .collect()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_sql_sees_numbers_and_special_values_apart_and_case_differing_labels() {
    if !tools::require(
        "the_documented_sql_sees_numbers_and_special_values_apart_and_case_differing_labels",
        "aws",
        &["--version"],
        "python3 -m pip install awscli",
    ) {
        return;
    }
    let env = start().await;
    let t = now_ms() - 60_000;
    let stale = f64::from_bits(0x7ff0_0000_0000_0002);
    // Prometheus' NaN (Go's math.NaN()), not Rust's f64::NAN, whose payload differs.
    let nan = f64::from_bits(0x7ff8_0000_0000_0001);
    let req = request(vec![
        series(
            &[("__name__", "go_gc_duration_seconds"), ("quantile", "1")],
            &[(1.0, t), (nan, t + 1), (3.0, t + 2), (stale, t + 3)],
        ),
        series(
            &[("__name__", "rpc_duration_seconds"), ("quantile", "0.5")],
            &[(f64::INFINITY, t + 1), (f64::NEG_INFINITY, t + 2)],
        ),
        // Label names that differ only in case are two dimensions.
        series(&[("__name__", "c"), ("Label", "upper")], &[(1.0, t)]),
        series(&[("__name__", "c"), ("label", "lower")], &[(2.0, t)]),
    ]);
    let (status, body) = env.write(&req).await;
    assert_eq!(status, 200, "{body}");
    let queries = documented_queries();
    assert_eq!(queries.len(), 2, "{queries:?}");
    let url = env.store.url();
    let (url1, q1) = (url.clone(), queries[0].clone());
    let avg = tokio::task::spawn_blocking(move || aws_query(&url1, &q1))
        .await
        .unwrap();
    // The NaN and the marker are not numbers of the metric: the average of 1 and 3.
    assert_eq!(avg, vec![vec![Some("2.0".to_string())]]);
    let (url2, q2) = (url, queries[1].clone());
    let specials = tokio::task::spawn_blocking(move || aws_query(&url2, &q2))
        .await
        .unwrap();
    let got: Vec<(String, String)> = specials
        .into_iter()
        .map(|r| (r[0].clone().unwrap(), r[2].clone().unwrap()))
        .collect();
    let want = [
        ("go_gc_duration_seconds", "NaN"),
        ("rpc_duration_seconds", "+Inf"),
        ("rpc_duration_seconds", "-Inf"),
        ("go_gc_duration_seconds", "StaleNaN"),
    ];
    assert_eq!(got, want.map(|(m, v)| (m.to_string(), v.to_string())));
    let url3 = env.store.url();
    let sql = format!(
        r#"SELECT "Label", "label" FROM "{DB}"."{TABLE}" WHERE measure_name = 'c' ORDER BY measure_value::double"#
    );
    let cases = tokio::task::spawn_blocking(move || aws_query(&url3, &sql))
        .await
        .unwrap();
    assert_eq!(
        cases,
        vec![
            vec![Some("upper".to_string()), None],
            vec![None, Some("lower".to_string())],
        ]
    );
    env.shutdown().await;
}
