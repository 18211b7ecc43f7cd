//! WriteRecords rules through the real SDK. Stored state is observed through the upsert rules
//! (a conflicting re-write is rejected only if the first write was stored under the same key).
mod common;

use aws_sdk_timestreamwrite as tsw;
use common::*;
use tsw::operation::write_records::WriteRecordsError;

type Rejected = Vec<(i32, String, Option<i64>)>;

async fn write(w: &tsw::Client, records: Vec<Record>) -> Result<i32, Result<Rejected, String>> {
    write_common(w, None, records).await
}

/// Ok(total ingested) | Err(Ok(rejected records)) | Err(Err(other error code))
async fn write_common(
    w: &tsw::Client,
    common: Option<Record>,
    records: Vec<Record>,
) -> Result<i32, Result<Rejected, String>> {
    match w
        .write_records()
        .database_name("wdb")
        .table_name("wtable")
        .set_common_attributes(common)
        .set_records(Some(records))
        .send()
        .await
    {
        Ok(o) => Ok(o.records_ingested().unwrap().total()),
        Err(e) => {
            let c = code(&e);
            match e.into_service_error() {
                WriteRecordsError::RejectedRecordsException(r) => Err(Ok(r
                    .rejected_records()
                    .iter()
                    .map(|x| {
                        (
                            x.record_index(),
                            x.reason().unwrap_or("").to_string(),
                            x.existing_version(),
                        )
                    })
                    .collect())),
                _ => Err(Err(c)),
            }
        }
    }
}

async fn setup() -> (Local, tsw::Client) {
    let l = start().await;
    let w = write_client(&l.server.url());
    create_db_table(&w, "wdb", "wtable").await;
    (l, w)
}

fn validation(r: Result<i32, Result<Rejected, String>>) {
    assert_eq!(r, Err(Err("ValidationException".into())));
}

#[tokio::test]
async fn record_count_limits() {
    let (l, w) = setup().await;
    let t = now_ms();
    validation(write(&w, vec![]).await);
    let many: Vec<Record> = (0..101)
        .map(|i| rec("m", "1", t - i, &[("h", "a")]))
        .collect();
    let e = w
        .write_records()
        .database_name("wdb")
        .table_name("wtable")
        .set_records(Some(many.clone()))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "ValidationException");
    assert!(format!("{:?}", e.into_service_error()).contains("less than or equal to 100"));
    assert_eq!(write(&w, many[..100].to_vec()).await, Ok(100));
    l.server.shutdown().await;
}

#[tokio::test]
async fn missing_database_or_table() {
    let (l, w) = setup().await;
    for (db, t) in [("nodb", "wtable"), ("wdb", "notable")] {
        let e = w
            .write_records()
            .database_name(db)
            .table_name(t)
            .records(rec("m", "1", now_ms(), &[("h", "a")]))
            .send()
            .await
            .unwrap_err();
        assert!(
            e.as_service_error()
                .unwrap()
                .is_resource_not_found_exception(),
            "{e:?}"
        );
    }
    l.server.shutdown().await;
}

#[tokio::test]
async fn common_attributes_merge_and_overlap() {
    let (l, w) = setup().await;
    let t = now_ms();
    let common = Record::builder()
        .dimensions(dim("region", "eu"))
        .measure_name("cpu")
        .measure_value_type(MeasureValueType::Double)
        .time(t.to_string())
        .build();
    let r = Record::builder()
        .dimensions(dim("host", "a"))
        .measure_value("1.5")
        .build();
    assert_eq!(write_common(&w, Some(common.clone()), vec![r]).await, Ok(1));
    // The same series written without CommonAttributes: same key, so a different value conflicts.
    let rej = write(
        &w,
        vec![rec("cpu", "2.5", t, &[("host", "a"), ("region", "eu")])],
    )
    .await
    .unwrap_err()
    .unwrap();
    assert_eq!(rej.len(), 1);
    assert_eq!(rej[0].2, Some(1));
    // And the identical value is an accepted no-op.
    assert_eq!(
        write(
            &w,
            vec![rec("cpu", "1.5", t, &[("region", "eu"), ("host", "a")])]
        )
        .await,
        Ok(1)
    );
    // Overlapping dimension names between CommonAttributes and a record.
    let r = Record::builder()
        .dimensions(dim("region", "us"))
        .measure_value("1")
        .build();
    validation(write_common(&w, Some(common), vec![r]).await);
    l.server.shutdown().await;
}

