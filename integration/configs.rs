//! Every prometheus.yml we document must be accepted by promtool.

use std::path::{Path, PathBuf};
use std::process::Command;

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
fn promtool_accepts_every_documented_prometheus_yml() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("documentation");
    let mut files = Vec::new();
    yaml_files(&root, &mut files);
    files.sort();
    assert!(
        files.len() >= 5,
        "expected the example configs under documentation/, found {files:?}"
    );
    for f in files {
        let out = Command::new("promtool")
            .args(["check", "config", "--syntax-only"])
            .arg(&f)
            .output()
            .expect("promtool is installed with the prometheus package");
        assert!(
            out.status.success(),
            "promtool rejects {}:\n{}{}",
            f.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
