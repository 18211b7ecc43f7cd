//! Standalone server: builds the app state (SDK clients, embedded local store when asked),
//! binds the listen address (Go notation), serves plain HTTP or HTTPS (rustls), and shuts
//! down gracefully on SIGTERM / Ctrl-C. Startup problems are errors with a clear message;
//! `main` turns them into exit code 1.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use axum::Router;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::http::AppState;
use crate::metrics::Metrics;
use crate::read::ReadService;
use crate::timestream::client::{
    ClientCache, ClientCacheConfig, EndpointConfig, RequestCredentials,
};

/// Credentials the connector itself uses against the embedded store (which accepts any).
const LOCAL_STORE_KEYS: (&str, &str) = ("local", "local");

/// A built application: state plus the embedded store it owns, if any.
pub struct Runtime {
    /// Shared state for `app()`.
    pub state: AppState,
    /// Embedded timestream-local, shut down with `Runtime::shutdown`.
    pub local_store: Option<timestream_local::Server>,
}

impl Runtime {
    /// Builds state and, with `--local-store`, starts the store and creates the default
    /// database and table when missing.
    pub async fn build(mut config: Config) -> anyhow::Result<Runtime> {
        let metrics = Metrics::new();
        let mut local_store = None;
        if let Some(ls) = &config.local_store {
            std::fs::create_dir_all(&ls.data_dir).with_context(|| {
                format!(
                    "cannot create --local-store directory {}",
                    ls.data_dir.display()
                )
            })?;
            let mut opts = timestream_local::Options::new(ls.data_dir.clone());
            opts.listen_address = ls.listen_address;
            let server = timestream_local::Server::start(opts)
                .await
                .with_context(|| {
                    format!(
                        "cannot start the local store on {} with data in {}",
                        ls.listen_address,
                        ls.data_dir.display()
                    )
                })?;
            let url = server.url();
            config.write.base_endpoint = Some(url.clone());
            config.read.base_endpoint = Some(url);
            local_store = Some(server);
        }
        let clients = ClientCache::new(ClientCacheConfig {
            region: config.region.clone(),
            endpoints: EndpointConfig {
                write: config.write.base_endpoint.clone(),
                query: config.read.base_endpoint.clone(),
            },
            max_write_attempts: config.write.max_retries,
            max_read_attempts: config.read.max_retries,
            capacity: config.client_cache_size,
            write_request_bytes: Some(metrics.write_request_bytes.clone()),
        })
        .await;
        if local_store.is_some() {
            ensure_destination(&clients, &config).await?;
        }
        Ok(Runtime {
            state: AppState {
                read: Arc::new(ReadService::from_config(&config)),
                config: Arc::new(config),
                metrics: Arc::new(metrics),
                clients: Arc::new(clients),
            },
            local_store,
        })
    }

    /// Stops the embedded store.
    pub async fn shutdown(self) {
        if let Some(s) = self.local_store {
            s.shutdown().await;
        }
    }
}

/// Creates the default database and table in the embedded store if they do not exist.
async fn ensure_destination(clients: &ClientCache, config: &Config) -> anyhow::Result<()> {
    let creds = RequestCredentials::Static {
        access_key_id: LOCAL_STORE_KEYS.0.into(),
        secret_access_key: LOCAL_STORE_KEYS.1.into(),
        session_token: None,
    };
    let client = clients
        .get(&creds)
        .write_client()
        .await
        .map_err(|f| anyhow::anyhow!("local store: {f}"))?;
    let db = &config.destination.default_database;
    let table = &config.destination.default_table;
    if db.is_empty() || table.is_empty() {
        return Ok(());
    }
    match client.create_database().database_name(db).send().await {
        Ok(_) => tracing::info!(database = %db, "created database in the local store"),
        Err(e) if is_conflict(&e) => {}
        Err(e) => bail!(
            "local store: cannot create database {db}: {}",
            aws_sdk_timestreamwrite::error::DisplayErrorContext(&e)
        ),
    }
    match client
        .create_table()
        .database_name(db)
        .table_name(table)
        .send()
        .await
    {
        Ok(_) => tracing::info!(database = %db, table = %table, "created table in the local store"),
        Err(e) if is_conflict(&e) => {}
        Err(e) => bail!(
            "local store: cannot create table {db}.{table}: {}",
            aws_sdk_timestreamwrite::error::DisplayErrorContext(&e)
        ),
    }
    Ok(())
}