#[tokio::test]
async fn name_and_value_limits_reject_single_records() {
    let (l, w) = setup().await;
    let t = now_ms();
    let n60 = "d".repeat(60);
    let n61 = "d".repeat(61);
    let m256 = "m".repeat(256);
    let m257 = "m".repeat(257);
    let v2048 = "v".repeat(1900);
    let v2049 = "v".repeat(2049);
    let varchar = |v: &str, time: i64| {
        Record::builder()
            .measure_name("s")
            .measure_value(v)
            .measure_value_type(MeasureValueType::Varchar)
            .time(time.to_string())
            .dimensions(dim("h", "x"))
            .build()
    };
    let recs = vec![
        rec("m", "1", t, &[(n60.as_str(), "ok")]),     // 0 ok
        rec("m", "1", t, &[(n61.as_str(), "no")]),     // 1 dimension name > 60 bytes
        rec(&m256, "1", t, &[("h", "a")]),             // 2 ok
        rec(&m257, "1", t, &[("h", "a")]),             // 3 measure name > 256 bytes
        varchar(&v2048, t),                            // 4 ok
        varchar(&v2049, t + 1),                        // 5 value > 2048
        rec("m", "1", t, &[("h", &"x".repeat(2100))]), // 6 dimension value > 2048
    ];
    let rej = write(&w, recs).await.unwrap_err().unwrap();
    let idx: Vec<i32> = rej.iter().map(|r| r.0).collect();
    assert_eq!(idx, vec![1, 3, 5, 6], "{rej:?}");
    assert!(rej.iter().all(|r| r.2.is_none() && !r.1.is_empty()));
    // Two-byte characters: 30 of them are 60 bytes (ok), 31 are 62 bytes (rejected).
    let ok = "é".repeat(30);
    let bad = "é".repeat(31);
    let rej = write(
        &w,
        vec![
            rec("m", "1", t, &[(ok.as_str(), "v")]),
            rec("m", "1", t, &[(bad.as_str(), "v")]),
        ],
    )
    .await
    .unwrap_err()
    .unwrap();
    assert_eq!(rej.iter().map(|r| r.0).collect::<Vec<_>>(), vec![1]);
    l.server.shutdown().await;
}

#[tokio::test]
async fn reserved_names_are_validation_errors() {
    let (l, w) = setup().await;
    let t = now_ms();
    for d in [
        "time",
        "measure_value",
        "measure_value::double",
        "measure_name",
        "ts_x",
        "TIME",
    ] {
        validation(write(&w, vec![rec("m", "1", t, &[(d, "v")])]).await);
    }
    for m in ["time", "measure_value", "measure_name_x", "ts_metric"] {
        validation(write(&w, vec![rec(m, "1", t, &[("h", "v")])]).await);
    }
    // Near misses are fine.
    assert_eq!(
        write(
            &w,
            vec![rec("times", "1", t, &[("timestamp", "v"), ("ts", "1")])]
        )
        .await,
        Ok(1)
    );
    l.server.shutdown().await;
}

#[tokio::test]
async fn malformed_records_are_validation_errors() {
    let (l, w) = setup().await;
    let t = now_ms();
    let base = || {
        Record::builder()
            .measure_name("m")
            .dimensions(dim("h", "a"))
            .time(t.to_string())
    };
    let cases = vec![
        base().measure_value("abc").build(), // not a double
        base()
            .measure_value("1.5")
            .measure_value_type(MeasureValueType::Bigint)
            .build(),
        base()
            .measure_value("yes")
            .measure_value_type(MeasureValueType::Boolean)
            .build(),
        base().measure_value("1").version(0).build(), // version < 1
        base().build(),                               // no value
        base().measure_value("1").time("soon").build(), // bad time
        base()
            .measure_value("1")
            .measure_value_type(MeasureValueType::Multi)
            .build(),
        Record::builder()
            .measure_value("1")
            .time(t.to_string())
            .build(), // no measure name
        base().measure_value("NaN").build(),
        base()
            .measure_value("1")
            .time_unit(TimeUnit::from("HOURS"))
            .build(),
    ];
    for (i, r) in cases.into_iter().enumerate() {
        let got = write(&w, vec![r]).await;
        assert_eq!(got, Err(Err("ValidationException".into())), "case {i}");
    }
    l.server.shutdown().await;
}

