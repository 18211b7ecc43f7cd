//! VictoriaMetrics' tools as real clients: a loopback single-node `victoria-metrics` for
//! vmctl to import into, and vmctl itself (always under `timeout -s KILL`: it can hang on
//! an error answer).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::{free_port, http_client, wait_for, Proc};

/// A series as VictoriaMetrics exports it: sorted labels → (timestamp ms, value) points.
pub type Exported = BTreeMap<Vec<(String, String)>, Vec<(i64, f64)>>;

pub struct VictoriaMetrics {
    /// Killed on drop.
    _proc: Proc,
    pub url: String,
}

impl VictoriaMetrics {
    pub async fn start(bin: &Path, dir: &Path) -> VictoriaMetrics {
        let port = free_port();
        let args = vec![
            format!("-storageDataPath={}", dir.join("vm-data").display()),
            format!("-httpListenAddr=127.0.0.1:{port}"),
            // Imported samples may be hours old or a few ms in the future; keep them all.
            "-retentionPeriod=100y".to_string(),
            "-search.disableCache".to_string(),
            "-loggerLevel=INFO".to_string(),
        ];
        let proc = Proc::spawn("victoria-metrics", bin, &args, dir);
        let url = format!("http://127.0.0.1:{port}");
        let health = format!("{url}/health");
        let client = http_client();
        wait_for(
            "victoria-metrics healthy",
            Duration::from_secs(60),
            || async {
                match client.get(&health).send().await {
                    Ok(r) if r.status().is_success() => Some(()),
                    _ => None,
                }
            },
        )
        .await;
        VictoriaMetrics { _proc: proc, url }
    }

    /// Makes everything imported so far searchable.
    pub async fn flush(&self) {
        let r = http_client()
            .get(format!("{}/internal/force_flush", self.url))
            .send()
            .await
            .expect("force_flush");
        assert!(r.status().is_success(), "force_flush: {}", r.status());
    }

    /// Every raw sample of the series matching `selector`, via `/api/v1/export`.
    pub async fn export(&self, selector: &str) -> Exported {
        self.flush().await;
        let text = http_client()
            .post(format!("{}/api/v1/export", self.url))
            .form(&[
                ("match[]", selector),
                ("start", "0"),
                ("reduce_mem_usage", "1"),
            ])
            .send()
            .await
            .expect("export")
            .text()
            .await
            .expect("export body");
        let mut out = Exported::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let v: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("export line is not JSON ({e}): {line}"));
            let mut labels: Vec<(String, String)> = v["metric"]
                .as_object()
                .expect("metric object")
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect();
            labels.sort();
            let ts = v["timestamps"].as_array().expect("timestamps");
            let vals = v["values"].as_array().expect("values");
            let points = out.entry(labels).or_default();
            for (t, x) in ts.iter().zip(vals) {
                let x = match x {
                    Value::Number(n) => n.as_f64().unwrap(),
                    // VictoriaMetrics writes NaN/Inf as strings.
                    Value::String(s) => s.parse().unwrap_or(f64::NAN),
                    other => panic!("export value {other}"),
                };
                points.push((t.as_i64().expect("timestamp ms"), x));
            }
        }
        for points in out.values_mut() {
            points.sort_by_key(|p| p.0);
        }
        out
    }
}

/// The outcome of one vmctl run.
pub struct VmctlRun {
    pub success: bool,
    pub output: String,
    pub log: PathBuf,
}

/// Runs `vmctl remote-read <args>` under `timeout -s KILL <secs>`, output into
/// `<dir>/<name>.log`.
pub fn vmctl_remote_read(
    bin: &Path,
    name: &str,
    args: &[String],
    dir: &Path,
    secs: u64,
) -> VmctlRun {
    let out = Command::new("timeout")
        .args(["-s", "KILL", &secs.to_string()])
        .arg(bin)
        .arg("remote-read")
        .args(args)
        .env_remove("REMOTE_READ_USERNAME")
        .env_remove("REMOTE_READ_PASSWORD")
        .output()
        .expect("run vmctl under timeout(1)");
    let output =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let log = dir.join(format!("{name}.log"));
    std::fs::write(&log, format!("args: {args:?}\n{output}")).unwrap();
    VmctlRun {
        success: out.status.success(),
        output,
        log,
    }
}
