//! Backpressure for the remote write/read routes: a bound on requests handled at once
//! (beyond it: 503 + `Retry-After` at once, before the body is read, instead of an
//! unbounded queue), a request timeout shorter than Prometheus' 30 s `remote_timeout`, a
//! global bound on WriteRecords calls in flight across requests, and the shutdown cut
//! (requests still running at the shutdown deadline are answered 503).
//!
//! Every refusal here is a 503: Prometheus retries 5xx (honouring `Retry-After`) but drops
//! a 429 unless `retry_on_http_429` is set, and a request cut mid-way may have stored part
//! of its samples, which is harmless because identical re-writes are no-ops in Timestream.
//!
//! Also the request-hygiene rules both routes share (Content-Encoding, `proto=`, where a
//! large body is decoded). The refusals are `ApiError` variants; `ApiError::answer` picks
//! their status and headers.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use crate::config::LimitsConfig;
use crate::error::ApiError;
use crate::metrics::Metrics;

/// The limits of one router (shared by its clones; put into each limited request's
/// extensions so the write handler can take WriteRecords slots).
#[derive(Clone)]
pub struct Limits {
    inner: Arc<Inner>,
}

struct Inner {
    requests: Arc<Semaphore>,
    max_requests: usize,
    write_calls: Arc<Semaphore>,
    request_timeout: Duration,
    stream_timeout: Duration,
    cut: watch::Sender<bool>,
    metrics: Arc<Metrics>,
}

impl Limits {
    /// Limits from the configuration, counting into `metrics`.
    pub fn new(config: &LimitsConfig, metrics: Arc<Metrics>) -> Limits {
        let (cut, _) = watch::channel(false);
        Limits {
            inner: Arc::new(Inner {
                requests: Arc::new(Semaphore::new(config.max_concurrent_requests.max(1))),
                max_requests: config.max_concurrent_requests.max(1),
                write_calls: Arc::new(Semaphore::new(config.max_inflight_write_calls.max(1))),
                request_timeout: config.request_timeout,
                stream_timeout: config.stream_timeout,
                cut,
                metrics,
            }),
        }
    }

    /// Called at the shutdown deadline: every limited request still running (and any that
    /// arrives later) is answered 503 at once, dropping its work.
    pub fn cut_in_flight(&self) {
        self.inner.cut.send_replace(true);
    }

    /// Takes between 1 and `want` WriteRecords slots: waits (in FIFO order, within the
    /// request timeout) for the first, then takes what is free up to `want`. The request
    /// sends at most that many calls at once, so calls in flight across all requests never
    /// exceed `--write.max-inflight-calls`.
    pub async fn write_slots(&self, want: usize) -> WriteSlots {
        let sem = &self.inner.write_calls;
        let mut permit = sem
            .clone()
            .acquire_owned()
            .await
            .expect("the write-call semaphore is never closed");
        let mut n = 1;
        while n < want {
            match sem.clone().try_acquire_owned() {
                Ok(p) => {
                    permit.merge(p);
                    n += 1;
                }
                Err(_) => break,
            }
        }
        let gauge = self.inner.metrics.write_call_slots_in_use.clone();
        gauge.add(n as i64);
        WriteSlots {
            _permit: permit,
            n,
            gauge,
        }
    }
}

/// WriteRecords slots held by one request; released on drop.
pub struct WriteSlots {
    _permit: OwnedSemaphorePermit,
    n: usize,
    gauge: prometheus::IntGauge,
}

impl WriteSlots {
    /// How many WriteRecords calls the request may have in flight.
    pub fn count(&self) -> usize {
        self.n
    }
}

impl Drop for WriteSlots {
    fn drop(&mut self) {
        self.gauge.sub(self.n as i64);
    }
}

