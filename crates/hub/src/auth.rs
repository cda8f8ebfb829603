//! Access control (off unless a secret is given: `--auth-secret`,
//! `COOP_AUTH_SECRET` or `--auth-secret-file`), in the style of Mercure: a
//! JWT signed with HS256 whose claims list the topic patterns the bearer
//! may publish to and subscribe to.
//!
//! ```json
//! {"coop": {"publish": ["farm.*"], "subscribe": ["farm.**", "news"]}, "exp": 1764100000}
//! ```
//!
//! The token comes in `Authorization: Bearer …` or, for browsers'
//! `EventSource` which cannot set headers, `?token=…`.
//!
//! # Validity
//!
//! - `exp` is required: a token without it would never expire, so it is
//!   refused (`401`, "token has no exp claim") unless the hub runs with
//!   `--auth-allow-no-exp`. An expired token is refused.
//! - `nbf`, when present, is checked: a token not valid yet is refused.
//! - Both allow [`LEEWAY_SECS`] of clock skew.
//! - Each claim list holds at most [`MAX_CLAIMS`] valid patterns; a token
//!   with more, or with an invalid pattern, is refused (`401`).
//! - Secrets shorter than [`MIN_SECRET_LEN`] bytes are accepted with a
//!   warning at startup: HS256 with a short secret can be brute-forced
//!   offline from any one token.
//!
//! # What a claim grants
//!
//! Publishing to a topic is allowed when some publish claim matches the
//! topic's name. Subscribing to a name or a pattern is allowed only when
//! **every topic it can ever match is matched by some subscribe claim**
//! (the union of the claims): the request is compared pattern against
//! pattern ([`crate::pattern::covers`]), not as text. So a claim `farm.*`
//! grants `farm.cow` and `farm.*` (and `farm.c*`), but not `farm.**` nor
//! `farm.cow.calf`; a claim `*` does not grant `**`; `**` grants
//! everything; claims `a.*` and `a.*.**` together grant `a.**`. When the
//! comparison would take more than
//! [`MAX_COVER_STEPS`](crate::pattern::MAX_COVER_STEPS) automaton steps
//! (for all the patterns of one request together) it is refused (`403`):
//! the check fails closed.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::pattern::{covers_within, Cover, Pattern, MAX_COVER_STEPS};

/// Secrets shorter than this (bytes) get a warning at startup: 256 bits is
/// what HS256 is meant to be keyed with (RFC 7518, 3.2).
pub const MIN_SECRET_LEN: usize = 32;

