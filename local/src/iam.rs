//! Identity-based permissions, enforced when a credentials-file key names them.
//!
//! A key's permissions are IAM policy statements (Allow/Deny, `Action`, `Resource`, with `*`
//! and `?` wildcards), evaluated as IAM does: an explicit Deny wins, otherwise some Allow must
//! match, otherwise the request is implicitly denied. Every operation, and every SQL statement
//! kind a `Query` carries, maps to the action and resource AWS documents for it (see
//! `local/README.md`, "Permissions", for the sources). A refusal is Timestream's
//! `AccessDeniedException` (HTTP 400) with IAM's message shape.

use serde::Deserialize;
use serde_json::Value;

use crate::error::ApiError;
use crate::sql;

/// Account of every ARN this store makes.
pub const ACCOUNT: &str = "000000000000";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    Allow,
    Deny,
}

#[derive(Debug, Clone)]
struct Statement {
    effect: Effect,
    actions: Vec<String>,
    resources: Vec<String>,
}

/// The statements that apply to one access key.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    statements: Vec<Statement>,
}

fn strings(v: &Value, what: &str) -> anyhow::Result<Vec<String>> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(a) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| anyhow::anyhow!("{what} entries must be strings"))
            })
            .collect(),
        _ => anyhow::bail!("{what} must be a string or a list of strings"),
    }
}

impl Policy {
    /// One Allow statement (the `actions=` / `resources=` fields of a credentials line).
    pub fn allow(actions: Vec<String>, resources: Vec<String>) -> Policy {
        Policy {
            statements: vec![Statement {
                effect: Effect::Allow,
                actions,
                resources,
            }],
        }
    }

    /// An IAM policy document (JSON). Supported: `Effect`, `Action`, `Resource` (strings or
    /// lists); `NotAction`, `NotResource`, `Principal` and `Condition` are refused rather than
    /// silently ignored, so a test never passes on a policy it did not evaluate.
    pub fn from_json(text: &str) -> anyhow::Result<Policy> {
        let doc: Value = serde_json::from_str(text)
            .map_err(|e| anyhow::anyhow!("policy is not valid JSON: {e}"))?;
        let stmts = match doc.get("Statement") {
            Some(Value::Array(a)) => a.clone(),
            Some(o @ Value::Object(_)) => vec![o.clone()],
            _ => anyhow::bail!("policy has no Statement"),
        };
        let mut statements = Vec::new();
        for s in &stmts {
            let Value::Object(m) = s else {
                anyhow::bail!("a Statement must be an object");
            };
            for k in m.keys() {
                if !matches!(k.as_str(), "Sid" | "Effect" | "Action" | "Resource") {
                    anyhow::bail!("policy element {k} is not supported by timestream-local");
                }
            }
            let effect = match m.get("Effect").and_then(Value::as_str) {
                Some("Allow") => Effect::Allow,
                Some("Deny") => Effect::Deny,
                _ => anyhow::bail!("Effect must be Allow or Deny"),
            };
            let actions = strings(
                m.get("Action")
                    .ok_or_else(|| anyhow::anyhow!("a Statement needs Action"))?,
                "Action",
            )?;
            let resources = strings(
                m.get("Resource")
                    .ok_or_else(|| anyhow::anyhow!("a Statement needs Resource"))?,
                "Resource",
            )?;
            statements.push(Statement {
                effect,
                actions,
                resources,
            });
        }
        Ok(Policy { statements })
    }

    fn matching(&self, effect: Effect, action: &str, resource: &str) -> bool {
        self.statements.iter().any(|s| {
            s.effect == effect
                // Action names are case-insensitive in IAM; ARNs are not.
                && s.actions.iter().any(|a| wildcard(&a.to_ascii_lowercase(), &action.to_ascii_lowercase()))
                && s.resources.iter().any(|r| wildcard(r, resource))
        })
    }

