//! Backpressure for the remote write/read routes, as a stack of tower layers
//! ([`route_layer`]): a bound on requests handled at once (beyond it: 503 + `Retry-After`
//! at once, before the body is read, instead of an unbounded queue), a request timeout
//! shorter than Prometheus' 30 s `remote_timeout`, the shutdown cut (requests still running
//! at the shutdown deadline are answered 503), and a global bound on WriteRecords calls in
//! flight across requests ([`Limits::write_slots`], taken by the write handler).
//!
//! The stack, outermost first: axum's `HandleErrorLayer` turns what the layers below refuse
//! into an [`ApiError`] and counts it ([`Limits::refusal`]); tower's `LoadShed` refuses a
//! request at once when no slot is free; [`RequestSlotLayer`] (our own) holds the request's
//! concurrency slot until the last byte of its answer and cuts a streamed answer at
//! `--read.stream-timeout`, and races the request against the shutdown cut; tower's
//! `Timeout` ends a request that has not answered within `--web.request-timeout`. tower's
//! own `ConcurrencyLimit` is not used: it frees its permit when the response future
//! completes, i.e. when the headers of a streamed read go out while its body runs on.
//!
//! Every refusal here is a 503: Prometheus retries 5xx (honouring `Retry-After`) but drops
//! a 429 unless `retry_on_http_429` is set, and a request cut mid-way may have stored part
//! of its samples, which is harmless because identical re-writes are no-ops in Timestream.
//!
//! Also the request-hygiene rules both routes share (Content-Encoding, `proto=`, where a
//! large body is decoded). The refusals are `ApiError` variants; `ApiError::answer` picks
//! their status and headers.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::error_handling::HandleErrorLayer;
use axum::extract::Request;
use axum::http::{header, HeaderMap};
use axum::response::Response;
use axum::{Extension, Router};
use futures::future::BoxFuture;
use hyper::body::{Frame, SizeHint};
use tokio::sync::{watch, AcquireError, OwnedSemaphorePermit, Semaphore};
use tower::{BoxError, Layer, Service, ServiceBuilder};

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

    /// What the client is told when a layer of [`route_layer`] refuses a request, counted
    /// in the metric of its kind: no free slot ([`ApiError::Overloaded`],
    /// `requests_shed`), `--web.request-timeout` passed ([`ApiError::TimedOut`],
    /// `request_timeouts`), the shutdown cut ([`ApiError::ShuttingDown`],
    /// `requests_cut_at_shutdown`).
    pub fn refusal(&self, e: BoxError) -> ApiError {
        let inner = &self.inner;
        if e.is::<tower::load_shed::error::Overloaded>() {
            inner.metrics.requests_shed.inc();
            ApiError::Overloaded {
                max: inner.max_requests,
            }
        } else if e.is::<tower::timeout::error::Elapsed>() {
            inner.metrics.request_timeouts.inc();
            let timeout = inner.request_timeout;
            tracing::warn!(
                timeout_ms = timeout.as_millis() as u64,
                "request timed out; answered 503 so the sender retries"
            );
            ApiError::TimedOut(timeout)
        } else if e.is::<ShutdownCut>() {
            inner.metrics.requests_cut_at_shutdown.inc();
            ApiError::ShuttingDown
        } else {
            // The routes below the layers never fail (their error is `Infallible`), and the
            // layers raise only the three errors above: this is a bug, answered as one.
            ApiError::Panicked(format!("unexpected error from the limit layers: {e}"))
        }
    }
}

/// Puts the limits on the remote routes of `router` (only those: health and metrics must
/// answer under overload). See the module documentation for the stack.
pub fn route_layer<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    limits: &Limits,
) -> Router<S> {
    let refuse = {
        let limits = limits.clone();
        move |e: BoxError| std::future::ready(limits.refusal(e))
    };
    router.route_layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(refuse))
            .load_shed()
            .layer(RequestSlotLayer::new(limits.clone()))
            .layer(Extension(limits.clone()))
            .timeout(limits.inner.request_timeout),
    )
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

/// The error of a request cut at the shutdown deadline ([`Limits::cut_in_flight`]).
#[derive(Debug, thiserror::Error)]
#[error("cut at the shutdown deadline")]
pub struct ShutdownCut;

/// Layer of [`RequestSlot`].
#[derive(Clone)]
pub struct RequestSlotLayer {
    limits: Limits,
}

