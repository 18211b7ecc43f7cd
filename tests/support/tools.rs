//! External tools some tests need (a JDK, cfn-lint, the AWS CLI). `scripts/test.sh`
//! installs them, so a missing tool is a broken setup: with `CI` set the test fails and
//! says how to install it; elsewhere it prints loudly that it skipped and records the
//! skip in `target/tmp/skipped-tests.log`, which `scripts/test.sh` reports at the end.
//! Included by path from the test crates of both workspace members.
#![allow(dead_code)] // each test crate uses a part

use std::io::Write;
use std::process::{Command, Stdio};

/// Whether `tool args…` runs and succeeds (a pyenv shim without the package behind it
/// answers 127: that is "not installed" too).
pub fn available(tool: &str, args: &[&str]) -> bool {
    Command::new(tool)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// True when `tool` is usable. Otherwise panics under `CI`, or reports the skip of `test`
/// and returns false.
pub fn require(test: &str, tool: &str, probe: &[&str], install: &str) -> bool {
    if available(tool, probe) {
        return true;
    }
    if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
        panic!("{test}: `{tool}` is required (CI is set) but not usable; install it: {install}");
    }
    let line = format!("SKIPPED {test}: `{tool}` is not installed (install: {install})");
    eprintln!("\n*** {line} ***\n");
    let log = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("skipped-tests.log");
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
    {
        let _ = writeln!(f, "{line}");
    }
    false
}

/// Both halves of a JDK.
pub fn require_jdk(test: &str) -> bool {
    const INSTALL: &str = "apt-get install default-jdk-headless";
    require(test, "javac", &["-version"], INSTALL) && require(test, "java", &["-version"], INSTALL)
}