    /// Checks one request: `principal` is the caller's ARN, as named in the refusal.
    pub fn authorize(&self, principal: &str, need: &Need) -> Result<(), ApiError> {
        let action = format!("timestream:{}", need.action);
        let on = if need.resource == "*" {
            String::new()
        } else {
            format!(" on resource: {}", need.resource)
        };
        if self.matching(Effect::Deny, &action, &need.resource) {
            return Err(ApiError::access_denied(format!(
                "User: {principal} is not authorized to perform: {action}{on} with an explicit deny in an identity-based policy"
            )));
        }
        if self.matching(Effect::Allow, &action, &need.resource) {
            return Ok(());
        }
        Err(ApiError::access_denied(format!(
            "User: {principal} is not authorized to perform: {action}{on} because no identity-based policy allows the {action} action"
        )))
    }
}

/// IAM wildcard match: `*` any run of characters (also `/` and `:`), `?` one character.
fn wildcard(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// What one request needs: an action (without the `timestream:` prefix) on a resource ARN
/// (`*` for actions that AWS grants on no particular resource).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    pub action: &'static str,
    pub resource: String,
}

/// The names a request body carries (everything else is ignored here).
#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct Names {
    database_name: Option<String>,
    table_name: Option<String>,
    query_string: Option<String>,
    #[serde(rename = "ResourceARN")]
    resource_arn: Option<String>,
}

fn database_arn(region: &str, db: &str) -> String {
    format!("arn:aws:timestream:{region}:{ACCOUNT}:database/{db}")
}

fn table_arn(region: &str, db: &str, table: &str) -> String {
    format!("arn:aws:timestream:{region}:{ACCOUNT}:database/{db}/table/{table}")
}