/// Middleware of the remote write/read routes.
pub async fn limit(State(limits): State<Limits>, mut req: Request, next: Next) -> Response {
    let inner = &limits.inner;
    let started = tokio::time::Instant::now();
    let Ok(permit) = inner.requests.clone().try_acquire_owned() else {
        inner.metrics.requests_shed.inc();
        return ApiError::Overloaded {
            max: inner.max_requests,
        }
        .into_response();
    };
    let mut cut = inner.cut.subscribe();
    req.extensions_mut().insert(limits.clone());
    let timeout = inner.request_timeout;
    tokio::select! {
        r = tokio::time::timeout(timeout, next.run(req)) => match r {
            Ok(resp) => hold_while_streaming(resp, permit, started + inner.stream_timeout, inner),
            Err(_) => {
                inner.metrics.request_timeouts.inc();
                tracing::warn!(timeout_ms = timeout.as_millis() as u64,
                    "request timed out; answered 503 so the sender retries");
                ApiError::TimedOut(timeout).into_response()
            }
        },
        _ = async {
            // A closed channel cannot be cut any more: wait for the request instead.
            if cut.wait_for(|c| *c).await.is_err() {
                std::future::pending::<()>().await;
            }
        } => {
            inner.metrics.requests_cut_at_shutdown.inc();
            ApiError::ShuttingDown.into_response()
        }
    }
}

/// A streamed answer (a body of unknown length: streamed remote read) keeps the request's
/// concurrency slot until its last byte is sent, and is cut at `deadline`
/// (`--read.stream-timeout` from the request's start): the slot no longer frees when the
/// headers go out while the body runs on without bound (issue 13). A cut body ends with an
/// error, so the client sees a failed transfer, never a short answer with a 200. Answers of
/// known length release the slot when returned.
fn hold_while_streaming(
    resp: Response,
    permit: OwnedSemaphorePermit,
    deadline: tokio::time::Instant,
    inner: &Inner,
) -> Response {
    use axum::body::{Body, HttpBody};
    use futures::StreamExt;
    if resp.body().size_hint().exact().is_some() {
        return resp;
    }
    let timeouts = inner.metrics.request_timeouts.clone();
    let (parts, body) = resp.into_parts();
    struct Held {
        data: axum::body::BodyDataStream,
        sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
        _permit: OwnedSemaphorePermit,
        timeouts: prometheus::IntCounter,
        done: bool,
    }
    let held = Held {
        data: body.into_data_stream(),
        sleep: Box::pin(tokio::time::sleep_until(deadline)),
        _permit: permit,
        timeouts,
        done: false,
    };
    let stream = futures::stream::unfold(held, |mut h| async move {
        if h.done {
            return None;
        }
        tokio::select! {
            item = h.data.next() => item.map(|i| (i, h)),
            _ = h.sleep.as_mut() => {
                h.done = true;
                h.timeouts.inc();
                tracing::warn!("streamed answer cut at --read.stream-timeout");
                let e = axum::Error::new("the streamed answer passed --read.stream-timeout");
                Some((Err(e), h))
            }
        }
    });
    Response::from_parts(parts, Body::from_stream(stream))
}

/// The `Content-Encoding` rule both remote routes share: absent is taken as snappy (the
/// upstream never checked it and some clients omit it), anything else than `snappy` is
/// refused (each route answers it as its unsupported-media-type error, 415), so a sender learns at once that the body cannot be read instead of getting a 400
/// about undecodable snappy.
pub fn check_content_encoding(headers: &HeaderMap, route: &str) -> Result<(), String> {
    let Some(enc) = headers.get(header::CONTENT_ENCODING) else {
        return Ok(());
    };
    let enc = enc.to_str().unwrap_or("").trim();
    if enc.eq_ignore_ascii_case("snappy") {
        return Ok(());
    }
    Err(format!(
        "Content-Encoding {enc:?} is not supported; remote {route} bodies must be snappy-compressed"
    ))
}

/// The `proto=` parameter of a `Content-Type` (`application/x-protobuf;proto=...`), if any:
/// parameters are parsed tolerantly (whitespace around `;`/`=`, case of the name, quotes).
pub fn content_type_proto(headers: &HeaderMap) -> Option<String> {
    let ct = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    ct.split(';').skip(1).find_map(|param| {
        let (k, v) = param.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("proto")
            .then(|| v.trim().trim_matches('"').to_string())
    })
}

