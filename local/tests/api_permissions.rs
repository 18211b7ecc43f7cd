//! Permissions named in the credentials file, through the real SDK and the AWS CLI: each
//! operation and SQL statement kind needs the action AWS documents for it, a refusal is
//! Timestream's AccessDeniedException (HTTP 400, IAM's message naming principal, action and
//! resource), and session tokens must travel signed with the requests of keys issued with one.
mod common;
#[path = "../../tests/support/tools.rs"]
mod tools;

use aws_sdk_timestreamquery as tsq;
use aws_sdk_timestreamquery::error::ProvideErrorMetadata;
use aws_sdk_timestreamwrite as tsw;
use common::*;
use timestream_local::Options;

const ADMIN: (&str, &str) = ("AKIDADMIN000000000", "admin-secret");
const WRITER: (&str, &str) = ("AKIDWRITER00000000", "writer-secret");
const READER: (&str, &str) = ("AKIDREADER00000000", "reader/secret+x");
const TEMP: (&str, &str) = ("ASIATEMP0000000000", "temp-secret");
const TOKEN: &str = "FwoGZXIvYXdzEXAMPLEsessionTOKEN//+==";

const READER_POLICY: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [
    {"Effect": "Allow", "Action": ["timestream:Select"],
     "Resource": "arn:aws:timestream:*:*:database/pdb/table/*"},
    {"Effect": "Deny", "Action": "timestream:Select",
     "Resource": "arn:aws:timestream:*:*:database/pdb/table/secret"},
    {"Effect": "Allow", "Action": "timestream:DescribeEndpoints", "Resource": "*"}
  ]
}"#;

async fn start_with_permissions() -> Local {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("reader.json"), READER_POLICY).unwrap();
    let file = dir.path().join("credentials");
    std::fs::write(
        &file,
        format!(
            "{} {}\n\
             {} {} actions=timestream:WriteRecords resources=arn:aws:timestream:*:*:database/pdb/table/ptab\n\
             {} {} policy=reader.json\n\
             {} {} token={TOKEN} actions=timestream:*\n",
            ADMIN.0, ADMIN.1, WRITER.0, WRITER.1, READER.0, READER.1, TEMP.0, TEMP.1
        ),
    )
    .unwrap();
    let mut opts = Options::new(dir.path().join("data"));
    opts.credentials_file = Some(file);
    let l = start_with(opts, dir).await;
    let admin = write_client_with(&l.server.url(), creds(ADMIN.0, ADMIN.1), false);
    create_db_table(&admin, "pdb", "ptab").await;
    for t in ["other", "secret"] {
        admin
            .create_table()
            .database_name("pdb")
            .table_name(t)
            .send()
            .await
            .expect("create table");
    }
    l
}

fn query_as(url: &str, key: (&str, &str), token: Option<&str>) -> tsq::Client {
    tsq::Client::from_conf(
        tsq::Config::builder()
            .behavior_version_latest()
            .region(tsq::config::Region::new("us-east-1"))
            .endpoint_url(url)
            .credentials_provider(tsq::config::Credentials::new(
                key.0,
                key.1,
                token.map(str::to_string),
                None,
                "test",
            ))
            .retry_config(tsq::config::retry::RetryConfig::disabled())
            .build(),
    )
}

fn write_as(url: &str, key: (&str, &str), token: Option<&str>) -> tsw::Client {
    write_client_with(
        url,
        tsw::config::Credentials::new(key.0, key.1, token.map(str::to_string), None, "test"),
        false,
    )
}

fn arn(table: &str) -> String {
    format!("arn:aws:timestream:us-east-1:000000000000:database/pdb/table/{table}")
}

/// Asserts an AccessDeniedException (HTTP 400) whose message is IAM's for `user`, `action`
/// and `resource` (`None`: an action granted on no particular resource).
fn assert_denied<E, R>(
    r: Result<R, tsq::error::SdkError<E, tsq::config::http::HttpResponse>>,
    user: &str,
    action: &str,
    resource: Option<&str>,
) where
    E: tsq::error::ProvideErrorMetadata + std::fmt::Debug,
    R: std::fmt::Debug,
{
    let e = r.expect_err("refused");
    let status = e.raw_response().map(|r| r.status().as_u16());
    let se = e.as_service_error().expect("a service error");
    assert_eq!(se.code(), Some("AccessDeniedException"), "{se:?}");
    assert_eq!(status, Some(400));
    let on = resource
        .map(|r| format!(" on resource: {r}"))
        .unwrap_or_default();
    assert_eq!(
        se.message().unwrap_or_default(),
        format!(
            "User: arn:aws:iam::000000000000:user/{user} is not authorized to perform: \
             timestream:{action}{on} because no identity-based policy allows the timestream:{action} action"
        )
    );
}

