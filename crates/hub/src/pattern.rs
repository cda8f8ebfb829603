//! Topic patterns (`farm.*`, `farm.**`): their rules and limits, matching a
//! topic name in time linear in the name, and deciding whether one set of
//! patterns covers another (what [`crate::auth`] needs to compare a
//! subscription against a token's claims).
//!
//! # Rules
//!
//! A pattern is a topic name (see [`crate::message`]) that may contain `*`:
//! names are dot-separated; `*` matches any run of characters inside one
//! segment (`farm.*` matches `farm.cow`, not `farm.cow.calf`), `**` any run
//! including dots (`farm.**` matches both, `**` matches every topic). A run
//! of three or more stars means the same as `**`. Wildcards may also sit
//! inside a segment (`c*w` matches `cow`).
//!
//! # Limits
//!
//! At most [`MAX_PATTERN_LEN`] bytes (the longest topic name) and at most
//! [`MAX_WILDCARDS`] wildcards (a `*` or a run of stars counts as one);
//! past either, [`Pattern::new`] says why in one line, which the HTTP layer
//! answers as `400`.
//!
//! # Matching in linear time
//!
//! The previous matcher backtracked: a 14-byte pattern of several `*`
//! against a 64-character topic took seconds, under the topic registry's
//! locks. Here a pattern is compiled once into a position automaton (state
//! `i` = "the first `i` tokens are matched") simulated bit-parallel in one
//! `u128` (shift-and): each byte of the name costs a table lookup and a
//! handful of word operations, whatever the pattern, so a match is
//! `O(len(name))` with no allocation. 128 tokens fit because state 0 (the
//! start, never re-entered) is kept out of the word.
//!
//! # Covering
//!
//! [`covers`] decides `L(request) ⊆ L(claim₁) ∪ … ∪ L(claimₖ)` exactly, by
//! exploring the product of the request's automaton with the claims',
//! determinised on the fly (subset construction), over the classes of
//! characters that can make a difference: each literal byte of any pattern,
//! `.`, and one "any other name character". The exploration stops after
//! [`MAX_COVER_STEPS`] and then fails closed.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;

use crate::message::{check_name, MAX_TOPIC_LEN};

/// Longest pattern accepted, in bytes: the longest topic name. A longer
/// pattern could only match names that cannot exist.
pub const MAX_PATTERN_LEN: usize = MAX_TOPIC_LEN;

/// Most wildcards in one pattern (`*`, or a run of stars, counts as one).
/// Matching does not need it (it is linear whatever the wildcards); the
/// claim check does: the automaton the claims determinise into can grow
/// with the wildcards, and sixteen is far more than any real topic scheme
/// uses (`tenant.*.sensor.*.**` has three).
pub const MAX_WILDCARDS: usize = 16;

/// Work the claim check may do for one subscription request (all its
/// patterns together, see [`covers_within`]) before giving up and
/// refusing (fails closed), counted in automaton steps (one pattern
/// reading one character: a few word operations). A million is a few
/// milliseconds, on the subscribing request's own task and under no lock;
/// real claims need a few hundred steps.
pub const MAX_COVER_STEPS: usize = 1_000_000;

/// The characters a topic name may contain (see `message::check_name`).
const NAME_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-";

/// A validated, compiled topic pattern. Cheap to clone; equality is on the
/// text.
#[derive(Clone)]
pub struct Pattern(Arc<Compiled>);

struct Compiled {
    text: Box<str>,
    nfa: Nfa,
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.text == other.0.text
    }
}

impl Eq for Pattern {}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Pattern").field(&self.as_str()).finish()
    }
}

impl Pattern {
    /// Validates a pattern (a topic name that may contain `*`, within the
    /// limits above), or says in one line what is wrong with it.
    pub fn new(text: &str) -> Result<Pattern, String> {
        if text.len() > MAX_PATTERN_LEN {
            return Err(format!(
                "pattern longer than {MAX_PATTERN_LEN} bytes ({} bytes)",
                text.len()
            ));
        }
        check_name(text, true)?;
        let nfa = Nfa::compile(text.as_bytes())?;
        Ok(Pattern(Arc::new(Compiled {
            text: text.into(),
            nfa,
        })))
    }

    pub fn as_str(&self) -> &str {
        &self.0.text
    }