#[tokio::test]
async fn all_measure_types_and_multi() {
    let (l, w) = setup().await;
    let t = now_ms();
    let typed = |ty: MeasureValueType, v: &str, name: &str| {
        Record::builder()
            .measure_name(name)
            .measure_value(v)
            .measure_value_type(ty)
            .time(t.to_string())
            .dimensions(dim("h", "a"))
            .build()
    };
    let mv = |n: &str, v: &str, ty: MeasureValueType| {
        MeasureValue::builder()
            .name(n)
            .value(v)
            .r#type(ty)
            .build()
            .unwrap()
    };
    let multi = Record::builder()
        .measure_name("metrics")
        .measure_value_type(MeasureValueType::Multi)
        .time(t.to_string())
        .dimensions(dim("h", "a"))
        .measure_values(mv("cpu", "0.5", MeasureValueType::Double))
        .measure_values(mv("count", "42", MeasureValueType::Bigint))
        .measure_values(mv("state", "up", MeasureValueType::Varchar))
        .measure_values(mv("ok", "true", MeasureValueType::Boolean))
        .measure_values(mv("seen", &t.to_string(), MeasureValueType::Timestamp))
        .build();
    let recs = vec![
        typed(MeasureValueType::Double, "1.25", "d"),
        typed(MeasureValueType::Bigint, "-9223372036854775808", "b"),
        typed(MeasureValueType::Varchar, "hello", "v"),
        typed(MeasureValueType::Boolean, "false", "bo"),
        typed(
            MeasureValueType::Timestamp,
            &t.to_string(),
            "ts_not_reserved_here".replace("ts_", "x").as_str(),
        ),
        multi.clone(),
    ];
    assert_eq!(write(&w, recs).await, Ok(6));
    assert_eq!(
        write(&w, vec![multi]).await,
        Ok(1),
        "identical MULTI re-write"
    );
    // Same multi-measure name with another type is rejected for that record.
    let clash = Record::builder()
        .measure_name("metrics2")
        .measure_value_type(MeasureValueType::Multi)
        .time(t.to_string())
        .dimensions(dim("h", "a"))
        .measure_values(mv("cpu", "1", MeasureValueType::Bigint))
        .build();
    let rej = write(&w, vec![clash]).await.unwrap_err().unwrap();
    assert_eq!(rej[0].0, 0);
    // A multi-measure attribute may not reuse a dimension name.
    let clash = Record::builder()
        .measure_name("metrics3")
        .measure_value_type(MeasureValueType::Multi)
        .time(t.to_string())
        .dimensions(dim("zone", "a"))
        .measure_values(mv("h", "1", MeasureValueType::Bigint))
        .build();
    assert!(write(&w, vec![clash]).await.is_err());
    l.server.shutdown().await;
}

#[tokio::test]
async fn time_units_and_ingestion_window() {
    let (l, w) = setup().await;
    let t_s = now_ms() / 1000;
    let at = |time: String, unit: TimeUnit, v: &str| {
        Record::builder()
            .measure_name("m")
            .measure_value(v)
            .time(time)
            .time_unit(unit)
            .dimensions(dim("h", "a"))
            .build()
    };
    assert_eq!(
        write(&w, vec![at(t_s.to_string(), TimeUnit::Seconds, "1")]).await,
        Ok(1)
    );
    // The same instant in other units is the same point: identical value accepted...
    for (time, unit) in [
        ((t_s * 1000).to_string(), TimeUnit::Milliseconds),
        ((t_s * 1_000_000).to_string(), TimeUnit::Microseconds),
        ((t_s * 1_000_000_000).to_string(), TimeUnit::Nanoseconds),
    ] {
        assert_eq!(
            write(&w, vec![at(time.clone(), unit.clone(), "1")]).await,
            Ok(1)
        );
        // ...a different value conflicts with version 1.
        let rej = write(&w, vec![at(time, unit, "2")])
            .await
            .unwrap_err()
            .unwrap();
        assert_eq!(rej[0].2, Some(1));
    }
    // One nanosecond later is a different point.
    assert_eq!(
        write(
            &w,
            vec![at(
                (t_s * 1_000_000_000 + 1).to_string(),
                TimeUnit::Nanoseconds,
                "2"
            )]
        )
        .await,
        Ok(1)
    );

    let now = now_ms();
    let recs = vec![
        rec("m", "1", now - 25 * 3600 * 1000, &[("h", "b")]), // older than 24 h retention
        rec("m", "1", now - 23 * 3600 * 1000, &[("h", "b")]), // inside
        rec("m", "1", now + 10 * 60 * 1000, &[("h", "b")]),   // 10 min ahead: fine
        rec("m", "1", now + 16 * 60 * 1000, &[("h", "b")]),   // > 15 min ahead
    ];
    let rej = write(&w, recs).await.unwrap_err().unwrap();
    assert_eq!(rej.iter().map(|r| r.0).collect::<Vec<_>>(), vec![0, 3]);
    assert!(rej[0].1.contains("outside the time range"), "{}", rej[0].1);
    l.server.shutdown().await;
}