#[tokio::test]
async fn write_key_may_only_write_its_table() {
    let l = start_with_permissions().await;
    let url = l.server.url();
    let w = write_as(&url, WRITER, None);
    w.write_records()
        .database_name("pdb")
        .table_name("ptab")
        .records(rec("m", "1", now_ms(), &[("h", "a")]))
        .send()
        .await
        .expect("WriteRecords on the granted table");
    let r = w
        .write_records()
        .database_name("pdb")
        .table_name("other")
        .records(rec("m", "1", now_ms(), &[("h", "a")]))
        .send()
        .await;
    assert_denied(r, WRITER.0, "WriteRecords", Some(&arn("other")));
    // Refused before the service looks: a missing table is not revealed.
    let r = w
        .write_records()
        .database_name("nosuchdb")
        .table_name("t")
        .records(rec("m", "1", now_ms(), &[("h", "a")]))
        .send()
        .await;
    assert_denied(
        r,
        WRITER.0,
        "WriteRecords",
        Some("arn:aws:timestream:us-east-1:000000000000:database/nosuchdb/table/t"),
    );
    assert_denied(
        w.list_databases().send().await,
        WRITER.0,
        "ListDatabases",
        None,
    );
    // Endpoint discovery is its own action, granted on "*" only.
    assert_denied(
        w.describe_endpoints().send().await,
        WRITER.0,
        "DescribeEndpoints",
        None,
    );
    let r = w
        .describe_table()
        .database_name("pdb")
        .table_name("ptab")
        .send()
        .await;
    assert_denied(r, WRITER.0, "DescribeTable", Some(&arn("ptab")));
    let r = w
        .create_table()
        .database_name("pdb")
        .table_name("new")
        .send()
        .await;
    assert_denied(r, WRITER.0, "CreateTable", Some(&arn("new")));
    let r = query_as(&url, WRITER, None)
        .query()
        .query_string(r#"SELECT * FROM "pdb"."ptab""#)
        .send()
        .await;
    assert_denied(r, WRITER.0, "Select", Some(&arn("ptab")));
    l.server.shutdown().await;
}

#[tokio::test]
async fn each_sql_statement_kind_needs_its_action() {
    let l = start_with_permissions().await;
    let url = l.server.url();
    let q = query_as(&url, READER, None);
    q.describe_endpoints().send().await.expect("granted on *");
    let out = q
        .query()
        .query_string(r#"SELECT * FROM "pdb"."ptab" LIMIT 0"#)
        .send()
        .await
        .expect("Select granted on pdb/*");
    assert!(!out.column_info().is_empty());
    let cases: [(&str, &str, Option<String>); 7] = [
        (
            r#"DESCRIBE "pdb"."ptab""#,
            "DescribeTable",
            Some(arn("ptab")),
        ),
        ("SELECT 1", "SelectValues", None),
        ("SELECT now()", "SelectValues", None),
        ("SHOW DATABASES", "ListDatabases", None),
        (
            "SHOW TABLES FROM pdb",
            "ListTables",
            Some("arn:aws:timestream:us-east-1:000000000000:database/pdb".into()),
        ),
        (
            r#"SHOW MEASURES FROM "pdb"."ptab""#,
            "ListMeasures",
            Some(arn("ptab")),
        ),
        (
            r#"SELECT count(*) FROM "otherdb"."ptab""#,
            "Select",
            Some("arn:aws:timestream:us-east-1:000000000000:database/otherdb/table/ptab".into()),
        ),
    ];
    for (sql, action, resource) in cases {
        let r = q.query().query_string(sql).send().await;
        assert_denied(r, READER.0, action, resource.as_deref());
    }
    // An explicit Deny wins over the Allow on pdb/*.
    let e = q
        .query()
        .query_string(r#"SELECT * FROM "pdb"."secret""#)
        .send()
        .await
        .unwrap_err();
    let se = e.as_service_error().unwrap();
    assert_eq!(se.code(), Some("AccessDeniedException"));
    assert!(se
        .message()
        .unwrap()
        .ends_with("timestream:Select on resource: arn:aws:timestream:us-east-1:000000000000:database/pdb/table/secret with an explicit deny in an identity-based policy"));
    let r = q
        .cancel_query()
        .query_id("AAAAAAAAAAAAAAAAAAAAAAAAAA")
        .send()
        .await;
    assert_denied(r, READER.0, "CancelQuery", None);
    // A key without an action list may still do everything, DESCRIBE included.
    let admin = query_as(&url, ADMIN, None);
    let out = admin
        .query()
        .query_string(r#"DESCRIBE "pdb"."ptab""#)
        .send()
        .await
        .expect("allow-all key");
    assert_eq!(out.column_info().len(), 3);
    l.server.shutdown().await;
}

#[tokio::test]
async fn session_token_must_travel_signed_with_its_key() {
    let l = start_with_permissions().await;
    let url = l.server.url();
    query_as(&url, TEMP, Some(TOKEN))
        .query()
        .query_string(r#"SELECT * FROM "pdb"."ptab""#)
        .send()
        .await
        .expect("key with its session token");
    write_as(&url, TEMP, Some(TOKEN))
        .describe_endpoints()
        .send()
        .await
        .expect("write API too");
    for (key, token) in [
        (TEMP, None),
        (TEMP, Some("FwoGZXIvYXdzEXAMPLEsessionTOKEN//+=X")),
        (ADMIN, Some(TOKEN)),
    ] {
        let e = query_as(&url, key, token)
            .describe_endpoints()
            .send()
            .await
            .unwrap_err();
        let se = e.as_service_error().unwrap();
        assert_eq!(se.code(), Some("UnrecognizedClientException"));
        assert_eq!(
            se.message(),
            Some("The security token included in the request is invalid.")
        );
        assert!(!format!("{e:?}").contains(TOKEN), "token echoed");
    }
    l.server.shutdown().await;
}

#[tokio::test]
async fn credentials_file_errors_name_the_line() {
    for (line, want) in [
        (
            "AKID secret actions=timestream:Select policy=p.json",
            "not both",
        ),
        ("AKID secret resources=*", "resources= needs actions="),
        ("AKID secret colour=blue", "expected `ACCESS_KEY_ID"),
        ("AKID secret policy=missing.json", "cannot read policy"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("p.json"), READER_POLICY).unwrap();
        let file = dir.path().join("credentials");
        std::fs::write(&file, format!("# keys\n{line}\n")).unwrap();
        let mut opts = Options::new(dir.path().join("data"));
        opts.credentials_file = Some(file);
        let e = timestream_local::Server::start(opts)
            .await
            .err()
            .expect("refused");
        let msg = e.to_string();
        assert!(
            msg.contains("line 2") && msg.contains(want),
            "{line}: {msg}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.json"),
        r#"{"Statement":{"Effect":"Allow","Action":"timestream:*","Resource":"*","Condition":{}}}"#,
    )
    .unwrap();
    let file = dir.path().join("credentials");
    std::fs::write(&file, "AKID secret policy=p.json\n").unwrap();
    let mut opts = Options::new(dir.path().join("data"));
    opts.credentials_file = Some(file);
    let e = timestream_local::Server::start(opts).await.err().unwrap();
    assert!(e.to_string().contains("Condition is not supported"), "{e}");
}

/// The AWS CLI sees the same refusals (botocore parses the error as the service's).
#[tokio::test(flavor = "multi_thread")]
async fn aws_cli_sees_access_denied_and_uses_session_tokens() {
    if !tools::require(
        "aws_cli_sees_access_denied_and_uses_session_tokens",
        "aws",
        &["--version"],
        "python3 -m pip install awscli",
    ) {
        return;
    }
    let l = start_with_permissions().await;
    let url = l.server.url();
    let aws = move |key: (&str, &str), token: Option<&str>, args: &[&str]| {
        let mut c = std::process::Command::new("aws");
        c.args(args)
            .args(["--endpoint-url", &url])
            .env("AWS_ACCESS_KEY_ID", key.0)
            .env("AWS_SECRET_ACCESS_KEY", key.1)
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_ENDPOINT_URL")
            .env("AWS_PAGER", "")
            .env("AWS_MAX_ATTEMPTS", "1");
        match token {
            Some(t) => c.env("AWS_SESSION_TOKEN", t),
            None => c.env_remove("AWS_SESSION_TOKEN"),
        };
        let o = c.output().expect("run aws");
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    tokio::task::spawn_blocking(move || {
        let select = ["timestream-query", "query", "--query-string", r#"SELECT * FROM "pdb"."ptab""#];
        let (ok, _, err) = aws(READER, None, &select);
        assert!(ok, "{err}");
        let (ok, _, err) = aws(
            READER,
            None,
            &["timestream-query", "query", "--query-string", r#"DESCRIBE "pdb"."ptab""#],
        );
        assert!(!ok);
        assert!(
            err.contains("(AccessDeniedException) when calling the Query operation: User: arn:aws:iam::000000000000:user/AKIDREADER00000000 is not authorized to perform: timestream:DescribeTable on resource: arn:aws:timestream:us-east-1:000000000000:database/pdb/table/ptab"),
            "{err}"
        );
        let (ok, _, err) = aws(WRITER, None, &["timestream-write", "list-databases"]);
        assert!(!ok);
        assert!(err.contains("timestream:ListDatabases"), "{err}");
        let (ok, _, err) = aws(TEMP, Some(TOKEN), &select);
        assert!(ok, "with the session token: {err}");
        let (ok, _, err) = aws(TEMP, None, &select);
        assert!(!ok && err.contains("UnrecognizedClientException"), "{err}");
    })
    .await
    .unwrap();
    l.server.shutdown().await;
}