impl RequestSlotLayer {
    /// Slots from `limits` (`--web.max-concurrent-requests`, `--read.stream-timeout`).
    pub fn new(limits: Limits) -> RequestSlotLayer {
        RequestSlotLayer { limits }
    }
}

impl<S> Layer<S> for RequestSlotLayer {
    type Service = RequestSlot<S>;

    fn layer(&self, inner: S) -> RequestSlot<S> {
        RequestSlot {
            inner,
            limits: self.limits.clone(),
            permit: None,
            waiting: None,
        }
    }
}

/// A wait for a free slot, kept between calls of `poll_ready`.
type Acquiring =
    Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, AcquireError>> + Send + Sync>>;

/// One of `--web.max-concurrent-requests` slots per request, held until the answer's last
/// byte: an answer of known length frees it when it is returned; a streamed one (a
/// streamed remote read) when its body ends, fails or is dropped, or at
/// `--read.stream-timeout` from the request's start, where the body is cut with an error
/// (the client sees a failed transfer, never a short answer with a 200; issue 13). Also
/// answers [`ShutdownCut`] once [`Limits::cut_in_flight`] is called, for a request that
/// has not answered yet.
///
/// `poll_ready` is ready once a slot is taken, and otherwise waits for one (woken when a
/// slot is freed), as tower's `ConcurrencyLimit` does; under tower's `LoadShed` that wait
/// becomes an immediate refusal.
pub struct RequestSlot<S> {
    inner: S,
    limits: Limits,
    permit: Option<OwnedSemaphorePermit>,
    waiting: Option<Acquiring>,
}

impl<S: Clone> Clone for RequestSlot<S> {
    /// A clone has no slot of its own (like tower's `ConcurrencyLimit`): each is readied
    /// on its own.
    fn clone(&self) -> Self {
        RequestSlot {
            inner: self.inner.clone(),
            limits: self.limits.clone(),
            permit: None,
            waiting: None,
        }
    }
}

impl<S> Service<Request> for RequestSlot<S>
where
    S: Service<Request, Response = Response>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        if self.permit.is_none() {
            let permit = match &mut self.waiting {
                Some(wait) => std::task::ready!(wait.as_mut().poll(cx)),
                None => {
                    let requests = &self.limits.inner.requests;
                    match requests.clone().try_acquire_owned() {
                        Ok(p) => Ok(p),
                        Err(_) => {
                            let mut wait: Acquiring = Box::pin(requests.clone().acquire_owned());
                            let polled = wait.as_mut().poll(cx);
                            if polled.is_pending() {
                                self.waiting = Some(wait);
                            }
                            std::task::ready!(polled)
                        }
                    }
                }
            };
            self.waiting = None;
            self.permit = Some(permit.expect("the request semaphore is never closed"));
        }
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let permit = self
            .permit
            .take()
            .expect("RequestSlot::call without a successful poll_ready");
        let inner = &self.limits.inner;
        let deadline = tokio::time::Instant::now() + inner.stream_timeout;
        let cuts = inner.metrics.request_timeouts.clone();
        let mut cut = inner.cut.subscribe();
        let answer = self.inner.call(req);
        Box::pin(async move {
            let resp = tokio::select! {
                // A request that arrives after the cut does not start.
                biased;
                _ = async {
                    // A closed channel cannot be cut any more: wait for the request instead.
                    if cut.wait_for(|c| *c).await.is_err() {
                        std::future::pending::<()>().await;
                    }
                } => return Err(ShutdownCut.into()),
                r = answer => r.map_err(Into::into)?,
            };
            Ok(hold(resp, permit, Some(Deadline::new(deadline, cuts))))
        })
    }
}

/// Keeps `guard` until the last byte of `resp`'s body when that body is streamed (of
/// unknown length): until it ends, fails or is dropped. An answer of known length is
/// already whole and drops the guard now.
pub fn hold_until_end<G: Unpin + Send + 'static>(resp: Response, guard: G) -> Response {
    hold(resp, guard, None)
}

fn hold<G: Unpin + Send + 'static>(
    resp: Response,
    guard: G,
    deadline: Option<Deadline>,
) -> Response {
    if resp.body().size_hint().exact().is_some() {
        return resp;
    }
    resp.map(|body| {
        Body::new(Held {
            body,
            guard: Some(guard),
            deadline,
            ended: false,
        })
    })
}

