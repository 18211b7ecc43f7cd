//! Cross-check of the RE2 → Java translation against the real java.util.regex:
//! for every (pattern, string) pair of a corpus, `Pattern.compile(java).matcher(s).find()`
//! (what Timestream's `regexp_like` does) must equal the RE2 answer with Prometheus'
//! full anchoring. The RE2 answer comes from the `regex` crate with `^(?s:…)$`
//! (Prometheus 3) or `^(?:…)$` (2.x); where the regex crate's syntax differs from
//! RE2's (ASCII Perl classes, RE2's flat bracket classes, octal, `\Q…\E`, literal
//! `{`), the corpus gives the RE2 meaning as an equivalent regex-crate pattern.
//! Skipped with a notice when no JDK is installed.

#[path = "support/tools.rs"]
mod tools;

use std::io::Write;
use std::process::{Command, Stdio};

use timestream_prometheus_connector::read::regex::{translate, RegexOptions};

const JAVA_SRC: &str = r#"
import java.io.*;
import java.nio.charset.StandardCharsets;
import java.util.regex.*;

public class RegexCheck {
    static String unhex(String h) {
        byte[] b = new byte[h.length() / 2];
        for (int i = 0; i < b.length; i++) b[i] = (byte) Integer.parseInt(h.substring(2 * i, 2 * i + 2), 16);
        return new String(b, StandardCharsets.UTF_8);
    }
    public static void main(String[] args) throws Exception {
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        PrintStream out = new PrintStream(new BufferedOutputStream(System.out), false, "UTF-8");
        String line;
        while ((line = in.readLine()) != null) {
            String[] f = line.split(" ", -1);
            try {
                Pattern p = Pattern.compile(unhex(f[0]));
                out.println(p.matcher(unhex(f[1])).find() ? "1" : "0");
            } catch (PatternSyntaxException e) {
                out.println("E " + e.getDescription());
            }
        }
        out.flush();
    }
}
"#;

/// (RE2 pattern, equivalent regex-crate pattern when the syntax differs).
const CORPUS: &[(&str, Option<&str>)] = &[
    ("prom", None),
    ("prom.*", None),
    (".*", None),
    (".+", None),
    (".", None),
    ("(?-s).", None),
    ("(?s:a.b)", None),
    ("a|b|", None),
    ("(a|b)+c", None),
    ("[a-c]+", None),
    ("[^a-c]", None),
    ("[^\\n]", None),
    ("x?", None),
    ("^foo$", None),
    ("foo$", None),
    ("a^b", None),
    ("\\Afoo\\z", None),
    ("(?m)^a$", None),
    ("(?m)a$\\n^b", None),
    ("(?i)straße", None),
    ("(?i)k", None),
    ("(?i)é", None),
    ("(?i)[a-z]+", None),
    ("(?i:ΑΒΓ)", None),
    ("[[:alpha:]]+", None),
    ("[[:^digit:]]*", None),
    ("[[:punct:]]", None),
    ("[[:space:]]+", None),
    ("[[:word:]]+", None),
    ("\\pL+", None),
    ("\\p{Greek}+", None),
    ("\\PL", None),
    ("\\p{Lu}", None),
    ("\\pN", None),
    ("(?P<x>a)b", None),
    ("(?<y>a)b", None),
    ("(?U)a+", None),
    ("a{2,3}", None),
    ("a{2,}", None),
    ("a{2}", None),
    ("a*?", None),
    ("(?:)", None),
    ("()", None),
    ("(|a)", None),
    ("(a)(b)?", None),
    ("a\\.b", None),
    ("\\x{1F600}", None),
    ("😀+", None),
    ("[😀-😂]", None),
    ("\\\\", None),
    ("'", None),
    ("''", None),
    ("\"", None),
    ("a b", None),
    ("#x", None),
    ("[\\]]", None),
    ("[\\-a]", None),
    ("[a-]", None),
    ("\\a\\f\\t\\n\\r", None),
    ("\\x41\\x{42}", None),
    ("é|É", None),
    ("[^é]+", None),
    ("\\B", None),
    ("[^\\x00-\\x{10FFFF}]", None),
    ("a|[^\\x00-\\x{10FFFF}]", None),
    // RE2 syntax the regex crate reads differently: the RE2 meaning spelled out.
    ("x{,5}", Some("x\\{,5\\}")),
    ("a{", Some("a\\{")),
    ("\\123", Some("S")),
    ("\\0", Some("\\x00")),
    ("[[]", Some("\\[")),
    ("[a&&b]", Some("[a&b]")),
    ("[a[b]]", Some("[a\\[b]\\]")),
    ("[]a]", Some("[\\]a]")),
    ("[a~~b]", Some("[a~b]")),
    ("\\v", Some("\\x0B")),
    ("\\s+", Some("[\\t\\n\\x0C\\r ]+")),
    ("\\S", Some("[^\\t\\n\\x0C\\r ]")),
    ("\\d+", Some("[0-9]+")),
    ("\\D", Some("[^0-9]")),
    ("\\w+", Some("[0-9A-Za-z_]+")),
    ("\\W", Some("[^0-9A-Za-z_]")),
    ("[\\d\\s]+", Some("[0-9\\t\\n\\x0C\\r ]+")),
    ("[^\\w]", Some("[^0-9A-Za-z_]")),
    ("\\bfoo\\b", Some("(?-u:\\b)foo(?-u:\\b)")),
    (".*\\bfoo\\b.*", Some(".*(?-u:\\b)foo(?-u:\\b).*")),
    ("\\Qa.b*\\E+", Some("a\\.b\\*+")),
    ("\\Q'\\E", Some("'")),
    ("\\<", Some("<")),
    ("\\%", Some("%")),
];

