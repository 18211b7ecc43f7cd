//! Logging setup: tracing to stderr in logfmt (the upstream's default format, go-kit style
//! `key=value`) or JSON, at one of the four upstream levels; `--enable-logging=false`
//! installs nothing, so nothing is printed. Credentials never reach a log line because no
//! code logs them (see `RequestCredentials`' redacting Debug).

use std::fmt;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

use crate::config::{LogConfig, LogFormat, LogLevel};

fn level_filter(l: LogLevel) -> LevelFilter {
    match l {
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Error => LevelFilter::ERROR,
    }
}

/// Builds the subscriber for `cfg`, writing to `writer`; None when logging is disabled.
pub fn subscriber<W>(cfg: &LogConfig, writer: W) -> Option<Box<dyn Subscriber + Send + Sync>>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    if !cfg.enabled {
        return None;
    }
    // Our own crates at the chosen level; the AWS SDK and hyper only from warn up, since
    // their debug output is voluminous (and would include request details).
    let filter = tracing_subscriber::filter::Targets::new()
        .with_default(level_filter(cfg.level).min(LevelFilter::WARN))
        .with_target("timestream_prometheus_connector", level_filter(cfg.level))
        .with_target("timestream_local", level_filter(cfg.level));
    use tracing_subscriber::layer::SubscriberExt;
    let builder = tracing_subscriber::fmt()
        .with_writer(writer)
        .with_max_level(LevelFilter::TRACE)
        .with_ansi(false);
    Some(match cfg.format {
        LogFormat::Json => Box::new(
            builder
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .finish()
                .with(filter),
        ),
        LogFormat::Logfmt => Box::new(builder.event_format(Logfmt).finish().with(filter)),
    })
}

/// Installs the global subscriber (stderr). Call once at startup.
pub fn init(cfg: &LogConfig) {
    if let Some(s) = subscriber(cfg, std::io::stderr) {
        // Ignore "already set" (tests may have installed their own).
        let _ = tracing::subscriber::set_global_default(s);
    }
}

/// logfmt event formatter: `ts=… level=… target=… msg="…" key=value…`.
pub struct Logfmt;

impl<S, N> FormatEvent<S, N> for Logfmt
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        w.write_str("ts=")?;
        SystemTime.format_time(&mut w)?;
        let level = match *event.metadata().level() {
            Level::ERROR => "error",
            Level::WARN => "warn",
            Level::INFO => "info",
            Level::DEBUG => "debug",
            Level::TRACE => "trace",
        };
        write!(w, " level={level} target={}", event.metadata().target())?;
        let mut v = LogfmtVisitor {
            msg: None,
            fields: String::new(),
        };
        event.record(&mut v);
        if let Some(m) = v.msg {
            w.write_str(" msg=")?;
            write_value(&mut w, &m)?;
        }
        w.write_str(&v.fields)?;
        writeln!(w)
    }
}

struct LogfmtVisitor {
    msg: Option<String>,
    fields: String,
}

impl LogfmtVisitor {
    fn push(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.msg = Some(value.to_string());
            return;
        }
        self.fields.push(' ');
        self.fields.push_str(field.name());
        self.fields.push('=');
        let _ = write_value(&mut self.fields, value);
    }
}

impl Visit for LogfmtVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field, value);
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.push(field, &format!("{value:?}"));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, &value.to_string());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push(field, &value.to_string());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field, if value { "true" } else { "false" });
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.push(field, &value.to_string());
    }
}

/// Writes a logfmt value, quoted when it contains spaces, quotes, `=` or control characters.
fn write_value(w: &mut impl fmt::Write, v: &str) -> fmt::Result {
    let needs_quotes = v.is_empty()
        || v.chars()
            .any(|c| c == ' ' || c == '"' || c == '=' || c == '\\' || c.is_control());
    if !needs_quotes {
        return w.write_str(v);
    }
    w.write_char('"')?;
    for c in v.chars() {
        match c {
            '"' => w.write_str("\\\"")?,
            '\\' => w.write_str("\\\\")?,
            '\n' => w.write_str("\\n")?,
            '\r' => w.write_str("\\r")?,
            '\t' => w.write_str("\\t")?,
            c if c.is_control() => write!(w, "\\u{{{:x}}}", c as u32)?,
            c => w.write_char(c)?,
        }
    }
    w.write_char('"')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    impl<'a> MakeWriter<'a> for Buf {
        type Writer = Buf;
        fn make_writer(&'a self) -> Buf {
            self.clone()
        }
    }

    fn capture(cfg: LogConfig, f: impl FnOnce()) -> String {
        let buf = Buf::default();
        match subscriber(&cfg, buf.clone()) {
            Some(s) => tracing::subscriber::with_default(s, f),
            None => f(),
        }
        let out = buf.0.lock().unwrap().clone();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn logfmt_levels_and_quoting() {
        let cfg = LogConfig {
            enabled: true,
            level: LogLevel::Info,
            format: LogFormat::Logfmt,
        };
        let out = capture(cfg, || {
            tracing::info!(samples = 3, table = "a b", "write done");
            tracing::debug!("hidden");
        });
        assert!(out.contains("level=info"), "{out}");
        assert!(out.contains("msg=\"write done\""), "{out}");
        assert!(out.contains("samples=3"), "{out}");
        assert!(out.contains("table=\"a b\""), "{out}");
        assert!(!out.contains("hidden"), "{out}");
    }

    #[test]
    fn json_and_disabled() {
        let cfg = LogConfig {
            enabled: true,
            level: LogLevel::Debug,
            format: LogFormat::Json,
        };
        let out = capture(cfg, || tracing::debug!(n = 1, "dbg"));
        let v: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
        assert_eq!(v["level"], "DEBUG");
        assert_eq!(v["message"], "dbg");
        let off = LogConfig {
            enabled: false,
            ..cfg
        };
        assert_eq!(capture(off, || tracing::error!("x")), "");
    }

    #[test]
    fn warn_level_drops_info() {
        let cfg = LogConfig {
            enabled: true,
            level: LogLevel::Warn,
            format: LogFormat::Logfmt,
        };
        let out = capture(cfg, || {
            tracing::info!("no");
            tracing::warn!("yes");
        });
        assert!(out.contains("msg=yes") && !out.contains("msg=no"), "{out}");
    }
}
