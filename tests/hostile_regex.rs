//! RE2 → Java regex translator under generated input.
//!
//! 1. Generated regexes (a grammar over the constructs whose meaning the `regex` crate
//!    shares with RE2: literals, `.`, bracket and POSIX classes, Unicode classes,
//!    anchors, groups of every kind, flags, greedy/lazy/counted repetition) and
//!    generated strings: whenever the translator accepts a pattern, the Java pattern it
//!    emits, run through timestream-local's java.util.regex engine (`regexp_like`, which
//!    is `find()`), must agree with `^(?s:…)$` in the `regex` crate (Prometheus 3
//!    semantics) on every string.
//! 2. Arbitrary strings as patterns: the translator never panics, and every Java pattern
//!    it emits compiles in the Java engine.

use proptest::prelude::*;
use proptest::test_runner::{Config as PtConfig, TestRunner};
use rusqlite::Connection;
use timestream_prometheus_connector::read::regex::{translate, RegexOptions};

/// Characters patterns and subjects are drawn from: ASCII letters and digits, case
/// pairs whose folding differs between ASCII and Unicode (é/É, k/K/Kelvin sign, ſ/s),
/// line terminators Java treats specially, regex metacharacters, a non-BMP char.
const ALPHABET: &[char] = &[
    'a', 'b', 'c', 'A', 'B', 'k', 'K', '\u{212A}', 's', 'S', '\u{17F}', 'é', 'É', '0', '7', '_',
    ' ', '\n', '\r', '\u{85}', '\u{2028}', '.', '*', '+', '?', '(', ')', '[', ']', '{', '}', '|',
    '^', '$', '\\', '-', '&', ':', '#', '\'', '"', '<', '>', 'λ', '😀', '\0',
];

fn arb_char() -> impl Strategy<Value = char> {
    prop::sample::select(ALPHABET)
}

fn leaf() -> BoxedStrategy<String> {
    prop_oneof![
        4 => arb_char().prop_map(|c| regex::escape(&c.to_string())),
        1 => Just(".".to_string()),
        1 => Just("".to_string()),
        1 => (arb_char(), arb_char(), any::<bool>()).prop_map(|(a, b, neg)| {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            // Escape both ends: any char is legal when escaped inside a class.
            format!(
                "[{}{}-{}]",
                if neg { "^" } else { "" },
                regex::escape(&lo.to_string()).replace('-', "\\-"),
                regex::escape(&hi.to_string()).replace('-', "\\-")
            )
        }),
        1 => prop::sample::select(vec![
            "[[:alpha:]]", "[[:^digit:]]", "[[:space:]]", "[[:punct:]x]", "[[:upper:][:digit:]]",
            "\\pL", "\\PL", "\\p{Lu}", "\\p{Greek}", "\\pN", "[\\p{Greek}a]", "[^\\pL]",
            "\\x{1F600}", "\\x41", "\\t", "\\n", "\\f", "\\r", "\\a", "\\v",
            "^", "$", "\\A", "\\z", "[^\\n]", "[a-]", "[]a]", "[^]a]",
        ])
        .prop_map(str::to_string),
    ]
    .boxed()
}

fn arb_regex() -> impl Strategy<Value = String> {
    leaf().prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            3 => prop::collection::vec(inner.clone(), 1..4).prop_map(|v| v.concat()),
            2 => prop::collection::vec(inner.clone(), 2..4).prop_map(|v| v.join("|")),
            1 => inner.clone().prop_map(|r| format!("({r})")),
            1 => inner.clone().prop_map(|r| format!("(?P<n>{r})")),
            1 => (inner.clone(), prop::sample::select(vec!["i", "s", "-s", "m", "U", "im", "i-s", "-i"]))
                .prop_map(|(r, f)| format!("(?{f}:{r})")),
            1 => (inner.clone(), prop::sample::select(vec!["i", "s", "-s", "m"]))
                .prop_map(|(r, f)| format!("(?{f}){r}")),
            3 => (inner, prop::sample::select(vec![
                "*", "+", "?", "*?", "+?", "??", "{2}", "{0,2}", "{1,}", "{2,3}?", "{0}",
            ]))
            .prop_map(|(r, q)| format!("(?:{r}){q}")),
        ]
    })
}

fn arb_subject() -> impl Strategy<Value = String> {
    prop::collection::vec(arb_char(), 0..6).prop_map(|v| v.into_iter().collect())
}

fn java_engine() -> Connection {
    let conn = Connection::open_in_memory().expect("sqlite");
    timestream_local::sql::register_functions(&conn).expect("functions");
    conn
}