/// Most patterns in one claim list (`publish` or `subscribe`). Bounds the
/// per-request work of the subscribe check, which steps every claim.
pub const MAX_CLAIMS: usize = 64;

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECS: u64 = 5;

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
    /// May this token publish to the topic `topic` (a name)?
    pub fn may_publish(&self, topic: &str) -> bool {
        match self {
            Grant::Open => true,
            Grant::Token { publish, .. } => publish.iter().any(|p| p.matches(topic)),
        }
    }

    /// May this token subscribe to `topic_or_pattern` (see the module
    /// docs: every topic it can match must be covered)?
    pub fn may_subscribe(&self, topic_or_pattern: &str) -> bool {
        self.check_subscribe(topic_or_pattern).is_ok()
    }

    /// [`Grant::may_subscribe`], with the reason of a refusal in one line.
    pub fn check_subscribe(&self, topic_or_pattern: &str) -> Result<(), String> {
        let mut budget = MAX_COVER_STEPS;
        self.check_subscribe_within(topic_or_pattern, &mut budget)
    }

    /// [`Grant::check_subscribe`] spending at most `budget` steps of the
    /// pattern comparison, and taking them off it: the parts of one
    /// subscription share one budget, so a request of many patterns costs
    /// no more than [`MAX_COVER_STEPS`] in all.
    pub fn check_subscribe_within(
        &self,
        topic_or_pattern: &str,
        budget: &mut usize,
    ) -> Result<(), String> {
        let subscribe = match self {
            Grant::Open => return Ok(()),
            Grant::Token { subscribe, .. } => subscribe,
        };
        let denied = |why: String| {
            Err(format!(
                "token may not subscribe to {topic_or_pattern:?}: {why}"
            ))
        };
        if !topic_or_pattern.contains('*') {
            // A plain name: the claims' own matcher answers, linearly.
            return if subscribe.iter().any(|p| p.matches(topic_or_pattern)) {
                Ok(())
            } else {
                denied("no subscribe claim matches it".into())
            };
        }
        let request = Pattern::new(topic_or_pattern).map_err(|e| e.to_string())?;
        match covers_within(&request, subscribe, budget) {
            Cover::Yes => Ok(()),
            Cover::No { witness } => denied(format!(
                "it matches topics such as {witness:?} that no subscribe claim covers"
            )),
            Cover::TooComplex => denied(format!(
                "cannot tell whether the claims cover it within {MAX_COVER_STEPS} states (ask for a narrower pattern)"
            )),
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
    /// Tokens signed with `secret`; `allow_no_exp` accepts tokens without
    /// `exp` (`--auth-allow-no-exp`), which otherwise get `401`.
    pub fn new(secret: &[u8], allow_no_exp: bool) -> Auth {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.required_spec_claims.clear();
        if !allow_no_exp {
            validation.required_spec_claims.insert("exp".to_string());
        }
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECS;
        Auth {
            key: DecodingKey::from_secret(secret),
            validation,
        }
    }

    /// The grant of `token` (`None`: no token was sent).
    pub fn check(&self, token: Option<&str>) -> Result<Grant, AuthError> {
        let token = token.ok_or(AuthError::Missing)?;
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(
            |e| {
                AuthError::Invalid(match e.kind() {
                    ErrorKind::MissingRequiredClaim(c) if c == "exp" => {
                        "token has no exp claim: tokens must expire (the hub was not started with --auth-allow-no-exp)".into()
                    }
                    ErrorKind::ImmatureSignature => {
                        "token not valid yet: its nbf is in the future (ImmatureSignature)".into()
                    }
                    ErrorKind::ExpiredSignature => "token expired (ExpiredSignature)".into(),
                    _ => e.to_string(),
                })
            },
        )?;
        let parse = |kind: &str, list: Vec<String>| -> Result<Vec<Pattern>, AuthError> {
            if list.len() > MAX_CLAIMS {
                return Err(AuthError::Invalid(format!(
                    "{} {kind} claims (at most {MAX_CLAIMS})",
                    list.len()
                )));
            }
            list.iter()
                .map(|p| {
                    Pattern::new(p).map_err(|e| AuthError::Invalid(format!("claim {p:?}: {e}")))
                })
                .collect()
        };
        Ok(Grant::Token {
            publish: parse("publish", data.claims.coop.publish)?,
            subscribe: parse("subscribe", data.claims.coop.subscribe)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};

    const SECRET: &str = "s3cret-s3cret-s3cret-s3cret-s3cret";

    fn token(secret: &str, claims: serde_json::Value) -> String {
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    fn now() -> u64 {
        crate::message::now_ms() / 1000
    }

    fn subscriber(claims: &[&str]) -> Grant {
        let auth = Auth::new(SECRET.as_bytes(), false);
        let t = token(
            SECRET,
            serde_json::json!({"coop": {"subscribe": claims}, "exp": now() + 600}),
        );
        auth.check(Some(&t)).unwrap()
    }

    #[test]
    fn claims_grant_patterns_and_bad_tokens_say_why() {
        let auth = Auth::new(SECRET.as_bytes(), false);
        let t = token(
            SECRET,
            serde_json::json!({"coop": {"publish": ["farm.*"], "subscribe": ["**"]}, "exp": now() + 60}),
        );
        let grant = auth.check(Some(&t)).unwrap();
        assert!(grant.may_publish("farm.cow"));
        assert!(!grant.may_publish("zoo"));
        assert!(grant.may_subscribe("farm.*"));

        assert!(matches!(auth.check(None), Err(AuthError::Missing)));
        let wrong = token("other", serde_json::json!({"exp": now() + 60}));
        assert!(auth
            .check(Some(&wrong))
            .unwrap_err()
            .to_string()
            .contains("InvalidSignature"));
        let expired = token(SECRET, serde_json::json!({"exp": 1000}));
        assert!(auth
            .check(Some(&expired))
            .unwrap_err()
            .to_string()
            .contains("Expired"));
    }

    /// Issue 9, item 6: `nbf` was not checked, and tokens without `exp`
    /// never expired, silently.
    #[test]
    fn nbf_is_checked_and_exp_is_required_unless_allowed() {
        let strict = Auth::new(SECRET.as_bytes(), false);
        let lenient = Auth::new(SECRET.as_bytes(), true);
        let future = token(
            SECRET,
            serde_json::json!({"nbf": now() + 3600, "exp": now() + 7200}),
        );
        for auth in [&strict, &lenient] {
            let err = auth.check(Some(&future)).unwrap_err().to_string();
            assert!(err.contains("not valid yet"), "{err}");
        }
        let started = token(
            SECRET,
            serde_json::json!({"nbf": now() - 10, "exp": now() + 60}),
        );
        assert!(strict.check(Some(&started)).is_ok());

        let forever = token(SECRET, serde_json::json!({"coop": {"subscribe": ["a"]}}));
        let err = strict.check(Some(&forever)).unwrap_err().to_string();
        assert!(err.contains("no exp claim"), "{err}");
        assert!(err.contains("--auth-allow-no-exp"), "{err}");
        assert!(lenient.check(Some(&forever)).unwrap().may_subscribe("a"));
    }

    #[test]
    fn claim_lists_are_bounded_and_validated() {
        let auth = Auth::new(SECRET.as_bytes(), false);
        let many: Vec<String> = (0..=MAX_CLAIMS).map(|i| format!("t{i}")).collect();
        let t = token(
            SECRET,
            serde_json::json!({"coop": {"subscribe": many}, "exp": now() + 60}),
        );
        let err = auth.check(Some(&t)).unwrap_err().to_string();
        assert!(err.contains("65 subscribe claims (at most 64)"), "{err}");
        let t = token(
            SECRET,
            serde_json::json!({"coop": {"publish": ["a b"]}, "exp": now() + 60}),
        );
        assert!(auth
            .check(Some(&t))
            .unwrap_err()
            .to_string()
            .contains("claim \"a b\""));
    }

    /// Issue 9, item 2: a claim was applied to the requested pattern as
    /// text, so `farm.*` granted `farm.**` (and with it `farm.cow.calf`),
    /// and `*` granted `**`.
    #[test]
    fn a_claim_grants_only_what_it_covers() {
        let farm = subscriber(&["farm.*"]);
        assert!(farm.may_subscribe("farm.cow"));
        assert!(farm.may_subscribe("farm.*"));
        assert!(farm.may_subscribe("farm.c*"));
        assert!(!farm.may_subscribe("farm.cow.calf"));
        let err = farm.check_subscribe("farm.**").unwrap_err();
        assert!(err.contains("no subscribe claim covers"), "{err}");
        assert!(!farm.may_subscribe("farm.*.*"));
        assert!(!farm.may_subscribe("**"));

        let star = subscriber(&["*"]);
        assert!(star.may_subscribe("*"));
        assert!(star.may_subscribe("cow"));
        assert!(!star.may_subscribe("**"));
        assert!(!star.may_subscribe("a.*"));

        let all = subscriber(&["**"]);
        for req in ["**", "a", "a.b.c", "*.*", "a.**.b", "***"] {
            assert!(all.may_subscribe(req), "{req}");
        }
    }

    /// Claims cover as a union: `a.*` + `a.*.*` cover `a.*`, `a.*.*` and
    /// `a.x.y`, but not `a.**` (three segments after `a` are reachable by
    /// it and by no claim); adding `a.*.*.**` makes the union cover it.
    #[test]
    fn claims_cover_together() {
        let two = subscriber(&["a.*", "a.*.*"]);
        assert!(two.may_subscribe("a.*"));
        assert!(two.may_subscribe("a.*.*"));
        assert!(two.may_subscribe("a.x.y"));
        assert!(!two.may_subscribe("a.**"));
        assert!(!two.may_subscribe("a.*.*.*"));
        let three = subscriber(&["a.*", "a.*.*", "a.*.*.**"]);
        assert!(three.may_subscribe("a.**"));
        assert!(!three.may_subscribe("**"));
        let open = Grant::Open;
        assert!(open.may_subscribe("**"));
    }
}