    /// Does the topic `name` match this pattern? Linear in `name`.
    pub fn matches(&self, name: &str) -> bool {
        self.0.nfa.matches(name.as_bytes())
    }

    /// Does this pattern match every name (`**`)?
    pub fn is_universal(&self) -> bool {
        self.0.nfa.tokens == [Token::AnyRun]
    }
}

/// One element of a compiled pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Byte(u8),
    /// `*`: any run of bytes other than `.`.
    SegmentRun,
    /// `**` (or longer): any run of bytes.
    AnyRun,
}

/// A pattern's position automaton, bit-parallel. State `i` (1..=n) is bit
/// `i - 1` of a `u128`; it means "tokens `0..i` matched". State 0 (nothing
/// matched yet) is only ever the start, so it is passed as a flag to
/// [`Nfa::step`] instead of taking a bit. Wildcard tokens are entered
/// without consuming (an ε-move from the state before them) and loop on the
/// bytes they accept; no two wildcards are adjacent (runs are merged), so
/// one ε-step closes a state set.
struct Nfa {
    tokens: Vec<Token>,
    /// Byte (ASCII) -> index into `literal`; bytes no token names (and
    /// non-ASCII ones) map to 0, whose mask is empty.
    class: [u8; 128],
    /// Per class: the states entered by consuming a byte of that class
    /// as a literal token (bit `j` for literal token `j`).
    literal: Vec<u128>,
    /// States that loop on `.` (after a `**`).
    loop_dot: u128,
    /// States that loop on any other byte (after `*` or `**`).
    loop_other: u128,
    /// States followed by a wildcard: entering them also enters the next.
    enter: u128,
    /// The states active before any byte (the start's ε-closure).
    initial: u128,
    /// The accepting state's bit (0 for the empty pattern).
    accept: u128,
}

impl Nfa {
    /// Compiles `p` (any bytes; `*` is the only special one). Errs past
    /// [`MAX_WILDCARDS`] or 128 tokens.
    fn compile(p: &[u8]) -> Result<Nfa, String> {
        let mut tokens = Vec::with_capacity(p.len());
        let mut i = 0;
        while i < p.len() {
            if p[i] == b'*' {
                let run = p[i..].iter().take_while(|&&c| c == b'*').count();
                tokens.push(if run == 1 {
                    Token::SegmentRun
                } else {
                    Token::AnyRun
                });
                i += run;
            } else {
                tokens.push(Token::Byte(p[i]));
                i += 1;
            }
        }
        let wildcards = tokens
            .iter()
            .filter(|t| !matches!(t, Token::Byte(_)))
            .count();
        if wildcards > MAX_WILDCARDS {
            return Err(format!(
                "pattern has {wildcards} wildcards (at most {MAX_WILDCARDS})"
            ));
        }
        if tokens.len() > 128 {
            return Err("pattern longer than 128 tokens".into());
        }
        let mut class = [0u8; 128];
        let mut literal = vec![0u128];
        let (mut loop_dot, mut loop_other, mut enter) = (0u128, 0u128, 0u128);
        for (j, t) in tokens.iter().enumerate() {
            let bit = 1u128 << j;
            match *t {
                Token::Byte(b) => {
                    // Non-ASCII bytes never reach here from a validated
                    // pattern; in tests they simply never match.
                    if b < 128 {
                        if class[b as usize] == 0 {
                            class[b as usize] = literal.len() as u8;
                            literal.push(0);
                        }
                        literal[class[b as usize] as usize] |= bit;
                    }
                }
                Token::SegmentRun => loop_other |= bit,
                Token::AnyRun => {
                    loop_other |= bit;
                    loop_dot |= bit;
                }
            }
            // State j (bit j - 1) is followed by wildcard token j.
            if j > 0 && !matches!(t, Token::Byte(_)) {
                enter |= 1u128 << (j - 1);
            }
        }
        let initial = match tokens.first() {
            Some(Token::SegmentRun | Token::AnyRun) => 1,
            _ => 0,
        };
        let accept = match tokens.len() {
            0 => 0,
            n => 1u128 << (n - 1),
        };
        Ok(Nfa {
            tokens,
            class,
            literal,
            loop_dot,
            loop_other,
            enter,
            initial,
            accept,
        })
    }