fn is_conflict<E: aws_sdk_timestreamwrite::error::ProvideErrorMetadata, R>(
    e: &aws_sdk_timestreamwrite::error::SdkError<E, R>,
) -> bool {
    e.as_service_error().and_then(|s| s.code()) == Some("ConflictException")
}

/// Resolves a listen address in Go notation (`:9201` = every interface, `host:port`).
pub async fn bind(address: &str) -> anyhow::Result<TcpListener> {
    if let Some(port) = address.strip_prefix(':') {
        let port: u16 = port
            .parse()
            .with_context(|| format!("--web.listen-address {address:?}: invalid port"))?;
        // Dual-stack first (what Go does for ":port"), IPv4 where IPv6 is unavailable.
        return match TcpListener::bind(SocketAddr::from(([0u16; 8], port))).await {
            Ok(l) => Ok(l),
            Err(_) => TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], port)))
                .await
                .with_context(|| format!("cannot listen on {address}")),
        };
    }
    TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on --web.listen-address {address:?}"))
}

/// Loads a PEM certificate chain and private key into a rustls server config, checking
/// that the key belongs to the certificate. Clients are not asked for certificates.
pub fn load_tls(cert: &Path, key: &Path) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    load_tls_with_client_ca(cert, key, None)
}

/// Builds the HTTPS server config from `--tls-certificate`, `--tls-key` and, for mutual TLS,
/// `--tls-client-ca`.
pub fn load_tls_config(
    tls: &crate::config::TlsConfig,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    load_tls_with_client_ca(&tls.certificate, &tls.key, tls.client_ca.as_deref())
}

/// Reads the `--tls-client-ca` bundle into a trust store; every PEM certificate in it
/// must be a usable trust anchor, so a typo'd or truncated bundle fails at startup.
fn load_client_roots(path: &Path) -> anyhow::Result<rustls::RootCertStore> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("cannot read --tls-client-ca {}", path.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("--tls-client-ca {} is not valid PEM", path.display()))?;
    if certs.is_empty() {
        bail!(
            "--tls-client-ca {} contains no PEM certificate",
            path.display()
        );
    }
    let mut roots = rustls::RootCertStore::empty();
    for (i, c) in certs.into_iter().enumerate() {
        roots.add(c).map_err(|e| {
            anyhow::anyhow!(
                "--tls-client-ca {}: certificate #{} is not a usable CA certificate: {e}",
                path.display(),
                i + 1
            )
        })?;
    }
    Ok(roots)
}

