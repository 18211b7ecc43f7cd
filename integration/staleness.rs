//! Special values through real Prometheus (issue 14): Prometheus A scrapes a target whose
//! series include NaN, +Inf, -Inf, a summary with no observations (NaN quantiles), a counter
//! at +Inf, label names that differ only in case, and a series that vanishes mid-run; A remote-writes through the connector, Prometheus B reads everything
//! back through remote read. Every query must answer the same from A's own TSDB and from B:
//! in particular the vanished series stops answering right after it vanished (A writes a
//! staleness marker, the connector stores it, B's PromQL sees it), instead of answering for
//! the 5-minute lookback. With Prometheus 2.x (SAMPLES) and 3.x (STREAMED_XOR_CHUNKS).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::{extract::State, routing::get, Router};

use crate::harness::*;

const QUERIES: &[&str] = &[
    "st_vanishing",
    "st_steady",
    "st_nan",
    "st_inf",
    "st_neg_inf",
    "st_inf > 0",
    "st_nan != 0",
    "st_case",
    r#"st_case{label="lower"}"#,
    r#"st_case{Label="upper"}"#,
    r#"{__name__=~"st_.*"}"#,
    r#"{__name__!~"st_(inf|nan)", job="specials"}"#,
    "count_over_time(st_vanishing[30s])",
    "last_over_time(st_nan[10s])",
    "sum(st_case)",
    "st_summary",
    r#"st_summary{quantile="0.99"}"#,
    "rate(st_summary_count[5s])",
    "st_summary_sum / st_summary_count",
    "st_counter_total",
    "rate(st_counter_total[5s])",
    "increase(st_counter_total[5s]) > 0",
];

async fn target(State(present): State<Arc<AtomicBool>>) -> String {
    let mut out = String::from(
        "st_steady 1\nst_nan NaN\nst_inf +Inf\nst_neg_inf -Inf\n\
         st_case{Label=\"upper\"} 1\nst_case{label=\"lower\"} 2\n\
         # TYPE st_summary summary\n\
         st_summary{quantile=\"0.5\"} NaN\nst_summary{quantile=\"0.99\"} NaN\n\
         st_summary_sum 0\nst_summary_count 0\n\
         # TYPE st_counter_total counter\nst_counter_total +Inf\n",
    );
    if present.load(Ordering::Relaxed) {
        out.push_str("st_vanishing{kind=\"gone soon\"} 42\n");
    }
    out
}

/// A target, a connector with its own store, Prometheus A scraping the target every second and
/// remote-writing through the connector (`write_extra`: more lines for its remote_write
/// entry), and Prometheus B answering from remote read alone. Fields drop in order: the
/// processes before their directory.
struct Pair {
    _connector: Connector,
    a: Prometheus,
    b: Prometheus,
    store_port: u16,
    _dir: TestDir,
}

