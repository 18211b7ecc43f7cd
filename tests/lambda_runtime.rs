//! The real connector binary as an AWS Lambda function: a Lambda Runtime API emulator hands
//! it API Gateway events (REST v1 and HTTP API v2, base64 snappy protobuf bodies) and
//! collects its answers; Timestream is an in-process timestream-local.

mod lambda_support;
#[path = "support/policy.rs"]
mod policy;

use lambda_support::*;
use timestream_prometheus_connector::remote::pb::read_request::ResponseType;

fn vars(store: &Store, extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, String)> {
    let mut v: Vec<(&'static str, String)> = vec![
        ("default_database", DB.into()),
        ("default_table", TABLE.into()),
        ("write_base_endpoint", store.url.clone()),
        ("query_base_endpoint", store.url.clone()),
        ("max_write_retries", "2".into()),
        ("max_read_retries", "2".into()),
    ];
    for (k, val) in extra {
        v.retain(|(name, _)| name != k);
        v.push((k, val.to_string()));
    }
    v
}

fn start(api: &RuntimeApi, vars: &[(&'static str, String)]) -> Function {
    let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Function::start(api, &pairs)
}

/// Two series of `metric`, four samples, ten minutes ago.
fn sample_data(
    metric: &str,
) -> (
    Vec<timestream_prometheus_connector::remote::pb::TimeSeries>,
    i64,
) {
    let t0 = ms_ago(10);
    let data = vec![
        series(
            &[
                ("__name__", metric),
                ("job", "prometheus"),
                ("instance", "a:9090"),
            ],
            &[(t0, 1.5), (t0 + 15_000, 2.25), (t0 + 30_000, -0.125)],
        ),
        series(
            &[
                ("__name__", metric),
                ("job", "prometheus"),
                ("instance", "b:9090"),
            ],
            &[(t0 + 1, 1e-7)],
        ),
    ];
    (data, t0)
}

fn expected_series(metric: &str, t0: i64) -> Vec<SeriesData> {
    vec![
        (
            labels(&[
                ("__name__", metric),
                ("job", "prometheus"),
                ("instance", "a:9090"),
            ]),
            vec![(t0, 1.5), (t0 + 15_000, 2.25), (t0 + 30_000, -0.125)],
        ),
        (
            labels(&[
                ("__name__", metric),
                ("job", "prometheus"),
                ("instance", "b:9090"),
            ]),
            vec![(t0 + 1, 1e-7)],
        ),
    ]
}

fn sorted(mut s: Vec<SeriesData>) -> Vec<SeriesData> {
    s.sort_by(|a, b| a.0.cmp(&b.0));
    s
}

fn assert_binary_read_answer(a: &HttpAnswer, metric: &str, t0: i64, logs: &str) {
    assert_eq!(a.status, 200, "{}\n{logs}", a.text());
    assert!(
        a.base64,
        "a binary answer must be base64-encoded in the Lambda response"
    );
    assert_eq!(
        a.headers.get("content-type").map(String::as_str),
        Some("application/x-protobuf")
    );
    assert_eq!(
        a.headers.get("content-encoding").map(String::as_str),
        Some("snappy")
    );
    let resp = a.read_response();
    assert_eq!(resp.results.len(), 1, "one result per query");
    assert_eq!(sorted(series_of(&resp)), expected_series(metric, t0));
}

#[tokio::test]
async fn http_api_v2_events_write_and_read() {
    let store = Store::start(false).await;
    let api = RuntimeApi::start().await;
    let mut f = start(&api, &vars(&store, &[("enable_sigv4_auth", "false")]));
    let auth = basic_auth();
    let (data, t0) = sample_data("lambda_v2_metric");

    let w = v2_event(
        "dev",
        "/dev/write",
        "POST /write",
        Kind::Write,
        &write_body(data),
        Some(&auth),
    );
    let a = http_answer(api.invoke(w).await, &f.logs());
    assert_eq!(a.status, 200, "{}\n{}", a.text(), f.logs());
    assert_eq!(store.count().await, 4, "every sample is stored");

    let r = v2_event(
        "dev",
        "/dev/read",
        "POST /read",
        Kind::Read,
        &read_body("lambda_v2_metric", t0 - 60_000, t0 + 60_000),
        Some(&auth),
    );
    let a = http_answer(api.invoke(r).await, &f.logs());
    assert_binary_read_answer(&a, "lambda_v2_metric", t0, &f.logs());

    // What Prometheus asks by default: streamed XOR chunks. Buffered whole by the function,
    // still binary, still framed.
    let r = v2_event(
        "dev",
        "/dev/read",
        "POST /read",
        Kind::Read,
        &read_body_accepting(
            "lambda_v2_metric",
            t0 - 60_000,
            t0 + 60_000,
            &[ResponseType::StreamedXorChunks, ResponseType::Samples],
        ),
        Some(&auth),
    );
    let a = http_answer(api.invoke(r).await, &f.logs());
    assert_eq!(a.status, 200, "{}", a.text());
    assert!(a.base64);
    assert!(
        a.headers["content-type"].starts_with("application/x-streamed-protobuf"),
        "{:?}",
        a.headers
    );
    // Per series: (first timestamp, last timestamp, sample count) of each chunk; decoding
    // the XOR payload itself is the read path's business and tested there.
    type ChunkSpans = (
        std::collections::BTreeMap<String, String>,
        Vec<(i64, i64, u16)>,
    );
    let mut streamed: Vec<ChunkSpans> = a
        .frames()
        .iter()
        .flat_map(|f| f.chunked_series.iter())
        .map(|cs| {
            let labels = cs
                .labels
                .iter()
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect();
            let spans = cs
                .chunks
                .iter()
                .map(|c| {
                    let n = u16::from_be_bytes([c.data[0], c.data[1]]);
                    (c.min_time_ms, c.max_time_ms, n)
                })
                .collect();
            (labels, spans)
        })
        .collect();
    streamed.sort_by(|a, b| a.0.cmp(&b.0));
    let want: Vec<ChunkSpans> = expected_series("lambda_v2_metric", t0)
        .into_iter()
        .map(|(l, s)| (l, vec![(s[0].0, s[s.len() - 1].0, s.len() as u16)]))
        .collect();
    assert_eq!(streamed, want);

    // The route decides on a known path (stage removed), with or without the header.
    let (data, _) = sample_data("lambda_v2_no_header");
    let w = v2_event(
        "dev",
        "/dev/write",
        "POST /write",
        Kind::Neither,
        &write_body(data),
        Some(&auth),
    );
    let a = http_answer(api.invoke(w).await, &f.logs());
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(store.count().await, 8);

    // Basic auth is required in this mode: an answer, not a function error.
    let (data, _) = sample_data("lambda_v2_unauthenticated");
    let w = v2_event(
        "dev",
        "/dev/write",
        "POST /write",
        Kind::Write,
        &write_body(data),
        None,
    );
    let a = http_answer(api.invoke(w).await, &f.logs());
    assert_eq!(a.status, 401, "{}", a.text());
    assert!(!a.base64, "text answers stay text");
    assert_eq!(store.count().await, 8);

    assert!(
        api.function_errors().is_empty(),
        "{:?}",
        api.function_errors()
    );
    assert!(api.init_errors().is_empty(), "{:?}", api.init_errors());
    assert!(f.is_running(), "{}", f.logs());
}

#[tokio::test]
async fn rest_api_v1_events_write_and_read() {
    let store = Store::start(false).await;
    let api = RuntimeApi::start().await;
    let mut f = start(&api, &vars(&store, &[("enable_sigv4_auth", "false")]));
    let auth = basic_auth();
    let (data, t0) = sample_data("lambda_v1_metric");

    let w = v1_event(
        "prod",
        "/write",
        Kind::Write,
        &write_body(data),
        Some(&auth),
    );
    let a = http_answer(api.invoke(w).await, &f.logs());
    assert_eq!(a.status, 200, "{}\n{}", a.text(), f.logs());
    assert_eq!(store.count().await, 4);

    let r = v1_event(
        "prod",
        "/read",
        Kind::Read,
        &read_body("lambda_v1_metric", t0 - 60_000, t0 + 60_000),
        Some(&auth),
    );
    let a = http_answer(api.invoke(r).await, &f.logs());
    assert_binary_read_answer(&a, "lambda_v1_metric", t0, &f.logs());

    // The route decides on a known path (stage removed), with or without the header.
    let (data, _) = sample_data("lambda_v1_no_header");
    let w = v1_event(
        "prod",
        "/write",
        Kind::Neither,
        &write_body(data),
        Some(&auth),
    );
    let a = http_answer(api.invoke(w).await, &f.logs());
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(store.count().await, 8);

    // A body that is not snappy is the caller's fault: 400, not a function error.
    let bad = v1_event(
        "prod",
        "/write",
        Kind::Write,
        b"definitely not snappy",
        Some(&auth),
    );
    let a = http_answer(api.invoke(bad).await, &f.logs());
    assert_eq!(a.status, 400, "{}", a.text());

    assert!(
        api.function_errors().is_empty(),
        "{:?}",
        api.function_errors()
    );
    assert!(f.is_running(), "{}", f.logs());
}

#[tokio::test]
async fn unknown_paths_are_dispatched_by_the_prometheus_headers() {
    let store = Store::start(false).await;
    let api = RuntimeApi::start().await;
    let f = start(&api, &vars(&store, &[("enable_sigv4_auth", "false")]));
    let auth = basic_auth();
    let (data, t0) = sample_data("lambda_dispatched");

    // An HTTP API `$default` route: no stage in the path, any path.
    let w = v2_event(
        "$default",
        "/",
        "$default",
        Kind::Write,
        &write_body(data),
        Some(&auth),
    );
    let a = http_answer(api.invoke(w).await, &f.logs());
    assert_eq!(a.status, 200, "{}\n{}", a.text(), f.logs());
    assert_eq!(store.count().await, 4);

    let r = v2_event(
        "$default",
        "/prometheus/remote",
        "$default",
        Kind::Read,
        &read_body("lambda_dispatched", t0 - 60_000, t0 + 60_000),
        Some(&auth),
    );
    let a = http_answer(api.invoke(r).await, &f.logs());
    assert_binary_read_answer(&a, "lambda_dispatched", t0, &f.logs());

    for event in [
        v2_event(
            "$default",
            "/",
            "$default",
            Kind::Neither,
            b"x",
            Some(&auth),
        ),
        v1_event("prod", "/ingest", Kind::Neither, b"x", Some(&auth)),
    ] {
        let a = http_answer(api.invoke(event).await, &f.logs());
        assert_eq!(a.status, 400);
        let body = a.text();
        assert!(
            body.contains("x-prometheus-remote-write-version")
                && body.contains("x-prometheus-remote-read-version"),
            "{body}"
        );
    }
    assert_eq!(store.count().await, 4);
    assert!(
        api.function_errors().is_empty(),
        "{:?}",
        api.function_errors()
    );
}

#[tokio::test]
async fn missing_configuration_is_a_400_on_every_request_not_a_crash() {
    let store = Store::start(false).await;
    let api = RuntimeApi::start().await;
    let mut v = vars(&store, &[("enable_sigv4_auth", "false")]);
    v.retain(|(k, _)| *k != "default_database");
    let mut f = start(&api, &v);
    let auth = basic_auth();
    let (data, t0) = sample_data("lambda_unconfigured");

    let events = [
        v2_event(
            "dev",
            "/dev/write",
            "POST /write",
            Kind::Write,
            &write_body(data.clone()),
            Some(&auth),
        ),
        v1_event(
            "prod",
            "/read",
            Kind::Read,
            &read_body("lambda_unconfigured", t0, t0 + 1),
            Some(&auth),
        ),
        v2_event("$default", "/", "$default", Kind::Neither, b"", None),
        v2_event(
            "dev",
            "/dev/write",
            "POST /write",
            Kind::Write,
            &write_body(data),
            Some(&auth),
        ),
    ];
    for e in events {
        let a = http_answer(api.invoke(e).await, &f.logs());
        assert_eq!(a.status, 400, "{}", a.text());
        assert!(a.text().contains("default_database"), "{}", a.text());
    }
    assert_eq!(store.count().await, 0);
    assert!(
        api.function_errors().is_empty(),
        "{:?}",
        api.function_errors()
    );
    assert!(api.init_errors().is_empty(), "{:?}", api.init_errors());
    assert!(f.is_running(), "the function keeps serving: {}", f.logs());
    assert!(
        f.logs().contains("default_database"),
        "the refusal is logged: {}",
        f.logs()
    );
}

#[tokio::test]
async fn invalid_values_are_answered_naming_the_variable() {
    let store = Store::start(false).await;
    for (name, bad) in [("max_write_retries", "ten"), ("enable_sigv4_auth", "yes")] {
        // One emulator per process: a killed function's pending poll must not take an event.
        let api = RuntimeApi::start().await;
        let f = start(&api, &vars(&store, &[(name, bad)]));
        let (data, _) = sample_data("lambda_invalid");
        let w = v2_event(
            "dev",
            "/dev/write",
            "POST /write",
            Kind::Write,
            &write_body(data),
            Some(&basic_auth()),
        );
        let a = http_answer(api.invoke(w).await, &f.logs());
        assert_eq!(a.status, 400, "{}", a.text());
        assert!(
            a.text().contains(name) && a.text().contains(bad),
            "{}",
            a.text()
        );
        drop(f);
    }
    assert_eq!(store.count().await, 0);
}

#[tokio::test]
async fn sigv4_mode_uses_the_functions_own_credentials() {
    // The store accepts only requests signed with AKID/SECRET.
    let store = Store::start(true).await;
    let api = RuntimeApi::start().await;
    // enable_sigv4_auth is left unset: true is the Lambda default.
    let mut v = vars(&store, &[]);
    v.push(("AWS_ACCESS_KEY_ID", AKID.into()));
    v.push(("AWS_SECRET_ACCESS_KEY", SECRET.into()));
    let f = start(&api, &v);
    let (data, t0) = sample_data("lambda_sigv4");

    // No Authorization header at all (API Gateway's IAM authorizer already checked the caller).
    let w = v2_event(
        "dev",
        "/dev/write",
        "POST /write",
        Kind::Write,
        &write_body(data),
        None,
    );
    let a = http_answer(api.invoke(w).await, &f.logs());
    assert_eq!(a.status, 200, "{}\n{}", a.text(), f.logs());
    assert_eq!(store.count().await, 4);

    // A basic-auth header is ignored in this mode (it is not the key the store accepts).
    let ignored = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            "AKIDOTHER:wrong"
        )
    );
    let r = v2_event(
        "dev",
        "/dev/read",
        "POST /read",
        Kind::Read,
        &read_body("lambda_sigv4", t0 - 60_000, t0 + 60_000),
        Some(&ignored),
    );
    let a = http_answer(api.invoke(r).await, &f.logs());
    assert_binary_read_answer(&a, "lambda_sigv4", t0, &f.logs());
    drop(f);

    // The same function with a wrong secret in its environment is refused by the store,
    // so the keys really come from the function's environment.
    let mut v = vars(&store, &[]);
    v.push(("AWS_ACCESS_KEY_ID", AKID.into()));
    v.push(("AWS_SECRET_ACCESS_KEY", "not-the-secret".into()));
    let api = RuntimeApi::start().await;
    let f = start(&api, &v);
    let (data, _) = sample_data("lambda_sigv4_refused");
    let w = v2_event(
        "dev",
        "/dev/write",
        "POST /write",
        Kind::Write,
        &write_body(data),
        None,
    );
    let a = http_answer(api.invoke(w).await, &f.logs());
    assert_eq!(a.status, 403, "{}\n{}", a.text(), f.logs());
    assert_eq!(store.count().await, 4);
    assert!(
        api.function_errors().is_empty(),
        "{:?}",
        api.function_errors()
    );
}

