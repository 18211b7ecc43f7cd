//! vmctl (VictoriaMetrics' migration tool, Debian unstable) migrates everything stored
//! behind the connector into a loopback VictoriaMetrics with `vmctl remote-read`, the
//! way a user leaving for (or copying into) VictoriaMetrics would: its default selector
//! `{__name__=~".*"}`, hourly steps, in SAMPLES mode and in `--remote-read-use-stream`
//! (STREAMED_XOR_CHUNKS) mode, once with basic auth over HTTP and once over mutual TLS
//! (client certificate, plus the basic auth that carries the keys).
//! Each run imports with its own extra label; every run must import exactly the series
//! and samples that are stored: same label sets, same timestamps, same values. One
//! series is larger than the 1 MiB frame cap, so streamed answers must continue it over
//! several frames.
//!
//! The data is written through the connector's `/write` (remote write 1.0) and counted in
//! the store; the basic-auth runs go through a recording proxy that shows what vmctl sent
//! (its stream mode sends `Content-Type: application/x-streamed-protobuf;
//! proto=prometheus.ChunkedReadResponse` on the *request*) and what came back.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use timestream_prometheus_connector::remote::pb::{Label, Sample};

use crate::harness::clients::{self, Client};
use crate::harness::proxy::{ReadProxy, STREAMED_XOR_CHUNKS};
use crate::harness::tls::TestPki;
use crate::harness::victoria::{vmctl_remote_read, Exported, VictoriaMetrics};
use crate::harness::*;

/// Samples of the long series: about 1.6 MB of XOR chunks (pseudo-random values cost
/// ~6.5 bytes a sample), over the 1 MiB frame cap.
const LONG_SAMPLES: i64 = 250_000;
/// Its spacing: 250,000 × 3 ms = 12.5 minutes.
const LONG_STEP_MS: i64 = 3;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn labels(pairs: &[(&str, &str)]) -> Vec<Label> {
    let mut v: Vec<Label> = pairs
        .iter()
        .map(|(n, v)| Label {
            name: n.to_string(),
            value: v.to_string(),
        })
        .collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

/// The data set: (labels, samples). Values are multiples of 1/4 below 2^40, which every
/// store on the way (Timestream DOUBLE, VictoriaMetrics' decimal encoding) keeps exactly.
fn data_set(t0: i64) -> Vec<(Vec<Label>, Vec<Sample>)> {
    let mut out = Vec::new();
    let kinds = [
        "plain",
        "quote\"d",
        "back\\slash",
        "it's",
        "ünïcødé ✓ 日本",
        "spaces in value",
    ];
    for (k, kind) in kinds.iter().enumerate() {
        for (m, method) in ["get", "post"].iter().enumerate() {
            let samples = (0..600)
                .map(|i| Sample {
                    value: (i * (k as i64 + 1) + m as i64) as f64 * 0.25 - 40.0,
                    timestamp: t0 + i * 1000 + k as i64,
                })
                .collect();
            out.push((
                labels(&[
                    ("__name__", "vmctl_requests_total"),
                    ("kind", kind),
                    ("method", method),
                    ("job", "vmctl-test"),
                ]),
                samples,
            ));
        }
    }
    // Sparse series with an optional label, and one with a single sample.
    out.push((
        labels(&[("__name__", "vmctl_sparse"), ("optional", "yes")]),
        (0..10)
            .map(|i| Sample {
                value: i as f64,
                timestamp: t0 + i * 60_000,
            })
            .collect(),
    ));
    out.push((
        labels(&[("__name__", "vmctl_single")]),
        vec![Sample {
            value: -0.5,
            timestamp: t0 + 123_456,
        }],
    ));
    // The long one: pseudo-random values, so its chunks do not compress away.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let long = (0..LONG_SAMPLES)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            Sample {
                value: (x >> 24) as f64 * 0.25,
                timestamp: t0 + i * LONG_STEP_MS,
            }
        })
        .collect();
    out.push((labels(&[("__name__", "vmctl_long"), ("shard", "0")]), long));
    out
}

fn expected(data: &[(Vec<Label>, Vec<Sample>)]) -> Exported {
    data.iter()
        .map(|(labels, samples)| {
            let mut l: Vec<(String, String)> = labels
                .iter()
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect();
            l.sort();
            (l, samples.iter().map(|s| (s.timestamp, s.value)).collect())
        })
        .collect()
}

/// A readable account of how two exports differ (empty when equal).
fn diff(want: &Exported, got: &Exported) -> Vec<String> {
    let mut out = Vec::new();
    for (labels, points) in want {
        match got.get(labels) {
            None => out.push(format!(
                "missing series {labels:?} ({} samples)",
                points.len()
            )),
            Some(g) if g != points => {
                let first = points
                    .iter()
                    .zip(g.iter())
                    .position(|(a, b)| a != b)
                    .unwrap_or(points.len().min(g.len()));
                out.push(format!(
                    "series {labels:?}: {} samples stored, {} imported; first difference at #{first}: \
                     stored {:?}, imported {:?}",
                    points.len(),
                    g.len(),
                    points.get(first),
                    g.get(first)
                ));
            }
            Some(_) => {}
        }
    }
    for labels in got.keys().filter(|l| !want.contains_key(*l)) {
        out.push(format!("unexpected series {labels:?}"));
    }
    out
}