impl Pair {
    async fn start(
        major: u32,
        prom: &std::path::Path,
        name: &str,
        job: &str,
        target: Router,
        write_extra: &str,
    ) -> Pair {
        let dir = TestDir::new(&format!("{name}{major}"));
        let d = dir.path();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target_addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, target).await.ok();
        });
        let store_port = free_port();
        let mut args = local_store_args(d, store_port, &[]);
        if major < 3 {
            args.push("--read.dot-matches-newline=false".to_string());
        }
        let connector = Connector::start("connector", free_port(), &args, None, d).await;
        let auth = format!(
            "    basic_auth:\n      username: {ACCESS_KEY}\n      password: {SECRET_KEY}\n"
        );
        let a_config = format!(
            r#"global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: {job}
    static_configs:
      - targets: ["{target_addr}"]
remote_write:
  - url: "{write}"
{auth}{write_extra}    queue_config:
      batch_send_deadline: 1s
      min_backoff: 100ms
      max_backoff: 1s
"#,
            write = connector.url("/write"),
        );
        let b_config = format!(
            "global:\n  scrape_interval: 1m\nremote_read:\n  - url: \"{read}\"\n    read_recent: true\n{auth}",
            read = connector.url("/read"),
        );
        let a = Prometheus::start(prom, "prometheus-a", free_port(), &a_config, d).await;
        let b = Prometheus::start(prom, "prometheus-b", free_port(), &b_config, d).await;
        Pair {
            _connector: connector,
            a,
            b,
            store_port,
            _dir: dir,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staleness_nan_inf_and_case_differing_labels_match_own_tsdb_prometheus_2() {
    specials(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staleness_nan_inf_and_case_differing_labels_match_own_tsdb_prometheus_3_streamed() {
    specials(3).await;
}

async fn specials(major: u32) {
    let test = format!("special values with Prometheus {major}.x");
    let Some((prom, version)) = clients::require_prometheus(major, &test) else {
        return;
    };
    clients::note(&format!("{test}: {version}"));
    let present = Arc::new(AtomicBool::new(true));
    let target = Router::new()
        .route("/metrics", get(target))
        .with_state(present.clone());
    let pair = Pair::start(major, &prom, "staleness", "specials", target, "").await;
    let Pair { a, b, .. } = &pair;

    tokio::time::sleep(Duration::from_secs(8)).await;
    let vanished_at = now_secs();
    present.store(false, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(6)).await;
    // Well after the series vanished, but far inside the 5-minute lookback.
    let t_eval = (now_secs() - 1.5).floor() + 0.437;
    a.wait_remote_write_past(t_eval).await;

    let gone_in_a = a.instant("st_vanishing", t_eval).await;
    assert!(
        is_empty(&gone_in_a),
        "A still returns the vanished series: {gone_in_a}"
    );
    // Ranges across the moment the series vanished.
    same_answers(a, b, QUERIES, vanished_at - 5.25, t_eval, false).await;
    // The fixture is not trivially empty: A answers the steady, NaN and case queries.
    for q in [
        "st_steady",
        "st_nan",
        "st_case",
        "st_inf > 0",
        "st_summary",
        "st_counter_total",
    ] {
        assert!(!is_empty(&a.instant(q, t_eval).await), "A has no {q}");
    }
    drop(pair);
}

/// Series of the table that holds only special values.
const ONLY_SPECIALS: &[&str] = &[
    "so_nan",
    "so_inf",
    "so_vanishing",
    r#"{__name__=~"so_.*"}"#,
    "count_over_time(so_vanishing[30s])",
    "last_over_time(so_nan[10s])",
    "so_inf > 0",
];

async fn only_specials_target(State(present): State<Arc<AtomicBool>>) -> String {
    let mut out = String::from("so_nan NaN\nso_inf +Inf\n");
    if present.load(Ordering::Relaxed) {
        out.push_str("so_vanishing{kind=\"nan then gone\"} NaN\n");
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_of_only_special_values_matches_own_tsdb_prometheus_2() {
    only_specials(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_of_only_special_values_matches_own_tsdb_prometheus_3_streamed() {
    only_specials(3).await;
}

/// A table that never got a number (Timestream gives it no `measure_value::double` column):
/// A remote-writes only NaN, +Inf and a NaN series that vanishes (its staleness marker), its
/// own `up` and scrape series dropped by `write_relabel_configs`; B must answer as A.
async fn only_specials(major: u32) {
    let test = format!("a table of only special values with Prometheus {major}.x");
    let Some((prom, version)) = clients::require_prometheus(major, &test) else {
        return;
    };
    clients::note(&format!("{test}: {version}"));
    let present = Arc::new(AtomicBool::new(true));
    let target = Router::new()
        .route("/metrics", get(only_specials_target))
        .with_state(present.clone());
    let keep = "    write_relabel_configs:\n      - source_labels: [__name__]\n        regex: \"so_.*\"\n        action: keep\n";
    let pair = Pair::start(major, &prom, "only_specials", "only_specials", target, keep).await;
    let Pair { a, b, .. } = &pair;
    // Prometheus' first scrape comes a few seconds after it is ready: wait for it, then let
    // a few more samples arrive before the series vanishes.
    wait_for("A's first scrape", Duration::from_secs(30), || async {
        (!is_empty(&a.instant("so_vanishing", now_secs()).await)).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let vanished_at = now_secs();
    present.store(false, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let t_eval = (now_secs() - 1.5).floor() + 0.437;
    a.wait_remote_write_past(t_eval).await;

    // The premise: the store holds special-value rows and nothing else.
    let q = query_client(&format!("http://127.0.0.1:{}", pair.store_port)).await;
    let from = format!(r#"FROM "{DATABASE}"."{TABLE}""#);
    let all = count_rows(&q, &format!("SELECT count(*) {from}")).await;
    let special = count_rows(
        &q,
        &format!("SELECT count(*) {from} WHERE measure_name = '__special_value__'"),
    )
    .await;
    assert!(all > 0 && all == special, "{all} rows, {special} special");

    same_answers(a, b, ONLY_SPECIALS, vanished_at - 3.25, t_eval, false).await;
    for q in ["so_nan", "so_inf"] {
        assert!(!is_empty(&a.instant(q, t_eval).await), "A has no {q}");
    }
    assert!(
        is_empty(&a.instant("so_vanishing", t_eval).await)
            && !is_empty(
                &a.range("so_vanishing", vanished_at - 3.25, t_eval, 0.5)
                    .await
            ),
        "A's so_vanishing must be there before it vanished and gone after"
    );
    drop(pair);
}