/// Known timestream-local gap (not a connector bug): its Java engine re-escapes a `<` or
/// `>` inside a bracket class as `\<`/`\>` for the `regex` crate, which rejects them
/// there, so `[<a]` fails to compile in the store although java.util.regex (and so
/// Timestream) accepts it. Such cases are skipped, and only when the pattern has one.
fn local_class_angle_gap(pattern: &str, err: &str) -> bool {
    (pattern.contains('<') || pattern.contains('>'))
        && (err.contains("invalid escape sequence found in character class")
            || err.contains("invalid range boundary")
            // The same failure when its message holds a NUL: SQLite cannot carry it.
            || err == "constraint failed")
}

/// `regexp_like(subject, pattern)` in timestream-local (java.util.regex `find()`).
fn java_find(conn: &Connection, pattern: &str, subject: &str) -> Result<bool, String> {
    conn.query_row("SELECT regexp_like(?1, ?2)", (subject, pattern), |r| {
        r.get::<_, bool>(0)
    })
    .map_err(|e| e.to_string())
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(PtConfig {
        cases,
        failure_persistence: None,
        ..PtConfig::default()
    })
}

#[test]
fn translated_patterns_agree_with_re2_semantics() {
    let conn = java_engine();
    let opts = RegexOptions::default();
    let translated = std::cell::Cell::new(0usize);
    let strat = (arb_regex(), prop::collection::vec(arb_subject(), 8));
    runner(1500)
        .run(&strat, |(re, subjects)| {
            let Ok(rust) = regex::Regex::new(&format!("^(?s:{re})$")) else {
                // Outside the shared syntax; only require no panic.
                let _ = translate(&re, opts);
                return Ok(());
            };
            let t = match translate(&re, opts) {
                Ok(t) => t,
                // The translator may refuse (e.g. a size limit) but only with an error.
                Err(e) => {
                    prop_assert!(!e.to_string().is_empty());
                    return Ok(());
                }
            };
            translated.set(translated.get() + 1);
            prop_assert_eq!(
                t.matches_empty,
                rust.is_match(""),
                "matches_empty of {:?}",
                re
            );
            for s in subjects.iter().map(String::as_str).chain([""]) {
                let want = rust.is_match(s);
                let got = match java_find(&conn, &t.java, s) {
                    Ok(g) => g,
                    Err(e) if local_class_angle_gap(&re, &e) => return Ok(()),
                    Err(e) => {
                        return Err(TestCaseError::fail(format!("{re:?} → {:?}: {e}", t.java)))
                    }
                };
                prop_assert_eq!(got, want, "pattern {:?} → java {:?} on {:?}", re, t.java, s);
            }
            Ok(())
        })
        .unwrap();
    // The generator must mostly produce translatable patterns, or the test proves little.
    let n = translated.get();
    assert!(n > 1000, "only {n} patterns translated");
}

#[test]
fn dot_without_newline_mode_agrees_with_prometheus_2() {
    let conn = java_engine();
    let opts = RegexOptions {
        dot_matches_newline: false,
    };
    let strat = (arb_regex(), prop::collection::vec(arb_subject(), 6));
    runner(500)
        .run(&strat, |(re, subjects)| {
            let Ok(rust) = regex::Regex::new(&format!("^(?:{re})$")) else {
                let _ = translate(&re, opts);
                return Ok(());
            };
            let Ok(t) = translate(&re, opts) else {
                return Ok(());
            };
            for s in &subjects {
                let got = match java_find(&conn, &t.java, s) {
                    Ok(g) => g,
                    Err(e) if local_class_angle_gap(&re, &e) => return Ok(()),
                    Err(e) => return Err(TestCaseError::fail(e)),
                };
                prop_assert_eq!(got, rust.is_match(s), "{:?} → {:?} on {:?}", re, t.java, s);
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn arbitrary_patterns_never_panic_and_emit_valid_java() {
    let conn = java_engine();
    let pattern = prop_oneof![
        any::<String>(),
        prop::collection::vec(arb_char(), 0..24).prop_map(|v| v.into_iter().collect::<String>()),
        "[\\\\()\\[\\]{}|*+?.^$a-c0-9:PpQEx<>-]{0,24}",
    ];
    runner(3000)
        .run(&(pattern, arb_subject()), |(p, s)| {
            let opts = RegexOptions::default();
            if let Ok(t) = translate(&p, opts) {
                match java_find(&conn, &t.java, &s) {
                    Ok(_) => {}
                    Err(e) if local_class_angle_gap(&p, &e) => {}
                    Err(e) => {
                        return Err(TestCaseError::fail(format!("{p:?} → {:?}: {e}", t.java)))
                    }
                }
            }
            Ok(())
        })
        .unwrap();
}