/// Where a streamed body is cut, and the counter of cuts.
struct Deadline {
    sleep: Pin<Box<tokio::time::Sleep>>,
    cuts: prometheus::IntCounter,
}

impl Deadline {
    fn new(at: tokio::time::Instant, cuts: prometheus::IntCounter) -> Deadline {
        Deadline {
            sleep: Box::pin(tokio::time::sleep_until(at)),
            cuts,
        }
    }
}

/// A streamed body holding a guard until it ends (see [`hold_until_end`]).
struct Held<G> {
    body: Body,
    guard: Option<G>,
    deadline: Option<Deadline>,
    ended: bool,
}

impl<G> Held<G> {
    fn end(&mut self) {
        self.ended = true;
        self.guard = None;
        self.deadline = None;
    }
}

impl<G: Unpin + Send + 'static> HttpBody for Held<G> {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        if let Some(d) = &mut this.deadline {
            if d.sleep.as_mut().poll(cx).is_ready() {
                d.cuts.inc();
                this.end();
                tracing::warn!("streamed answer cut at --read.stream-timeout");
                let e = axum::Error::new("the streamed answer passed --read.stream-timeout");
                return Poll::Ready(Some(Err(e)));
            }
        }
        let frame = std::task::ready!(Pin::new(&mut this.body).poll_frame(cx));
        if !matches!(frame, Some(Ok(_))) {
            this.end();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        if self.ended {
            SizeHint::with_exact(0)
        } else {
            self.body.size_hint()
        }
    }
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
    use axum::response::IntoResponse;

    async fn frame(body: &mut Body) -> Option<Result<Frame<Bytes>, axum::Error>> {
        std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await
    }

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

    fn config(requests: usize, calls: usize) -> LimitsConfig {
        LimitsConfig {
            max_concurrent_requests: requests,
            request_timeout: Duration::from_secs(1),
            shutdown_timeout: Duration::from_secs(1),
            max_inflight_write_calls: calls,
            stream_timeout: Duration::from_secs(60),
            header_read_timeout: Duration::from_secs(10),
            max_connections: 1024,
        }
    }

    fn limits(requests: usize, calls: usize) -> Limits {
        Limits::new(&config(requests, calls), Arc::new(Metrics::new()))
    }

    /// One request slot, with these request and stream timeouts.
    fn limits_timing(request: Duration, stream: Duration) -> Limits {
        let config = LimitsConfig {
            request_timeout: request,
            stream_timeout: stream,
            ..config(1, 1)
        };
        Limits::new(&config, Arc::new(Metrics::new()))
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

    /// A router with the limits on three routes: `/ok` answers at once with a body of known
    /// length; `/stream` answers at once with a streamed body that sends `a`, then `b` when
    /// the test's `end` sender fires (or is dropped); `/hang` never answers.
    fn limited(l: &Limits) -> (Router, tokio::sync::mpsc::UnboundedSender<Ender>) {
        use axum::routing::post;
        use std::sync::Mutex;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Ender>();
        let rx = Arc::new(Mutex::new(rx));
        let router = Router::new()
            .route("/ok", post(|| async { "ok" }))
            .route(
                "/stream",
                post(move || {
                    let end = rx.lock().unwrap().try_recv().expect("an ender per stream");
                    async move { Body::from_stream(stream_of(end.0)) }
                }),
            )
            .route("/hang", post(std::future::pending::<()>));
        (route_layer(router, l), tx)
    }

    /// Ends a `/stream` body: the route takes the receiving half.
    struct Ender(tokio::sync::oneshot::Receiver<()>);

    fn stream_of(
        end: tokio::sync::oneshot::Receiver<()>,
    ) -> impl futures::Stream<Item = Result<Bytes, std::convert::Infallible>> {
        use futures::StreamExt;
        futures::stream::once(async { Ok(Bytes::from_static(b"a")) }).chain(futures::stream::once(
            async move {
                let _ = end.await;
                Ok(Bytes::from_static(b"b"))
            },
        ))
    }

    /// A new `/stream` ender: the body ends once the returned sender fires or is dropped.
    fn ender(tx: &tokio::sync::mpsc::UnboundedSender<Ender>) -> tokio::sync::oneshot::Sender<()> {
        let (end, rx) = tokio::sync::oneshot::channel();
        tx.send(Ender(rx)).unwrap();
        end
    }

    async fn call(router: &Router, path: &str) -> Response {
        use tower::ServiceExt;
        let req = Request::post(path).body(Body::empty()).unwrap();
        router.clone().oneshot(req).await.unwrap()
    }

    async fn text(resp: Response) -> String {
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX).await;
        String::from_utf8(body.unwrap().to_vec()).unwrap()
    }

    /// The status, `Retry-After` and body of an answer.
    async fn seen(resp: Response) -> (u16, Option<String>, String) {
        let status = resp.status().as_u16();
        let retry = resp
            .headers()
            .get(header::RETRY_AFTER)
            .map(|v| v.to_str().unwrap().to_string());
        (status, retry, text(resp).await)
    }

    fn metrics(l: &Limits) -> &Metrics {
        &l.inner.metrics
    }

    #[tokio::test]
    async fn a_streamed_answer_holds_its_slot_until_its_body_ends() {
        let l = limits(1, 1);
        let (router, enders) = limited(&l);
        let end = ender(&enders);
        let streamed = call(&router, "/stream").await;
        assert_eq!(streamed.status(), 200);
        // The headers are out, the body is not: the only slot is still taken.
        let (status, retry, body) = seen(call(&router, "/ok").await).await;
        assert_eq!((status, retry.as_deref()), (503, Some("1")));
        assert_eq!(body, format!("{}\n", ApiError::Overloaded { max: 1 }));
        assert_eq!(metrics(&l).requests_shed.get(), 1);
        end.send(()).unwrap();
        assert_eq!(text(streamed).await, "ab");
        assert_eq!(seen(call(&router, "/ok").await).await.0, 200);
        // A streamed body dropped unread frees the slot too.
        let _end = ender(&enders);
        drop(call(&router, "/stream").await);
        assert_eq!(seen(call(&router, "/ok").await).await.0, 200);
        assert_eq!(metrics(&l).requests_shed.get(), 1);
        assert_eq!(metrics(&l).request_timeouts.get(), 0);
    }

    #[tokio::test]
    async fn an_answer_of_known_length_frees_its_slot_when_returned() {
        let l = limits(1, 1);
        let (router, _) = limited(&l);
        let first = call(&router, "/ok").await;
        let second = call(&router, "/ok").await;
        assert_eq!(
            (first.status().as_u16(), second.status().as_u16()),
            (200, 200)
        );
        assert_eq!(metrics(&l).requests_shed.get(), 0);
    }

    #[tokio::test]
    async fn a_streamed_body_is_cut_at_the_stream_timeout_and_frees_its_slot() {
        let l = limits_timing(Duration::from_secs(5), Duration::from_millis(300));
        let (router, enders) = limited(&l);
        let _end = ender(&enders);
        let started = tokio::time::Instant::now();
        let mut body = call(&router, "/stream").await.into_body();
        let first = frame(&mut body).await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), "a");
        // The body waits for `b` until the cut (300 ms from the start).
        let cut = tokio::time::timeout(Duration::from_secs(5), frame(&mut body)).await;
        let cut = cut.expect("cut in time").expect("an error, not the end");
        assert!(cut
            .unwrap_err()
            .to_string()
            .contains("--read.stream-timeout"));
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_secs(4),
            "{took:?}"
        );
        assert!(frame(&mut body).await.is_none(), "nothing after the cut");
        assert_eq!(metrics(&l).request_timeouts.get(), 1);
        // The slot is free although the body is still held.
        assert_eq!(seen(call(&router, "/ok").await).await.0, 200);
        drop(body);
    }

    #[tokio::test]
    async fn a_request_past_the_request_timeout_is_503_and_frees_its_slot() {
        let l = limits_timing(Duration::from_millis(300), Duration::from_secs(60));
        let (router, _) = limited(&l);
        let started = tokio::time::Instant::now();
        let (status, retry, body) = seen(call(&router, "/hang").await).await;
        assert_eq!((status, retry.as_deref()), (503, Some("1")));
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_secs(4),
            "{took:?}"
        );
        assert_eq!(
            body,
            format!("{}\n", ApiError::TimedOut(Duration::from_millis(300)))
        );
        assert_eq!(metrics(&l).request_timeouts.get(), 1);
        assert_eq!(seen(call(&router, "/ok").await).await.0, 200);
    }

    #[tokio::test]
    async fn the_shutdown_cut_answers_running_and_later_requests_503() {
        let l = limits(2, 1);
        let (router, _) = limited(&l);
        let running = tokio::spawn({
            let router = router.clone();
            async move { seen(call(&router, "/hang").await).await }
        });
        tokio::task::yield_now().await;
        l.cut_in_flight();
        let (status, retry, body) = running.await.unwrap();
        assert_eq!((status, retry.as_deref()), (503, Some("1")));
        assert_eq!(body, format!("{}\n", ApiError::ShuttingDown));
        // Later requests do not start.
        assert_eq!(seen(call(&router, "/ok").await).await.0, 503);
        assert_eq!(metrics(&l).requests_cut_at_shutdown.get(), 2);
        assert_eq!(metrics(&l).request_timeouts.get(), 0);
    }

    #[tokio::test]
    async fn a_dropped_request_frees_its_slot() {
        let l = limits(1, 1);
        let (router, _) = limited(&l);
        let hung = tokio::spawn({
            let router = router.clone();
            async move { call(&router, "/hang").await }
        });
        tokio::task::yield_now().await;
        assert_eq!(seen(call(&router, "/ok").await).await.0, 503);
        hung.abort();
        let _ = hung.await;
        assert_eq!(seen(call(&router, "/ok").await).await.0, 200);
    }

    /// Without `LoadShed` in front, `poll_ready` waits for a slot and is woken when one is
    /// freed (the `Service` contract), instead of refusing or spinning.
    #[tokio::test]
    async fn poll_ready_waits_for_a_slot_and_is_woken_when_one_frees() {
        use tower::ServiceExt;
        let l = limits(1, 1);
        let (end, rx) = tokio::sync::oneshot::channel();
        let rx = Arc::new(std::sync::Mutex::new(Some(rx)));
        let svc = RequestSlotLayer::new(l.clone()).layer(tower::service_fn(move |_: Request| {
            let end = rx.lock().unwrap().take();
            async move {
                Ok::<_, std::convert::Infallible>(match end {
                    Some(end) => Body::from_stream(stream_of(end)).into_response(),
                    None => "ok".into_response(),
                })
            }
        }));
        let req = || Request::post("/").body(Body::empty()).unwrap();
        let streamed = svc.clone().oneshot(req()).await.unwrap();
        let mut waiting = tokio::spawn(svc.clone().oneshot(req()));
        let early = tokio::time::timeout(Duration::from_millis(50), &mut waiting).await;
        assert!(early.is_err(), "ready while the only slot is held");
        end.send(()).unwrap();
        assert_eq!(text(streamed).await, "ab");
        let second = tokio::time::timeout(Duration::from_secs(5), waiting).await;
        let second = second.expect("woken when the slot frees").unwrap().unwrap();
        assert_eq!(text(second).await, "ok");
    }

    #[tokio::test]
    async fn hold_until_end_keeps_the_guard_until_the_last_frame() {
        struct Guard(Arc<std::sync::atomic::AtomicBool>);
        impl Drop for Guard {
            fn drop(&mut self) {
                self.0.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let dropped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let is_dropped = || dropped.load(std::sync::atomic::Ordering::SeqCst);
        let (end, rx) = tokio::sync::oneshot::channel();
        let resp = Body::from_stream(stream_of(rx)).into_response();
        let mut body = hold_until_end(resp, Guard(dropped.clone())).into_body();
        assert_eq!(
            frame(&mut body)
                .await
                .unwrap()
                .unwrap()
                .into_data()
                .unwrap(),
            "a"
        );
        assert!(!is_dropped());
        end.send(()).unwrap();
        assert_eq!(
            frame(&mut body)
                .await
                .unwrap()
                .unwrap()
                .into_data()
                .unwrap(),
            "b"
        );
        assert!(!is_dropped());
        assert!(frame(&mut body).await.is_none());
        assert!(
            is_dropped(),
            "released at the end, before the body is dropped"
        );
        // An answer of known length releases the guard at once.
        dropped.store(false, std::sync::atomic::Ordering::SeqCst);
        let resp = hold_until_end("whole".into_response(), Guard(dropped.clone()));
        assert!(is_dropped());
        assert_eq!(text(resp).await, "whole");
    }

    #[test]
    fn an_error_the_layers_do_not_raise_is_a_500_that_hides_its_detail() {
        let l = limits(1, 1);
        let e = l.refusal("SECRET-DETAIL".into());
        assert_eq!(e.status(), 500);
        assert!(e.answer().fixed_body.is_some());
        assert_eq!(metrics(&l).requests_shed.get(), 0);
    }
}
