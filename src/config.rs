//! Command line: every flag of the upstream Go connector under the same name, default and
//! accepted values, plus our own options (dotted names such as `--write.concurrency`).
//! `Cli` is what clap parses; `Config::try_from(Cli)` applies the cross-field rules and
//! yields the typed `Config` the rest of the crate uses. Knows nothing of HTTP or AWS.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

/// Upstream default listen address (Go notation: empty host = every interface).
pub const DEFAULT_LISTEN_ADDRESS: &str = ":9201";
/// Upstream default telemetry path.
pub const DEFAULT_TELEMETRY_PATH: &str = "/metrics";
/// Upstream default signing region.
pub const DEFAULT_REGION: &str = "us-east-1";
/// Upstream default attempts for queries (aws `retry.DefaultMaxAttempts`).
pub const DEFAULT_MAX_READ_RETRIES: u32 = 3;
/// Upstream default attempts for WriteRecords.
pub const DEFAULT_MAX_WRITE_RETRIES: u32 = 10;
/// Default address of the embedded local store.
pub const DEFAULT_LOCAL_STORE_ADDRESS: &str = "127.0.0.1:8787";
/// Database created and used by `--local-store` when `--default-database` is not given
/// (the name the upstream documentation uses in its examples).
pub const LOCAL_STORE_DEFAULT_DATABASE: &str = "prometheusDatabase";
/// Table created and used by `--local-store` when `--default-table` is not given.
pub const LOCAL_STORE_DEFAULT_TABLE: &str = "prometheusMetricsTable";
/// Largest compressed request body accepted.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 16 * 1024 * 1024;
/// Largest decompressed request body accepted.
pub const DEFAULT_MAX_DECOMPRESSED_BYTES: usize = 64 * 1024 * 1024;
/// WriteRecords calls one remote-write request may have in flight at once: Prometheus'
/// default `max_samples_per_send` (2,000) makes 20 calls, so the whole request goes out in
/// one round trip (16 needed two: 177k vs 249k samples/s at 20 ms per call, issue 7).
pub const DEFAULT_WRITE_CONCURRENCY: u32 = 32;
/// Distinct credentials whose SDK clients are kept.
pub const DEFAULT_CLIENT_CACHE_SIZE: u32 = 256;

/// Remote write/read requests handled at once; more are answered 503 at once.
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: u32 = 100;
/// WriteRecords calls in flight across all requests.
pub const DEFAULT_MAX_INFLIGHT_WRITE_CALLS: u32 = 256;
/// Longest a remote write/read request may take (below Prometheus' 30 s remote_timeout).
pub const DEFAULT_REQUEST_TIMEOUT: &str = "25s";
/// How long in-flight requests may finish after SIGTERM (below Kubernetes' 30 s grace).
pub const DEFAULT_SHUTDOWN_TIMEOUT: &str = "25s";
/// Longest a streamed remote read may take, body included (Prometheus' default
/// `remote_timeout` for remote read is 1 minute).
pub const DEFAULT_STREAM_TIMEOUT: &str = "1m";
/// Longest a client may take to send a request's headers.
pub const DEFAULT_HEADER_READ_TIMEOUT: &str = "10s";
/// TCP connections served at once; more wait in the kernel's accept queue.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 1024;

/// Values Go's `strconv.ParseBool` accepts, as the upstream help text lists them.
pub const BOOL_VALUES: &str = "1, t, T, TRUE, true, True, 0, f, F, FALSE, false, False";

/// Parses a boolean exactly like Go's `strconv.ParseBool`.
pub fn parse_go_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!("expected one of {BOOL_VALUES}")),
    }
}

/// Log verbosity (`--log.level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogLevel {
    /// Everything, including each ignored sample.
    Debug,
    /// Startup, request failures.
    Info,
    /// Warnings and errors only.
    Warn,
    /// Errors only.
    Error,
}