#[test]
fn lambda_mode_without_the_runtime_variables_exits_with_a_message() {
    // LAMBDA_TASK_ROOT alone (e.g. a container image copied out of Lambda): a clear
    // refusal naming what is missing, not a panic inside the runtime client.
    let out = std::process::Command::new(binary())
        .env_clear()
        .env("LAMBDA_TASK_ROOT", "/var/task")
        .env("default_database", DB)
        .env("default_table", TABLE)
        .output()
        .expect("binary runs");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("AWS_LAMBDA_RUNTIME_API"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// The Lambda deployment as AWS runs it: the function signs with its execution role's
/// temporary credentials (key, secret AND session token in its environment), and the role
/// has exactly the policy GETTING_STARTED.md documents. Writes and reads (SAMPLES and
/// STREAMED) work; the store refuses DESCRIBE (no `DescribeTable` in the policy) and the
/// read path falls back.
#[tokio::test]
async fn lambda_role_with_the_documented_policy_and_a_session_token() {
    const ROLE_KEY: &str = "ASIALAMBDAROLE";
    const ROLE_SECRET: &str = "role/Secret+Key";
    const ROLE_TOKEN: &str = "IQoJb3JpZ2luX2VjLambdaRoleToken==";
    let policy = policy::documented_policy().replace(
        "database/prometheusDatabase/table/prometheusMetricsTable",
        &format!("database/{DB}/table/{TABLE}"),
    );
    let store = Store::start_with_credentials(
        Some(format!(
            "{AKID} {SECRET}\n{ROLE_KEY} {ROLE_SECRET} token={ROLE_TOKEN} policy=policy.json\n"
        )),
        &[("policy.json", &policy)],
    )
    .await;
    let api = RuntimeApi::start().await;
    let mut v = vars(&store, &[]);
    v.push(("AWS_ACCESS_KEY_ID", ROLE_KEY.into()));
    v.push(("AWS_SECRET_ACCESS_KEY", ROLE_SECRET.into()));
    v.push(("AWS_SESSION_TOKEN", ROLE_TOKEN.into()));
    let f = start(&api, &v);
    let (data, t0) = sample_data("lambda_policy");
    let w = v2_event(
        "dev",
        "/dev/write",
        "POST /write",
        Kind::Write,
        &write_body(data),
        None,
    );
    let a = http_answer(api.invoke(w).await, &f.logs());
    assert_eq!(a.status, 200, "{}\n{}", a.text(), f.logs());
    assert_eq!(store.count().await, 4);
    let r = v2_event(
        "dev",
        "/dev/read",
        "POST /read",
        Kind::Read,
        &read_body("lambda_policy", t0 - 60_000, t0 + 60_000),
        None,
    );
    let a = http_answer(api.invoke(r).await, &f.logs());
    assert_binary_read_answer(&a, "lambda_policy", t0, &f.logs());
    let r = v2_event(
        "dev",
        "/dev/read",
        "POST /read",
        Kind::Read,
        &read_body_accepting(
            "lambda_policy",
            t0 - 60_000,
            t0 + 60_000,
            &[ResponseType::StreamedXorChunks],
        ),
        None,
    );
    let a = http_answer(api.invoke(r).await, &f.logs());
    assert_eq!(a.status, 200, "{}\n{}", a.text(), f.logs());
    let streamed: usize = a.frames().iter().map(|f| f.chunked_series.len()).sum();
    assert_eq!(streamed, 2, "both series, streamed");
    drop(f);

    // Without Select in the role's policy, the read is refused with the action named.
    let store = Store::start_with_credentials(
        Some(format!(
            "{AKID} {SECRET}\n{ROLE_KEY} {ROLE_SECRET} token={ROLE_TOKEN} policy=policy.json\n"
        )),
        &[(
            "policy.json",
            &policy::without(&policy, "timestream:Select"),
        )],
    )
    .await;
    let api = RuntimeApi::start().await;
    let mut v = vars(&store, &[]);
    v.push(("AWS_ACCESS_KEY_ID", ROLE_KEY.into()));
    v.push(("AWS_SECRET_ACCESS_KEY", ROLE_SECRET.into()));
    v.push(("AWS_SESSION_TOKEN", ROLE_TOKEN.into()));
    let f = start(&api, &v);
    let r = v2_event(
        "dev",
        "/dev/read",
        "POST /read",
        Kind::Read,
        &read_body("lambda_policy", t0 - 60_000, t0 + 60_000),
        None,
    );
    let a = http_answer(api.invoke(r).await, &f.logs());
    assert_eq!(a.status, 403, "{}\n{}", a.text(), f.logs());
    assert!(
        a.text()
            .contains("not authorized to perform: timestream:Select"),
        "{}",
        a.text()
    );
    assert!(!f.logs().contains(ROLE_TOKEN) && !f.logs().contains(ROLE_SECRET));
}
