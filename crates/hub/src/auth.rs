//! Access control (off unless `--auth-secret` is given), in the style of
//! Mercure: a JWT signed with HS256 whose claims list the topic patterns the
//! bearer may publish to and subscribe to.
//!
//! ```json
//! {"coop": {"publish": ["farm.*"], "subscribe": ["farm.**", "news"]}, "exp": 1764100000}
//! ```
//!
//! The token comes in `Authorization: Bearer …` or, for browsers'
//! `EventSource` which cannot set headers, `?token=…`. `exp` is checked when
//! present. A request for a topic pattern is allowed when one claim pattern
//! matches the requested text literally (`farm.*` covers `farm.*` and
//! `farm.cow`; `farm.cow` does not cover `farm.*`).

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::topic::Pattern;

/// What a request may do, once its token is checked.
#[derive(Debug, Clone)]
pub enum Grant {
    /// Auth is off: everything is allowed.
    Open,
    /// A valid token with these patterns.
    Token {
        publish: Vec<Pattern>,
        subscribe: Vec<Pattern>,
    },
}

impl Grant {
    pub fn may_publish(&self, topic: &str) -> bool {
        match self {
            Grant::Open => true,
            Grant::Token { publish, .. } => publish.iter().any(|p| p.matches(topic)),
        }
    }

    pub fn may_subscribe(&self, topic_or_pattern: &str) -> bool {
        match self {
            Grant::Open => true,
            Grant::Token { subscribe, .. } => subscribe.iter().any(|p| p.matches(topic_or_pattern)),
        }
    }
}

/// Why a token was refused (answered as `401` with this text).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing token: send Authorization: Bearer <jwt> or ?token=<jwt>")]
    Missing,
    #[error("invalid token: {0}")]
    Invalid(String),
}

#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    coop: CoopClaims,
}

#[derive(Deserialize, Default)]
struct CoopClaims {
    #[serde(default)]
    publish: Vec<String>,
    #[serde(default)]
    subscribe: Vec<String>,
}

/// Checks tokens against one HS256 secret.
pub struct Auth {
    key: DecodingKey,
    validation: Validation,
}

impl Auth {
    pub fn new(secret: &[u8]) -> Auth {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.required_spec_claims.clear();
        validation.validate_exp = true;
        validation.leeway = 5;
        Auth {
            key: DecodingKey::from_secret(secret),
            validation,
        }
    }

    /// The grant of `token` (`None`: no token was sent).
    pub fn check(&self, token: Option<&str>) -> Result<Grant, AuthError> {
        let token = token.ok_or(AuthError::Missing)?;
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| AuthError::Invalid(e.to_string()))?;
        let parse = |list: Vec<String>| -> Result<Vec<Pattern>, AuthError> {
            list.iter()
                .map(|p| {
                    Pattern::new(p).map_err(|e| AuthError::Invalid(format!("claim {p:?}: {e}")))
                })
                .collect()
        };
        Ok(Grant::Token {
            publish: parse(data.claims.coop.publish)?,
            subscribe: parse(data.claims.coop.subscribe)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};

    fn token(secret: &str, claims: serde_json::Value) -> String {
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    #[test]
    fn claims_grant_patterns_and_bad_tokens_say_why() {
        let auth = Auth::new(b"s3cret");
        let t = token(
            "s3cret",
            serde_json::json!({"coop": {"publish": ["farm.*"], "subscribe": ["**"]}}),
        );
        let grant = auth.check(Some(&t)).unwrap();
        assert!(grant.may_publish("farm.cow"));
        assert!(!grant.may_publish("zoo"));
        assert!(grant.may_subscribe("farm.*"));

        assert!(matches!(auth.check(None), Err(AuthError::Missing)));
        let wrong = token("other", serde_json::json!({}));
        assert!(auth
            .check(Some(&wrong))
            .unwrap_err()
            .to_string()
            .contains("InvalidSignature"));
        let expired = token("s3cret", serde_json::json!({"exp": 1000}));
        assert!(auth
            .check(Some(&expired))
            .unwrap_err()
            .to_string()
            .contains("Expired"));
    }
}