/// Log line format (`--log.format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `key=value` pairs, like the upstream's go-kit logger.
    Logfmt,
    /// One JSON object per line.
    Json,
}

/// The command line as parsed. Boolean flags take Go's ParseBool values, with `=` or a space.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "timestream-prometheus-connector",
    version,
    // Like Go's flag package: a repeated flag takes its last value.
    args_override_self = true,
    about = "Prometheus remote write/read storage for Amazon Timestream for LiveAnalytics"
)]
pub struct Cli {
    /// The Prometheus label containing the database name (series without it go to --default-database).
    #[arg(long = "database-label", value_name = "LABEL")]
    pub database_label: Option<String>,
    /// The Prometheus label containing the table name (series without it go to --default-table).
    #[arg(long = "table-label", value_name = "LABEL")]
    pub table_label: Option<String>,
    /// The database samples are written to (required unless --database-label or --local-store).
    #[arg(
        long = "default-database",
        default_value = "",
        hide_default_value = true
    )]
    pub default_database: String,
    /// The table samples are written to (required unless --table-label or --local-store).
    #[arg(long = "default-table", default_value = "", hide_default_value = true)]
    pub default_table: String,
    /// The signing region for the Amazon Timestream service.
    #[arg(long = "region", default_value = DEFAULT_REGION)]
    pub region: String,
    /// Address to listen on for remote write/read and telemetry (`:port` = every interface).
    #[arg(long = "web.listen-address", default_value = DEFAULT_LISTEN_ADDRESS)]
    pub listen_address: String,
    /// Path under which the connector's own metrics are exposed.
    #[arg(long = "web.telemetry-path", default_value = DEFAULT_TELEMETRY_PATH)]
    pub telemetry_path: String,
    /// Maximum attempts of a Timestream query (`--max-retries` is the older name).
    #[arg(long = "max-read-retries", alias = "max-retries", default_value_t = DEFAULT_MAX_READ_RETRIES,
          value_parser = parse_retries)]
    pub max_read_retries: u32,
    /// Maximum attempts of a Timestream WriteRecords call.
    #[arg(long = "max-write-retries", default_value_t = DEFAULT_MAX_WRITE_RETRIES, value_parser = parse_retries)]
    pub max_write_retries: u32,
    /// Enables or disables logging.
    #[arg(long = "enable-logging", value_name = "BOOL", default_value = "true",
          num_args = 0..=1, default_missing_value = "true", value_parser = parse_go_bool)]
    pub enable_logging: bool,
    /// Answer 400 (instead of skipping the series) when a name or value cannot be stored in Timestream.
    #[arg(long = "fail-on-long-label", value_name = "BOOL", default_value = "false",
          num_args = 0..=1, default_missing_value = "true", value_parser = parse_go_bool)]
    pub fail_on_long_label: bool,
    /// Answer 400 (instead of skipping the sample) for NaN or ±Inf values that would be skipped
    /// (only with --write.special-values=false; stale markers are never refused).
    #[arg(long = "fail-on-invalid-sample-value", value_name = "BOOL", default_value = "false",
          num_args = 0..=1, default_missing_value = "true", value_parser = parse_go_bool)]
    pub fail_on_invalid_sample_value: bool,
    /// Use the connector's own AWS credential chain instead of each request's basic-auth keys.
    #[arg(long = "enable-sigv4-auth", value_name = "BOOL", default_value = "false",
          num_args = 0..=1, default_missing_value = "true", value_parser = parse_go_bool)]
    pub enable_sigv4_auth: bool,
    /// Log level.
    #[arg(long = "log.level", value_enum, default_value = "info")]
    pub log_level: LogLevel,
    /// Log format.
    #[arg(long = "log.format", value_enum, default_value = "logfmt")]
    pub log_format: LogFormat,
    /// PEM certificate chain; with --tls-key the server speaks HTTPS.
    #[arg(
        long = "tls-certificate",
        default_value = "",
        hide_default_value = true
    )]
    pub tls_certificate: String,
    /// PEM private key matching --tls-certificate.
    #[arg(long = "tls-key", default_value = "", hide_default_value = true)]
    pub tls_key: String,
    /// PEM bundle of CA certificates; when given, HTTPS clients must present a certificate
    /// signed by one of them (mutual TLS). Needs --tls-certificate and --tls-key.
    #[arg(
        long = "tls-client-ca",
        value_name = "PEM file",
        default_value = "",
        hide_default_value = true
    )]
    pub tls_client_ca: String,
    /// Endpoint URL for Timestream queries (e.g. a VPC endpoint); disables endpoint discovery.
    #[arg(
        long = "query-base-endpoint",
        default_value = "",
        hide_default_value = true
    )]
    pub query_base_endpoint: String,
    /// Endpoint URL for Timestream writes (e.g. a VPC endpoint); disables endpoint discovery.
    #[arg(
        long = "write-base-endpoint",
        default_value = "",
        hide_default_value = true
    )]
    pub write_base_endpoint: String,
    /// Run an embedded timestream-local store with its data in DIR and use it instead of AWS.
    #[arg(long = "local-store", value_name = "DIR")]
    pub local_store: Option<PathBuf>,
    /// Address the embedded local store listens on (for the AWS CLI and SDKs).
    #[arg(long = "local-store.listen-address", default_value = DEFAULT_LOCAL_STORE_ADDRESS)]
    pub local_store_listen_address: SocketAddr,
    /// Largest compressed request body accepted (bytes); larger → 413.
    #[arg(long = "web.max-request-bytes", default_value_t = DEFAULT_MAX_REQUEST_BYTES)]
    pub max_request_bytes: usize,
    /// Largest decompressed request body accepted (bytes); larger → 413.
    #[arg(long = "web.max-decompressed-bytes", default_value_t = DEFAULT_MAX_DECOMPRESSED_BYTES)]
    pub max_decompressed_bytes: usize,
    /// WriteRecords calls one remote-write request may have in flight at once.
    #[arg(long = "write.concurrency", default_value_t = DEFAULT_WRITE_CONCURRENCY,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub write_concurrency: u32,
    /// Put what the records of a WriteRecords call share into CommonAttributes (smaller payloads).
    #[arg(long = "write.common-attributes", value_name = "BOOL", default_value = "true",
          num_args = 0..=1, default_missing_value = "true", value_parser = parse_go_bool)]
    pub write_common_attributes: bool,
    /// Store NaN (staleness markers included), +Inf and -Inf as special-value records
    /// (documentation/special-values.md); false skips and counts them, as upstream.
    #[arg(long = "write.special-values", value_name = "BOOL", default_value = "true",
          num_args = 0..=1, default_missing_value = "true", value_parser = parse_go_bool)]
    pub write_special_values: bool,
    /// Store native histogram samples exactly as `__native_histogram__` records
    /// (documentation/native-histograms.md); false skips and counts them, as upstream.
    #[arg(long = "write.native-histograms", value_name = "BOOL", default_value = "true",
          num_args = 0..=1, default_missing_value = "true", value_parser = parse_go_bool)]
    pub write_native_histograms: bool,
    /// Distinct credentials whose AWS SDK clients are kept for reuse.
    #[arg(long = "aws.client-cache-size", default_value_t = DEFAULT_CLIENT_CACHE_SIZE,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub client_cache_size: u32,
    /// Queries of one remote-read request run at once.
    #[arg(long = "read.concurrency", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(1..=256))]
    pub read_concurrency: u32,
    /// Most samples one remote-read request may return (0 = no limit); more → 400.
    #[arg(long = "read.max-samples", default_value_t = 50_000_000)]
    pub read_max_samples: u64,
    /// Regex `.` matches newline, as in Prometheus 3 (false = Prometheus 2.x semantics).
    #[arg(long = "read.dot-matches-newline", value_name = "BOOL", default_value = "true",
          num_args = 0..=1, default_missing_value = "true", value_parser = parse_go_bool)]
    pub read_dot_matches_newline: bool,
    /// Remote write/read requests handled at once; beyond it → 503 with Retry-After (health and metrics are exempt).
    #[arg(long = "web.max-concurrent-requests", default_value_t = DEFAULT_MAX_CONCURRENT_REQUESTS,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_concurrent_requests: u32,
    /// Longest a remote write/read request may take (e.g. 25s, 500ms); beyond it → 503.
    #[arg(long = "web.request-timeout", value_name = "DURATION", default_value = DEFAULT_REQUEST_TIMEOUT, value_parser = parse_duration)]
    pub request_timeout: std::time::Duration,
    /// After SIGTERM/SIGINT, how long in-flight requests may finish; those still running are answered 503.
    #[arg(long = "web.shutdown-timeout", value_name = "DURATION", default_value = DEFAULT_SHUTDOWN_TIMEOUT, value_parser = parse_duration)]
    pub shutdown_timeout: std::time::Duration,
    /// WriteRecords calls in flight across all requests (each request also obeys --write.concurrency).
    #[arg(long = "write.max-inflight-calls", default_value_t = DEFAULT_MAX_INFLIGHT_WRITE_CALLS,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_inflight_write_calls: u32,
    /// Longest a streamed remote read may take from its start to the end of its body; then the body is cut (the client sees a failed transfer).
    #[arg(long = "read.stream-timeout", value_name = "DURATION", default_value = DEFAULT_STREAM_TIMEOUT, value_parser = parse_duration)]
    pub stream_timeout: std::time::Duration,
    /// Longest a client may take to send a request's headers (slow clients are disconnected).
    #[arg(long = "web.header-read-timeout", value_name = "DURATION", default_value = DEFAULT_HEADER_READ_TIMEOUT, value_parser = parse_duration)]
    pub header_read_timeout: std::time::Duration,
    /// TCP connections served at once (idle keep-alive ones included); more wait in the kernel's accept queue.
    #[arg(long = "web.max-connections", default_value_t = DEFAULT_MAX_CONNECTIONS,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,
}

