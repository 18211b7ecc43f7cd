//! Optional SigV4 verification (enabled by `--credentials-file`).
//! Secrets are never logged or echoed in error messages.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::iam::{Policy, ACCOUNT};

type HmacSha256 = Hmac<Sha256>;

/// One access key of the credentials file.
#[derive(Clone)]
struct Key {
    secret: String,
    /// Session token the requests must carry (`X-Amz-Security-Token`, signed), if any.
    token: Option<String>,
    /// Permissions; `None` allows everything (the behaviour before permissions existed).
    policy: Option<Arc<Policy>>,
}

/// Access key id -> key.
#[derive(Clone, Default)]
pub struct CredentialStore {
    keys: HashMap<String, Key>,
}

/// Who signed a request, as far as authorization needs it.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The caller's ARN, as IAM names it in a refusal.
    pub principal: String,
    /// The region the request was signed for (ARNs are built in it).
    pub region: String,
    pub policy: Option<Arc<Policy>>,
}

impl std::fmt::Debug for CredentialStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secrets.
        write!(f, "CredentialStore({} keys)", self.keys.len())
    }
}

const LINE_FORMAT: &str = "expected `ACCESS_KEY_ID SECRET_ACCESS_KEY [token=SESSION_TOKEN] \
     [actions=ACTION,...] [resources=ARN,...] [policy=FILE]`";

impl CredentialStore {
    /// File format: one key per line, `ACCESS_KEY_ID SECRET_ACCESS_KEY` then optional
    /// `name=value` fields (whitespace separated): `token=` a session token the key's requests
    /// must carry; `actions=` and `resources=` (comma separated, `*`/`?` wildcards; resources
    /// default to `*`) one Allow statement; `policy=` an IAM policy JSON file (relative to this
    /// file's directory). A key without `actions=`/`policy=` may do everything. Blank lines and
    /// lines starting with `#` are ignored.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read credentials file {}: {e}", path.display()))?;
        Self::parse_in(&text, path.parent())
    }

    fn parse_in(text: &str, dir: Option<&Path>) -> anyhow::Result<Self> {
        let mut keys = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = |e: anyhow::Error| anyhow::anyhow!("credentials file line {}: {e}", n + 1);
            let mut parts = line.split_whitespace();
            let (Some(id), Some(secret)) = (parts.next(), parts.next()) else {
                return Err(at(anyhow::anyhow!("{LINE_FORMAT}")));
            };
            let (mut token, mut actions, mut resources, mut policy) = (None, None, None, None);
            for field in parts {
                let list = |v: &str| -> Vec<String> {
                    v.split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect()
                };
                match field.split_once('=') {
                    Some(("token", v)) if !v.is_empty() => token = Some(v.to_string()),
                    Some(("actions", v)) => actions = Some(list(v)),
                    Some(("resources", v)) => resources = Some(list(v)),
                    Some(("policy", v)) if !v.is_empty() => {
                        let p = dir.map(|d| d.join(v)).unwrap_or_else(|| v.into());
                        let text = std::fs::read_to_string(&p).map_err(|e| {
                            at(anyhow::anyhow!("cannot read policy {}: {e}", p.display()))
                        })?;
                        policy = Some(Policy::from_json(&text).map_err(at)?);
                    }
                    _ => return Err(at(anyhow::anyhow!("{LINE_FORMAT}"))),
                }
            }
            let policy = match (policy, actions, resources) {
                (Some(_), Some(_), _) => {
                    return Err(at(anyhow::anyhow!(
                        "use either actions= or policy=, not both"
                    )))
                }
                (Some(p), None, None) => Some(p),
                (None, Some(a), r) => Some(Policy::allow(a, r.unwrap_or_else(|| vec!["*".into()]))),
                (None, None, None) => None,
                (_, None, Some(_)) => return Err(at(anyhow::anyhow!("resources= needs actions="))),
            };
            keys.insert(
                id.to_string(),
                Key {
                    secret: secret.to_string(),
                    token,
                    policy: policy.map(Arc::new),
                },
            );
        }
        if keys.is_empty() {
            anyhow::bail!("credentials file holds no keys");
        }
        Ok(CredentialStore { keys })
    }

    /// Verifies the request's `Authorization` header.
    pub fn verify(
        &self,
        method: &str,
        path: &str,
        query: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Caller, ApiError> {
        let request = Request {
            method,
            path,
            query,
            headers,
            body,
        };
        let signed = check(&request, "timestream", |akid| {
            self.keys.get(akid).map(|k| k.secret.clone())
        })?;
        let (akid, region, signed_headers) = (signed.akid, signed.region, signed.signed_headers);
        let key = &self.keys[&akid];
        // A key issued with a session token is only valid with it, and a long-term key only
        // without one (AWS answers both with the invalid-token error). The token counts only
        // when it was signed, so a proxy cannot add or swap it.
        let sent = headers
            .get("x-amz-security-token")
            .map(|v| v.as_bytes().to_vec());
        let signed = signed_headers
            .split(';')
            .any(|h| h.eq_ignore_ascii_case("x-amz-security-token"));
        match (&key.token, sent) {
            (None, None) => {}
            (Some(want), Some(got)) if signed && constant_time_eq(want.as_bytes(), &got) => {}
            (Some(_), Some(_)) if !signed => {
                return Err(ApiError::incomplete_signature(
                    "X-Amz-Security-Token must be a signed header",
                ))
            }
            _ => return Err(ApiError::unrecognized_client()),
        }
        let principal = if key.token.is_some() {
            format!("arn:aws:sts::{ACCOUNT}:assumed-role/timestream-local/{akid}")
        } else {
            format!("arn:aws:iam::{ACCOUNT}:user/{akid}")
        };
        Ok(Caller {
            principal,
            region: region.to_string(),
            policy: key.policy.clone(),
        })
    }
}

