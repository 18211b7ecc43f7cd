//! The built binary's command line: upstream flag names and values; every invalid value
//! exits with code 1 and a message naming the flag and what it accepts.

use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_timestream-prometheus-connector"))
        .args(args)
        .output()
        .expect("binary runs")
}

#[test]
fn invalid_values_exit_1_naming_the_flag() {
    let cases: &[(&[&str], &[&str])] = &[
        (
            &[
                "--default-database=d",
                "--default-table=t",
                "--enable-logging=maybe",
            ],
            &["--enable-logging", "TRUE", "False"],
        ),
        (
            &[
                "--default-database=d",
                "--default-table=t",
                "--fail-on-long-label",
                "yes",
            ],
            &["--fail-on-long-label"],
        ),
        (
            &[
                "--default-database=d",
                "--default-table=t",
                "--fail-on-invalid-sample-value=2",
            ],
            &["--fail-on-invalid-sample-value"],
        ),
        (
            &[
                "--default-database=d",
                "--default-table=t",
                "--enable-sigv4-auth=nope",
            ],
            &["--enable-sigv4-auth"],
        ),
        (
            &[
                "--default-database=d",
                "--default-table=t",
                "--log.format=xml",
            ],
            &["--log.format", "logfmt", "json"],
        ),
        (
            &[
                "--default-database=d",
                "--default-table=t",
                "--log.level=verbose",
            ],
            &["--log.level", "debug", "warn"],
        ),
        (
            &[
                "--default-database=d",
                "--default-table=t",
                "--max-write-retries=ten",
            ],
            &["--max-write-retries", "integer"],
        ),
        (
            &[
                "--default-database=d",
                "--default-table=t",
                "--max-retries=-1",
            ],
            &["--max-read-retries"],
        ),
        (&["--default-table=t"], &["--default-database"]),
        (&["--default-database=d"], &["--default-table"]),
        (
            &[
                "--default-database=d",
                "--default-table=t",
                "--tls-certificate=c.pem",
            ],
            &["--tls-key"],
        ),
        (
            &[
                "--default-database=d",
                "--default-table=t",
                "--no-such-flag",
            ],
            &["--no-such-flag"],
        ),
    ];
    for (args, needles) in cases {
        let out = run(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        for n in *needles {
            assert!(stderr.contains(n), "{args:?}: {n:?} not in {stderr}");
        }
    }
}

#[test]
fn help_lists_every_upstream_flag() {
    let out = run(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--default-database",
        "--default-table",
        "--database-label",
        "--table-label",
        "--region",
        "--web.listen-address",
        "--web.telemetry-path",
        "--max-read-retries",
        "--max-write-retries",
        "--enable-logging",
        "--fail-on-long-label",
        "--fail-on-invalid-sample-value",
        "--log.level",
        "--log.format",
        "--tls-certificate",
        "--tls-key",
        "--enable-sigv4-auth",
        "--query-base-endpoint",
        "--write-base-endpoint",
        "--local-store",
        "--local-store.listen-address",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
    assert!(help.contains(":9201") && help.contains("us-east-1") && help.contains("/metrics"));
}

#[test]
fn unusable_listen_address_exits_1() {
    let out = run(&[
        "--default-database=d",
        "--default-table=t",
        "--web.listen-address=:notaport",
        "--enable-logging=false",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--web.listen-address"));
}