    /// The states after reading `c` from `states` (`at_start`: the start
    /// state 0 is also active, i.e. nothing was read yet).
    #[inline]
    fn step(&self, states: u128, at_start: bool, c: u8) -> u128 {
        let class = if c < 128 { self.class[c as usize] } else { 0 };
        let shifted = (states << 1) | u128::from(at_start);
        let looping = if c == b'.' {
            self.loop_dot
        } else {
            self.loop_other
        };
        let next = (shifted & self.literal[class as usize]) | (states & looping);
        next | ((next & self.enter) << 1)
    }

    /// Whether the states reached after reading something accept
    /// (`at_start`: nothing was read).
    fn accepts(&self, states: u128, at_start: bool) -> bool {
        if self.tokens.is_empty() {
            return at_start;
        }
        states & self.accept != 0
    }

    /// Once the `**` that ends a pattern is reached, every continuation
    /// matches: a state set containing it accepts everything from here.
    fn is_universal(&self, states: u128) -> bool {
        self.tokens.last() == Some(&Token::AnyRun) && states & self.accept != 0
    }

    fn matches(&self, name: &[u8]) -> bool {
        let mut states = self.initial;
        let mut at_start = true;
        for &c in name {
            states = self.step(states, at_start, c);
            at_start = false;
            if states == 0 {
                return false;
            }
        }
        self.accepts(states, at_start)
    }
}

/// Whether the patterns `claims` together cover `request`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cover {
    /// Every name `request` can match is matched by some claim.
    Yes,
    /// `witness` is a name `request` matches and no claim does (the
    /// shortest such, over the characters that make a difference).
    No { witness: String },
    /// Not decided within [`MAX_COVER_STEPS`]; callers must refuse.
    TooComplex,
}

/// Decides whether every non-empty name matched by `request` is matched by
/// at least one of `claims` (exact, over every string of name characters;
/// the name rules on dots and length are not used, so a refusal can only
/// err on the safe side, for claims that cover the valid names only thanks
/// to those rules). Bounded by [`MAX_COVER_STEPS`].
pub fn covers(request: &Pattern, claims: &[Pattern]) -> Cover {
    let mut budget = MAX_COVER_STEPS;
    covers_within(request, claims, &mut budget)
}

