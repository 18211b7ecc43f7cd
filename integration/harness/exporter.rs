//! A scrape target whose series are hard to store and query faithfully: label values
//! with quotes, backslashes, newlines, a single quote (SQL!) and non-ASCII text;
//! optional labels that only some series carry; counters, gauges and a histogram;
//! values at the edges of f64 (0.1, 1e-300, 1e300, negatives, full-precision
//! fractions). Values change with every scrape so rate() and friends have work to do.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{extract::State, routing::get, Router};

/// Series names the suite queries. All exporter series are finite, so every sample
/// Prometheus scrapes from it must end up in the store.
pub const GAUGE: &str = "it_gauge";
pub const COUNTER: &str = "it_requests_total";
pub const HISTOGRAM: &str = "it_latency_seconds";
pub const WAVE: &str = "it_wave";

/// (kind label value, optional label value, gauge value)
const GAUGES: &[(&str, Option<&str>, f64)] = &[
    ("plain", None, 0.1),
    ("tiny", None, 1e-300),
    ("huge", None, 1e300),
    ("negative", None, -42.5),
    ("quote\"d", Some("yes"), 3.0),
    ("back\\slash", None, 4.0),
    ("new\nline", None, 5.0),
    ("ünïcødé ✓ 日本", Some("yes"), 6.0),
    ("a", None, 7.0),
    ("ab", Some("no"), 8.0),
    ("it's", None, 9.0),
    ("prometheus", None, 10.0),
    ("prom", Some(""), 11.0),
];

#[derive(Default)]
struct Counters {
    scrapes: AtomicU64,
    /// Sample lines served in answers with status 200.
    served_samples: AtomicU64,
    stopped: AtomicBool,
}

pub struct Exporter {
    pub addr: SocketAddr,
    counters: Arc<Counters>,
}

impl Exporter {
    pub async fn start() -> Exporter {
        let counters = Arc::new(Counters::default());
        let app = Router::new()
            .route("/metrics", get(metrics))
            .with_state(counters.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.ok();
        });
        Exporter { addr, counters }
    }

    /// Scrapes answered with data.
    pub fn scrapes(&self) -> u64 {
        self.counters.scrapes.load(Ordering::SeqCst)
    }

    /// Samples served in all answered scrapes.
    pub fn served_samples(&self) -> u64 {
        self.counters.served_samples.load(Ordering::SeqCst)
    }

    /// From now on every scrape fails with 503 and serves nothing, so the number of
    /// samples served is final.
    pub fn stop(&self) {
        self.counters.stopped.store(true, Ordering::SeqCst);
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

async fn metrics(State(counters): State<Arc<Counters>>) -> Response {
    if counters.stopped.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "stopped").into_response();
    }
    let n = counters.scrapes.fetch_add(1, Ordering::SeqCst) + 1;
    let out = render(n);
    let samples = out
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .count() as u64;
    counters.served_samples.fetch_add(samples, Ordering::SeqCst);
    out.into_response()
}

/// The page of the `n`th scrape.
fn render(n: u64) -> String {
    let nf = n as f64;
    let mut out = String::new();
    // `{:?}` prints the shortest string that parses back to the same f64.
    writeln!(out, "# TYPE {GAUGE} gauge").unwrap();
    for (kind, optional, v) in GAUGES {
        let opt = match optional {
            Some(o) => format!(",optional=\"{}\"", escape(o)),
            None => String::new(),
        };
        writeln!(out, "{GAUGE}{{kind=\"{}\"{opt}}} {v:?}", escape(kind)).unwrap();
    }
    writeln!(out, "# TYPE {WAVE} gauge").unwrap();
    writeln!(out, "{WAVE}{{shape=\"sin\"}} {:?}", (nf / 7.0).sin()).unwrap();
    writeln!(out, "{WAVE}{{shape=\"third\"}} {:?}", nf / 3.0).unwrap();
    writeln!(out, "# TYPE {COUNTER} counter").unwrap();
    for (code, method, optional, per_scrape) in [
        ("200", "get", None, 3.0),
        ("500", "get", None, 1.0),
        ("200", "post", Some("x"), 2.5),
    ] {
        let opt = optional
            .map(|o| format!(",optional=\"{o}\""))
            .unwrap_or_default();
        writeln!(
            out,
            "{COUNTER}{{code=\"{code}\",method=\"{method}\"{opt}}} {:?}",
            per_scrape * nf
        )
        .unwrap();
    }
    writeln!(out, "# TYPE {HISTOGRAM} histogram").unwrap();
    let bounds = [0.005, 0.01, 0.05, 0.1, 0.5, 1.0];
    let mut cumulative = 0.0;
    for (i, le) in bounds.iter().enumerate() {
        // Each scrape adds a different number of observations per bucket.
        cumulative += nf * 3.0 * (i as f64 + 1.0) + ((n + i as u64) % 3) as f64;
        writeln!(out, "{HISTOGRAM}_bucket{{le=\"{le}\"}} {cumulative:?}").unwrap();
    }
    cumulative += nf;
    writeln!(out, "{HISTOGRAM}_bucket{{le=\"+Inf\"}} {cumulative:?}").unwrap();
    writeln!(out, "{HISTOGRAM}_sum {:?}", nf * 12.345).unwrap();
    writeln!(out, "{HISTOGRAM}_count {cumulative:?}").unwrap();
    out
}