/// Parses a duration in Prometheus/Go notation (`25s`, `500ms`, `1m30s`, `2h`) with
/// humantime; a bare number is seconds, as upstream flags of this kind accept.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(std::time::Duration::from_secs(secs));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("invalid duration {s:?} ({e}): expected e.g. 25s, 500ms or 1m30s"))
}

fn parse_retries(s: &str) -> Result<u32, String> {
    s.parse::<u32>()
        .map_err(|_| "expected a non-negative integer".to_string())
}

/// Where samples go when the series carries no routing label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationConfig {
    /// `--default-database` (may be empty when `database_label` is set).
    pub default_database: String,
    /// `--default-table` (may be empty when `table_label` is set).
    pub default_table: String,
    /// `--database-label`.
    pub database_label: Option<String>,
    /// `--table-label`.
    pub table_label: Option<String>,
}

/// Options of the remote-write path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteConfig {
    /// Attempts per WriteRecords call (SDK standard retry mode).
    pub max_retries: u32,
    /// `--write-base-endpoint` (None = endpoint discovery).
    pub base_endpoint: Option<String>,
    /// Unstorable names/values → 400 instead of skip.
    pub fail_on_long_label: bool,
    /// NaN/±Inf that would be skipped → 400 instead.
    pub fail_on_invalid_sample_value: bool,
    /// `--write.special-values`: store NaN/±Inf as special-value records.
    pub special_values: bool,
    /// `--write.native-histograms`: store native histograms as `__native_histogram__` records.
    pub native_histograms: bool,
    /// Concurrent WriteRecords calls per request.
    pub concurrency: usize,
    /// Use CommonAttributes.
    pub common_attributes: bool,
}