/// The action and resource `op` needs, per the Service Authorization Reference (resource
/// types) and the Timestream developer guide (SQL statements). `None`: nothing to check here
/// (an unknown operation or an unparsable body or query fails later with its own error, as the
/// service validates before it can name a resource).
pub fn need(op: &str, body: &[u8], region: &str) -> Option<Need> {
    let n: Names = serde_json::from_slice(body).unwrap_or_default();
    let db = || n.database_name.clone().unwrap_or_default();
    let table = || n.table_name.clone().unwrap_or_default();
    let (action, resource) = match op {
        "DescribeEndpoints" => ("DescribeEndpoints", "*".to_string()),
        "ListDatabases" => ("ListDatabases", "*".to_string()),
        "CancelQuery" => ("CancelQuery", "*".to_string()),
        "CreateDatabase" | "DescribeDatabase" | "UpdateDatabase" | "DeleteDatabase" => {
            let action = match op {
                "CreateDatabase" => "CreateDatabase",
                "DescribeDatabase" => "DescribeDatabase",
                "UpdateDatabase" => "UpdateDatabase",
                _ => "DeleteDatabase",
            };
            (action, database_arn(region, &db()))
        }
        "ListTables" => match &n.database_name {
            Some(d) => ("ListTables", database_arn(region, d)),
            None => ("ListTables", "*".to_string()),
        },
        "CreateTable" | "DescribeTable" | "UpdateTable" | "DeleteTable" | "WriteRecords" => {
            let action = match op {
                "CreateTable" => "CreateTable",
                "DescribeTable" => "DescribeTable",
                "UpdateTable" => "UpdateTable",
                "DeleteTable" => "DeleteTable",
                _ => "WriteRecords",
            };
            (action, table_arn(region, &db(), &table()))
        }
        "ListTagsForResource" | "TagResource" | "UntagResource" => {
            let action = match op {
                "ListTagsForResource" => "ListTagsForResource",
                "TagResource" => "TagResource",
                _ => "UntagResource",
            };
            (action, n.resource_arn.clone().unwrap_or_default())
        }
        "Query" => {
            let q = n.query_string.as_deref()?;
            match sql::statement(q).ok()? {
                sql::Statement::Select(Some((d, t))) => ("Select", table_arn(region, &d, &t)),
                sql::Statement::Select(None) => ("SelectValues", "*".to_string()),
                sql::Statement::Describe(d, t) => ("DescribeTable", table_arn(region, &d, &t)),
                sql::Statement::ShowDatabases => ("ListDatabases", "*".to_string()),
                sql::Statement::ShowTables(Some(d)) => ("ListTables", database_arn(region, &d)),
                sql::Statement::ShowTables(None) => ("ListTables", "*".to_string()),
                sql::Statement::ShowMeasures(d, t) => ("ListMeasures", table_arn(region, &d, &t)),
            }
        }
        _ => return None,
    };
    Some(Need { action, resource })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard("*", "anything/at:all"));
        assert!(wildcard(
            "arn:aws:timestream:*:*:database/db/table/*",
            "arn:aws:timestream:us-east-1:000000000000:database/db/table/t"
        ));
        assert!(!wildcard(
            "arn:aws:timestream:*:*:database/db/table/*",
            "arn:aws:timestream:us-east-1:000000000000:database/db2/table/t"
        ));
        assert!(wildcard("timestream:list*", "timestream:listtables"));
        assert!(wildcard("a?c", "abc"));
        assert!(!wildcard("a?c", "ac"));
        assert!(!wildcard("abc", "abcd"));
    }

    #[test]
    fn deny_wins_and_messages_name_the_action() {
        let p = Policy::from_json(
            r#"{"Version":"2012-10-17","Statement":[
                {"Effect":"Allow","Action":"timestream:*","Resource":"*"},
                {"Effect":"Deny","Action":["timestream:WriteRecords"],"Resource":"arn:aws:timestream:*:*:database/db/table/locked"}]}"#,
        )
        .unwrap();
        let need = |action, resource: &str| Need {
            action,
            resource: resource.into(),
        };
        let t = "arn:aws:timestream:us-east-1:000000000000:database/db/table/open";
        assert!(p.authorize("arn:x", &need("WriteRecords", t)).is_ok());
        let locked = "arn:aws:timestream:us-east-1:000000000000:database/db/table/locked";
        let e = p
            .authorize("arn:x", &need("WriteRecords", locked))
            .unwrap_err();
        assert_eq!(e.code, "AccessDeniedException");
        assert_eq!(e.status, 400);
        assert_eq!(e.message, format!("User: arn:x is not authorized to perform: timestream:WriteRecords on resource: {locked} with an explicit deny in an identity-based policy"));
        let only = Policy::allow(vec!["timestream:Select".into()], vec!["*".into()]);
        let e = only
            .authorize("arn:x", &need("DescribeEndpoints", "*"))
            .unwrap_err();
        assert_eq!(e.message, "User: arn:x is not authorized to perform: timestream:DescribeEndpoints because no identity-based policy allows the timestream:DescribeEndpoints action");
    }

    #[test]
    fn unsupported_policy_elements_are_refused() {
        assert!(Policy::from_json(
            r#"{"Statement":[{"Effect":"Allow","NotAction":"x","Resource":"*"}]}"#
        )
        .is_err());
        assert!(Policy::from_json(
            r#"{"Statement":[{"Effect":"Allow","Action":"x","Resource":"*","Condition":{}}]}"#
        )
        .is_err());
    }

    #[test]
    fn statements_map_to_actions() {
        let n = |q: &str| {
            need(
                "Query",
                serde_json::json!({ "QueryString": q })
                    .to_string()
                    .as_bytes(),
                "eu-west-1",
            )
        };
        let t = "arn:aws:timestream:eu-west-1:000000000000:database/d/table/t";
        assert_eq!(
            n(r#"SELECT * FROM "d"."t" LIMIT 0"#).unwrap(),
            Need {
                action: "Select",
                resource: t.into()
            }
        );
        assert_eq!(n("SELECT 1").unwrap().action, "SelectValues");
        assert_eq!(
            n(r#"DESCRIBE "d"."t""#).unwrap(),
            Need {
                action: "DescribeTable",
                resource: t.into()
            }
        );
        assert_eq!(n("SHOW DATABASES").unwrap().action, "ListDatabases");
        assert_eq!(
            n("SHOW TABLES FROM d").unwrap().resource,
            "arn:aws:timestream:eu-west-1:000000000000:database/d"
        );
        assert_eq!(
            n(r#"SHOW MEASURES FROM "d"."t""#).unwrap(),
            Need {
                action: "ListMeasures",
                resource: t.into()
            }
        );
        assert_eq!(n("SELEC nonsense"), None);
        let w = need(
            "WriteRecords",
            br#"{"DatabaseName":"d","TableName":"t","Records":[]}"#,
            "eu-west-1",
        )
        .unwrap();
        assert_eq!(w.action, "WriteRecords");
        assert_eq!(w.resource, t);
    }
}
