//! Lambda configuration: the upstream's snake_case environment variables (a Lambda function
//! gets no command line) turned into the same validated `Config` the standalone server uses.
//! Every refusal names the variable, because the message is what the caller of the function
//! sees in each 400 answer.
//!
//! This is an inherent `impl Config` kept here (not in `config.rs`) so the Lambda names and
//! their rules live in one place; the cross-field validation is still `Config::try_from(Cli)`.

use clap::Parser;

use crate::config::{parse_go_bool, Cli, Config, LogConfig, LogFormat, LogLevel, DEFAULT_REGION};

/// `default_database`: where series without a database label are written.
pub const DEFAULT_DATABASE: &str = "default_database";
/// `default_table`: where series without a table label are written.
pub const DEFAULT_TABLE: &str = "default_table";
/// `database_label`: the label naming a series' database (ours; the upstream has none).
pub const DATABASE_LABEL: &str = "database_label";
/// `table_label`: the label naming a series' table (ours).
pub const TABLE_LABEL: &str = "table_label";
/// `region`: signing region; unset = the function's own region (`AWS_REGION`).
pub const REGION: &str = "region";
/// `max_read_retries`: attempts per Timestream query.
pub const MAX_READ_RETRIES: &str = "max_read_retries";
/// `max_write_retries`: attempts per WriteRecords call.
pub const MAX_WRITE_RETRIES: &str = "max_write_retries";
/// `enable_logging`: Go ParseBool.
pub const ENABLE_LOGGING: &str = "enable_logging";
/// `fail_on_long_label`: Go ParseBool.
pub const FAIL_ON_LONG_LABEL: &str = "fail_on_long_label";
/// `fail_on_invalid_sample_value`: Go ParseBool.
pub const FAIL_ON_INVALID_SAMPLE_VALUE: &str = "fail_on_invalid_sample_value";
/// `write_special_values`: Go ParseBool; `--write.special-values` (ours; default true).
pub const WRITE_SPECIAL_VALUES: &str = "write_special_values";
/// `write_native_histograms`: Go ParseBool; `--write.native-histograms` (ours; default true).
pub const WRITE_NATIVE_HISTOGRAMS: &str = "write_native_histograms";
/// `log_level`: debug, info, warn or error.
pub const LOG_LEVEL: &str = "log_level";
/// `log_format`: logfmt or json.
pub const LOG_FORMAT: &str = "log_format";
/// `enable_sigv4_auth`: Go ParseBool; true (the default in Lambda) = the function's role.
pub const ENABLE_SIGV4_AUTH: &str = "enable_sigv4_auth";
/// `query_base_endpoint`: query endpoint override (disables endpoint discovery).
pub const QUERY_BASE_ENDPOINT: &str = "query_base_endpoint";
/// `write_base_endpoint`: write endpoint override (disables endpoint discovery).
pub const WRITE_BASE_ENDPOINT: &str = "write_base_endpoint";

/// Every variable the function reads, for documentation and tests.
pub const VARIABLES: &[&str] = &[
    DEFAULT_DATABASE,
    DEFAULT_TABLE,
    DATABASE_LABEL,
    TABLE_LABEL,
    REGION,
    MAX_READ_RETRIES,
    MAX_WRITE_RETRIES,
    ENABLE_LOGGING,
    FAIL_ON_LONG_LABEL,
    FAIL_ON_INVALID_SAMPLE_VALUE,
    WRITE_SPECIAL_VALUES,
    WRITE_NATIVE_HISTOGRAMS,
    LOG_LEVEL,
    LOG_FORMAT,
    ENABLE_SIGV4_AUTH,
    QUERY_BASE_ENDPOINT,
    WRITE_BASE_ENDPOINT,
];

/// Why the environment cannot be served; the message names the variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid Lambda configuration: {message}")]
pub struct LambdaConfigError {
    /// The variable at fault.
    pub variable: &'static str,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl LambdaConfigError {
    fn new(variable: &'static str, message: impl Into<String>) -> Self {
        LambdaConfigError {
            variable,
            message: message.into(),
        }
    }
}