/// Options of the remote-read path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadConfig {
    /// Attempts per Query call (SDK standard retry mode).
    pub max_retries: u32,
    /// `--query-base-endpoint` (None = endpoint discovery).
    pub base_endpoint: Option<String>,
    /// Queries of one ReadRequest run concurrently.
    pub concurrency: usize,
    /// Sample cap per ReadRequest (0 = none).
    pub max_samples: u64,
    /// `--read.dot-matches-newline`.
    pub dot_matches_newline: bool,
}

/// Embedded timestream-local options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalStoreConfig {
    /// Data directory.
    pub data_dir: PathBuf,
    /// Listen address.
    pub listen_address: SocketAddr,
}

/// TLS key pair paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub certificate: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// PEM CA bundle that client certificates must chain to (`--tls-client-ca`); `None`
    /// serves any client.
    pub client_ca: Option<PathBuf>,
}

/// Logging options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogConfig {
    /// `--enable-logging`.
    pub enabled: bool,
    /// `--log.level`.
    pub level: LogLevel,
    /// `--log.format`.
    pub format: LogFormat,
}

/// Backpressure, timeout and shutdown settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitsConfig {
    /// `--web.max-concurrent-requests`.
    pub max_concurrent_requests: usize,
    /// `--web.request-timeout`.
    pub request_timeout: std::time::Duration,
    /// `--web.shutdown-timeout`.
    pub shutdown_timeout: std::time::Duration,
    /// `--write.max-inflight-calls`.
    pub max_inflight_write_calls: usize,
    /// Longest a streamed remote read may take, body included (`--read.stream-timeout`).
    pub stream_timeout: std::time::Duration,
    /// Longest a client may take to send its headers (`--web.header-read-timeout`).
    pub header_read_timeout: std::time::Duration,
    /// TCP connections served at once (`--web.max-connections`).
    pub max_connections: usize,
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Listen address as given (Go notation allowed).
    pub listen_address: String,
    /// Path of the metrics endpoint.
    pub telemetry_path: String,
    /// Signing region.
    pub region: String,
    /// Use the connector's own credential chain instead of basic auth.
    pub sigv4_auth: bool,
    /// Destinations.
    pub destination: DestinationConfig,
    /// Remote write.
    pub write: WriteConfig,
    /// Remote read.
    pub read: ReadConfig,
    /// Embedded store, if any.
    pub local_store: Option<LocalStoreConfig>,
    /// TLS, if any.
    pub tls: Option<TlsConfig>,
    /// Logging.
    pub log: LogConfig,
    /// Compressed body cap.
    pub max_request_bytes: usize,
    /// Decompressed body cap.
    pub max_decompressed_bytes: usize,
    /// Distinct credentials with cached clients.
    pub client_cache_size: usize,
    /// Backpressure, timeouts, shutdown.
    pub limits: LimitsConfig,
}

