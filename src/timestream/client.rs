//! AWS SDK client construction and the per-credential client cache.
//!
//! One `Clients` (a Timestream write client and a query client) is built per distinct
//! credential and kept in a bounded LRU cache (`moka`, `--aws.client-cache-size` entries);
//! the key is the whole credential (access key id, secret AND session token, as a
//! [`CredentialKey`]), so one caller's clients never serve a request signed with other
//! keys. Every client shares the HTTP connector of one base `SdkConfig`, so connections are
//! pooled.
//!
//! Endpoints: with a base-endpoint override (VPC endpoint, local store) clients call it
//! directly. Otherwise Timestream requires endpoint discovery (SPEC §2.7, §8.2): we call
//! DescribeEndpoints with the caller's own credentials (the cell depends on the account),
//! cache the answer in that credential's entry for its CachePeriodInMinutes, and rebuild the
//! data-plane client against `https://<Address>`. The SDK's own discovery is not used
//! because it binds one credential per client and panics on an empty endpoint list.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_config::{AppName, BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_smithy_types::retry::RetryConfig;

use super::error::{classify, Failure, FailureKind};

/// The credentials one request is served with.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum RequestCredentials {
    /// Keys from the request's basic-auth header.
    Static {
        /// AWS access key id (basic-auth user name).
        access_key_id: String,
        /// AWS secret access key (basic-auth password).
        secret_access_key: String,
        /// Session token of temporary credentials (STS), from the `X-Aws-Session-Token`
        /// header; part of the cache key like the secret, so a token never signs for a
        /// request that did not carry it.
        session_token: Option<String>,
    },
    /// The connector's own default credential chain (`--enable-sigv4-auth=true`).
    DefaultChain,
}

impl fmt::Debug for RequestCredentials {
    // Never print the secret; the key id is shortened as AWS consoles do.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestCredentials::Static {
                access_key_id,
                session_token,
                ..
            } => {
                let shown: String = access_key_id.chars().take(4).collect();
                let token = if session_token.is_some() {
                    ", session token redacted"
                } else {
                    ""
                };
                write!(f, "Static({shown}…, secret redacted{token})")
            }
            RequestCredentials::DefaultChain => write!(f, "DefaultChain"),
        }
    }
}

/// What per-credential caches are keyed by: the access key id and a salted SHA-256 of the
/// secret, never the secret itself (issue 13: the column cache was keyed by the key id
/// alone, so a made-up secret with someone's key id drove planning from their cache; the
/// client cache kept every secret as a map key). The salt is random per process, so a
/// memory dump does not allow a dictionary attack on weak secrets. The secret itself
/// stays only where it is needed: in the SDK clients that sign with it.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CredentialKey {
    /// Static keys from basic auth.
    Static {
        /// AWS access key id.
        access_key_id: String,
        /// Salted SHA-256 of the secret access key and the session token, if any.
        secret_digest: [u8; 32],
    },
    /// The connector's own credential chain.
    DefaultChain,
}

impl fmt::Debug for CredentialKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredentialKey::Static { access_key_id, .. } => {
                let shown: String = access_key_id.chars().take(4).collect();
                write!(f, "CredentialKey({shown}…)")
            }
            CredentialKey::DefaultChain => write!(f, "CredentialKey(DefaultChain)"),
        }
    }
}

/// 32 random bytes per process (from the standard library's per-process random keys).
fn salt() -> &'static [u8; 32] {
    use std::hash::{BuildHasher, Hasher};
    static SALT: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
    SALT.get_or_init(|| {
        let mut out = [0u8; 32];
        for (i, chunk) in out.chunks_mut(8).enumerate() {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_usize(i);
            chunk.copy_from_slice(&h.finish().to_le_bytes());
        }
        out
    })
}

