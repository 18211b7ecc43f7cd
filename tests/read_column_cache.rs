//! The read path's per-table column cache against timestream-local, through the real
//! connector: a dimension first written after the table's columns were cached is seen
//! by the very next read whose matchers name it, and a label that never exists does not
//! buy a DESCRIBE per query (on-demand refreshes are rate-limited per table). The column
//! knowledge belongs to one app: two apps in one process share none of it.
mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use prost::Message;
use timestream_prometheus_connector::config::Config;
use timestream_prometheus_connector::read::columns::MIN_REFRESH;
use timestream_prometheus_connector::remote::pb::{
    label_matcher::Type as T, LabelMatcher, Query, ReadRequest, ReadResponse,
};
use timestream_prometheus_connector::AppState;

type Labels = BTreeMap<String, String>;

fn m(t: T, name: &str, value: &str) -> LabelMatcher {
    LabelMatcher {
        r#type: t as i32,
        name: name.into(),
        value: value.into(),
    }
}

/// Labels of every series answered to one query (SAMPLES), sorted.
async fn read(env: &Env, t0: i64, matchers: Vec<LabelMatcher>) -> Vec<Labels> {
    read_at(&env.http, &env.url, t0, matchers).await
}

/// [`read`] from the connector at `url`.
async fn read_at(
    http: &reqwest::Client,
    url: &str,
    t0: i64,
    matchers: Vec<LabelMatcher>,
) -> Vec<Labels> {
    let req = ReadRequest {
        queries: vec![Query {
            start_timestamp_ms: t0 - 60_000,
            end_timestamp_ms: t0 + 60_000,
            matchers,
            hints: None,
        }],
        accepted_response_types: vec![],
    };
    let body = snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .unwrap();
    let resp = http
        .post(format!("{url}/read"))
        .basic_auth(AKID, Some(SECRET))
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Read-Version", "0.1.0")
        .body(body)
        .send()
        .await
        .expect("connector answers");
    let status = resp.status();
    let body = resp.bytes().await.unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
    let rr = ReadResponse::decode(raw.as_slice()).unwrap();
    let mut out: Vec<Labels> = rr.results[0]
        .timeseries
        .iter()
        .map(|s| {
            s.labels
                .iter()
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect()
        })
        .collect();
    out.sort();
    out
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Writes one sample of `cache_probe` with `labels` at `t0`.
async fn write_probe(env: &Env, labels: &[(&str, &str)], value: f64, t0: i64) {
    let mut all = vec![("__name__", "cache_probe")];
    all.extend_from_slice(labels);
    let (s, b) = env
        .write(&request(vec![series(&all, &[(value, t0)])]))
        .await;
    assert_eq!(s, 200, "{b}");
}

/// Writes `cache_probe{job="old"}`, reads it (which caches the table's columns: job
/// only), then writes `cache_probe{job="new", fresh="x"}`.
async fn cached_then_new_dimension(env: &Env, t0: i64) {
    write_probe(env, &[("job", "old")], 1.0, t0).await;
    let before = read(env, t0, vec![m(T::Eq, "__name__", "cache_probe")]).await;
    assert_eq!(
        before,
        vec![labels(&[("__name__", "cache_probe"), ("job", "old")])]
    );
    write_probe(env, &[("job", "new"), ("fresh", "x")], 2.0, t0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dimension_written_after_the_columns_were_cached_is_matched_at_once() {
    let new = labels(&[("__name__", "cache_probe"), ("fresh", "x"), ("job", "new")]);
    let old = labels(&[("__name__", "cache_probe"), ("job", "old")]);
    // Each matcher kind on its own connector, so every one is decided right after the
    // cache was filled (a stale list turns `fresh="x"` into "nothing", `fresh!=""` and
    // `fresh=~"x|y"` into "label absent", and drops the label from the answer).
    let cases: Vec<(LabelMatcher, Vec<Labels>)> = vec![
        (m(T::Eq, "fresh", "x"), vec![new.clone()]),
        (m(T::Neq, "fresh", ""), vec![new.clone()]),
        (m(T::Re, "fresh", "x|y"), vec![new.clone()]),
        (m(T::Nre, "fresh", ""), vec![new.clone()]),
        (m(T::Neq, "fresh", "y"), vec![new.clone(), old.clone()]),
        (m(T::Eq, "fresh", ""), vec![old.clone()]),
    ];
    for (matcher, want) in cases {
        let env = start().await;
        let t0 = now_ms();
        cached_then_new_dimension(&env, t0).await;
        let got = read(
            &env,
            t0,
            vec![m(T::Eq, "__name__", "cache_probe"), matcher.clone()],
        )
        .await;
        let mut want = want;
        want.sort();
        assert_eq!(got, want, "matcher {matcher:?}");
        env.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_label_that_never_exists_does_not_buy_a_describe_per_query() {
    let env = start().await;
    let t0 = now_ms();
    cached_then_new_dimension(&env, t0).await;
    let pages = || env.state.metrics.read_requests.get();
    // `nosuch="x"` on a label no series has selects nothing without a data query, so
    // every Query page from here on is a column refresh.
    let never = || vec![m(T::Eq, "__name__", "cache_probe"), m(T::Eq, "nosuch", "x")];
    let before = pages();
    let started = Instant::now();
    let queries = 30;
    for _ in 0..queries {
        assert!(read(&env, t0, never()).await.is_empty());
    }
    let elapsed = started.elapsed();
    let refreshes = pages() - before;
    // The first one refreshes (the list may be stale); then at most one per MIN_REFRESH.
    let allowed = 1 + (elapsed.as_secs_f64() / MIN_REFRESH.as_secs_f64()).floor() as u64;
    assert!(
        (1..=allowed).contains(&refreshes),
        "{refreshes} column refreshes for {queries} queries in {elapsed:?} (allowed 1..={allowed})"
    );
    // The limit delays refreshes, it does not stop them: once MIN_REFRESH has passed,
    // the next unknown label refreshes again and a dimension written meanwhile is seen.
    let (s, b) = env
        .write(&request(vec![series(
            &[("__name__", "cache_probe"), ("job", "late"), ("later", "z")],
            &[(3.0, t0)],
        )]))
        .await;
    assert_eq!(s, 200, "{b}");
    tokio::time::sleep(MIN_REFRESH + Duration::from_millis(50)).await;
    let before = pages();
    let got = read(
        &env,
        t0,
        vec![m(T::Eq, "__name__", "cache_probe"), m(T::Eq, "later", "z")],
    )
    .await;
    assert_eq!(
        got,
        vec![labels(&[
            ("__name__", "cache_probe"),
            ("job", "late"),
            ("later", "z")
        ])]
    );
    // One refresh plus the data query.
    assert_eq!(pages() - before, 2);
    // Concurrent queries naming an unknown label share one refresh.
    tokio::time::sleep(MIN_REFRESH + Duration::from_millis(50)).await;
    let before = pages();
    let started = Instant::now();
    let all = futures::future::join_all((0..16).map(|_| read(&env, t0, never()))).await;
    assert!(all.iter().all(Vec::is_empty));
    let elapsed = started.elapsed();
    let refreshes = pages() - before;
    let allowed = 1 + (elapsed.as_secs_f64() / MIN_REFRESH.as_secs_f64()).floor() as u64;
    assert!(
        (1..=allowed).contains(&refreshes),
        "{refreshes} column refreshes for 16 concurrent queries in {elapsed:?} (allowed 1..={allowed})"
    );
    env.shutdown().await;
}

/// Serves a second app (its own state, built from `config`) on a loopback port; the
/// returned sender stops it.
async fn second_app(config: Config) -> (AppState, String, tokio::sync::oneshot::Sender<()>) {
    let state = state_for(config).await;
    let (addr, stop) = serve_app(&state).await;
    (state, format!("http://{addr}"), stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_apps_in_one_process_do_not_share_column_knowledge() {
    let env = start().await;
    let (other, other_url, stop) = second_app((*env.state.config).clone()).await;
    let t0 = now_ms();
    write_probe(&env, &[("job", "old")], 1.0, t0).await;
    let want = vec![labels(&[("__name__", "cache_probe"), ("job", "old")])];
    let sel = || vec![m(T::Eq, "__name__", "cache_probe")];
    let pages = |st: &AppState| st.metrics.read_requests.get();
    // The first read of each app fetches the table's columns (one DESCRIBE page) and then
    // runs the data query (one page); the second read of an app uses its list.
    assert_eq!(read(&env, t0, sel()).await, want);
    assert_eq!(pages(&env.state), 2);
    assert_eq!(read(&env, t0, sel()).await, want);
    assert_eq!(pages(&env.state), 3);
    // Same store, same credential, same table: the other app still asks for itself.
    assert_eq!(read_at(&env.http, &other_url, t0, sel()).await, want);
    assert_eq!(
        pages(&other),
        2,
        "the second app planned from the first app's column list"
    );
    assert_eq!(read_at(&env.http, &other_url, t0, sel()).await, want);
    assert_eq!(pages(&other), 3);
    assert_eq!(pages(&env.state), 3);
    let _ = stop.send(());
    env.shutdown().await;
}
