//! The IAM policy GETTING_STARTED.md gives, extracted from its `connector-policy.json`
//! heredoc so that tests run exactly what users are told to grant. Included with
//! `#[path = "support/policy.rs"]` by the tests that need it.
#![allow(dead_code)]

/// The account timestream-local puts in its ARNs.
pub const LOCAL_ACCOUNT: &str = "000000000000";

/// The policy JSON with `${ACCOUNT}` replaced by the local store's account.
pub fn documented_policy() -> String {
    let md = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/GETTING_STARTED.md"))
        .expect("GETTING_STARTED.md");
    let start = md
        .find("cat > connector-policy.json <<EOF\n")
        .expect("GETTING_STARTED has the connector-policy.json heredoc");
    let body = &md[start..];
    let body = &body[body.find('\n').unwrap() + 1..];
    let end = body.find("\nEOF\n").expect("heredoc ends with EOF");
    let json = body[..end].replace("${ACCOUNT}", LOCAL_ACCOUNT);
    serde_json::from_str::<serde_json::Value>(&json).expect("the documented policy is JSON");
    json
}

/// Every action the policy grants, in order.
pub fn actions(policy: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(policy).unwrap();
    let mut out = Vec::new();
    for s in v["Statement"].as_array().unwrap() {
        match &s["Action"] {
            serde_json::Value::String(a) => out.push(a.clone()),
            serde_json::Value::Array(a) => {
                out.extend(a.iter().map(|x| x.as_str().unwrap().to_string()))
            }
            other => panic!("Action {other}"),
        }
    }
    out
}

/// The policy without `action` (statements left without actions are dropped).
pub fn without(policy: &str, action: &str) -> String {
    let mut v: serde_json::Value = serde_json::from_str(policy).unwrap();
    let stmts = v["Statement"].as_array_mut().unwrap();
    for s in stmts.iter_mut() {
        let list: Vec<serde_json::Value> = match &s["Action"] {
            serde_json::Value::String(a) => vec![a.clone().into()],
            serde_json::Value::Array(a) => a.clone(),
            _ => unreachable!(),
        };
        s["Action"] = list
            .into_iter()
            .filter(|a| a.as_str() != Some(action))
            .collect::<Vec<_>>()
            .into();
    }
    stmts.retain(|s| !s["Action"].as_array().unwrap().is_empty());
    v.to_string()
}