const STRINGS: &[&str] = &[
    "",
    "prom",
    "prometheus",
    "a",
    "b",
    "c",
    "ab",
    "aab",
    "aaa",
    "abc",
    "ac",
    "bc",
    "\n",
    "a\nb",
    "a\n",
    "foo",
    "foo\n",
    "x{,5}",
    "x",
    "xx",
    "a{",
    "S",
    "\0",
    "[",
    "[]",
    "&",
    "b]",
    "ab]",
    "~",
    "\x0B",
    "\x0C",
    " \t",
    "123",
    "٣",
    "é",
    "É",
    "straße",
    "STRASSE",
    "STRAẞE",
    "K",
    "k",
    "\u{212A}",
    "αβγ",
    "ΑΒΓ",
    "😀",
    "😁😂",
    "a.b",
    "axb",
    "a.b**",
    "'",
    "''",
    "\"",
    "\\",
    "a b",
    "#x",
    "]",
    "-",
    ":",
    "foo bar",
    "_foo_",
    "é foo",
    "fooé",
    "foo.bar",
    "a\rb",
    "\u{2028}",
    "\u{85}",
    "\x07\x0C\t\n\r",
    "AB",
    "<",
    "%",
];

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

/// Runs the Java checker over `pairs` and returns one answer line per pair.
fn run_java(pairs: &[(String, String)]) -> Option<Vec<String>> {
    if !tools::require_jdk("the java.util.regex cross-check") {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("RegexCheck.java"), JAVA_SRC).unwrap();
    let st = Command::new("javac")
        .arg("RegexCheck.java")
        .current_dir(dir.path())
        .status()
        .unwrap();
    assert!(st.success(), "javac failed");
    let mut child = Command::new("java")
        .args(["-cp", ".", "RegexCheck"])
        .current_dir(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = String::new();
    for (p, s) in pairs {
        input.push_str(&format!("{} {}\n", hex(p), hex(s)));
    }
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()).unwrap());
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(out.status.success());
    Some(
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect(),
    )
}

fn cross_check(opts: RegexOptions) {
    let mut pairs = Vec::new();
    let mut expected = Vec::new();
    for (re2, oracle) in CORPUS {
        let java = translate(re2, opts)
            .unwrap_or_else(|e| panic!("{re2:?} did not translate: {e}"))
            .java;
        let body = oracle.unwrap_or(re2);
        let wrapped = if opts.dot_matches_newline {
            format!("^(?s:{body})$")
        } else {
            format!("^(?:{body})$")
        };
        let oracle_re = regex::Regex::new(&wrapped).unwrap();
        for s in STRINGS {
            pairs.push((java.clone(), s.to_string()));
            expected.push((re2, java.clone(), *s, oracle_re.is_match(s)));
        }
    }
    let Some(answers) = run_java(&pairs) else {
        return;
    };
    assert_eq!(answers.len(), expected.len());
    assert!(answers.iter().any(|a| a == "1") && answers.iter().any(|a| a == "0"));
    let mut failures = Vec::new();
    for ((re2, java, s, want), got) in expected.iter().zip(&answers) {
        let want = if *want { "1" } else { "0" };
        if got != want {
            failures.push(format!(
                "{re2:?} (java {java:?}) on {s:?}: RE2 {want}, Java {got}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} disagreements:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn java_agrees_with_re2_prometheus3() {
    cross_check(RegexOptions {
        dot_matches_newline: true,
    });
}

#[test]
fn java_agrees_with_re2_prometheus2() {
    cross_check(RegexOptions {
        dot_matches_newline: false,
    });
}

/// Negative control: the upstream approach (the RE2 text handed to Java with
/// only `^(?:…)$` around it) disagrees with RE2 on this corpus, so the
/// cross-check above is able to catch a wrong translation.
#[test]
fn untranslated_patterns_disagree_with_re2() {
    let mut pairs = Vec::new();
    let mut expected = Vec::new();
    for (re2, oracle) in CORPUS {
        let oracle_re = regex::Regex::new(&format!("^(?s:{})$", oracle.unwrap_or(re2))).unwrap();
        for s in STRINGS {
            pairs.push((format!("^(?:{re2})$"), s.to_string()));
            expected.push(if oracle_re.is_match(s) { "1" } else { "0" });
        }
    }
    let Some(answers) = run_java(&pairs) else {
        return;
    };
    let wrong = answers
        .iter()
        .zip(&expected)
        .filter(|(a, e)| a != *e)
        .count();
    assert!(wrong > 50, "only {wrong} disagreements");
}