impl RequestCredentials {
    /// The key of this credential in per-credential caches.
    pub fn cache_key(&self) -> CredentialKey {
        use sha2::{Digest, Sha256};
        match self {
            RequestCredentials::Static {
                access_key_id,
                secret_access_key,
                session_token,
            } => {
                let mut h = Sha256::new();
                h.update(salt());
                // Each field length-prefixed, so no choice of bytes (NUL included) makes
                // two different credentials hash the same input. The session token is
                // part of the credential: a request without it (or with another) never
                // shares an entry with one that carried it.
                let mut field = |b: &[u8]| {
                    h.update((b.len() as u64).to_le_bytes());
                    h.update(b);
                };
                field(access_key_id.as_bytes());
                field(secret_access_key.as_bytes());
                match session_token {
                    Some(t) => {
                        field(b"token");
                        field(t.as_bytes());
                    }
                    None => field(b""),
                }
                CredentialKey::Static {
                    access_key_id: access_key_id.clone(),
                    secret_digest: h.finalize().into(),
                }
            }
            RequestCredentials::DefaultChain => CredentialKey::DefaultChain,
        }
    }
}

/// Endpoint settings shared by all clients.
#[derive(Debug, Clone, Default)]
pub struct EndpointConfig {
    /// Write endpoint URL; None = discovery.
    pub write: Option<String>,
    /// Query endpoint URL; None = discovery.
    pub query: Option<String>,
}

/// Settings of the client cache.
#[derive(Debug, Clone)]
pub struct ClientCacheConfig {
    /// Signing region.
    pub region: String,
    /// Endpoints.
    pub endpoints: EndpointConfig,
    /// Attempts per WriteRecords call.
    pub max_write_attempts: u32,
    /// Attempts per Query call.
    pub max_read_attempts: u32,
    /// Most credentials kept.
    pub capacity: usize,
    /// Observes the body size of every WriteRecords attempt, if set.
    pub write_request_bytes: Option<prometheus::Histogram>,
}

/// SDK interceptor measuring WriteRecords request bodies (the JSON the service bills and
/// parses), so payload size per sample can be watched in production.
#[derive(Debug)]
struct WriteRequestBytes(prometheus::Histogram);

impl aws_smithy_runtime_api::client::interceptors::Intercept for WriteRequestBytes {
    fn name(&self) -> &'static str {
        "WriteRequestBytes"
    }

    fn read_before_transmit(
        &self,
        context: &aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef<'_>,
        _components: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        cfg: &mut aws_smithy_types::config_bag::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        let is_write = cfg
            .load::<aws_smithy_runtime_api::client::orchestrator::Metadata>()
            .is_some_and(|m| m.name() == "WriteRecords");
        if is_write {
            if let Some(b) = context.request().body().bytes() {
                self.0.observe(b.len() as f64);
            }
        }
        Ok(())
    }
}

/// The clients of one credential.
pub struct Clients {
    base_write: aws_sdk_timestreamwrite::Client,
    base_query: aws_sdk_timestreamquery::Client,
    write_conf: aws_sdk_timestreamwrite::Config,
    query_conf: aws_sdk_timestreamquery::Config,
    discover_write: bool,
    discover_query: bool,
    discovered_write: tokio::sync::Mutex<Option<(aws_sdk_timestreamwrite::Client, Instant)>>,
    discovered_query: tokio::sync::Mutex<Option<(aws_sdk_timestreamquery::Client, Instant)>>,
}

impl Clients {
    /// The write client to use now (discovering the cell endpoint if needed).
    pub async fn write_client(&self) -> Result<aws_sdk_timestreamwrite::Client, Failure> {
        if !self.discover_write {
            return Ok(self.base_write.clone());
        }
        cached_or_discover(&self.discovered_write, || async {
            let out = self
                .base_write
                .describe_endpoints()
                .send()
                .await
                .map_err(|e| classify(&e))?;
            let (url, ttl) = pick_endpoint(
                out.endpoints()
                    .iter()
                    .map(|e| (e.address(), e.cache_period_in_minutes())),
            )?;
            let conf = self.write_conf.to_builder().endpoint_url(url).build();
            Ok((aws_sdk_timestreamwrite::Client::from_conf(conf), ttl))
        })
        .await
    }

