//! Database/table operations and DescribeEndpoints through the real SDK.
mod common;

use aws_sdk_timestreamwrite as tsw;
use common::*;

#[tokio::test]
async fn database_lifecycle_and_errors() {
    let l = start().await;
    let w = write_client(&l.server.url());

    let created = w
        .create_database()
        .database_name("metrics_db")
        .send()
        .await
        .unwrap();
    let db = created.database().unwrap();
    assert_eq!(db.database_name(), Some("metrics_db"));
    assert_eq!(
        db.arn(),
        Some("arn:aws:timestream:us-east-1:000000000000:database/metrics_db")
    );
    let created_at = db.creation_time().unwrap().secs();
    assert!((created_at - now_ms() / 1000).abs() < 60);

    let e = w
        .create_database()
        .database_name("metrics_db")
        .send()
        .await
        .unwrap_err();
    assert!(
        e.as_service_error().unwrap().is_conflict_exception(),
        "{e:?}"
    );

    let e = w
        .create_database()
        .database_name("x")
        .send()
        .await
        .unwrap_err();
    assert!(e.as_service_error().unwrap().is_validation_exception());
    let e = w
        .create_database()
        .database_name("bad name!")
        .send()
        .await
        .unwrap_err();
    assert!(e.as_service_error().unwrap().is_validation_exception());

    let e = w
        .describe_database()
        .database_name("nope_db")
        .send()
        .await
        .unwrap_err();
    assert!(e
        .as_service_error()
        .unwrap()
        .is_resource_not_found_exception());

    for i in 0..25 {
        w.create_database()
            .database_name(format!("db_{i:02}"))
            .send()
            .await
            .unwrap();
    }
    // Paginate with MaxResults 7: every database exactly once, in name order.
    let mut names = Vec::new();
    let mut token = None;
    loop {
        let out = w
            .list_databases()
            .max_results(7)
            .set_next_token(token.clone())
            .send()
            .await
            .unwrap();
        assert!(out.databases().len() <= 7);
        names.extend(
            out.databases()
                .iter()
                .map(|d| d.database_name().unwrap().to_string()),
        );
        token = out.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    let mut expected: Vec<String> = (0..25).map(|i| format!("db_{i:02}")).collect();
    expected.push("metrics_db".into());
    assert_eq!(names, expected);

    w.delete_database()
        .database_name("db_00")
        .send()
        .await
        .unwrap();
    let e = w
        .delete_database()
        .database_name("db_00")
        .send()
        .await
        .unwrap_err();
    assert!(e
        .as_service_error()
        .unwrap()
        .is_resource_not_found_exception());
    l.server.shutdown().await;
}

#[tokio::test]
async fn table_lifecycle_and_errors() {
    let l = start().await;
    let w = write_client(&l.server.url());
    w.create_database()
        .database_name("dbx")
        .send()
        .await
        .unwrap();

    // No RetentionProperties: the default memory retention (6 h) and 73000 days.
    let t = w
        .create_table()
        .database_name("dbx")
        .table_name("plain")
        .send()
        .await
        .unwrap();
    let t = t.table().unwrap();
    assert_eq!(t.table_status(), Some(&tsw::types::TableStatus::Active));
    let r = t.retention_properties().unwrap();
    assert_eq!(r.memory_store_retention_period_in_hours(), 6);
    assert_eq!(r.magnetic_store_retention_period_in_days(), 73000);
    assert_eq!(
        t.arn(),
        Some("arn:aws:timestream:us-east-1:000000000000:database/dbx/table/plain")
    );

    w.create_table()
        .database_name("dbx")
        .table_name("retained")
        .retention_properties(
            tsw::types::RetentionProperties::builder()
                .memory_store_retention_period_in_hours(48)
                .magnetic_store_retention_period_in_days(30)
                .build()
                .unwrap(),
        )
        .magnetic_store_write_properties(
            tsw::types::MagneticStoreWriteProperties::builder()
                .enable_magnetic_store_writes(true)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let d = w
        .describe_table()
        .database_name("dbx")
        .table_name("retained")
        .send()
        .await
        .unwrap();
    let d = d.table().unwrap();
    assert_eq!(
        d.retention_properties()
            .unwrap()
            .memory_store_retention_period_in_hours(),
        48
    );
    assert!(d
        .magnetic_store_write_properties()
        .unwrap()
        .enable_magnetic_store_writes());

    let e = w
        .create_table()
        .database_name("dbx")
        .table_name("plain")
        .send()
        .await
        .unwrap_err();
    assert!(e.as_service_error().unwrap().is_conflict_exception());
    let e = w
        .create_table()
        .database_name("nodb")
        .table_name("plain")
        .send()
        .await
        .unwrap_err();
    assert!(e
        .as_service_error()
        .unwrap()
        .is_resource_not_found_exception());
    let e = w
        .create_table()
        .database_name("dbx")
        .table_name("bad_retention")
        .retention_properties(
            tsw::types::RetentionProperties::builder()
                .memory_store_retention_period_in_hours(0)
                .magnetic_store_retention_period_in_days(1)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap_err();
    assert!(e.as_service_error().unwrap().is_validation_exception());

    let u = w
        .update_table()
        .database_name("dbx")
        .table_name("retained")
        .retention_properties(
            tsw::types::RetentionProperties::builder()
                .memory_store_retention_period_in_hours(72)
                .magnetic_store_retention_period_in_days(30)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        u.table()
            .unwrap()
            .retention_properties()
            .unwrap()
            .memory_store_retention_period_in_hours(),
        72
    );
    let l2 = w.list_tables().database_name("dbx").send().await.unwrap();
    let names: Vec<_> = l2
        .tables()
        .iter()
        .map(|t| t.table_name().unwrap())
        .collect();
    assert_eq!(names, vec!["plain", "retained"]);
    let db = w
        .describe_database()
        .database_name("dbx")
        .send()
        .await
        .unwrap();
    assert_eq!(db.database().unwrap().table_count(), 2);

    // A database with tables cannot be deleted.
    let e = w
        .delete_database()
        .database_name("dbx")
        .send()
        .await
        .unwrap_err();
    assert!(e.as_service_error().unwrap().is_validation_exception());

    w.delete_table()
        .database_name("dbx")
        .table_name("plain")
        .send()
        .await
        .unwrap();
    let e = w
        .describe_table()
        .database_name("dbx")
        .table_name("plain")
        .send()
        .await
        .unwrap_err();
    assert!(e
        .as_service_error()
        .unwrap()
        .is_resource_not_found_exception());
    // A table re-created under the same name starts empty and writable.
    w.create_table()
        .database_name("dbx")
        .table_name("plain")
        .send()
        .await
        .unwrap();
    w.write_records()
        .database_name("dbx")
        .table_name("plain")
        .records(rec("cpu", "1", now_ms(), &[("host", "a")]))
        .send()
        .await
        .unwrap();
    l.server.shutdown().await;
}

#[tokio::test]
async fn describe_endpoints_returns_own_address() {
    let l = start().await;
    let w = write_client(&l.server.url());
    let out = w.describe_endpoints().send().await.unwrap();
    let ep = &out.endpoints()[0];
    assert_eq!(ep.address(), l.server.local_addr().to_string());
    assert_eq!(ep.cache_period_in_minutes(), 1440);
    // botocore clients get an explicit http:// (they would switch a bare host to https).
    let body = r#"{}"#;
    let raw = botocore_describe_endpoints(l.server.local_addr(), body).await;
    assert!(
        raw.contains(&format!("\"Address\":\"http://{}\"", l.server.local_addr())),
        "{raw}"
    );
    let q = query_client(&l.server.url());
    let out = q.describe_endpoints().send().await.unwrap();
    assert_eq!(
        out.endpoints()[0].address(),
        l.server.local_addr().to_string()
    );
    l.server.shutdown().await;
}

async fn botocore_describe_endpoints(addr: std::net::SocketAddr, body: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: aws-cli/1.45.11 botocore/1.43.11\r\nX-Amz-Target: Timestream_20181101.DescribeEndpoints\r\nContent-Type: application/x-amz-json-1.0\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}