/// A cross-field rule the command line breaks; the message names the flags.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn non_empty(s: String) -> Option<String> {
    if s.is_empty() {
        None
    } else {
        Some(s)
    }
}

impl TryFrom<Cli> for Config {
    type Error = ConfigError;

    fn try_from(cli: Cli) -> Result<Self, ConfigError> {
        let mut default_database = cli.default_database;
        let mut default_table = cli.default_table;
        if cli.local_store.is_some() {
            if default_database.is_empty() {
                default_database = LOCAL_STORE_DEFAULT_DATABASE.to_string();
            }
            if default_table.is_empty() {
                default_table = LOCAL_STORE_DEFAULT_TABLE.to_string();
            }
        }
        let database_label = cli.database_label.and_then(non_empty);
        let table_label = cli.table_label.and_then(non_empty);
        if default_database.is_empty() && database_label.is_none() {
            return Err(ConfigError(
                "--default-database is required (or --database-label, or --local-store)".into(),
            ));
        }
        if default_table.is_empty() && table_label.is_none() {
            return Err(ConfigError(
                "--default-table is required (or --table-label, or --local-store)".into(),
            ));
        }
        if !cli.telemetry_path.starts_with('/') {
            return Err(ConfigError(format!(
                "--web.telemetry-path must start with '/', got '{}'",
                cli.telemetry_path
            )));
        }
        if matches!(
            cli.telemetry_path.as_str(),
            "/write" | "/api/v1/write" | "/read" | "/api/v1/read" | "/-/healthy" | "/-/ready"
        ) {
            return Err(ConfigError(format!(
                "--web.telemetry-path '{}' collides with a built-in route",
                cli.telemetry_path
            )));
        }
        let tls = match (cli.tls_certificate.is_empty(), cli.tls_key.is_empty()) {
            (true, true) => None,
            (false, false) => Some(TlsConfig {
                certificate: cli.tls_certificate.into(),
                key: cli.tls_key.into(),
                client_ca: (!cli.tls_client_ca.is_empty())
                    .then(|| cli.tls_client_ca.clone().into()),
            }),
            _ => {
                return Err(ConfigError(
                    "--tls-certificate and --tls-key must be given together".into(),
                ))
            }
        };
        if tls.is_none() && !cli.tls_client_ca.is_empty() {
            // Client certificates only exist in a TLS handshake: silently serving plain
            // HTTP would drop the protection the user asked for.
            return Err(ConfigError(
                "--tls-client-ca needs --tls-certificate and --tls-key (client certificates are only checked over HTTPS)".into(),
            ));
        }
        if cli.request_timeout.is_zero() {
            return Err(ConfigError("--web.request-timeout must be positive".into()));
        }
        if cli.stream_timeout.is_zero() {
            return Err(ConfigError("--read.stream-timeout must be positive".into()));
        }
        if cli.header_read_timeout.is_zero() {
            return Err(ConfigError(
                "--web.header-read-timeout must be positive".into(),
            ));
        }
        if cli.max_request_bytes == 0 || cli.max_decompressed_bytes == 0 {
            return Err(ConfigError(
                "--web.max-request-bytes and --web.max-decompressed-bytes must be positive".into(),
            ));
        }
        Ok(Config {
            listen_address: cli.listen_address,
            telemetry_path: cli.telemetry_path,
            region: cli.region,
            sigv4_auth: cli.enable_sigv4_auth,
            destination: DestinationConfig {
                default_database,
                default_table,
                database_label,
                table_label,
            },
            write: WriteConfig {
                max_retries: cli.max_write_retries,
                base_endpoint: non_empty(cli.write_base_endpoint),
                fail_on_long_label: cli.fail_on_long_label,
                fail_on_invalid_sample_value: cli.fail_on_invalid_sample_value,
                special_values: cli.write_special_values,
                native_histograms: cli.write_native_histograms,
                concurrency: cli.write_concurrency as usize,
                common_attributes: cli.write_common_attributes,
            },
            read: ReadConfig {
                max_retries: cli.max_read_retries,
                base_endpoint: non_empty(cli.query_base_endpoint),
                concurrency: cli.read_concurrency as usize,
                max_samples: cli.read_max_samples,
                dot_matches_newline: cli.read_dot_matches_newline,
            },
            local_store: cli.local_store.map(|data_dir| LocalStoreConfig {
                data_dir,
                listen_address: cli.local_store_listen_address,
            }),
            tls,
            log: LogConfig {
                enabled: cli.enable_logging,
                level: cli.log_level,
                format: cli.log_format,
            },
            max_request_bytes: cli.max_request_bytes,
            max_decompressed_bytes: cli.max_decompressed_bytes,
            client_cache_size: cli.client_cache_size as usize,
            limits: LimitsConfig {
                max_concurrent_requests: cli.max_concurrent_requests as usize,
                request_timeout: cli.request_timeout,
                shutdown_timeout: cli.shutdown_timeout,
                max_inflight_write_calls: cli.max_inflight_write_calls as usize,
                stream_timeout: cli.stream_timeout,
                header_read_timeout: cli.header_read_timeout,
                max_connections: cli.max_connections as usize,
            },
        })
    }
}