    /// The query client to use now (discovering the cell endpoint if needed).
    pub async fn query_client(&self) -> Result<aws_sdk_timestreamquery::Client, Failure> {
        if !self.discover_query {
            return Ok(self.base_query.clone());
        }
        cached_or_discover(&self.discovered_query, || async {
            let out = self
                .base_query
                .describe_endpoints()
                .send()
                .await
                .map_err(|e| classify(&e))?;
            let (url, ttl) = pick_endpoint(
                out.endpoints()
                    .iter()
                    .map(|e| (e.address(), e.cache_period_in_minutes())),
            )?;
            let conf = self.query_conf.to_builder().endpoint_url(url).build();
            Ok((aws_sdk_timestreamquery::Client::from_conf(conf), ttl))
        })
        .await
    }
}

/// The client in `slot` while its discovered endpoint is fresh, else a newly discovered one
/// (the lock is held meanwhile, so concurrent requests discover once).
async fn cached_or_discover<C, F, Fut>(
    slot: &tokio::sync::Mutex<Option<(C, Instant)>>,
    discover: F,
) -> Result<C, Failure>
where
    C: Clone,
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<(C, Duration), Failure>>,
{
    let mut slot = slot.lock().await;
    if let Some((c, until)) = slot.as_ref() {
        if Instant::now() < *until {
            return Ok(c.clone());
        }
    }
    let (client, ttl) = discover().await?;
    *slot = Some((client.clone(), Instant::now() + ttl));
    Ok(client)
}

/// First usable endpoint of a DescribeEndpoints answer → (URL, cache period).
fn pick_endpoint<'a>(
    mut endpoints: impl Iterator<Item = (&'a str, i64)>,
) -> Result<(String, Duration), Failure> {
    match endpoints.find(|(a, _)| !a.is_empty()) {
        Some((address, minutes)) => {
            let url = if address.contains("://") {
                address.to_string()
            } else {
                format!("https://{address}")
            };
            // At least a minute, so a zero period does not make us call on every request.
            let ttl = Duration::from_secs(60 * minutes.max(1) as u64);
            Ok((url, ttl))
        }
        None => Err(Failure {
            kind: FailureKind::Transient,
            code: "DescribeEndpoints".into(),
            message: "Timestream returned no endpoint".into(),
        }),
    }
}

/// Bounded cache of `Clients` per credential.
pub struct ClientCache {
    base: SdkConfig,
    config: ClientCacheConfig,
    /// Lookups take no global lock; recency and eviction are applied in batches (moka's
    /// housekeeping, on a cache call once 64 operations are pending or 300 ms have passed),
    /// so the bound can be passed briefly, by at most a few hundred entries.
    entries: moka::sync::Cache<CredentialKey, Arc<Clients>>,
}

