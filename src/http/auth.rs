//! Request credentials: `Authorization: Basic base64(access key id : secret access key)`
//! become static AWS credentials for that request only; with `--enable-sigv4-auth=true` the
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
    if user.is_empty() || password.is_empty() {
        return Err(ApiError::Unauthorized);
    }
    Ok(RequestCredentials::Static {
        access_key_id: user.to_string(),
        secret_access_key: password.to_string(),
    })
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
            } => {
                assert_eq!(access_key_id, "AKID");
                assert_eq!(secret_access_key, "sec/ret+x");
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
}