/// Decompressed size from which a body is decompressed (and, on /read, decoded) on the
/// blocking pool rather than on an async worker, so one 64 MiB body does not stall the
/// other requests sharing that worker. Below it, the hop costs more than it saves.
pub const BLOCKING_DECODE_BYTES: usize = 1 << 20;

/// Whether the snappy body declares at least [`BLOCKING_DECODE_BYTES`].
pub fn decode_off_worker(body: &[u8]) -> bool {
    snap::raw::decompress_len(body).is_ok_and(|n| n >= BLOCKING_DECODE_BYTES)
}

/// Runs `f` on the blocking pool (a panic in it becomes a 500 like a handler's).
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// Runs CPU-heavy work over a large body (`large`: see [`decode_off_worker`]) that borrows
/// the request, so it cannot move to the blocking pool: on the multi-threaded runtime
/// `block_in_place` first hands this worker's other tasks to another worker, so a 64 MiB
/// body does not stall them; elsewhere (a current-thread runtime, as in some tests) it
/// runs inline.
pub fn cpu_heavy<T>(large: bool, f: impl FnOnce() -> T) -> T {
    let multi_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if large && multi_thread {
        tokio::task::block_in_place(f)
    } else {
        f()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(k.clone(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn content_encoding_absent_or_snappy_passes_anything_else_is_415() {
        assert!(check_content_encoding(&HeaderMap::new(), "read").is_ok());
        for ok in ["snappy", "Snappy", " snappy "] {
            let h = headers(&[(header::CONTENT_ENCODING, ok)]);
            assert!(check_content_encoding(&h, "read").is_ok(), "{ok:?}");
        }
        for bad in ["gzip", "identity", "zstd", ""] {
            let h = headers(&[(header::CONTENT_ENCODING, bad)]);
            let e = check_content_encoding(&h, "read").unwrap_err();
            assert!(e.contains("snappy"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn proto_parameter_is_parsed_tolerantly() {
        let h = headers(&[(
            header::CONTENT_TYPE,
            "application/x-protobuf ; PROTO = \"io.prometheus.write.v2.Request\"",
        )]);
        assert_eq!(
            content_type_proto(&h).as_deref(),
            Some("io.prometheus.write.v2.Request")
        );
        let h = headers(&[(header::CONTENT_TYPE, "application/x-protobuf")]);
        assert_eq!(content_type_proto(&h), None);
        assert_eq!(content_type_proto(&HeaderMap::new()), None);
    }

    fn limits(requests: usize, calls: usize) -> Limits {
        Limits::new(
            &LimitsConfig {
                max_concurrent_requests: requests,
                request_timeout: Duration::from_secs(1),
                shutdown_timeout: Duration::from_secs(1),
                max_inflight_write_calls: calls,
                stream_timeout: Duration::from_secs(60),
                header_read_timeout: Duration::from_secs(10),
                max_connections: 1024,
            },
            Arc::new(Metrics::new()),
        )
    }

    #[tokio::test]
    async fn write_slots_share_the_global_bound() {
        let l = limits(10, 5);
        let a = l.write_slots(3).await;
        assert_eq!(a.count(), 3);
        let b = l.write_slots(16).await;
        assert_eq!(b.count(), 2, "only what is left");
        assert_eq!(l.inner.metrics.write_call_slots_in_use.get(), 5);
        // A third request waits until slots come back.
        let waiting = tokio::time::timeout(Duration::from_millis(50), l.write_slots(1)).await;
        assert!(waiting.is_err(), "must wait while all slots are held");
        drop(a);
        let c = l.write_slots(8).await;
        assert_eq!(c.count(), 3);
        drop((b, c));
        assert_eq!(l.inner.metrics.write_call_slots_in_use.get(), 0);
    }
}