fn rfc3339(ms: i64) -> String {
    // vmctl wants RFC 3339; seconds precision is enough (the range has slack).
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[test]
fn rfc3339_formats_utc() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    assert_eq!(rfc3339(1_700_000_000_999), "2023-11-14T22:13:20Z");
    assert_eq!(rfc3339(951_827_696_000), "2000-02-29T12:34:56Z");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vmctl_remote_read_imports_exactly_what_is_stored() {
    let test = "vmctl remote-read";
    let (Some(vmctl), Some(vm_bin)) = (
        clients::require(Client::Vmctl, test),
        clients::require(Client::VictoriaMetrics, test),
    ) else {
        return;
    };
    let dir = TestDir::new("vmctl");
    let d = dir.path();
    let pki = TestPki::generate(d);
    let store = start_store(d).await;
    create_destination(&store.url()).await;
    let backend = vec![
        format!("--write-base-endpoint={}", store.url()),
        format!("--query-base-endpoint={}", store.url()),
        format!("--default-database={DATABASE}"),
        format!("--default-table={TABLE}"),
        "--log.level=debug".to_string(),
    ];
    // Basic auth over plain HTTP (the credentials are the Timestream keys).
    let plain = Connector::start("connector-basic", free_port(), &backend, None, d).await;
    // Mutual TLS (plus basic auth, which the connector still requires for the keys).
    let mut mtls_args = backend.clone();
    mtls_args.push(format!("--tls-client-ca={}", pki.ca_cert.display()));
    let mtls_port = free_port();
    let mtls = {
        let proc = Proc::spawn(
            "connector-mtls",
            &connector_bin(),
            &[
                mtls_args,
                vec![
                    format!("--web.listen-address=127.0.0.1:{mtls_port}"),
                    format!("--tls-certificate={}", pki.server_cert.display()),
                    format!("--tls-key={}", pki.server_key.display()),
                ],
            ]
            .concat(),
            d,
        );
        wait_for(
            "mTLS connector listening",
            Duration::from_secs(60),
            || async {
                tokio::net::TcpStream::connect(("127.0.0.1", mtls_port))
                    .await
                    .ok()
                    .map(|_| ())
            },
        )
        .await;
        proc
    };
    let proxy = ReadProxy::start(&plain.url(""), None, None).await;

    // All data within one clock hour three hours ago (Timestream's memory store keeps
    // 24 h here), so vmctl's hourly steps fetch it in one request and the long series
    // must span several frames of one answer.
    let hour = now_ms() / 3_600_000 * 3_600_000 - 3 * 3_600_000;
    let t0 = hour + 60_000;
    let data = data_set(t0);
    let written: u64 = data.iter().map(|(_, s)| s.len() as u64).sum();
    let started = std::time::Instant::now();
    write_rw1(&plain.url("/write"), &data).await;
    let write_secs = started.elapsed().as_secs_f64();
    let q = query_client(&store.url()).await;
    let stored = count_rows(
        &q,
        &format!(r#"SELECT count(*) FROM "{DATABASE}"."{TABLE}""#),
    )
    .await;
    assert_eq!(stored, written, "samples stored vs written");
    let want = expected(&data);

    let vm = VictoriaMetrics::start(&vm_bin, d).await;
    let window = [
        format!("--remote-read-filter-time-start={}", rfc3339(hour)),
        format!(
            "--remote-read-filter-time-end={}",
            rfc3339(hour + 3_600_000)
        ),
        "--remote-read-step-interval=hour".to_string(),
        format!("--vm-addr={}", vm.url),
        "--disable-progress-bar".to_string(),
        "-s".to_string(),
    ];
    let basic = [
        format!("--remote-read-user={ACCESS_KEY}"),
        format!("--remote-read-password={SECRET_KEY}"),
    ];
    let mtls_tls = [
        format!("--remote-read-user={ACCESS_KEY}"),
        format!("--remote-read-password={SECRET_KEY}"),
        format!("--remote-read-cert-file={}", pki.client_cert.display()),
        format!("--remote-read-key-file={}", pki.client_key.display()),
        format!("--remote-read-CA-file={}", pki.ca_cert.display()),
    ];
    let mtls_url = format!("https://localhost:{mtls_port}");

    let mut failures = Vec::new();
    let mut notes = Vec::new();
    for (run, stream, src, auth) in [
        ("basic_samples", false, proxy.base.clone(), &basic[..]),
        ("basic_stream", true, proxy.base.clone(), &basic[..]),
        ("mtls_samples", false, mtls_url.clone(), &mtls_tls[..]),
        ("mtls_stream", true, mtls_url.clone(), &mtls_tls[..]),
    ] {
        proxy.clear();
        let mut args = vec![
            format!("--remote-read-src-addr={src}"),
            format!("--vm-extra-label=vmctl_run={run}"),
        ];
        if stream {
            args.push("--remote-read-use-stream".to_string());
        }
        args.extend(auth.iter().cloned());
        args.extend(window.iter().cloned());
        let started = std::time::Instant::now();
        // A normal run takes 10-20 s; vmctl hangs on an error answer until killed.
        let out = vmctl_remote_read(&vmctl, &format!("vmctl-{run}"), &args, d, 90);
        let secs = started.elapsed().as_secs_f64();
        if !out.success {
            failures.push(format!(
                "{run}: vmctl failed (log {}):\n{}",
                out.log.display(),
                out.output
                    .lines()
                    .rev()
                    .take(15)
                    .collect::<Vec<_>>()
                    .join("\n")
            ));
            continue;
        }
        let mut got = vm.export(&format!(r#"{{vmctl_run="{run}"}}"#)).await;
        got = got
            .into_iter()
            .map(|(mut l, p)| {
                l.retain(|(k, _)| k != "vmctl_run");
                (l, p)
            })
            .collect::<BTreeMap<_, _>>();
        let d = diff(&want, &got);
        if !d.is_empty() {
            failures.push(format!("{run}: imported ≠ stored:\n  {}", d.join("\n  ")));
        }
        let imported: usize = got.values().map(Vec::len).sum();
        let mut note = format!(
            "{run}: {imported} samples in {} series in {secs:.1} s",
            got.len()
        );
        // What vmctl sent and got, as seen on the wire (basic-auth runs go through the proxy).
        if src == proxy.base {
            let records = proxy.records();
            let reads: Vec<_> = records
                .iter()
                .filter(|r| r.accepted_response_types.is_some())
                .collect();
            if reads.is_empty() {
                failures.push(format!("{run}: no read request reached the proxy"));
            }
            for r in &reads {
                let ok = if stream {
                    r.accepted_response_types.as_deref() == Some(&[STREAMED_XOR_CHUNKS][..])
                        && r.request_content_type
                            .as_deref()
                            .is_some_and(|c| c.starts_with("application/x-streamed-protobuf"))
                        && r.streamed()
                        && r.max_series_per_frame <= 1
                } else {
                    r.accepted_response_types
                        .as_deref()
                        .is_some_and(|a| a.is_empty() || a == [0])
                        && !r.streamed()
                };
                if !ok || r.status != 200 {
                    failures.push(format!("{run}: unexpected exchange {r:?}"));
                }
            }
            let frames: usize = reads.iter().map(|r| r.frames).sum();
            let continued: usize = reads.iter().map(|r| r.continued_frames).sum();
            let bytes: usize = reads.iter().map(|r| r.body_bytes).sum();
            note += &format!(
                "; {} requests (request Content-Type {:?}), {bytes} bytes answered, {frames} frames, \
                 {continued} continuing a series",
                reads.len(),
                reads.first().and_then(|r| r.request_content_type.clone())
            );
            if stream && continued == 0 {
                failures.push(format!(
                    "{run}: the long series ({LONG_SAMPLES} samples) never spanned two frames"
                ));
            }
        }
        notes.push(note);
    }

    // Without a client certificate the mTLS connector lets vmctl read nothing.
    let mut args = vec![
        format!("--remote-read-src-addr={mtls_url}"),
        format!("--remote-read-user={ACCESS_KEY}"),
        format!("--remote-read-password={SECRET_KEY}"),
        format!("--remote-read-CA-file={}", pki.ca_cert.display()),
        "--vm-extra-label=vmctl_run=mtls_no_cert".to_string(),
    ];
    args.extend(window.iter().cloned());
    // The handshake fails at once; vmctl then hangs until killed.
    let out = vmctl_remote_read(&vmctl, "vmctl-mtls-no-cert", &args, d, 15);
    let leaked = vm.export(r#"{vmctl_run="mtls_no_cert"}"#).await;
    if out.success || !leaked.is_empty() {
        failures.push(format!(
            "vmctl without a client certificate: success={}, {} series imported",
            out.success,
            leaked.len()
        ));
    }

    assert!(
        failures.is_empty(),
        "{} of 4 vmctl runs (+ the no-certificate check) failed; {written} samples stored:\n{}",
        failures.len(),
        failures.join("\n")
    );
    clients::note(&format!(
        "vmctl: {written} samples in {} series written in {write_secs:.1} s; {}",
        want.len(),
        notes.join("; ")
    ));
    drop(mtls);
    drop(plain);
}
