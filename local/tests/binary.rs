//! The `timestream-local` binary prints its bound URL and serves the API there.
mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::*;

#[tokio::test(flavor = "multi_thread")]
async fn binary_prints_url_and_serves() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_timestream-local"))
        .args(["--listen-address", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .args([
            "--default-memory-retention-hours",
            "12",
            "--fault-throttle-count",
            "1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("timestream-local listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    assert!(
        url.starts_with("http://127.0.0.1:") && !url.ends_with(":0"),
        "{url}"
    );
    let w = write_client(&url);
    w.create_database()
        .database_name("bindb")
        .send()
        .await
        .unwrap();
    let t = w
        .create_table()
        .database_name("bindb")
        .table_name("bintable")
        .send()
        .await
        .unwrap();
    let r = t.table().unwrap().retention_properties().unwrap();
    assert_eq!(r.memory_store_retention_period_in_hours(), 12);
    // The fault flag applies to the first WriteRecords call.
    let e = w
        .write_records()
        .database_name("bindb")
        .table_name("bintable")
        .records(rec("m", "1", now_ms(), &[("h", "a")]))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "ThrottlingException");
    w.write_records()
        .database_name("bindb")
        .table_name("bintable")
        .records(rec("m", "1", now_ms(), &[("h", "a")]))
        .send()
        .await
        .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
}
