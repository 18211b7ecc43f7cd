//! Where the real client binaries are, and what a test does when one is missing.
//!
//! - Prometheus 2.x: Debian stable's `prometheus` on PATH (scripts/test.sh installs it),
//!   or `PROMETHEUS2_BIN`.
//! - Prometheus 3.x, VictoriaMetrics, vmagent, vmctl: Debian unstable packages extracted
//!   by scripts/fetch-clients.sh into `.cache/clients/` (scripts/test.sh runs it), or the
//!   paths in `PROMETHEUS3_BIN`, `VICTORIA_METRICS_BIN`, `VMAGENT_BIN`, `VMCTL_BIN`.
//!
//! A missing binary fails the test when `CI` is set (CI must never pass by skipping) and
//! otherwise skips it with a loud message on stderr, written past cargo's output capture
//! so that it shows even for a passing test, and recorded in
//! `target/tmp/skipped-tests.log`, which scripts/test.sh lists at the end (as
//! tests/support/tools.rs does for the other tools).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The command that obtains every client binary.
pub const FETCH_HINT: &str =
    "run ./scripts/fetch-clients.sh (Prometheus 3.x, VictoriaMetrics, vmagent, vmctl into .cache/clients) \
     and `apt-get install prometheus` (2.x), or just ./scripts/test.sh";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Client {
    /// Prometheus 2.x (Debian stable).
    Prometheus2,
    /// Prometheus 3.x (Debian unstable, extracted).
    Prometheus3,
    /// promtool 3.x (Debian unstable, extracted).
    Promtool3,
    /// Single-node VictoriaMetrics (Debian unstable, extracted).
    VictoriaMetrics,
    /// vmagent (Debian unstable, extracted).
    Vmagent,
    /// vmctl (Debian unstable, extracted).
    Vmctl,
}

impl Client {
    fn env_var(self) -> &'static str {
        match self {
            Client::Prometheus2 => "PROMETHEUS2_BIN",
            Client::Prometheus3 => "PROMETHEUS3_BIN",
            Client::Promtool3 => "PROMTOOL3_BIN",
            Client::VictoriaMetrics => "VICTORIA_METRICS_BIN",
            Client::Vmagent => "VMAGENT_BIN",
            Client::Vmctl => "VMCTL_BIN",
        }
    }

    /// Where scripts/fetch-clients.sh puts it (None: looked up on PATH).
    fn cache_path(self) -> Option<&'static str> {
        match self {
            Client::Prometheus2 => None,
            Client::Prometheus3 => Some("prometheus3/usr/bin/prometheus"),
            Client::Promtool3 => Some("prometheus3/usr/bin/promtool"),
            Client::VictoriaMetrics => Some("victoria-metrics/usr/bin/victoria-metrics"),
            Client::Vmagent => Some("victoria-metrics/usr/bin/vmagent"),
            Client::Vmctl => Some("victoria-metrics/usr/bin/vmctl"),
        }
    }

    fn locate(self) -> Result<PathBuf, String> {
        if let Some(p) = std::env::var_os(self.env_var()).filter(|p| !p.is_empty()) {
            let p = PathBuf::from(p);
            return if is_executable(&p) {
                Ok(p)
            } else {
                Err(format!(
                    "{}={} is not an executable file",
                    self.env_var(),
                    p.display()
                ))
            };
        }
        match self.cache_path() {
            Some(rel) => {
                let dir = std::env::var_os("CLIENTS_DIR")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| {
                        Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache/clients")
                    });
                let p = dir.join(rel);
                if is_executable(&p) {
                    Ok(p)
                } else {
                    Err(format!(
                        "{} not found (looked at ${} and {})",
                        rel.rsplit('/').next().unwrap_or(rel),
                        self.env_var(),
                        p.display()
                    ))
                }
            }
            None => on_path("prometheus")
                .ok_or_else(|| format!("`prometheus` not on PATH and ${} unset", self.env_var())),
        }
    }
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| is_executable(p))
    })
}

/// True when running in CI (`CI` set to anything but "" / "false" / "0").
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Writes to the process' stderr directly: libtest captures `eprintln!` of passing
/// tests, and a skip must be seen.
pub fn loud(msg: &str) {
    let bar = "!".repeat(78);
    let _ = writeln!(std::io::stderr(), "\n{bar}\n{msg}\n{bar}");
}

/// Reports a skip loudly and records it for scripts/test.sh's closing list.
fn skipped(test: &str, why: &str) {
    loud(&format!("SKIPPED {test}: {why}.\nTo get it: {FETCH_HINT}"));
    let log = Path::new(env!("CARGO_TARGET_TMPDIR")).join("skipped-tests.log");
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
    {
        let _ = writeln!(
            f,
            "SKIPPED {test}: {why} (get it: ./scripts/fetch-clients.sh)"
        );
    }
}

/// One line on the process' stderr (past the output capture): what a test saw.
pub fn note(msg: &str) {
    let _ = writeln!(std::io::stderr(), "{msg}");
}

/// The binary of `client` for `test`; None (after a loud message) when it is missing
/// outside CI; panics when it is missing in CI.
pub fn require(client: Client, test: &str) -> Option<PathBuf> {
    match client.locate() {
        Ok(p) => Some(p),
        Err(why) => {
            if in_ci() {
                panic!("{test}: {client:?} is required in CI: {why}. To get it: {FETCH_HINT}");
            }
            skipped(test, &format!("{client:?} missing: {why}"));
            None
        }
    }
}

/// `prometheus --version` → (major, full version string), e.g. (3, "3.5.3+ds1").
pub fn prometheus_version(bin: &Path) -> (u32, String) {
    let out = Command::new(bin)
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("{} --version: {e}", bin.display()));
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    // "prometheus, version 2.42.0+ds (branch: ...)"
    let version = text
        .split("version ")
        .nth(1)
        .and_then(|v| v.split_whitespace().next())
        .unwrap_or_else(|| panic!("cannot read the Prometheus version from {text:?}"))
        .to_string();
    let major = version
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the Prometheus version from {text:?}"));
    (major, version)
}

/// A Prometheus of the wanted major version, or None (skip; panics in CI).
pub fn require_prometheus(major: u32, test: &str) -> Option<(PathBuf, String)> {
    let client = if major >= 3 {
        Client::Prometheus3
    } else {
        Client::Prometheus2
    };
    let bin = require(client, test)?;
    let (got, version) = prometheus_version(&bin);
    if got != major {
        let why = format!(
            "{} is Prometheus {version}, this test needs {major}.x",
            bin.display()
        );
        if in_ci() {
            panic!("{test}: {why}. To get it: {FETCH_HINT}");
        }
        skipped(test, &why);
        return None;
    }
    Some((bin, version))
}
