//! The AWS CLI against timestream-local: with --endpoint-url (no endpoint discovery) and with
//! AWS_ENDPOINT_URL (the CLI discovers endpoints through DescribeEndpoints first).
//! Needs the AWS CLI (see tests/support/tools.rs for what happens without it).
mod common;
#[path = "../../tests/support/tools.rs"]
mod tools;

use std::process::Command;

use common::*;

fn aws_available(test: &str) -> bool {
    tools::require(test, "aws", &["--version"], "python3 -m pip install awscli")
}

fn aws(url: &str, via_env: bool, args: &[&str]) -> (bool, String, String) {
    aws_as(url, via_env, ("AKIDEXAMPLE", "example-secret"), args)
}

fn aws_as(url: &str, via_env: bool, key: (&str, &str), args: &[&str]) -> (bool, String, String) {
    let mut c = Command::new("aws");
    c.args(args)
        .env("AWS_ACCESS_KEY_ID", key.0)
        .env("AWS_SECRET_ACCESS_KEY", key.1)
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL")
        .env("AWS_PAGER", "")
        .env("AWS_MAX_ATTEMPTS", "1");
    if via_env {
        c.env("AWS_ENDPOINT_URL", url);
    } else {
        c.args(["--endpoint-url", url]);
    }
    let o = c.output().expect("run aws");
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn aws_cli_create_write_query() {
    if !aws_available("aws_cli_create_write_query") {
        return;
    }
    let l = start().await;
    let url = l.server.url();
    let u = url.clone();
    tokio::task::spawn_blocking(move || {
        for (via_env, db) in [(false, "cli_db"), (true, "cli_env_db")] {
            let (ok, out, err) = aws(&u, via_env, &["timestream-write", "create-database", "--database-name", db]);
            assert!(ok, "create-database: {err}");
            assert!(out.contains(&format!("\"DatabaseName\": \"{db}\"")), "{out}");
            let (ok, out, err) = aws(
                &u,
                via_env,
                &["timestream-write", "create-table", "--database-name", db, "--table-name", "cli_table"],
            );
            assert!(ok, "create-table: {err}");
            assert!(out.contains("\"TableStatus\": \"ACTIVE\""), "{out}");
            let t = now_ms();
            let records = format!(
                r#"[{{"Dimensions":[{{"Name":"host","Value":"a"}}],"MeasureName":"cpu","MeasureValue":"1.5","Time":"{t}"}},
                    {{"Dimensions":[{{"Name":"host","Value":"b"}}],"MeasureName":"cpu","MeasureValue":"2.5","Time":"{t}"}}]"#
            );
            let (ok, out, err) = aws(
                &u,
                via_env,
                &[
                    "timestream-write", "write-records", "--database-name", db, "--table-name",
                    "cli_table", "--records", &records,
                ],
            );
            assert!(ok, "write-records: {err}");
            assert!(out.contains("\"Total\": 2"), "{out}");
            // A rejected record surfaces as RejectedRecordsException in the CLI too.
            let conflict = format!(
                r#"[{{"Dimensions":[{{"Name":"host","Value":"a"}}],"MeasureName":"cpu","MeasureValue":"9","Time":"{t}"}}]"#
            );
            let (ok, _, err) = aws(
                &u,
                via_env,
                &[
                    "timestream-write", "write-records", "--database-name", db, "--table-name",
                    "cli_table", "--records", &conflict,
                ],
            );
            assert!(!ok && err.contains("RejectedRecordsException"), "{err}");
            let q = format!("SELECT count(*) FROM \"{db}\".\"cli_table\"");
            let (ok, out, err) = aws(&u, via_env, &["timestream-query", "query", "--query-string", &q]);
            assert!(ok, "query: {err}");
            assert!(out.contains("\"ScalarValue\": \"2\""), "{out}");
        }
    })
    .await
    .unwrap();
    l.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn aws_cli_signatures_are_verified() {
    if !aws_available("aws_cli_signatures_are_verified") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys");
    std::fs::write(&file, "AKIDCLI00000000000 cli/secret+key\n").unwrap();
    let mut opts = timestream_local::Options::new(dir.path().join("data"));
    opts.credentials_file = Some(file);
    let l = start_with(opts, dir).await;
    let u = l.server.url();
    tokio::task::spawn_blocking(move || {
        let list = ["timestream-write", "list-databases"];
        let (ok, _, err) = aws_as(&u, false, ("AKIDCLI00000000000", "cli/secret+key"), &list);
        assert!(ok, "{err}");
        let (ok, _, err) = aws_as(&u, true, ("AKIDCLI00000000000", "cli/secret+key"), &list);
        assert!(ok, "with endpoint discovery: {err}");
        let (ok, _, err) = aws_as(&u, false, ("AKIDCLI00000000000", "wrong"), &list);
        assert!(!ok && err.contains("InvalidSignatureException"), "{err}");
        let (ok, _, err) = aws_as(&u, false, ("AKIDNOBODY00000000", "x"), &list);
        assert!(!ok && err.contains("UnrecognizedClientException"), "{err}");
    })
    .await
    .unwrap();
    l.server.shutdown().await;
}
