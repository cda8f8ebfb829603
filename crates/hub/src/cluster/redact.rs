//! Redis URLs fit to print: every log line, error and `/readyz` reason
//! that names a Redis goes through [`redact_url`]; [`redact_in`] cleans
//! text written by others (the Redis client's errors).

/// `url` fit to print: the password replaced by `***`, the user kept.
///
/// Covers what redis-rs accepts: `redis://user:pass@host:6379/0`,
/// `redis://:pass@host`, `rediss://…`, and `redis+unix:///path?pass=…`
/// (the `pass` and `password` query parameters). Works on text that is not
/// a valid URL too (it never fails, and never returns the input's password),
/// so a URL that does not parse can still be named in the error. Every log
/// line, error message and `/healthz` reason that names the Redis URL goes
/// through this; [`redact_in`] cleans text written by others.
pub fn redact_url(url: &str) -> String {
    let (before_query, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut out = String::with_capacity(url.len());
    match before_query.split_once("://") {
        Some((scheme, rest)) => {
            out.push_str(scheme);
            out.push_str("://");
            // The authority ends at the first '/', or '#' (the query is
            // already split off); its userinfo ends at the last '@'.
            let end = rest.find(['/', '#']).unwrap_or(rest.len());
            let (authority, path) = rest.split_at(end);
            match authority.rsplit_once('@') {
                Some((userinfo, host)) => {
                    match userinfo.split_once(':') {
                        Some((user, _password)) => {
                            out.push_str(user);
                            out.push_str(":***");
                        }
                        None => out.push_str(userinfo),
                    }
                    out.push('@');
                    out.push_str(host);
                }
                None => out.push_str(authority),
            }
            out.push_str(path);
        }
        // Not a URL: anything before an '@' may be a secret.
        None => match before_query.rsplit_once('@') {
            Some((_, host)) => {
                out.push_str("***@");
                out.push_str(host);
            }
            None => out.push_str(before_query),
        },
    }
    if let Some(query) = query {
        out.push('?');
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _))
                    if k.eq_ignore_ascii_case("pass") || k.eq_ignore_ascii_case("password") =>
                {
                    format!("{k}=***")
                }
                _ => pair.to_string(),
            })
            .collect();
        out.push_str(&pairs.join("&"));
    }
    out
}

/// Passwords of `url` (userinfo and query) at least this long are also
/// scrubbed from free text by [`redact_in`]; shorter ones would match
/// innocent words (and are no secret anyway).
const MIN_SCRUBBED: usize = 4;

/// `text` (say, an error from the Redis client) with every occurrence of
/// `url`'s password replaced by `***`, in case the text quotes it.
pub fn redact_in(text: &str, url: &str) -> String {
    let mut out = text.to_string();
    for secret in passwords(url) {
        if secret.len() >= MIN_SCRUBBED {
            out = out.replace(secret, "***");
        }
    }
    out
}

/// The secrets `url` may carry: the userinfo's password (or the whole
/// userinfo of text that is not a URL) and `pass=`/`password=` values.
fn passwords(url: &str) -> Vec<&str> {
    let (before_query, query) = url.split_once('?').unwrap_or((url, ""));
    let mut out = Vec::new();
    let authority = match before_query.split_once("://") {
        Some((_, rest)) => &rest[..rest.find(['/', '#']).unwrap_or(rest.len())],
        None => before_query,
    };
    if let Some((userinfo, _)) = authority.rsplit_once('@') {
        match userinfo.split_once(':') {
            Some((_, password)) => out.push(password),
            None if !before_query.contains("://") => out.push(userinfo),
            None => {}
        }
    }
    for pair in query.split('&') {
        if let Some((k, v)) = pair.split_once('=') {
            if k.eq_ignore_ascii_case("pass") || k.eq_ignore_ascii_case("password") {
                out.push(v);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (issue 9, item 8): the Redis URL, password included, was
    /// logged and quoted in errors.
    #[test]
    fn redacted_urls_keep_the_user_and_hide_the_password() {
        let cases = [
            (
                "redis://user:hunter2@host:6379/0",
                "redis://user:***@host:6379/0",
            ),
            ("redis://:hunter2@host", "redis://:***@host"),
            ("rediss://u:p@ss:w@rd@h:1/2", "rediss://u:***@h:1/2"),
            ("redis://host:6379/0", "redis://host:6379/0"),
            ("redis://user@host", "redis://user@host"),
            (
                "redis://:pw@host/0?protocol=resp3",
                "redis://:***@host/0?protocol=resp3",
            ),
            (
                "redis+unix:///tmp/r.sock?db=1&pass=hunter2&user=u",
                "redis+unix:///tmp/r.sock?db=1&pass=***&user=u",
            ),
            ("hunter2@host", "***@host"),
            ("", ""),
        ];
        for (url, shown) in cases {
            assert_eq!(redact_url(url), shown, "{url}");
        }
        assert_eq!(
            redact_in("AUTH hunter2 failed for hunter2", "redis://u:hunter2@h"),
            "AUTH *** failed for ***"
        );
        // Short passwords are redacted in URLs but not hunted in free text.
        assert_eq!(redact_url("redis://:ab@h"), "redis://:***@h");
        assert_eq!(redact_in("about", "redis://:ab@h"), "about");
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Whatever the user, password and host, the password never
            /// survives redaction, and the host does.
            #[test]
            fn the_password_never_survives(
                user in "[a-z]{0,8}",
                password in "[A-Za-z0-9!$%()*+,;=~-]{6,24}",
                host in "[a-z]{1,10}(:[0-9]{1,5})?",
                path in "(/[0-9])?",
            ) {
                prop_assume!(!host.contains(&password) && !user.contains(&password));
                let url = format!("redis://{user}:{password}@{host}{path}");
                let shown = redact_url(&url);
                prop_assert!(!shown.contains(&password), "{}", shown);
                prop_assert!(shown.contains(&host), "{}", shown);
                let text = format!("error: {url}");
                prop_assert!(!redact_in(&text, &url).contains(&password));
            }

            /// Arbitrary text never panics.
            #[test]
            fn any_text_redacts_without_panicking(s in "\\PC{0,80}") {
                let _ = redact_url(&s);
                let _ = redact_in(&s, &s);
            }
        }
    }
}