/// Like `load_tls`; with `client_ca`, every client must present a certificate chaining to
/// one of the CAs in that PEM bundle, checked during the handshake (a client without one,
/// or with one from another CA, gets a TLS alert and never reaches HTTP).
pub fn load_tls_with_client_ca(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("cannot read --tls-certificate {}", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("--tls-certificate {} is not valid PEM", cert.display()))?;
    if certs.is_empty() {
        bail!(
            "--tls-certificate {} contains no PEM certificate",
            cert.display()
        );
    }
    let key_der = PrivateKeyDer::from_pem_file(key).with_context(|| {
        format!(
            "cannot read a PEM private key from --tls-key {}",
            key.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let signing_key = provider
        .key_provider
        .load_private_key(key_der.clone_key())
        .with_context(|| format!("--tls-key {} is not a usable private key", key.display()))?;
    let certified = rustls::sign::CertifiedKey::new(certs.clone(), signing_key);
    certified.keys_match().map_err(|e| {
        anyhow::anyhow!(
            "--tls-key {} does not match --tls-certificate {}: {e}",
            key.display(),
            cert.display()
        )
    })?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        // rustls' safe defaults are TLS 1.3 and 1.2; 1.0 and 1.1 are not implemented.
        .with_safe_default_protocol_versions()
        .context("TLS protocol setup")?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let roots = load_client_roots(ca)?;
            // Same provider as the server side, so signature checks use aws-lc-rs too.
            // No `allow_unauthenticated`: a client without a certificate is refused.
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .with_context(|| format!("--tls-client-ca {} cannot be used", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut cfg = builder
        .with_single_cert(certs, key_der)
        .with_context(|| format!("--tls-certificate {} cannot be used", cert.display()))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Serves `app` on `listener` until `shutdown` completes, over TLS when `tls` is given;
/// in-flight requests then get 30 s to finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_graceful(listener, app, tls, shutdown, Duration::from_secs(30), None).await
}

/// After the shutdown deadline, how long the 503 answers of cut requests get to be written.
const CUT_FLUSH: Duration = Duration::from_secs(1);

/// Connection-level limits of the HTTP server (issue 13).
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    /// A client must send a request's headers within this time (`--web.header-read-timeout`):
    /// the first request's from the connection's start (TLS handshake included), each
    /// later one's from the end of the previous answer, so an idle keep-alive connection
    /// is closed after it too. A slow-loris client holds a connection no longer.
    pub header_read_timeout: Duration,
    /// Connections served at once (`--web.max-connections`); the next is accepted when
    /// one closes (meanwhile it waits in the kernel's backlog).
    pub max_connections: usize,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            header_read_timeout: Duration::from_secs(10),
            max_connections: crate::config::DEFAULT_MAX_CONNECTIONS as usize,
        }
    }
}

impl ServeOptions {
    /// The options of a configuration.
    pub fn from_config(config: &Config) -> ServeOptions {
        ServeOptions {
            header_read_timeout: config.limits.header_read_timeout,
            max_connections: config.limits.max_connections,
        }
    }
}

/// Serves `app` until `shutdown` completes; then stops accepting (the listener is closed,
/// so new connections are refused) and lets in-flight requests finish for up to `grace`.
/// At the deadline, `limits` answers those still running 503 (never 2xx for data not
/// stored) and their answers get `CUT_FLUSH` to be written before connections are dropped.
pub async fn serve_graceful(
    listener: TcpListener,
    app: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
    limits: Option<crate::http::limits::Limits>,
) -> std::io::Result<()> {
    serve_with(
        listener,
        app,
        tls,
        shutdown,
        grace,
        limits,
        ServeOptions::default(),
    )
    .await
}

/// [`serve_graceful`] with connection limits. Plain HTTP and HTTPS share one hyper-util
/// loop (HTTP/1.1 and HTTP/2 on both), so both get the header-read timeout and the
/// connection cap.
pub async fn serve_with(
    listener: TcpListener,
    app: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
    limits: Option<crate::http::limits::Limits>,
    options: ServeOptions,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioTimer};
    use hyper_util::server::conn::auto::Builder;

    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        shutdown.await;
        tracing::info!(
            grace_ms = grace.as_millis() as u64,
            "stop requested: no new connections; finishing in-flight requests"
        );
        let _ = stopping_tx.send(());
    };
    let deadline = async move {
        if stopping_rx.await.is_err() {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(grace).await;
    };
    let cut = move || {
        if let Some(l) = &limits {
            tracing::warn!("shutdown deadline passed: answering unfinished requests 503");
            l.cut_in_flight();
        }
    };
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let connections = Arc::new(tokio::sync::Semaphore::new(options.max_connections.max(1)));
    tokio::pin!(shutdown);
    loop {
        // A slot first: beyond the cap, connections wait in the kernel's backlog.
        let slot = tokio::select! {
            p = connections.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = &mut shutdown => break,
        };
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Transient accept errors (EMFILE…) must not stop the server.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let conn = Connection {
            app: app.clone(),
            builder: builder.clone(),
            watcher: graceful.watcher(),
            header_read_timeout: options.header_read_timeout,
            peer,
        };
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _slot = slot;
            match acceptor {
                None => conn.serve(tcp).await,
                Some(acceptor) => {
                    // The handshake counts against the header-read timeout too.
                    let started = tokio::time::Instant::now();
                    let stream =
                        match tokio::time::timeout(conn.header_read_timeout, acceptor.accept(tcp))
                            .await
                        {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "TLS handshake timed out");
                                return;
                            }
                        };
                    let left = conn.header_read_timeout.saturating_sub(started.elapsed());
                    conn.serve_within(stream, left).await
                }
            }
        });
    }
    // Closing the listener refuses new connections while the old ones finish.
    drop(listener);
    let drained = graceful.shutdown();
    tokio::pin!(drained);
    tokio::select! {
        _ = &mut drained => return Ok(()),
        _ = deadline => {}
    }
    cut();
    let _ = tokio::time::timeout(CUT_FLUSH, &mut drained).await;
    Ok(())
}