/// Reads one variable; unset and empty are the same (the upstream reads with `os.Getenv`).
fn read(get: &impl Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    get(name).filter(|v| !v.is_empty())
}

fn bool_var(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: bool,
) -> Result<bool, LambdaConfigError> {
    match read(get, name) {
        None => Ok(default),
        Some(v) => parse_go_bool(&v)
            .map_err(|e| LambdaConfigError::new(name, format!("{name}={v:?}: {e}"))),
    }
}

fn retries_var(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: u32,
) -> Result<u32, LambdaConfigError> {
    match read(get, name) {
        None => Ok(default),
        Some(v) => v.trim().parse::<u32>().map_err(|_| {
            LambdaConfigError::new(
                name,
                format!("{name}={v:?}: expected a non-negative integer"),
            )
        }),
    }
}

fn log_level(v: &str) -> Option<LogLevel> {
    match v.to_ascii_lowercase().as_str() {
        "debug" => Some(LogLevel::Debug),
        "info" => Some(LogLevel::Info),
        "warn" => Some(LogLevel::Warn),
        "error" => Some(LogLevel::Error),
        _ => None,
    }
}

fn log_format(v: &str) -> Option<LogFormat> {
    match v.to_ascii_lowercase().as_str() {
        "logfmt" => Some(LogFormat::Logfmt),
        "json" => Some(LogFormat::Json),
        _ => None,
    }
}

/// Logging settings from the environment, falling back to the defaults for anything
/// missing or invalid: logging must work even when the rest of the configuration does not,
/// so the refusal itself reaches CloudWatch.
pub fn log_config_from_env(get: impl Fn(&str) -> Option<String>) -> LogConfig {
    LogConfig {
        enabled: bool_var(&get, ENABLE_LOGGING, true).unwrap_or(true),
        level: read(&get, LOG_LEVEL)
            .and_then(|v| log_level(&v))
            .unwrap_or(LogLevel::Info),
        format: read(&get, LOG_FORMAT)
            .and_then(|v| log_format(&v))
            .unwrap_or(LogFormat::Logfmt),
    }
}

