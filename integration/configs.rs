//! Every prometheus.yml we document must be accepted by promtool 2.x (Debian stable)
//! and promtool 3.x (Debian unstable, extracted by scripts/fetch-clients.sh).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::clients::{self, Client};

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() {
            yaml_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "yml" || e == "yaml") {
            out.push(p);
        }
    }
}

#[test]
fn promtool_2_accepts_every_documented_prometheus_yml() {
    // promtool comes with Debian stable's prometheus package, next to the binary.
    let Some(prom) = clients::require(Client::Prometheus2, "promtool 2.x check") else {
        return;
    };
    check_all(&prom.with_file_name("promtool"), false);
}

#[test]
fn promtool_3_accepts_every_documented_prometheus_yml() {
    let Some(promtool) = clients::require(Client::Promtool3, "promtool 3.x check") else {
        return;
    };
    check_all(&promtool, true);
}

/// `knows_rw2`: the promtool accepts `protobuf_message` (≥ 2.54).
fn check_all(promtool: &Path, knows_rw2: bool) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("documentation");
    let mut files = Vec::new();
    yaml_files(&root, &mut files);
    files.sort();
    assert!(
        files.len() >= 5,
        "expected the example configs under documentation/, found {files:?}"
    );
    let mut checked_rw2 = false;
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        let rw2 = text.contains("protobuf_message:");
        // `protobuf_message` (remote write 2.0) exists since Prometheus 2.54 and `sigv4`'s
        // `service_name` since 3.5: promtool 2.42 (Debian stable) rejects both fields, so
        // such files are checked by promtool 3.x only.
        if (rw2 || text.contains("service_name:")) && !knows_rw2 {
            clients::note(&format!(
                "{}: needs a newer promtool (protobuf_message >= 2.54, sigv4 service_name >= 3.5), checked by the 3.x test",
                f.display()
            ));
            continue;
        }
        checked_rw2 |= rw2;
        let out = Command::new(promtool)
            .args(["check", "config", "--syntax-only"])
            .arg(&f)
            .output()
            .unwrap_or_else(|e| panic!("{}: {e}", promtool.display()));
        assert!(
            out.status.success(),
            "{} rejects {}:\n{}{}",
            promtool.display(),
            f.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(
        checked_rw2 || !knows_rw2,
        "documentation/example/rw2.yml (remote write 2.0) was not checked"
    );
}