#[tokio::test]
async fn default_retention_applies_to_tables_without_retention_properties() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = timestream_local::Options::new(dir.path());
    opts.default_memory_retention_hours = 2;
    let l = start_with(opts, dir).await;
    let w = write_client(&l.server.url());
    w.create_database()
        .database_name("wdb")
        .send()
        .await
        .unwrap();
    w.create_table()
        .database_name("wdb")
        .table_name("wtable")
        .send()
        .await
        .unwrap();
    let now = now_ms();
    let rej = write(
        &w,
        vec![
            rec("m", "1", now - 3 * 3600 * 1000, &[("h", "a")]),
            rec("m", "1", now - 3600 * 1000, &[("h", "a")]),
        ],
    )
    .await
    .unwrap_err()
    .unwrap();
    assert_eq!(rej.iter().map(|r| r.0).collect::<Vec<_>>(), vec![0]);
    l.server.shutdown().await;
}

#[tokio::test]
async fn magnetic_store_writes_accept_older_records() {
    let (l, w) = setup().await;
    w.create_table()
        .database_name("wdb")
        .table_name("mag")
        .retention_properties(
            tsw::types::RetentionProperties::builder()
                .memory_store_retention_period_in_hours(1)
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
    let old = now_ms() - 5 * 24 * 3600 * 1000;
    let out = w
        .write_records()
        .database_name("wdb")
        .table_name("mag")
        .records(rec("m", "1", old, &[("h", "a")]))
        .send()
        .await
        .unwrap();
    let ing = out.records_ingested().unwrap();
    assert_eq!((ing.total(), ing.magnetic_store()), (1, 1));
    l.server.shutdown().await;
}

#[tokio::test]
async fn version_upsert_rules() {
    let (l, w) = setup().await;
    let t = now_ms();
    let v = |value: &str, version: Option<i64>| {
        let mut b = Record::builder()
            .measure_name("m")
            .measure_value(value)
            .time(t.to_string())
            .dimensions(dim("h", "a"));
        if let Some(x) = version {
            b = b.version(x);
        }
        b.build()
    };
    assert_eq!(write(&w, vec![v("1", None)]).await, Ok(1));
    assert_eq!(
        write(&w, vec![v("1", None)]).await,
        Ok(1),
        "identical re-write"
    );
    let rej = write(&w, vec![v("2", None)]).await.unwrap_err().unwrap();
    assert_eq!(rej[0].0, 0);
    assert_eq!(rej[0].2, Some(1));
    assert!(rej[0].1.contains("A record already exists"), "{}", rej[0].1);
    assert_eq!(
        write(&w, vec![v("2", Some(5))]).await,
        Ok(1),
        "higher version replaces"
    );
    let rej = write(&w, vec![v("3", Some(2))]).await.unwrap_err().unwrap();
    assert_eq!(rej[0].2, Some(5));
    assert!(
        rej[0].1.contains("lower than the existing version 5"),
        "{}",
        rej[0].1
    );
    // The replaced value is the current one: identical to 2, conflicting with 1.
    assert_eq!(write(&w, vec![v("2", Some(5))]).await, Ok(1));
    let rej = write(&w, vec![v("1", Some(5))]).await.unwrap_err().unwrap();
    assert_eq!(rej[0].2, Some(5));
    // Same value with a higher version only bumps the version.
    assert_eq!(write(&w, vec![v("2", Some(9))]).await, Ok(1));
    let rej = write(&w, vec![v("7", Some(8))]).await.unwrap_err().unwrap();
    assert_eq!(rej[0].2, Some(9));
    // -0.0 and 0.0 are different values.
    let z = |value: &str| rec("zero", value, t, &[("h", "a")]);
    assert_eq!(write(&w, vec![z("0.0")]).await, Ok(1));
    assert!(write(&w, vec![z("-0.0")]).await.is_err());
    l.server.shutdown().await;
}

#[tokio::test]
async fn partial_success_stores_the_valid_records() {
    let (l, w) = setup().await;
    let t = now_ms();
    let recs = vec![
        rec("m", "1", t, &[("h", "a")]),
        rec("m", "1", t - 48 * 3600 * 1000, &[("h", "b")]), // outside retention
        rec("m", "1", t, &[("h", "c")]),
    ];
    let rej = write(&w, recs).await.unwrap_err().unwrap();
    assert_eq!(rej.iter().map(|r| r.0).collect::<Vec<_>>(), vec![1]);
    // Records 0 and 2 were stored: conflicting values are now rejected for both.
    let rej = write(
        &w,
        vec![
            rec("m", "2", t, &[("h", "a")]),
            rec("m", "2", t, &[("h", "c")]),
        ],
    )
    .await
    .unwrap_err()
    .unwrap();
    assert_eq!(
        rej.iter().map(|r| (r.0, r.2)).collect::<Vec<_>>(),
        vec![(0, Some(1)), (1, Some(1))]
    );
    // Within one batch the later conflicting record is rejected against the earlier one.
    let rej = write(
        &w,
        vec![
            rec("n", "1", t, &[("h", "a")]),
            rec("n", "2", t, &[("h", "a")]),
        ],
    )
    .await
    .unwrap_err()
    .unwrap();
    assert_eq!(rej.iter().map(|r| r.0).collect::<Vec<_>>(), vec![1]);
    l.server.shutdown().await;
}

#[tokio::test]
async fn at_most_128_dimensions_per_table() {
    let (l, w) = setup().await;
    let t = now_ms();
    // 128 distinct dimension names spread over records (each record stays under 2 KB).
    for chunk in 0..8 {
        let dims: Vec<(String, String)> = (0..16)
            .map(|i| (format!("dim{:03}", chunk * 16 + i), "v".to_string()))
            .collect();
        let d: Vec<(&str, &str)> = dims.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        assert_eq!(write(&w, vec![rec("m", "1", t, &d)]).await, Ok(1));
    }
    let rej = write(
        &w,
        vec![
            rec("m", "1", t, &[("dim000", "w")]),
            rec("m", "1", t, &[("dim_new", "w")]),
        ],
    )
    .await
    .unwrap_err()
    .unwrap();
    assert_eq!(rej.iter().map(|r| r.0).collect::<Vec<_>>(), vec![1]);
    assert!(rej[0].1.contains("128"));
    l.server.shutdown().await;
}

#[tokio::test]
async fn rejected_records_exception_shape() {
    // The raw wire answer, as the service sends it (HTTP 419, __type, RejectedRecords).
    let (l, w) = setup().await;
    let t = now_ms();
    write(&w, vec![rec("m", "1", t, &[("h", "a")])])
        .await
        .unwrap();
    let e = w
        .write_records()
        .database_name("wdb")
        .table_name("wtable")
        .records(rec("m", "2", t, &[("h", "a")]))
        .send()
        .await
        .unwrap_err();
    let raw = e.raw_response().expect("raw response");
    assert_eq!(raw.status().as_u16(), 419);
    assert_eq!(
        raw.headers().get("x-amzn-errortype"),
        Some("RejectedRecordsException")
    );
    let body = std::str::from_utf8(raw.body().bytes().unwrap()).unwrap();
    assert!(body.contains("RejectedRecordsException") && body.contains("\"ExistingVersion\":1"));
    match e.into_service_error() {
        WriteRecordsError::RejectedRecordsException(r) => {
            assert_eq!(r.rejected_records().len(), 1);
            assert_eq!(
                r.message(),
                Some("One or more records have been rejected. See RejectedRecords for details.")
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    l.server.shutdown().await;
}

#[tokio::test]
async fn discard_mode_validates_and_answers_but_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = timestream_local::Options::new(dir.path());
    opts.discard_writes = true;
    let l = start_with(opts, dir).await;
    let w = write_client(&l.server.url());
    create_db_table(&w, "wdb", "wtable").await;
    let t = now_ms();
    // Valid records are answered as ingested; invalid ones are rejected as usual.
    assert_eq!(
        write(
            &w,
            vec![
                rec("m", "1", t, &[("h", "a")]),
                rec("m", "1", t, &[("h", "b")])
            ]
        )
        .await,
        Ok(2)
    );
    let rej = write(
        &w,
        vec![
            rec("m", "1", t, &[("h", "a")]),
            rec("m", "1", t - 48 * 3600 * 1000, &[("h", "b")]),
        ],
    )
    .await
    .unwrap_err()
    .unwrap();
    assert_eq!(rej.iter().map(|r| r.0).collect::<Vec<_>>(), vec![1]);
    validation(write(&w, vec![]).await);
    // Nothing was kept: a conflicting value for the same record is accepted, and the
    // table has no rows.
    assert_eq!(
        write(&w, vec![rec("m", "2", t, &[("h", "a")])]).await,
        Ok(1)
    );
    let q = query_client(&l.server.url());
    let out = q
        .query()
        .query_string("SELECT count(*) FROM \"wdb\".\"wtable\"")
        .send()
        .await
        .unwrap();
    let n = out.rows()[0].data()[0].scalar_value().unwrap();
    assert_eq!(n, "0");
    l.server.shutdown().await;
}