impl Config {
    /// The configuration of a Lambda function, from its environment (`get` = `std::env::var`
    /// in production). Defaults are the standalone ones except `enable_sigv4_auth` (true, as
    /// upstream in Lambda) and `region` (the function's own `AWS_REGION` before us-east-1).
    pub fn from_lambda_env(
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, LambdaConfigError> {
        // Start from the standalone defaults so both modes share every other option.
        let mut cli = Cli::try_parse_from(["timestream-prometheus-connector"])
            .map_err(|e| LambdaConfigError::new(DEFAULT_DATABASE, e.to_string()))?;

        cli.default_database = read(&get, DEFAULT_DATABASE).unwrap_or_default();
        cli.default_table = read(&get, DEFAULT_TABLE).unwrap_or_default();
        cli.database_label = read(&get, DATABASE_LABEL);
        cli.table_label = read(&get, TABLE_LABEL);
        if cli.default_database.is_empty() && cli.database_label.is_none() {
            return Err(LambdaConfigError::new(
                DEFAULT_DATABASE,
                format!(
                    "the environment variable {DEFAULT_DATABASE} is not set; set it to the \
                     Timestream database to write to and read from (or set {DATABASE_LABEL})"
                ),
            ));
        }
        if cli.default_table.is_empty() && cli.table_label.is_none() {
            return Err(LambdaConfigError::new(
                DEFAULT_TABLE,
                format!(
                    "the environment variable {DEFAULT_TABLE} is not set; set it to the \
                     Timestream table to write to and read from (or set {TABLE_LABEL})"
                ),
            ));
        }
        cli.region = read(&get, REGION)
            .or_else(|| read(&get, "AWS_REGION"))
            .unwrap_or_else(|| DEFAULT_REGION.to_string());
        cli.max_read_retries = retries_var(&get, MAX_READ_RETRIES, cli.max_read_retries)?;
        cli.max_write_retries = retries_var(&get, MAX_WRITE_RETRIES, cli.max_write_retries)?;
        cli.enable_logging = bool_var(&get, ENABLE_LOGGING, true)?;
        cli.fail_on_long_label = bool_var(&get, FAIL_ON_LONG_LABEL, false)?;
        cli.fail_on_invalid_sample_value = bool_var(&get, FAIL_ON_INVALID_SAMPLE_VALUE, false)?;
        cli.write_special_values = bool_var(&get, WRITE_SPECIAL_VALUES, true)?;
        cli.write_native_histograms = bool_var(&get, WRITE_NATIVE_HISTOGRAMS, true)?;
        cli.enable_sigv4_auth = bool_var(&get, ENABLE_SIGV4_AUTH, true)?;
        if let Some(v) = read(&get, LOG_LEVEL) {
            cli.log_level = log_level(&v).ok_or_else(|| {
                LambdaConfigError::new(
                    LOG_LEVEL,
                    format!("{LOG_LEVEL}={v:?}: expected debug, info, warn or error"),
                )
            })?;
        }
        if let Some(v) = read(&get, LOG_FORMAT) {
            cli.log_format = log_format(&v).ok_or_else(|| {
                LambdaConfigError::new(
                    LOG_FORMAT,
                    format!("{LOG_FORMAT}={v:?}: expected logfmt or json"),
                )
            })?;
        }
        for (name, value) in [
            (QUERY_BASE_ENDPOINT, read(&get, QUERY_BASE_ENDPOINT)),
            (WRITE_BASE_ENDPOINT, read(&get, WRITE_BASE_ENDPOINT)),
        ] {
            if let Some(v) = &value {
                if !(v.starts_with("http://") || v.starts_with("https://")) {
                    return Err(LambdaConfigError::new(
                        name,
                        format!("{name}={v:?}: expected a URL starting with https:// or http://"),
                    ));
                }
            }
        }
        cli.query_base_endpoint = read(&get, QUERY_BASE_ENDPOINT).unwrap_or_default();
        cli.write_base_endpoint = read(&get, WRITE_BASE_ENDPOINT).unwrap_or_default();
        // Standalone-only options stay at their defaults: no listener, TLS or local store.
        cli.local_store = None;
        cli.tls_certificate.clear();
        cli.tls_key.clear();

        // The destination rules were checked above with Lambda names, so what remains here
        // cannot name a flag the user never saw; keep the text anyway if it ever does.
        Config::try_from(cli).map_err(|e| LambdaConfigError::new(DEFAULT_DATABASE, e.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    const DEST: [(&str, &str); 2] = [("default_database", "db"), ("default_table", "tb")];

    #[test]
    fn defaults_are_the_lambda_ones() {
        let c = Config::from_lambda_env(env(&DEST)).unwrap();
        assert!(
            c.sigv4_auth,
            "Lambda authenticates with the function's role by default"
        );
        assert_eq!(c.region, "us-east-1");
        assert_eq!(c.destination.default_database, "db");
        assert_eq!(c.destination.default_table, "tb");
        assert_eq!(c.read.max_retries, 3);
        assert_eq!(c.write.max_retries, 10);
        assert!(c.log.enabled);
        assert!(c.local_store.is_none() && c.tls.is_none());
        assert!(c.write.base_endpoint.is_none() && c.read.base_endpoint.is_none());
        assert!(c.write.special_values);
    }

    #[test]
    fn every_variable_is_read() {
        let c = Config::from_lambda_env(env(&[
            ("default_database", "db"),
            ("default_table", "tb"),
            ("database_label", "ts_db"),
            ("table_label", "ts_table"),
            ("region", "eu-west-1"),
            ("max_read_retries", "5"),
            ("max_write_retries", "0"),
            ("enable_logging", "F"),
            ("fail_on_long_label", "1"),
            ("fail_on_invalid_sample_value", "True"),
            ("write_special_values", "f"),
            ("log_level", "debug"),
            ("log_format", "json"),
            ("enable_sigv4_auth", "false"),
            ("query_base_endpoint", "http://127.0.0.1:1"),
            ("write_base_endpoint", "https://vpce.example"),
        ]))
        .unwrap();
        assert_eq!(c.destination.database_label.as_deref(), Some("ts_db"));
        assert_eq!(c.destination.table_label.as_deref(), Some("ts_table"));
        assert_eq!(c.region, "eu-west-1");
        assert_eq!((c.read.max_retries, c.write.max_retries), (5, 0));
        assert!(!c.log.enabled);
        assert!(c.write.fail_on_long_label && c.write.fail_on_invalid_sample_value);
        assert!(!c.write.special_values);
        assert_eq!(c.log.level, LogLevel::Debug);
        assert_eq!(c.log.format, LogFormat::Json);
        assert!(!c.sigv4_auth);
        assert_eq!(c.read.base_endpoint.as_deref(), Some("http://127.0.0.1:1"));
        assert_eq!(
            c.write.base_endpoint.as_deref(),
            Some("https://vpce.example")
        );
    }

    #[test]
    fn region_falls_back_to_the_functions_region() {
        let mut pairs = DEST.to_vec();
        pairs.push(("AWS_REGION", "ap-south-1"));
        assert_eq!(
            Config::from_lambda_env(env(&pairs)).unwrap().region,
            "ap-south-1"
        );
        pairs.push(("region", "us-west-2"));
        assert_eq!(
            Config::from_lambda_env(env(&pairs)).unwrap().region,
            "us-west-2"
        );
    }

    #[test]
    fn missing_destination_names_the_variable() {
        let e = Config::from_lambda_env(env(&[("default_table", "tb")])).unwrap_err();
        assert_eq!(e.variable, DEFAULT_DATABASE);
        assert!(e.to_string().contains("default_database"), "{e}");
        let e = Config::from_lambda_env(env(&[("default_database", "db")])).unwrap_err();
        assert_eq!(e.variable, DEFAULT_TABLE);
        // Empty is the same as unset.
        let e = Config::from_lambda_env(env(&[("default_database", ""), ("default_table", "t")]))
            .unwrap_err();
        assert_eq!(e.variable, DEFAULT_DATABASE);
        // Labels instead of defaults are enough.
        let c =
            Config::from_lambda_env(env(&[("database_label", "d"), ("table_label", "t")])).unwrap();
        assert_eq!(c.destination.default_database, "");
    }

    #[test]
    fn invalid_values_name_the_variable_and_the_value() {
        for (name, bad) in [
            ("enable_logging", "yes"),
            ("fail_on_long_label", "tRuE"),
            ("fail_on_invalid_sample_value", "2"),
            ("enable_sigv4_auth", "on"),
            ("max_read_retries", "-1"),
            ("max_write_retries", "ten"),
            ("log_level", "trace"),
            ("log_format", "xml"),
            ("query_base_endpoint", "localhost:8787"),
            ("write_base_endpoint", "ftp://x"),
        ] {
            let mut pairs = DEST.to_vec();
            pairs.push((name, bad));
            let e = Config::from_lambda_env(env(&pairs)).unwrap_err();
            assert_eq!(e.variable, name);
            let msg = e.to_string();
            assert!(msg.contains(name) && msg.contains(bad), "{msg}");
        }
    }

    #[test]
    fn log_config_survives_a_broken_environment() {
        let l = log_config_from_env(env(&[("log_level", "warn"), ("log_format", "nope")]));
        assert_eq!(l.level, LogLevel::Warn);
        assert_eq!(l.format, LogFormat::Logfmt);
        assert!(l.enabled);
        assert!(!log_config_from_env(env(&[("enable_logging", "false")])).enabled);
    }
}
