//! documentation/configuration.md is "the full reference": checked here against the code,
//! so a new flag or metric cannot land undocumented and a documented default cannot drift.
//! Flags come from the clap definition `--help` prints; metrics from the registry (every
//! family, including vectors that have no series yet) and the /metrics exposition.
mod common;

use std::collections::BTreeSet;

use clap::CommandFactory;
use common::*;
use timestream_prometheus_connector::config::Cli;

fn reference() -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/documentation/configuration.md"
    );
    std::fs::read_to_string(path).expect("read documentation/configuration.md")
}

/// Table rows of the reference whose first cell names `--flag` (optionally followed by a
/// value name, or `, --other`), with the second cell (the default).
fn documented_flags(doc: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in doc.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 4 || !cells[1].starts_with("`--") {
            continue;
        }
        for part in cells[1].split(", ") {
            let flag = part
                .trim_matches('`')
                .split([' ', '`'])
                .next()
                .unwrap_or_default()
                .to_string();
            out.push((flag, cells[2].trim_matches('`').to_string()));
        }
    }
    out
}

#[test]
fn every_flag_is_documented_with_its_default_and_every_documented_flag_exists() {
    let doc = reference();
    let documented = documented_flags(&doc);
    let cmd = Cli::command();
    let mut real = BTreeSet::new();
    let mut problems = Vec::new();
    for arg in cmd.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if ["help", "version"].contains(&long) || arg.is_hide_set() {
            continue;
        }
        let flag = format!("--{long}");
        real.insert(flag.clone());
        for alias in arg.get_all_aliases().into_iter().flatten() {
            real.insert(format!("--{alias}"));
        }
        let want: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        match documented.iter().find(|(f, _)| *f == flag) {
            None => problems.push(format!("{flag} is not in a table of configuration.md")),
            Some((_, default)) => {
                let want = want.join(",");
                let doc_default = if default == "(none)" { "" } else { default };
                if want != doc_default {
                    problems.push(format!(
                        "{flag}: configuration.md says default {default:?}, the code {want:?}"
                    ));
                }
            }
        }
    }
    for (flag, _) in &documented {
        if !real.contains(flag) {
            problems.push(format!(
                "configuration.md documents {flag}, which does not exist"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[tokio::test]
async fn every_metric_is_documented_and_every_documented_metric_exists() {
    let env = start().await;
    // Some traffic, so the exposition lists series as well as the registry's families.
    let (status, _) = env
        .post_raw("/read", b"not snappy".to_vec(), Some((AKID, SECRET)))
        .await;
    assert_eq!(status, 400);
    let mut real: BTreeSet<String> = env.state.metrics.names().iter().cloned().collect();
    let text = env.metrics_text().await;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            real.insert(rest.split(' ').next().unwrap_or_default().to_string());
        }
    }
    env.shutdown().await;

    let doc = reference();
    let mut problems = Vec::new();
    for name in &real {
        if !doc.contains(&format!("`{name}")) {
            problems.push(format!("metric {name} is not in configuration.md"));
        }
    }
    // Every `timestream_connector_…` name the reference mentions is real (histogram
    // series suffixes allowed).
    for token in doc.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if !token.starts_with("timestream_connector_") {
            continue;
        }
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| token.strip_suffix(s).filter(|b| real.contains(*b)))
            .unwrap_or(token);
        if !real.contains(base) {
            problems.push(format!(
                "configuration.md names {token}, which is not a metric"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