/// One accepted connection.
struct Connection {
    app: Router,
    builder: hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>,
    watcher: hyper_util::server::graceful::Watcher,
    header_read_timeout: Duration,
    peer: SocketAddr,
}

impl Connection {
    async fn serve<I>(self, io: I)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let t = self.header_read_timeout;
        self.serve_within(io, t).await
    }

    /// Serves HTTP on `io`; drops it if no request has arrived within `first_request`
    /// (hyper's own header timeout starts only once it reads a request head, and protocol
    /// detection waits for the first bytes without one).
    async fn serve_within<I>(self, io: I, first_request: Duration)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        use hyper_util::rt::TokioIo;
        use hyper_util::service::TowerToHyperService;
        use std::sync::atomic::{AtomicBool, Ordering};
        use tower::ServiceExt;

        let seen = Arc::new(AtomicBool::new(false));
        let mark = seen.clone();
        let svc = self
            .app
            .map_request(move |r: http::Request<hyper::body::Incoming>| {
                mark.store(true, Ordering::Relaxed);
                r
            });
        let svc = TowerToHyperService::new(svc);
        let conn = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(io), svc);
        let conn = self.watcher.watch(conn.into_owned());
        tokio::pin!(conn);
        let peer = self.peer;
        let result = tokio::select! {
            r = &mut conn => r,
            _ = tokio::time::sleep(first_request) => {
                if !seen.load(Ordering::Relaxed) {
                    tracing::debug!(%peer, "no request within --web.header-read-timeout; closing");
                    return;
                }
                conn.await
            }
        };
        if let Err(e) = result {
            tracing::debug!(%peer, error = %e, "connection ended with an error");
        }
    }
}

/// Resolves when the process is asked to stop (SIGTERM or Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// Runs the standalone server until a stop signal.
pub async fn run(config: Config) -> anyhow::Result<()> {
    // Load TLS before anything listens, so a bad pair fails fast.
    let tls = match &config.tls {
        Some(t) => Some(load_tls_config(t)?),
        None => None,
    };
    let listener = bind(&config.listen_address).await?;
    let runtime = Runtime::build(config).await?;
    let addr = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    if let Some(store) = &runtime.local_store {
        // Printed on stdout (not only logged) so it is visible with logging disabled.
        println!(
            "timestream-local store listening on {} (database {:?}, table {:?}); e.g. aws timestream-query query --endpoint-url {} --query-string 'SELECT * FROM \"{}\".\"{}\" LIMIT 10'",
            store.url(),
            runtime.state.config.destination.default_database,
            runtime.state.config.destination.default_table,
            store.url(),
            runtime.state.config.destination.default_database,
            runtime.state.config.destination.default_table,
        );
    }
    println!("timestream-prometheus-connector listening on {scheme}://{addr} (remote write: /write, remote read: /read)");
    let mtls = runtime
        .state
        .config
        .tls
        .as_ref()
        .is_some_and(|t| t.client_ca.is_some());
    tracing::info!(%addr, tls = tls.is_some(), client_certificates_required = mtls, "listening");
    let limits = crate::http::limits::Limits::new(
        &runtime.state.config.limits,
        runtime.state.metrics.clone(),
    );
    let app = crate::http::app_with_limits(runtime.state.clone(), limits.clone());
    let grace = runtime.state.config.limits.shutdown_timeout;
    let options = ServeOptions::from_config(&runtime.state.config);
    serve_with(
        listener,
        app,
        tls,
        shutdown_signal(),
        grace,
        Some(limits),
        options,
    )
    .await?;
    tracing::info!("shutting down");
    runtime.shutdown().await;
    Ok(())
}
