//! Cross-checks `regexp_like` (as registered on SQLite by the SQL engine) against
//! java.util.regex: for every pattern × string, `Pattern.compile(p).matcher(s).find()` must
//! agree. Patterns the engine rejects must either be rejected by Java too or be constructs the
//! engine deliberately refuses (listed below). Skips with a notice when no JDK is installed.

#[path = "../../tests/support/tools.rs"]
mod tools;

use rusqlite::Connection;
use std::io::Write;
use std::process::{Command, Stdio};

const JAVA: &str = r#"
import java.io.*;
import java.nio.charset.StandardCharsets;
import java.util.regex.*;

public class RegexOracle {
    static String unhex(String h) {
        byte[] b = new byte[h.length() / 2];
        for (int i = 0; i < b.length; i++) b[i] = (byte) Integer.parseInt(h.substring(2 * i, 2 * i + 2), 16);
        return new String(b, StandardCharsets.UTF_8);
    }
    public static void main(String[] args) throws Exception {
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        StringBuilder out = new StringBuilder();
        String line;
        while ((line = in.readLine()) != null) {
            String[] parts = line.split("\t", -1);
            Pattern p;
            try {
                p = Pattern.compile(unhex(parts[0]));
            } catch (PatternSyntaxException e) {
                out.append("E\n");
                continue;
            }
            out.append(p.matcher(unhex(parts[1])).find() ? "1\n" : "0\n");
        }
        System.out.print(out);
    }
}
"#;

/// Patterns the engine refuses on purpose although Java accepts them (no exact Rust equivalent).
const DELIBERATELY_UNSUPPORTED: &[&str] = &[
    "(?=a)",
    "(?!a)",
    "(?<=a)b",
    "(?>a)",
    r"(a)\1",
    "a++",
    "(?m)^a$",
    r"(?U)\w",
    "a$b",
    r"\R",
    r"\X",
    r"\p{InGreek}",
    r"(?i)\p{Lu}",
];

const PATTERNS: &[&str] = &[
    // Punctuation that is syntax in Rust classes but literal in Java ones.
    r"[<a]",
    r"[^<>]+",
    r"x[>=]y",
    // Shapes the Prometheus connectors send.
    "^(?:foo)$",
    r"\A(?:foo|bar)\z",
    r"(?s)\A(?:.*)\z",
    r"(?s)\A(?:.+)\z",
    "(?s:^(?:a.b)$)",
    r"^(?:[^\n]*)$",
    r"^(?:fo[^\n]*)$",
    r"(?iu)\A(?:foo)\z",
    r"\A(?:\[\&\{\.)\z",
    r"\A(?:\x{1F600})\z",
    r"\A(?:\Qa.b*\E)\z",
    r"\A(?:\p{L}+)\z",
    r"\A(?:\p{IsGreek}+)\z",
    // What the connector's RE2 -> Java translation emits for \b, \B, (?m)^, (?m)$ and [^\x00-\x{10FFFF}].
    r"\A(?:(?:(?<=[0-9A-Z_a-z])(?![0-9A-Z_a-z])|(?<![0-9A-Z_a-z])(?=[0-9A-Z_a-z]))foo(?:(?<=[0-9A-Z_a-z])(?![0-9A-Z_a-z])|(?<![0-9A-Z_a-z])(?=[0-9A-Z_a-z])))\z",
    r"(?:(?<=[0-9A-Z_a-z])(?![0-9A-Z_a-z])|(?<![0-9A-Z_a-z])(?=[0-9A-Z_a-z]))a",
    r"o(?:(?<=[0-9A-Z_a-z])(?=[0-9A-Z_a-z])|(?<![0-9A-Z_a-z])(?![0-9A-Z_a-z]))",
    r"(?<![^\n])b(?![^\n])",
    r"\A(?:(?s:.)*(?<![^\n])c)",
    r"\A(?:[^\x{0}-\x{10FFFF}])\z",
    r"[^\x{0}-\x{10FFFF}]|a",
    // Anchors and line terminators.
    "foo",
    "^foo",
    "foo$",
    "^$",
    "$",
    "^",
    r"a\z",
    r"a\Z",
    "a$",
    r"\r$",
    "(?d)a$",
    r"\n$",
    "(a|b$)",
    r"\Gfoo",
    // Dot and flags.
    "a.b",
    "(?s)a.b",
    ".",
    "(?i)foo",
    "(?i)é",
    "(?iu)é",
    "(?iu)straße",
    "(?i)k",
    "(?iu)k",
    "(?i)[a-c]+",
    "(?i)[^a]",
    "a(?i)b",
    "(?:(?i)a)b",
    "(?x)a b # c",
    "(?-i)a",
    r"(?iu)[\[a-c]+",
    "(?iu)[^é]",
    "(?iu)[é-ë]",
    "(?i)[é-ë]",
    "{a}",
    "a}",
    "]",
    // Escapes and classes.
    r"\d+\s\w",
    r"\D\S\W",
    r"\h",
    r"\v",
    r"\t",
    r"\x41",
    r"\u00e9",
    r"\0101",
    r"\cA",
    r"\bfoo\b",
    r"\Bo",
    "[a-z&&[^aeiou]]+",
    r"[\[\]]",
    "[^abc]",
    "[a-]",
    "[]a]",
    "[^]a]",
    "[[:alpha:]]",
    r"[\d-z]",
    r"\p{Lu}",
    r"\P{L}",
    r"\p{Punct}",
    r"\p{IsAlphabetic}",
    r"\p{Nd}",
    r"\Qa\E.",
    r"\Q(\E",
    "a#b",
    // Quantifiers and groups.
    "a{2,3}",
    "^a{2,}$",
    "^a{2}$",
    "(a|b)*c",
    "a*?b",
    "a|",
    "()",
    "(?<name>x)+",
    "^(?:a|ab)(?:c|bcd)$",
    // Java errors.
    "(?P<n>a)",
    r"\p{Greek}",
    "[[]",
    "x{,5}",
    "a{",
    "*a",
    "(a",
    "a)",
    r"\y",
    "[b-a]",
];

