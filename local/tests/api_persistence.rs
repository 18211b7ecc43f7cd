//! Data and catalog survive a restart on the same data directory.
mod common;

use aws_sdk_timestreamwrite as tsw;
use common::*;
use timestream_local::{Options, Server};

#[tokio::test]
async fn data_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let t = now_ms();
    {
        let server = Server::start(Options::new(dir.path())).await.unwrap();
        let w = write_client(&server.url());
        create_db_table(&w, "pdb", "ptable").await;
        let records: Vec<_> = (0..100)
            .map(|i| rec("cpu", &i.to_string(), t - i, &[("host", "a"), ("dc", "x")]))
            .collect();
        w.write_records()
            .database_name("pdb")
            .table_name("ptable")
            .set_records(Some(records))
            .send()
            .await
            .unwrap();
        server.shutdown().await;
    }
    let server = Server::start(Options::new(dir.path())).await.unwrap();
    let w = write_client(&server.url());
    let d = w
        .describe_table()
        .database_name("pdb")
        .table_name("ptable")
        .send()
        .await
        .unwrap();
    assert_eq!(
        d.table()
            .unwrap()
            .retention_properties()
            .unwrap()
            .memory_store_retention_period_in_hours(),
        24
    );
    let q = query_client(&server.url());
    let out = q
        .query()
        .query_string(
            r#"SELECT count(*), sum(measure_value::double) FROM "pdb"."ptable" WHERE "host" = 'a'"#,
        )
        .send()
        .await
        .unwrap();
    let row = out.rows()[0].data();
    assert_eq!(row[0].scalar_value(), Some("100"));
    assert_eq!(
        row[1].scalar_value().unwrap().parse::<f64>().unwrap(),
        4950.0
    );
    // Every stored point is still there: identical values are no-ops, changed ones conflict.
    let same: Vec<_> = (0..100)
        .map(|i| rec("cpu", &i.to_string(), t - i, &[("dc", "x"), ("host", "a")]))
        .collect();
    let out = w
        .write_records()
        .database_name("pdb")
        .table_name("ptable")
        .set_records(Some(same))
        .send()
        .await
        .unwrap();
    assert_eq!(out.records_ingested().unwrap().total(), 100);
    let changed: Vec<_> = (0..100)
        .map(|i| rec("cpu", "-1", t - i, &[("dc", "x"), ("host", "a")]))
        .collect();
    let e = w
        .write_records()
        .database_name("pdb")
        .table_name("ptable")
        .set_records(Some(changed))
        .send()
        .await
        .unwrap_err();
    match e.into_service_error() {
        tsw::operation::write_records::WriteRecordsError::RejectedRecordsException(r) => {
            assert_eq!(r.rejected_records().len(), 100);
        }
        other => panic!("{other:?}"),
    }
    // The schema was reloaded: a new dimension extends it.
    w.write_records()
        .database_name("pdb")
        .table_name("ptable")
        .records(rec(
            "cpu",
            "1",
            t,
            &[("host", "a"), ("dc", "x"), ("rack", "r1")],
        ))
        .send()
        .await
        .unwrap();
    server.shutdown().await;
}
