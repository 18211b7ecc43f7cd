//! The SAM template in serverless/: valid for cfn-lint (PyPI `cfn-lint`, installed by CI),
//! and consistent with the code (every environment variable it sets is one the function
//! reads) and with the deployment guide (every parameter is documented).

#[path = "support/tools.rs"]
mod tools;

use std::path::PathBuf;
use std::process::Command;

use timestream_prometheus_connector::lambda::env::VARIABLES;

fn serverless_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("serverless")
}

fn template() -> String {
    std::fs::read_to_string(serverless_dir().join("template.yml")).expect("template.yml")
}

/// Keys directly under a top-level section (two-space indent) of the YAML text.
fn section_keys(yaml: &str, section: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut inside = false;
    for line in yaml.lines() {
        if !line.starts_with(' ') && !line.trim().is_empty() {
            inside = line.trim_end() == format!("{section}:");
            continue;
        }
        if inside {
            if let Some(rest) = line.strip_prefix("  ") {
                if !rest.starts_with(' ') && !rest.starts_with('#') {
                    if let Some((key, _)) = rest.split_once(':') {
                        keys.push(key.trim().to_string());
                    }
                }
            }
        }
    }
    keys
}

/// Keys of the `Variables:` block of the function's environment.
fn environment_variables(yaml: &str) -> Vec<String> {
    let mut lines = yaml.lines().skip_while(|l| l.trim() != "Variables:");
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let indent = header.len() - header.trim_start().len() + 2;
    lines
        .take_while(|l| l.len() - l.trim_start().len() >= indent && !l.trim().is_empty())
        .filter_map(|l| l.trim().split_once(':').map(|(k, _)| k.to_string()))
        .collect()
}

#[test]
fn template_passes_cfn_lint() {
    let path = serverless_dir().join("template.yml");
    if !tools::require(
        "template_passes_cfn_lint",
        "cfn-lint",
        &["--version"],
        "python3 -m pip install cfn-lint",
    ) {
        return;
    }
    let out = Command::new("cfn-lint")
        .arg(&path)
        .output()
        .expect("run cfn-lint");
    assert!(
        out.status.success(),
        "cfn-lint found problems in {}:\n{}{}",
        path.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn template_has_the_upstream_parameters_and_outputs() {
    let t = template();
    let params = section_keys(&t, "Parameters");
    for p in [
        "DefaultDatabase",
        "DefaultTable",
        "MemorySize",
        "ApiGatewayTimeoutInMillis",
        "LambdaTimeoutInSeconds",
        "ReadThrottlingBurstLimit",
        "WriteThrottlingBurstLimit",
        "APIGatewayStageName",
        "ExecutionPolicyName",
        "LogLevel",
    ] {
        assert!(
            params.iter().any(|x| x == p),
            "parameter {p} missing: {params:?}"
        );
    }
    let outputs = section_keys(&t, "Outputs");
    for o in [
        "InvokeReadURL",
        "InvokeWriteURL",
        "DefaultDatabase",
        "DefaultTable",
    ] {
        assert!(
            outputs.iter().any(|x| x == o),
            "output {o} missing: {outputs:?}"
        );
    }
    assert!(t.contains("Runtime: provided.al2023"));
    assert!(t.contains("Handler: bootstrap"));
    assert!(t.contains("RouteKey: POST /write") && t.contains("RouteKey: POST /read"));
}

#[test]
fn template_sets_only_variables_the_function_reads() {
    let vars = environment_variables(&template());
    assert!(
        vars.iter().any(|v| v == "default_database"),
        "no environment block found: {vars:?}"
    );
    for v in &vars {
        assert!(
            VARIABLES.contains(&v.as_str()),
            "template sets {v}, which the function does not read"
        );
    }
}

#[test]
fn every_parameter_is_documented_in_the_guide() {
    let guide = std::fs::read_to_string(serverless_dir().join("README.md")).expect("README.md");
    for p in section_keys(&template(), "Parameters") {
        assert!(
            guide.contains(&format!("| `{p}`")),
            "serverless/README.md does not document parameter {p} in its table"
        );
    }
    for v in VARIABLES {
        assert!(
            guide.contains(&format!("`{v}`")),
            "serverless/README.md does not mention environment variable {v}"
        );
    }
}

#[test]
fn build_script_parses_and_produces_what_the_template_deploys() {
    let script = serverless_dir().join("build.sh");
    let out = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&script).unwrap();
    // The zip the script writes is the one the template deploys, with the handler name.
    assert!(text.contains("$here/dist/bootstrap.zip"));
    assert!(template().contains("CodeUri: dist/bootstrap.zip"));
    assert!(text.contains("\"$stage/bootstrap\""));
}
