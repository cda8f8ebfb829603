//! One percent-decoding rule for every path that answers.
//!
//! The same rules as the router behind hyper (axum's `Path` and `Query`
//! extractors), so a request is judged the same whichever path answers it:
//!
//! - in a **path**, `%XX` is decoded and `+` is a plus sign; an escape that
//!   is not two hex digits stays as written; a result that is not UTF-8 is
//!   an error (`400` in the handlers);
//! - in a **query**, pairs split on `&` and `=`, `+` is a space, `%XX` is
//!   decoded, and bytes that are not UTF-8 become U+FFFD.

use std::borrow::Cow;

use percent_encoding::percent_decode_str;

/// Decodes one path segment (or a whole path).
pub fn path(raw: &str) -> Result<Cow<'_, str>, std::str::Utf8Error> {
    percent_decode_str(raw).decode_utf8()
}

/// Decodes one query key or value: `+` is a space.
pub fn query_component(raw: &str) -> Cow<'_, str> {
    if !raw.contains(['+', '%']) {
        return Cow::Borrowed(raw);
    }
    let spaced = raw.replace('+', " ");
    Cow::Owned(
        percent_encoding::percent_decode(spaced.as_bytes())
            .decode_utf8_lossy()
            .into_owned(),
    )
}

/// The `key=value` pairs of a query, decoded, in order; a pair without
/// `=` has an empty value; empty pairs are skipped.
pub fn query(raw: &str) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
    raw.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (query_component(k), query_component(v))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_keep_plus_and_broken_escapes() {
        assert_eq!(path("a+b").unwrap(), "a+b");
        assert_eq!(path("c%6Fw").unwrap(), "cow");
        assert_eq!(path("a%20b%zz%").unwrap(), "a b%zz%");
        assert!(path("%ff").is_err());
        assert!(matches!(path("cow").unwrap(), Cow::Borrowed(_)));
    }

    #[test]
    fn queries_turn_plus_into_space() {
        let pairs: Vec<_> = query("since=5&&token=x%2By&q=a+b&flag")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("since".into(), "5".into()),
                ("token".into(), "x+y".into()),
                ("q".into(), "a b".into()),
                ("flag".into(), String::new()),
            ]
        );
        assert_eq!(query_component("%ff"), "\u{fffd}");
    }

    #[test]
    fn the_same_rules_as_the_router() {
        // axum's Query goes through serde_urlencoded (form_urlencoded):
        // the same pairs for the same query.
        use std::collections::HashMap;
        let raw = "a=1+2&b=%41%zz&c";
        let ours: HashMap<String, String> = query(raw)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let uri: http::Uri = format!("/x?{raw}").parse().unwrap();
        let theirs: axum::extract::Query<HashMap<String, String>> =
            axum::extract::Query::try_from_uri(&uri).unwrap();
        assert_eq!(ours, theirs.0);
    }
}
