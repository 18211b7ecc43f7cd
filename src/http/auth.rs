//! Request credentials: `Authorization: Basic base64(access key id : secret access key)`
//! become static AWS credentials for that request only. Temporary credentials add their
//! session token either to the password (`secret:token`: AWS secrets and tokens never contain
//! `:`, and Prometheus re-reads a `password_file` on every request, so a rotated token needs no
//! reload) or in the `X-Aws-Session-Token` header (Prometheus refuses `X-Amz-Security-Token`
//! in `headers:`, reserving it for its own SigV4 signer; other clients may send that one
//! instead). With `--enable-sigv4-auth=true` the
//! connector's own credential chain is used and the header is ignored (as upstream's Lambda
//! does). Usable as a function or as an axum extractor by the write and read handlers.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use base64::Engine;

use super::AppState;
use crate::error::ApiError;
use crate::timestream::client::RequestCredentials;

/// Credentials of a request, from its headers and the auth mode.
pub fn credentials_from_headers(
    headers: &HeaderMap,
    sigv4_auth: bool,
) -> Result<RequestCredentials, ApiError> {
    if sigv4_auth {
        return Ok(RequestCredentials::DefaultChain);
    }
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or(ApiError::Unauthorized)?
        .to_str()
        .map_err(|_| ApiError::Unauthorized)?;
    let (scheme, rest) = value.trim().split_once(' ').ok_or(ApiError::Unauthorized)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(ApiError::Unauthorized);
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .map_err(|_| ApiError::Unauthorized)?;
    let decoded = String::from_utf8(decoded).map_err(|_| ApiError::Unauthorized)?;
    let (user, password) = decoded.split_once(':').ok_or(ApiError::Unauthorized)?;
    let (secret, in_password) = match password.split_once(':') {
        Some((secret, token)) if !token.is_empty() => (secret, Some(token)),
        Some(_) => return Err(ApiError::Unauthorized),
        None => (password, None),
    };
    if user.is_empty() || secret.is_empty() {
        return Err(ApiError::Unauthorized);
    }
    let session_token = match (in_password, session_token(headers)?) {
        (Some(p), Some(h)) if p != h => return Err(ApiError::Unauthorized),
        (Some(p), _) => Some(p.to_string()),
        (None, h) => h,
    };
    Ok(RequestCredentials::Static {
        access_key_id: user.to_string(),
        secret_access_key: secret.to_string(),
        session_token,
    })
}

/// Header carrying the session token of temporary credentials.
pub const SESSION_TOKEN_HEADER: &str = "x-aws-session-token";
/// The header AWS SDKs use; accepted too, for clients that may set it.
const AMZ_SECURITY_TOKEN: &str = "x-amz-security-token";

/// The session token, if the request carries one (two different ones are refused).
fn session_token(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let mut found: Option<&str> = None;
    for name in [SESSION_TOKEN_HEADER, AMZ_SECURITY_TOKEN] {
        for v in headers.get_all(name) {
            let v = v.to_str().map_err(|_| ApiError::Unauthorized)?.trim();
            if v.is_empty() {
                return Err(ApiError::Unauthorized);
            }
            match found {
                Some(f) if f != v => return Err(ApiError::Unauthorized),
                _ => found = Some(v),
            }
        }
    }
    Ok(found.map(str::to_string))
}

/// Extractor form of `credentials_from_headers` (rejects with 401).
pub struct Creds(pub RequestCredentials);

impl FromRequestParts<AppState> for Creds {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        credentials_from_headers(&parts.headers, state.config.sigv4_auth).map(Creds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn basic_auth_forms() {
        let ok = base64::engine::general_purpose::STANDARD.encode("AKID:sec/ret+x");
        match credentials_from_headers(&with(&format!("Basic {ok}")), false).unwrap() {
            RequestCredentials::Static {
                access_key_id,
                secret_access_key,
                session_token,
            } => {
                assert_eq!(access_key_id, "AKID");
                assert_eq!(secret_access_key, "sec/ret+x");
                assert_eq!(session_token, None);
            }
            other => panic!("{other:?}"),
        }
        assert!(credentials_from_headers(&with(&format!("basic {ok}")), false).is_ok());
        for bad in [
            "Bearer abc".to_string(),
            "Basic !!!".to_string(),
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode("nocolon")
            ),
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(":secret")
            ),
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode("key:")
            ),
            "Basic".to_string(),
        ] {
            assert!(
                matches!(
                    credentials_from_headers(&with(&bad), false),
                    Err(ApiError::Unauthorized)
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            credentials_from_headers(&HeaderMap::new(), false),
            Err(ApiError::Unauthorized)
        ));
        assert_eq!(
            credentials_from_headers(&HeaderMap::new(), true).unwrap(),
            RequestCredentials::DefaultChain
        );
    }

    #[test]
    fn session_token_header() {
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("ASIAKEY:secret")
        );
        let token_of = |pairs: &[(&'static str, &str)]| {
            let mut h = with(&basic);
            for (n, v) in pairs {
                h.append(*n, HeaderValue::from_str(v).unwrap());
            }
            credentials_from_headers(&h, false).map(|c| match c {
                RequestCredentials::Static { session_token, .. } => session_token,
                other => panic!("{other:?}"),
            })
        };
        assert_eq!(token_of(&[]).unwrap(), None);
        assert_eq!(
            token_of(&[("X-Aws-Session-Token", "tok/en+=")]).unwrap(),
            Some("tok/en+=".into())
        );
        assert_eq!(
            token_of(&[("X-Amz-Security-Token", "tok")]).unwrap(),
            Some("tok".into())
        );
        assert_eq!(
            token_of(&[
                ("X-Aws-Session-Token", "tok"),
                ("X-Amz-Security-Token", "tok")
            ])
            .unwrap(),
            Some("tok".into())
        );
        for bad in [
            vec![("X-Aws-Session-Token", "a"), ("X-Amz-Security-Token", "b")],
            vec![("X-Aws-Session-Token", "a"), ("X-Aws-Session-Token", "b")],
            vec![("X-Aws-Session-Token", " ")],
        ] {
            assert!(
                matches!(token_of(&bad), Err(ApiError::Unauthorized)),
                "{bad:?}"
            );
        }
        // In the password: `secret:token`.
        let in_password = |pw: &str, pairs: &[(&'static str, &str)]| {
            let mut h = with(&format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("ASIAKEY:{pw}"))
            ));
            for (n, v) in pairs {
                h.append(*n, HeaderValue::from_str(v).unwrap());
            }
            credentials_from_headers(&h, false)
        };
        assert_eq!(
            in_password("sec/ret:tok+en==", &[]).unwrap(),
            RequestCredentials::Static {
                access_key_id: "ASIAKEY".into(),
                secret_access_key: "sec/ret".into(),
                session_token: Some("tok+en==".into()),
            }
        );
        assert!(in_password("sec:tok", &[("X-Aws-Session-Token", "tok")]).is_ok());
        for bad in ["sec:", ":tok"] {
            assert!(
                matches!(in_password(bad, &[]), Err(ApiError::Unauthorized)),
                "{bad}"
            );
        }
        assert!(matches!(
            in_password("sec:tok", &[("X-Aws-Session-Token", "other")]),
            Err(ApiError::Unauthorized)
        ));
        // SigV4 mode uses the connector's own chain: request tokens are not used.
        let mut h = with(&basic);
        h.insert("x-aws-session-token", HeaderValue::from_static("tok"));
        assert_eq!(
            credentials_from_headers(&h, true).unwrap(),
            RequestCredentials::DefaultChain
        );
    }
}
