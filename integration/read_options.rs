//! What Prometheus' `remote_read` options `read_recent: false` and `required_matchers`
//! do with the connector, for Prometheus 2.x and 3.x. Both are applied by Prometheus
//! itself, before any request is sent: the connector answers every read request it gets
//! the same way. A recording proxy in front of the connector shows which requests each
//! Prometheus sent and with which time range.
//!
//! - `read_recent: false` (Prometheus' `PreferLocalStorageFilter`): Prometheus computes a
//!   "local start" = the start of its oldest TSDB block (now, while it has none) plus
//!   2 × `--storage.tsdb.min-block-duration` (2 h by default, so 4 h). A query whose range
//!   starts after that is not sent; one that starts before it is sent with its end cut
//!   to that time. With the default block duration and a fresh TSDB, that is 4 h in the
//!   future, so every query is still sent: the "recent-off" server below shows it. The
//!   "recent-off-1m" server runs with `--storage.tsdb.min-block-duration=1m` (a margin of
//!   2 minutes) to make both other cases observable within a test.
//! - `required_matchers: {job: exporter}`: Prometheus sends a selector only when it has
//!   exactly the equality matcher `job="exporter"`; `rr_gauge` or `{job=~"exporter"}`
//!   are not sent and answer from local data only (empty here).
//!
//! The data: two series with samples every 15 s from 20 minutes ago to 10 minutes
//! ahead (Timestream accepts up to 15 minutes into the future), so that queries a few
//! minutes ahead have data in their 5-minute lookback.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;
use timestream_prometheus_connector::remote::pb::{Label, Sample};

use crate::harness::clients;
use crate::harness::proxy::ReadProxy;
use crate::harness::*;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn series(job: &str, from: i64, to: i64) -> (Vec<Label>, Vec<Sample>) {
    let labels = vec![
        Label {
            name: "__name__".into(),
            value: "rr_gauge".into(),
        },
        Label {
            name: "job".into(),
            value: job.into(),
        },
    ];
    let samples = (0..)
        .map(|i| from + i * 15_000)
        .take_while(|t| *t <= to)
        .enumerate()
        .map(|(i, t)| Sample {
            value: i as f64 + 0.5,
            timestamp: t,
        })
        .collect();
    (labels, samples)
}

/// What one Prometheus must do for one query.
#[derive(Debug)]
enum Want {
    /// A read request with the whole lookback window; this many series come back.
    Sent(usize),
    /// A read request whose end is cut to Prometheus' "local start"; this many series.
    SentCut(usize),
    /// No read request; an empty answer.
    NotSent,
}