/// A request as SigV4 sees it.
#[derive(Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

/// What a valid signature tells.
#[derive(Debug, Clone)]
pub struct Signed {
    pub akid: String,
    pub region: String,
    /// `SignedHeaders` of the Authorization header (`;`-separated, lower case).
    pub signed_headers: String,
}

/// Checks the SigV4 `Authorization` header of `r` for `want_service`, with the secret
/// `secret_of` gives for its access key. Errors are the ones AWS front doors answer
/// (IncompleteSignature, InvalidSignature, UnrecognizedClient, MissingAuthenticationToken).
/// The store checks `timestream`; tests use it for other services (API Gateway's
/// `execute-api`).
pub fn check(
    r: &Request<'_>,
    want_service: &str,
    secret_of: impl Fn(&str) -> Option<String>,
) -> Result<Signed, ApiError> {
    let Request {
        method,
        path,
        query,
        headers,
        body,
    } = *r;
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(ApiError::missing_auth)?;
    let rest = auth.strip_prefix("AWS4-HMAC-SHA256").ok_or_else(|| {
        ApiError::incomplete_signature("Authorization header must use AWS4-HMAC-SHA256")
    })?;
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed_headers = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            signature = Some(v);
        }
    }
    let (Some(credential), Some(signed_headers), Some(signature)) =
        (credential, signed_headers, signature)
    else {
        return Err(ApiError::incomplete_signature(
            "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature'",
        ));
    };
    let scope: Vec<&str> = credential.splitn(5, '/').collect();
    if scope.len() != 5 || scope[4] != "aws4_request" {
        return Err(ApiError::incomplete_signature(
            "Credential must have the form ACCESS_KEY/DATE/REGION/SERVICE/aws4_request",
        ));
    }
    let (akid, date, region, service) = (scope[0], scope[1], scope[2], scope[3]);
    let Some(secret) = secret_of(akid) else {
        return Err(ApiError::unrecognized_client());
    };
    if service != want_service {
        return Err(ApiError::invalid_signature(format!(
            "Credential should be scoped to correct service: '{want_service}'. (got '{service}')"
        )));
    }
    let amz_date = headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::incomplete_signature("Missing X-Amz-Date header"))?;

    let mut canonical_headers = String::new();
    for name in signed_headers.split(';') {
        let values: Vec<String> = headers
            .get_all(name)
            .iter()
            .map(|v| normalize_header_value(&String::from_utf8_lossy(v.as_bytes())))
            .collect();
        canonical_headers.push_str(name);
        canonical_headers.push(':');
        canonical_headers.push_str(&values.join(","));
        canonical_headers.push('\n');
    }
    let payload_hash = match headers
        .get("x-amz-content-sha256")
        .and_then(|v| v.to_str().ok())
    {
        // The signer signs whatever it announced here.
        Some(h) => h.to_string(),
        _ => hex::encode(Sha256::digest(body)),
    };
    let canonical_request = format!(
        "{method}\n{}\n{}\n{canonical_headers}\n{signed_headers}\n{payload_hash}",
        if path.is_empty() { "/" } else { path },
        canonical_query(query),
    );
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{date}/{region}/{service}/aws4_request\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    let k_signing = hmac(&k_service, b"aws4_request");
    let expected = hex::encode(hmac(&k_signing, string_to_sign.as_bytes()));
    if !constant_time_eq(expected.as_bytes(), signature.as_bytes()) {
        return Err(ApiError::invalid_signature(
            "The request signature we calculated does not match the signature you provided. \
                 Check your AWS Secret Access Key and signing method. Consult the service \
                 documentation for details.",
        ));
    }
    Ok(Signed {
        akid: akid.to_string(),
        region: region.to_string(),
        signed_headers: signed_headers.to_string(),
    })
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn normalize_header_value(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn canonical_query(q: &str) -> String {
    if q.is_empty() {
        return String::new();
    }
    let mut pairs: Vec<(&str, &str)> = q
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