impl Config {
    /// Parses and validates a command line (first item = program name).
    pub fn from_args<I, T>(args: I) -> Result<Config, CliError>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let cli = Cli::try_parse_from(args).map_err(CliError::Parse)?;
        Config::try_from(cli).map_err(CliError::Invalid)
    }

    /// A configuration for tests and embedding: given destination, everything else default.
    pub fn for_destination(database: &str, table: &str) -> Config {
        Config::from_args([
            "timestream-prometheus-connector",
            "--default-database",
            database,
            "--default-table",
            table,
        ])
        .expect("defaults are valid")
    }
}

/// Why the command line was refused.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// clap refused it (or help/version was asked for).
    #[error("{0}")]
    Parse(clap::Error),
    /// A cross-field rule.
    #[error("{0}")]
    Invalid(ConfigError),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, CliError> {
        let mut v = vec!["tpc"];
        v.extend_from_slice(args);
        Config::from_args(v)
    }

    #[test]
    fn defaults_match_upstream() {
        let c = parse(&["--default-database=db", "--default-table=t"]).unwrap();
        assert_eq!(c.listen_address, ":9201");
        assert_eq!(c.telemetry_path, "/metrics");
        assert_eq!(c.region, "us-east-1");
        assert_eq!(c.read.max_retries, 3);
        assert_eq!(c.write.max_retries, 10);
        assert!(c.log.enabled);
        assert!(!c.write.fail_on_long_label);
        assert!(!c.write.fail_on_invalid_sample_value);
        assert_eq!(c.log.level, LogLevel::Info);
        assert_eq!(c.log.format, LogFormat::Logfmt);
        assert!(c.tls.is_none());
        assert!(c.write.base_endpoint.is_none());
        assert!(c.read.base_endpoint.is_none());
        assert!(!c.sigv4_auth);
    }

    #[test]
    fn go_parse_bool_forms_with_equals_and_space() {
        for t in ["1", "t", "T", "TRUE", "true", "True"] {
            let c = parse(&[
                "--default-database=d",
                "--default-table=t",
                "--fail-on-long-label",
                t,
            ])
            .unwrap();
            assert!(c.write.fail_on_long_label, "{t}");
            let eq = format!("--enable-logging={t}");
            assert!(
                parse(&["--default-database=d", "--default-table=t", &eq])
                    .unwrap()
                    .log
                    .enabled
            );
        }
        for f in ["0", "f", "F", "FALSE", "false", "False"] {
            let eq = format!("--enable-logging={f}");
            assert!(
                !parse(&["--default-database=d", "--default-table=t", &eq])
                    .unwrap()
                    .log
                    .enabled
            );
        }
        for bad in ["yes", "tRuE", "2", ""] {
            let eq = format!("--enable-logging={bad}");
            let err = parse(&["--default-database=d", "--default-table=t", &eq]).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains("--enable-logging"), "{msg}");
            assert!(msg.contains("TRUE"), "{msg}");
        }
    }

    #[test]
    fn max_retries_alias_sets_read_retries() {
        let c = parse(&[
            "--default-database=d",
            "--default-table=t",
            "--max-retries=7",
        ])
        .unwrap();
        assert_eq!(c.read.max_retries, 7);
        let err = parse(&[
            "--default-database=d",
            "--default-table=t",
            "--max-write-retries=x",
        ])
        .unwrap_err();
        assert!(err.to_string().contains("--max-write-retries"));
    }

    #[test]
    fn destination_rules() {
        assert!(parse(&["--default-table=t"]).is_err());
        assert!(parse(&["--default-database=d"]).is_err());
        let c = parse(&["--database-label=db", "--table-label=tb"]).unwrap();
        assert_eq!(c.destination.database_label.as_deref(), Some("db"));
        let c = parse(&["--local-store=/tmp/x"]).unwrap();
        assert_eq!(c.destination.default_database, LOCAL_STORE_DEFAULT_DATABASE);
        assert_eq!(
            c.local_store.unwrap().listen_address,
            "127.0.0.1:8787".parse().unwrap()
        );
    }

    #[test]
    fn limits_flags_and_durations() {
        let c = parse(&["--default-database=d", "--default-table=t"]).unwrap();
        assert_eq!(c.limits.request_timeout, std::time::Duration::from_secs(25));
        assert_eq!(
            c.limits.shutdown_timeout,
            std::time::Duration::from_secs(25)
        );
        assert_eq!(c.limits.max_concurrent_requests, 100);
        assert_eq!(c.limits.max_inflight_write_calls, 256);
        let c = parse(&[
            "--default-database=d",
            "--default-table=t",
            "--web.request-timeout=1m30s",
            "--web.shutdown-timeout=500ms",
            "--web.max-concurrent-requests=3",
            "--write.max-inflight-calls=7",
        ])
        .unwrap();
        assert_eq!(c.limits.request_timeout, std::time::Duration::from_secs(90));
        assert_eq!(
            c.limits.shutdown_timeout,
            std::time::Duration::from_millis(500)
        );
        assert_eq!(c.limits.max_concurrent_requests, 3);
        assert_eq!(c.limits.max_inflight_write_calls, 7);
        assert_eq!(parse_duration("7").unwrap().as_secs(), 7);
        assert_eq!(parse_duration("1m30s").unwrap().as_millis(), 90_000);
        assert_eq!(parse_duration("250ms").unwrap().as_millis(), 250);
        assert_eq!(parse_duration("2h").unwrap().as_secs(), 7_200);
        // Fractions as Go's time.ParseDuration reads them.
        assert_eq!(parse_duration("1.5s").unwrap().as_millis(), 1_500);
        for bad in ["", "s", "10x", "1.2.3s", "-1s", "ms10"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        for bad in [
            "--web.request-timeout=0s",
            "--web.max-concurrent-requests=0",
        ] {
            let err = parse(&["--default-database=d", "--default-table=t", bad]).unwrap_err();
            assert!(
                err.to_string().contains(bad.split('=').next().unwrap()),
                "{err}"
            );
        }
    }

    #[test]
    fn tls_client_ca_needs_a_server_pair() {
        let err = parse(&[
            "--default-database=d",
            "--default-table=t",
            "--tls-client-ca=ca.pem",
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("--tls-client-ca"), "{err}");
        let c = parse(&[
            "--default-database=d",
            "--default-table=t",
            "--tls-certificate=c.pem",
            "--tls-key=k.pem",
            "--tls-client-ca=ca.pem",
        ])
        .unwrap();
        assert_eq!(
            c.tls.unwrap().client_ca,
            Some(std::path::PathBuf::from("ca.pem"))
        );
        let c = parse(&[
            "--default-database=d",
            "--default-table=t",
            "--tls-certificate=c.pem",
            "--tls-key=k.pem",
        ])
        .unwrap();
        assert_eq!(c.tls.unwrap().client_ca, None);
    }

    #[test]
    fn tls_needs_both_files_and_enums_are_checked() {
        assert!(parse(&["--default-database=d", "--default-table=t", "--tls-key=k"]).is_err());
        let err = parse(&[
            "--default-database=d",
            "--default-table=t",
            "--log.format=xml",
        ])
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("--log.format") && err.contains("logfmt"),
            "{err}"
        );
        let err = parse(&[
            "--default-database=d",
            "--default-table=t",
            "--log.level=trace",
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("--log.level") && err.contains("warn"), "{err}");
    }
}