fn result_len(v: &Value) -> usize {
    v["result"].as_array().map_or(0, Vec::len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_recent_false_and_required_matchers_prometheus_2() {
    read_options(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_recent_false_and_required_matchers_prometheus_3() {
    read_options(3).await;
}

async fn read_options(major: u32) {
    let test = format!("remote_read options with Prometheus {major}.x");
    let Some((prom, version)) = clients::require_prometheus(major, &test) else {
        return;
    };
    let dir = TestDir::new(&format!("read-options{major}"));
    let d = dir.path();
    let store_port = free_port();
    let args = local_store_args(d, store_port, &[]);
    let connector = Connector::start("connector", free_port(), &args, None, d).await;
    let now = now_ms();
    let (from, to) = (now - 20 * 60_000, now + 10 * 60_000);
    write_rw1(
        &connector.url("/write"),
        &[series("exporter", from, to), series("other", from, to)],
    )
    .await;

    // One proxy per Prometheus, so each one's requests are counted apart.
    let mut servers = Vec::new();
    for (name, options, flags) in [
        ("control", "    read_recent: true\n", &[][..]),
        ("recent-off", "    read_recent: false\n", &[][..]),
        (
            "recent-off-1m",
            "    read_recent: false\n",
            &["--storage.tsdb.min-block-duration=1m"][..],
        ),
        (
            "required",
            "    read_recent: true\n    required_matchers:\n      job: exporter\n",
            &[][..],
        ),
    ] {
        let proxy = ReadProxy::start(&connector.url(""), None, None).await;
        let config = format!(
            "global:\n  scrape_interval: 1m\n  evaluation_interval: 1m\nremote_read:\n  - url: \"{}\"\n{options}    basic_auth:\n      username: {ACCESS_KEY}\n      password: {SECRET_KEY}\n",
            proxy.url("/read")
        );
        let p = Prometheus::start_with(
            &prom,
            &format!("prometheus-{name}"),
            free_port(),
            &config,
            flags,
            d,
        )
        .await;
        servers.push((name, p, proxy));
    }

    let t_now = now_ms() as f64 / 1000.0;
    let ahead = |minutes: f64| t_now + minutes * 60.0;
    use Want::*;
    // (query, evaluation time, what each of control / recent-off / recent-off-1m /
    // required must do)
    let cases: &[(&str, f64, [Want; 4])] = &[
        ("rr_gauge", t_now, [Sent(2), Sent(2), Sent(2), NotSent]),
        ("rr_gauge", ahead(8.0), [Sent(2), Sent(2), NotSent, NotSent]),
        (
            r#"rr_gauge{job="exporter"}"#,
            t_now,
            [Sent(1), Sent(1), Sent(1), Sent(1)],
        ),
        (
            r#"rr_gauge{job="exporter"}"#,
            ahead(4.0),
            [Sent(1), Sent(1), SentCut(1), Sent(1)],
        ),
        (
            r#"rr_gauge{job="exporter"}"#,
            ahead(8.0),
            [Sent(1), Sent(1), NotSent, Sent(1)],
        ),
        (
            r#"rr_gauge{job=~"exporter"}"#,
            t_now,
            [Sent(1), Sent(1), Sent(1), NotSent],
        ),
        (
            r#"{job="exporter"}"#,
            t_now,
            [Sent(1), Sent(1), Sent(1), Sent(1)],
        ),
    ];
    let mut failures = Vec::new();
    for (query, t, expect) in cases {
        let mut control_answer = None;
        for ((name, p, proxy), want) in servers.iter().zip(expect) {
            proxy.clear();
            let answer = p.instant(query, *t).await;
            let records = proxy.records();
            let sent = records.len();
            let got = result_len(&answer);
            let at = format!("{name}: {query} at now{:+.0}s", t - t_now);
            let ok = match want {
                Sent(n) | SentCut(n) => sent >= 1 && got == *n,
                NotSent => sent == 0 && got == 0,
            };
            if !ok {
                failures.push(format!(
                    "{at}: {sent} read requests, {got} series; expected {want:?}"
                ));
            }
            // The range sent: the instant query's lookback window, its end cut to the
            // local start for SentCut.
            for q in records.iter().flat_map(|r| &r.queries) {
                let (start, end) = ((*t - 300.0) * 1000.0, *t * 1000.0);
                let start_ok = (q.start_ms as f64 - start).abs() <= 1000.0;
                let end_ok = match want {
                    SentCut(_) => (q.end_ms as f64) < end - 60_000.0,
                    _ => (q.end_ms as f64 - end).abs() <= 1000.0,
                };
                if !start_ok || !end_ok {
                    failures.push(format!(
                        "{at}: sent range {}..{} ms, the lookback window is {start:.0}..{end:.0} ({want:?})",
                        q.start_ms, q.end_ms
                    ));
                }
                if *name == "required" && !q.matchers.iter().any(|m| m == r#"job="exporter""#) {
                    failures.push(format!(
                        "{at}: sent without job=\"exporter\": {:?}",
                        q.matchers
                    ));
                }
            }
            // Whatever was sent uncut is answered like any other read: as for control.
            if *name == "control" {
                control_answer = Some(answer);
            } else if matches!(want, Sent(_)) && Some(&answer) != control_answer.as_ref() {
                failures.push(format!(
                    "{at}: {answer} differs from control {control_answer:?}"
                ));
            } else if matches!(want, SentCut(_)) && Some(&answer) == control_answer.as_ref() {
                failures.push(format!(
                    "{at}: equal to control although the range was cut: {answer}"
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "Prometheus {version}:\n{}",
        failures.join("\n")
    );
    clients::note(&format!(
        "remote_read options with Prometheus {version}: read_recent: false and \
         required_matchers filtered client side as documented ({} cases)",
        cases.len()
    ));
    drop(connector);
}