/// [`covers`], spending at most `budget` automaton steps and taking what
/// it spends off `budget` (so several checks can share one budget).
pub fn covers_within(request: &Pattern, claims: &[Pattern], budget: &mut usize) -> Cover {
    if claims.iter().any(|c| c.is_universal() || c == request) {
        return Cover::Yes;
    }
    let req = &request.0.nfa;
    let nfas: Vec<&Nfa> = claims.iter().map(|c| &c.0.nfa).collect();
    // The alphabet, as one representative byte per class: every literal
    // byte of any pattern, `.`, and one name character none of them names
    // (all such characters behave alike in every pattern).
    let mut alphabet: Vec<u8> = std::iter::once(request)
        .chain(claims)
        .flat_map(|p| p.0.nfa.tokens.iter())
        .filter_map(|t| match t {
            Token::Byte(b) => Some(*b),
            _ => None,
        })
        .chain([b'.'])
        .collect();
    alphabet.sort_unstable();
    alphabet.dedup();
    if let Some(&other) = NAME_CHARS.iter().find(|c| !alphabet.contains(c)) {
        alphabet.push(other);
    }

    // One explored state: the request's state set and each claim's, with
    // the parent and byte it was reached by (to spell the witness).
    struct Node {
        req: u128,
        claims: Box<[u128]>,
        parent: usize,
        byte: u8,
    }
    let start = Node {
        req: req.initial,
        claims: nfas.iter().map(|n| n.initial).collect(),
        parent: usize::MAX,
        byte: 0,
    };
    let mut nodes = vec![start];
    let mut seen: HashMap<(u128, Box<[u128]>), ()> = HashMap::new();
    let mut queue = VecDeque::from([0usize]);
    while let Some(at) = queue.pop_front() {
        let is_start = at == 0;
        for &c in &alphabet {
            let cost = 1 + nfas.len();
            if *budget < cost {
                *budget = 0;
                return Cover::TooComplex;
            }
            *budget -= cost;
            let node = &nodes[at];
            let r = req.step(node.req, is_start, c);
            if r == 0 {
                continue; // the request matches nothing this way
            }
            let cs: Box<[u128]> = nfas
                .iter()
                .zip(node.claims.iter())
                .map(|(n, &s)| {
                    if s == 0 && !is_start {
                        0
                    } else {
                        n.step(s, is_start, c)
                    }
                })
                .collect();
            if seen.insert((r, cs.clone()), ()).is_some() {
                continue;
            }
            let parent = at;
            let covered_here = nfas
                .iter()
                .zip(cs.iter())
                .any(|(n, &s)| n.accepts(s, false));
            if req.accepts(r, false) && !covered_here {
                let mut witness = vec![c];
                let mut p = parent;
                while p != 0 {
                    witness.push(nodes[p].byte);
                    p = nodes[p].parent;
                }
                witness.reverse();
                return Cover::No {
                    witness: String::from_utf8_lossy(&witness).into_owned(),
                };
            }
            // A claim past its final `**` covers everything below.
            let done = nfas.iter().zip(cs.iter()).any(|(n, &s)| n.is_universal(s));
            if done {
                continue;
            }
            nodes.push(Node {
                req: r,
                claims: cs,
                parent,
                byte: c,
            });
            queue.push_back(nodes.len() - 1);
        }
    }
    Cover::Yes
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The previous, backtracking matcher: exponential on many `*`, kept
    /// as the reference the linear one is checked against.
    pub(crate) fn glob(p: &[u8], s: &[u8]) -> bool {
        match p.first() {
            None => s.is_empty(),
            Some(b'*') => {
                let (any_dot, rest) = if p.get(1) == Some(&b'*') {
                    (true, &p[2..])
                } else {
                    (false, &p[1..])
                };
                for i in 0..=s.len() {
                    if glob(rest, &s[i..]) {
                        return true;
                    }
                    if i < s.len() && s[i] == b'.' && !any_dot {
                        return false;
                    }
                }
                false
            }
            Some(&c) => s.first() == Some(&c) && glob(&p[1..], &s[1..]),
        }
    }

    fn p(s: &str) -> Pattern {
        Pattern::new(s).unwrap()
    }

    fn nfa_matches(pattern: &str, name: &str) -> bool {
        Nfa::compile(pattern.as_bytes())
            .unwrap()
            .matches(name.as_bytes())
    }

    #[test]
    fn patterns_match_within_and_across_segments() {
        let farm = p("farm.*");
        assert!(farm.matches("farm.cow"));
        assert!(!farm.matches("farm.cow.calf"));
        assert!(!farm.matches("farmer.cow"));
        assert!(!farm.matches("farm"));
        let deep = p("farm.**");
        assert!(deep.matches("farm.cow.calf"));
        assert!(deep.matches("farm.cow"));
        assert!(!deep.matches("farm"));
        assert!(p("**").matches("a.b.c"));
        assert!(p("c*w").matches("cow"));
        assert!(p("c*w").matches("cw"));
        assert!(!p("c*w").matches("c.w"));
        assert!(p("a***b").matches("a.x.b"), "a run of stars is **");
        assert!(p("*.*").matches("a.b"));
        assert!(!p("*.*").matches("a.b.c"));
        assert!(p("a.**.z").matches("a.b.c.z"));
        assert!(!p("a.**.z").matches("a.z"));
    }

    #[test]
    fn limits_give_a_reason() {
        let many = vec!["*"; MAX_WILDCARDS + 1].join("a");
        let err = Pattern::new(&many).unwrap_err();
        assert!(err.contains("17 wildcards (at most 16)"), "{err}");
        assert!(Pattern::new(&vec!["*"; MAX_WILDCARDS].join("a")).is_ok());
        let long = "a".repeat(MAX_PATTERN_LEN + 1);
        assert!(Pattern::new(&long).unwrap_err().contains("longer than 128"));
        let full = "a.".repeat(63) + "*a";
        assert_eq!(full.len(), 128);
        let pat = p(&full);
        assert!(pat.matches(&("a.".repeat(63) + "xxa")));
        assert!(!pat.matches(&("a.".repeat(63) + "xxb")));
        assert!(Pattern::new("a b*").unwrap_err().contains("' '"));
        assert!(Pattern::new("a..*").unwrap_err().contains("empty segment"));
    }

    /// Issue 9, item 1: `*a*a*a*…` against a long run of `a`s was
    /// exponential (3.2 s for 14 bytes against 64 characters).
    #[test]
    fn adversarial_patterns_match_in_linear_time() {
        let pat = p(&format!("{}b", "*a".repeat(15)));
        let name = "a".repeat(128);
        let started = std::time::Instant::now();
        for _ in 0..1000 {
            assert!(!pat.matches(&name));
        }
        // 1000 matches of 128 bytes: microseconds each; the old matcher
        // did not finish one. Wide bound for a loaded machine.
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }

    #[test]
    fn covers_compares_pattern_against_pattern() {
        let farm = [p("farm.*")];
        assert_eq!(covers(&p("farm.*"), &farm), Cover::Yes);
        assert_eq!(covers(&p("farm.cow"), &farm), Cover::Yes);
        assert!(matches!(covers(&p("farm.**"), &farm), Cover::No { .. }));
        assert!(matches!(
            covers(&p("farm.cow.calf"), &farm),
            Cover::No { .. }
        ));
        assert!(matches!(covers(&p("**"), &[p("*")]), Cover::No { .. }));
        assert_eq!(covers(&p("**"), &[p("**")]), Cover::Yes);
        assert_eq!(covers(&p("a.**"), &[p("**")]), Cover::Yes);
        assert_eq!(covers(&p("farm.c*"), &farm), Cover::Yes);
        assert_eq!(covers(&p("farm.*.x"), &[p("farm.**")]), Cover::Yes);
        assert_eq!(covers(&p("a*b*c"), &[p("a*")]), Cover::Yes);
        assert!(matches!(covers(&p("a*"), &[p("a*b*c")]), Cover::No { .. }));
    }

    #[test]
    fn claims_cover_as_a_union() {
        let two = [p("a.*"), p("a.*.*")];
        // Union: one or two segments after `a.` are covered...
        assert_eq!(covers(&p("a.*"), &two), Cover::Yes);
        assert_eq!(covers(&p("a.*.*"), &two), Cover::Yes);
        assert_eq!(covers(&p("a.x.y"), &two), Cover::Yes);
        // ...three are not, so `a.**` is refused, with a witness.
        match covers(&p("a.**"), &two) {
            Cover::No { witness } => {
                assert!(p("a.**").matches(&witness));
                assert!(two.iter().all(|c| !c.matches(&witness)), "{witness}");
            }
            other => panic!("{other:?}"),
        }
        // Neither claim alone covers `a.*` | `a.*.*` split across them.
        let split = [p("a.b*"), p("a.*")];
        assert_eq!(covers(&p("a.**"), &[p("a.*"), p("a.*.**")]), Cover::Yes);
        assert_eq!(covers(&p("a.b*"), &split), Cover::Yes);
        assert_eq!(
            covers(&p("x*"), &[p("xa*"), p("xb*"), p("x")]),
            Cover::No {
                witness: "xx".into()
            },
            "`x` followed by anything but `a` or `b` is not covered"
        );
    }

    #[test]
    fn an_exploding_claim_set_fails_closed_and_fast() {
        // `*` and `*.**` together cover every name, which the check proves;
        // fourteen claims that each count a letter in the first segment
        // make the determinised union explode: refused, not slow.
        let base = [p("*"), p("*.**")];
        assert_eq!(covers(&p("**"), &base), Cover::Yes);
        let mut claims = base.to_vec();
        claims.extend(
            "bcdefghijklmno"
                .chars()
                .map(|c| p(&format!("**{}", vec![c.to_string(); 8].join("*")))),
        );
        let started = std::time::Instant::now();
        assert_eq!(covers(&p("**"), &claims), Cover::TooComplex);
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        // And the budget is what stops it.
        let claims = [p("a.*"), p("a.*.**")];
        assert_eq!(
            covers_within(&p("a.**"), &claims, &mut 2),
            Cover::TooComplex
        );
        let mut budget = 1000;
        assert_eq!(covers_within(&p("a.**"), &claims, &mut budget), Cover::Yes);
        assert!(budget < 1000, "what it spent is taken off");
    }

    #[test]
    fn the_nfa_agrees_with_the_reference_on_edge_cases() {
        for (pat, name) in [
            ("", ""),
            ("", "a"),
            ("*", ""),
            ("**", ""),
            ("*", "."),
            ("**", "."),
            ("a*", "a"),
            ("*a", "a"),
            ("*.", "."),
            ("a**.b", "a.b"),
        ] {
            assert_eq!(
                nfa_matches(pat, name),
                glob(pat.as_bytes(), name.as_bytes()),
                "{pat:?} on {name:?}"
            );
        }
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        /// Strings over a small alphabet, where collisions are frequent.
        fn over(chars: &'static [char], max: usize) -> impl Strategy<Value = String> {
            proptest::collection::vec(proptest::sample::select(chars), 0..=max)
                .prop_map(|v| v.into_iter().collect())
        }

        /// Every name of length 1..=max over `chars`.
        fn all_names(chars: &[u8], max: usize) -> Vec<String> {
            let mut out = Vec::new();
            let mut layer = vec![String::new()];
            for _ in 0..max {
                let mut next = Vec::new();
                for s in &layer {
                    for &c in chars {
                        let mut t = s.clone();
                        t.push(c as char);
                        next.push(t);
                    }
                }
                out.extend(next.iter().cloned());
                layer = next;
            }
            out
        }

        /// Patterns valid by the name rules, over a small alphabet: one
        /// to three segments of one to three of `a b *`.
        fn valid_pattern() -> impl Strategy<Value = Pattern> {
            proptest::collection::vec(over(&['a', 'b', '*'], 3), 1..=3)
                .prop_filter_map("empty segment", |segs| Pattern::new(&segs.join(".")).ok())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            #[test]
            fn the_linear_matcher_agrees_with_backtracking(
                pat in over(&['a', 'b', '.', '*'], 10),
                name in over(&['a', 'b', '.', '*'], 12),
            ) {
                prop_assert_eq!(
                    nfa_matches(&pat, &name),
                    glob(pat.as_bytes(), name.as_bytes())
                );
            }

            #[test]
            fn names_and_patterns_validate_without_panicking(s in ".{0,140}") {
                match (crate::message::TopicName::new(&s), Pattern::new(&s)) {
                    (Ok(name), Ok(pat)) => {
                        prop_assert_eq!(name.as_str(), s.as_str());
                        prop_assert!(pat.matches(&s), "a name matches itself");
                    }
                    (Ok(_), Err(e)) => prop_assert!(false, "a name is a pattern: {}", e),
                    (Err(e), _) => prop_assert!(!e.is_empty()),
                }
            }

            #[test]
            fn valid_names_round_trip(
                segs in proptest::collection::vec("[A-Za-z0-9_-]{1,8}", 1..8)
            ) {
                let s = segs.join(".");
                let name = crate::message::TopicName::new(&s);
                prop_assert_eq!(name.map(|n| n.as_str().to_string()), Ok(s.clone()));
                prop_assert!(Pattern::new(&s).is_ok());
            }

        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(400))]

            /// Exactness both ways: a `Yes` is checked against every name
            /// of up to 6 bytes (soundness within the enumeration), a `No`
            /// by its witness (which the reference matcher must confirm:
            /// completeness, whatever the witness's length).
            #[test]
            fn covers_agrees_with_brute_force(
                request in valid_pattern(),
                claims in proptest::collection::vec(valid_pattern(), 1..=3),
            ) {
                let verdict = covers(&request, &claims);
                let g = |p: &Pattern, n: &str| glob(p.as_str().as_bytes(), n.as_bytes());
                match verdict {
                    Cover::Yes => {
                        for name in all_names(b"ab.c", 6) {
                            if g(&request, &name) {
                                prop_assert!(
                                    claims.iter().any(|c| g(c, &name)),
                                    "allowed, yet {} is not covered", name
                                );
                            }
                        }
                    }
                    Cover::No { witness } => {
                        prop_assert!(!witness.is_empty());
                        prop_assert!(g(&request, &witness), "{}", witness);
                        prop_assert!(claims.iter().all(|c| !g(c, &witness)), "{}", witness);
                    }
                    Cover::TooComplex => prop_assert!(false, "small patterns are decided"),
                }
            }
        }
    }
}