impl ClientCache {
    /// Loads the base AWS configuration (region from the flag; the default credential chain,
    /// used only for `RequestCredentials::DefaultChain`, resolves lazily).
    pub async fn new(config: ClientCacheConfig) -> ClientCache {
        let base = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(config.region.clone()))
            .app_name(AppName::new("timestream-prometheus-connector").expect("valid app name"))
            .load()
            .await;
        // LRU rather than moka's default TinyLFU, whose admission filter would keep a new
        // credential out of a full cache and rebuild its clients on every request.
        let entries = moka::sync::Cache::builder()
            .max_capacity(config.capacity.max(1) as u64)
            .eviction_policy(moka::policy::EvictionPolicy::lru())
            .build();
        ClientCache {
            base,
            config,
            entries,
        }
    }

    /// Number of credentials currently cached (pending evictions applied first).
    pub fn len(&self) -> usize {
        self.entries.run_pending_tasks();
        self.entries.entry_count() as usize
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The clients for `creds`, built on first use (concurrent first requests of one
    /// credential build them once).
    pub fn get(&self, creds: &RequestCredentials) -> Arc<Clients> {
        self.entries
            .get_with(creds.cache_key(), || Arc::new(self.build(creds)))
    }

    fn build(&self, creds: &RequestCredentials) -> Clients {
        let mut wb = aws_sdk_timestreamwrite::config::Builder::from(&self.base).retry_config(
            RetryConfig::standard().with_max_attempts(self.config.max_write_attempts.max(1)),
        );
        let mut qb = aws_sdk_timestreamquery::config::Builder::from(&self.base).retry_config(
            RetryConfig::standard().with_max_attempts(self.config.max_read_attempts.max(1)),
        );
        if let RequestCredentials::Static {
            access_key_id,
            secret_access_key,
            session_token,
        } = creds
        {
            let c = Credentials::new(
                access_key_id.clone(),
                secret_access_key.clone(),
                session_token.clone(),
                None,
                "basic-auth",
            );
            wb = wb.credentials_provider(c.clone());
            qb = qb.credentials_provider(c);
        }
        if let Some(url) = &self.config.endpoints.write {
            wb = wb.endpoint_url(url.clone());
        }
        if let Some(h) = &self.config.write_request_bytes {
            wb = wb.interceptor(WriteRequestBytes(h.clone()));
        }
        if let Some(url) = &self.config.endpoints.query {
            qb = qb.endpoint_url(url.clone());
        }
        let write_conf = wb.build();
        let query_conf = qb.build();
        Clients {
            base_write: aws_sdk_timestreamwrite::Client::from_conf(write_conf.clone()),
            base_query: aws_sdk_timestreamquery::Client::from_conf(query_conf.clone()),
            write_conf,
            query_conf,
            discover_write: self.config.endpoints.write.is_none(),
            discover_query: self.config.endpoints.query.is_none(),
            discovered_write: tokio::sync::Mutex::new(None),
            discovered_query: tokio::sync::Mutex::new(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(capacity: usize) -> ClientCacheConfig {
        ClientCacheConfig {
            region: "us-east-1".into(),
            endpoints: EndpointConfig {
                write: Some("http://127.0.0.1:1".into()),
                query: Some("http://127.0.0.1:1".into()),
            },
            max_write_attempts: 10,
            max_read_attempts: 3,
            capacity,
            write_request_bytes: None,
        }
    }

    fn creds(a: &str, s: &str) -> RequestCredentials {
        RequestCredentials::Static {
            access_key_id: a.into(),
            secret_access_key: s.into(),
            session_token: None,
        }
    }

    fn with_token(a: &str, s: &str, t: &str) -> RequestCredentials {
        RequestCredentials::Static {
            access_key_id: a.into(),
            secret_access_key: s.into(),
            session_token: Some(t.into()),
        }
    }

    #[tokio::test]
    async fn session_token_is_part_of_the_key() {
        let cache = ClientCache::new(cfg(8)).await;
        let plain = cache.get(&creds("ASIA", "s"));
        let t1 = cache.get(&with_token("ASIA", "s", "t1"));
        let t2 = cache.get(&with_token("ASIA", "s", "t2"));
        assert!(!Arc::ptr_eq(&plain, &t1));
        assert!(!Arc::ptr_eq(&t1, &t2));
        assert!(Arc::ptr_eq(&t1, &cache.get(&with_token("ASIA", "s", "t1"))));
        assert_eq!(cache.len(), 3);
        let shown = format!(
            "{:?}",
            with_token("ASIAEXAMPLE", "wJalr", "FwoGZXIvYXdzEJr")
        );
        assert!(
            !shown.contains("FwoGZ") && !shown.contains("wJalr"),
            "{shown}"
        );
    }

    #[tokio::test]
    async fn same_key_different_secret_gets_its_own_clients() {
        let cache = ClientCache::new(cfg(8)).await;
        let a = cache.get(&creds("AKID", "s1"));
        let b = cache.get(&creds("AKID", "s2"));
        let a2 = cache.get(&creds("AKID", "s1"));
        assert!(!Arc::ptr_eq(&a, &b));
        assert!(Arc::ptr_eq(&a, &a2));
        assert_eq!(cache.len(), 2);
    }

    #[tokio::test]
    async fn least_recently_used_is_evicted() {
        let cache = ClientCache::new(cfg(2)).await;
        // moka applies recency in batches (see `ClientCache::entries`); settling after each
        // step stands for requests that do not all fall into one batch.
        let settle = || cache.entries.run_pending_tasks();
        let a = cache.get(&creds("A", "s"));
        settle();
        let b = cache.get(&creds("B", "s"));
        settle();
        let _ = cache.get(&creds("A", "s"));
        settle();
        let _c = cache.get(&creds("C", "s"));
        assert_eq!(cache.len(), 2);
        assert!(Arc::ptr_eq(&a, &cache.get(&creds("A", "s"))));
        assert!(
            !Arc::ptr_eq(&b, &cache.get(&creds("B", "s"))),
            "B, the least recently used, was evicted and is built anew"
        );
    }

    #[tokio::test]
    async fn the_bound_holds_under_many_credentials() {
        let cache = ClientCache::new(cfg(4)).await;
        for i in 0..200 {
            let _ = cache.get(&creds(&format!("AKID{i}"), "s"));
        }
        assert_eq!(cache.len(), 4);
    }

    #[test]
    fn cache_keys_hold_a_digest_of_the_secret_never_the_secret() {
        let a = creds("AKIAEXAMPLE", "wJalrXUtnFEMI");
        let k = a.cache_key();
        assert_eq!(k, a.cache_key());
        assert_ne!(k, creds("AKIAEXAMPLE", "wJalrXUtnFEMJ").cache_key());
        assert_ne!(k, creds("AKIAEXAMPLF", "wJalrXUtnFEMI").cache_key());
        // Key id and secret are separated: moving a byte across does not collide.
        assert_ne!(creds("ab", "c").cache_key(), creds("a", "bc").cache_key());
        // A NUL inside the secret cannot imitate a session token.
        let with_token = RequestCredentials::Static {
            access_key_id: "a".into(),
            secret_access_key: "b".into(),
            session_token: Some("c".into()),
        };
        for fake in [
            "b\0c",
            "b\0\0c",
            "b\u{5}\0\0\0\0\0\0\0token\u{1}\0\0\0\0\0\0\0c",
        ] {
            assert_ne!(
                with_token.cache_key(),
                creds("a", fake).cache_key(),
                "{fake:?}"
            );
        }
        let CredentialKey::Static { secret_digest, .. } = &k else {
            panic!("{k:?}")
        };
        assert!(!secret_digest
            .windows(4)
            .any(|w| "wJalrXUtnFEMI".as_bytes().windows(4).any(|s| s == w)));
        assert!(!format!("{k:?}").contains("wJalr"));
    }

    #[test]
    fn debug_never_shows_secret() {
        let s = format!("{:?}", creds("AKIAEXAMPLE", "wJalrXUtnFEMI"));
        assert!(!s.contains("wJalr"));
        assert!(!s.contains("AKIAEXAMPLE"));
    }

    #[test]
    fn endpoint_pick() {
        let (u, ttl) =
            pick_endpoint([("ingest-cell2.timestream.us-east-1.amazonaws.com", 1440)].into_iter())
                .unwrap();
        assert_eq!(u, "https://ingest-cell2.timestream.us-east-1.amazonaws.com");
        assert_eq!(ttl, Duration::from_secs(1440 * 60));
        assert!(pick_endpoint(std::iter::empty()).is_err());
    }
}