const STRINGS: &[&str] = &[
    "", "a", "b", "c", "foo", "FOO", "xfoox", "bar", "a.b", "axb", "a\nb", "a\rb", "abc", "abc\n",
    "abc\r\n", "a\n", "a\r\n", "a\r", "\r\n", "\n", "é", "É", "straße", "STRASSE", "αβγ", "😀",
    "[&{.", "aa", "aaa", "ab", "abcd", "x y", "1 a", "7 _", "\u{2028}", "\t", "A", ":", "foo bar",
    "a b", "\u{b}", "k", "K", "\u{212A}", "a.b*", "(", "-", "]", "x", "xx", "٣", "AB", "Ab", "ac",
    "[A", "Ë", "ë", "{a}", "}", "a foo.", "afoo", "éfooé", "a\nb\nc", "b\n", "x\nc", "xc", "foo\n",
];

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn regexp_like_agrees_with_java_util_regex() {
    if !tools::require_jdk("the java.util.regex cross-check") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("RegexOracle.java"), JAVA).unwrap();
    let st = Command::new("javac")
        .arg("RegexOracle.java")
        .current_dir(dir.path())
        .status()
        .unwrap();
    assert!(st.success(), "javac failed");

    let mut input = String::new();
    for p in PATTERNS.iter().chain(DELIBERATELY_UNSUPPORTED) {
        for s in STRINGS {
            input += &format!("{}\t{}\n", hex(p), hex(s));
        }
    }
    let mut child = Command::new("java")
        .args(["-cp", ".", "RegexOracle"])
        .current_dir(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let java: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();

    let conn = Connection::open_in_memory().unwrap();
    timestream_local::sql::register_functions(&conn).unwrap();
    let mut st = conn.prepare("SELECT regexp_like(?1, ?2)").unwrap();
    let mut k = 0;
    let mut mismatches = Vec::new();
    for p in PATTERNS.iter().chain(DELIBERATELY_UNSUPPORTED) {
        for s in STRINGS {
            let ours: Result<bool, String> = st
                .query_row([*s, *p], |r| r.get::<_, bool>(0))
                .map_err(|e| e.to_string());
            let theirs = java[k].as_str();
            k += 1;
            let ok = match (&ours, theirs) {
                (Err(_), "E") => true,
                (Err(_), _) => DELIBERATELY_UNSUPPORTED.contains(p),
                (Ok(_), "E") => false,
                (Ok(b), j) => (*b && j == "1") || (!*b && j == "0"),
            };
            if !ok {
                mismatches.push(format!(
                    "pattern {p:?} on {s:?}: ours {ours:?}, java {theirs}"
                ));
            }
        }
    }
    assert_eq!(k, java.len());
    // The oracle really ran: it produced matches, non-matches and syntax errors.
    for v in ["1", "0", "E"] {
        assert!(
            java.iter().filter(|x| *x == v).count() > 10,
            "too few {v} answers"
        );
    }
    // A deliberately unsupported pattern must really be refused (not silently translated).
    for p in DELIBERATELY_UNSUPPORTED {
        assert!(
            st.query_row(["x", *p], |r| r.get::<_, bool>(0)).is_err(),
            "{p} was accepted"
        );
    }
    assert!(
        mismatches.is_empty(),
        "{} disagreements:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}
