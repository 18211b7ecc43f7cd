//! Prometheus (RE2) regex → Java (`java.util.regex`, what Timestream's
//! `regexp_like` uses) translation.
//!
//! The pattern is first normalised by a small RE2 lexer (`normalize`) so that
//! regex-syntax sees exactly RE2's meaning: `\Q…\E` expanded, octal and
//! punctuation escapes turned into `\x{..}`, every literal inside a bracket
//! class written as `\x{..}` (RE2 has no nested classes or `&&`/`--`/`~~`
//! operators, regex-syntax does), `{` that is not a repetition made literal,
//! and syntax RE2 rejects (`(?x)`, `\<`, `\1`, …) rejected. The parsed AST has
//! its Perl classes replaced by RE2's ASCII definitions, the HIR (explicit
//! code-point ranges, case folding already applied) is then re-emitted as a
//! Java pattern using only constructs whose meaning is identical in Java:
//! escaped literals, `[…]` of `\x{..}` ranges, `(?:…)`, greedy counted
//! repetition, `\A`, `\z` and lookarounds for `\b`/multi-line anchors.

use regex_syntax::ast::{self, Ast, ClassPerlKind, ClassSet, ClassSetItem};
use regex_syntax::hir::{Class, Hir, HirKind, Look};

use super::error::ReadError;

/// RE2's limit on counted repetition (`a{1001}` is an error in Go).
const MAX_REPEAT: u32 = 1000;

/// How Prometheus evaluates regexes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegexOptions {
    /// Prometheus 3 semantics (`.` matches `\n`); false gives 2.x semantics.
    pub dot_matches_newline: bool,
}

impl Default for RegexOptions {
    fn default() -> Self {
        RegexOptions {
            dot_matches_newline: true,
        }
    }
}

/// A Prometheus regex translated for Timestream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translated {
    /// Fully anchored Java pattern: `find()` on it is Prometheus' full match.
    pub java: String,
    /// Whether the regex matches the empty string (decides NULL handling).
    pub matches_empty: bool,
}

/// Longest label matcher value (and name) accepted, in bytes (a 400 beyond). Regexes
/// this long are already far from anything Prometheus users write; the bound keeps the
/// parse tree and the translation of one matcher within a fixed allowance (issue 13).
pub const MAX_MATCHER_VALUE_BYTES: usize = 16 * 1024;

/// Translate a Prometheus regex into an anchored Java pattern (at most
/// [`MAX_QUERY_BYTES`](super::sql::MAX_QUERY_BYTES) long).
pub fn translate(pattern: &str, opts: RegexOptions) -> Result<Translated, ReadError> {
    let budget = super::sql::MAX_QUERY_BYTES;
    let hir = parse_within(pattern, opts, budget)?;
    translate_hir(&hir, pattern, budget)
}

/// The Java pattern of a parsed regex, refused as soon as it passes `budget` bytes (the
/// room left in the SQL being built): nothing longer is ever materialised.
pub fn translate_hir(hir: &Hir, pattern: &str, budget: usize) -> Result<Translated, ReadError> {
    const ANCHORS: usize = "\\A(?:)\\z".len();
    let mut out = String::with_capacity((pattern.len() * 2 + 16).min(budget + 1));
    out.push_str("\\A(?:");
    emit(hir, &mut out, budget.saturating_sub(ANCHORS)).map_err(|e| match e {
        Emit::Unsupported(construct) => ReadError::UnsupportedRegex {
            pattern: truncated(pattern),
            construct,
        },
        Emit::OverBudget(len) => too_large(len + ANCHORS, budget),
    })?;
    out.push_str(")\\z");
    if out.len() > budget {
        return Err(too_large(out.len(), budget));
    }
    Ok(Translated {
        java: out,
        matches_empty: matches_empty(hir),
    })
}

fn too_large(len: usize, budget: usize) -> ReadError {
    ReadError::QueryTooLarge {
        len: len + (super::sql::MAX_QUERY_BYTES - budget.min(super::sql::MAX_QUERY_BYTES)),
        limit: super::sql::MAX_QUERY_BYTES,
    }
}

/// The pattern as error messages quote it: at most 200 bytes, so an answer (and its log
/// line) never echoes a 16 KiB regex.
fn truncated(pattern: &str) -> String {
    if pattern.len() <= 200 {
        return pattern.to_string();
    }
    let mut end = 200;
    while !pattern.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &pattern[..end])
}

/// Parse a Prometheus regex with RE2 semantics into a regex-syntax HIR (its character
/// classes at most [`MAX_QUERY_BYTES`](super::sql::MAX_QUERY_BYTES) once translated).
pub fn parse(pattern: &str, opts: RegexOptions) -> Result<Hir, ReadError> {
    parse_within(pattern, opts, super::sql::MAX_QUERY_BYTES)
}

/// [`parse`], refusing (before the HIR is built) a regex whose character classes alone
/// would translate to more than `budget` bytes: the HIR holds every class as explicit
/// ranges (`\pL` is ~650 of them), so `\pL` × 5,000 would otherwise build tens of MB
/// only to be refused afterwards.
pub fn parse_within(pattern: &str, opts: RegexOptions, budget: usize) -> Result<Hir, ReadError> {
    let invalid = |reason: String| ReadError::InvalidRegex {
        pattern: truncated(pattern),
        reason,
    };
    if pattern.len() > MAX_MATCHER_VALUE_BYTES {
        return Err(invalid(format!(
            "{} bytes long; at most {MAX_MATCHER_VALUE_BYTES} are accepted",
            pattern.len()
        )));
    }
    let normalized = normalize(pattern).map_err(invalid)?;
    let mut ast = ast::parse::ParserBuilder::new()
        .build()
        .parse(&normalized)
        .map_err(|e| invalid(e.kind().to_string()))?;
    asciify_perl_classes(&mut ast);
    let classes = ClassCost::new(has_case_insensitive_flag(&ast)).of(&ast, budget);
    if classes > budget {
        return Err(too_large(classes, budget));
    }
    regex_syntax::hir::translate::TranslatorBuilder::new()
        .utf8(true)
        .unicode(true)
        .dot_matches_new_line(opts.dot_matches_newline)
        .build()
        .translate(&normalized, &ast)
        .map_err(|e| invalid(e.kind().to_string()))
}

/// Whether any flag group turns case-insensitivity on (then every class is costed both
/// ways and the larger counts: flag scoping need not be followed to get an upper bound).
fn has_case_insensitive_flag(ast: &Ast) -> bool {
    let flags_on = |f: &ast::Flags| {
        let mut negated = false;
        f.items.iter().any(|i| match i.kind {
            ast::FlagsItemKind::Negation => {
                negated = true;
                false
            }
            ast::FlagsItemKind::Flag(ast::Flag::CaseInsensitive) => !negated,
            _ => false,
        })
    };
    match ast {
        Ast::Flags(f) => flags_on(&f.flags),
        Ast::Group(g) => {
            matches!(&g.kind, ast::GroupKind::NonCapturing(f) if flags_on(f))
                || has_case_insensitive_flag(&g.ast)
        }
        Ast::Repetition(r) => has_case_insensitive_flag(&r.ast),
        Ast::Alternation(a) => a.asts.iter().any(has_case_insensitive_flag),
        Ast::Concat(c) => c.asts.iter().any(has_case_insensitive_flag),
        _ => false,
    }
}

/// Upper bound of the Java text the character classes of an AST translate to: each class
/// is translated alone (memoised by its text, so `\pL` × 5,000 translates `\pL` once) and
/// its emitted length summed, stopping once past the budget. Classes only merge or shrink
/// in context (an alternation of classes becomes one class), so the sum bounds the real
/// output's classes; everything else in the HIR is linear in the pattern's length, which
/// [`MAX_MATCHER_VALUE_BYTES`] bounds.
struct ClassCost {
    case_insensitive: bool,
    memo: std::collections::HashMap<String, usize>,
    printed: String,
}

impl ClassCost {
    fn new(case_insensitive: bool) -> ClassCost {
        ClassCost {
            case_insensitive,
            memo: std::collections::HashMap::new(),
            printed: String::new(),
        }
    }

    fn of(&mut self, ast: &Ast, budget: usize) -> usize {
        let mut total = 0usize;
        let mut stack = vec![ast];
        while let Some(a) = stack.pop() {
            if total > budget {
                break;
            }
            match a {
                Ast::ClassUnicode(_) | Ast::ClassBracketed(_) => total += self.leaf(a),
                Ast::Repetition(r) => stack.push(&r.ast),
                Ast::Group(g) => stack.push(&g.ast),
                Ast::Alternation(x) => stack.extend(x.asts.iter()),
                Ast::Concat(x) => stack.extend(x.asts.iter()),
                _ => {}
            }
        }
        total
    }

    fn leaf(&mut self, ast: &Ast) -> usize {
        self.printed.clear();
        if ast::print::Printer::new()
            .print(ast, &mut self.printed)
            .is_err()
        {
            return 0;
        }
        if let Some(&n) = self.memo.get(&self.printed) {
            return n;
        }
        let mut n = class_len(&self.printed);
        if self.case_insensitive {
            n = n.max(class_len(&format!("(?i:{})", self.printed)));
        }
        self.memo.insert(self.printed.clone(), n);
        n
    }
}

/// Emitted length of one class given as a pattern (0 if it does not translate: the
/// whole pattern's translation then reports the error).
fn class_len(pattern: &str) -> usize {
    let Ok(ast) = ast::parse::ParserBuilder::new().build().parse(pattern) else {
        return 0;
    };
    let Ok(hir) = regex_syntax::hir::translate::TranslatorBuilder::new()
        .utf8(true)
        .unicode(true)
        .build()
        .translate(pattern, &ast)
    else {
        return 0;
    };
    let mut out = String::new();
    match emit(&hir, &mut out, usize::MAX) {
        Ok(()) => out.len(),
        Err(_) => 0,
    }
}

// ---------------------------------------------------------------------------
// RE2 lexer → regex-syntax pattern with identical meaning.

fn hex(c: char) -> String {
    format!("\\x{{{:X}}}", c as u32)
}

/// Literal outside a class: alphanumerics verbatim, everything else as `\x{..}`.
fn push_literal(out: &mut String, c: char) {
    if c.is_ascii_alphanumeric() {
        out.push(c);
    } else {
        out.push_str(&hex(c));
    }
}

const POSIX_CLASSES: &[&str] = &[
    "alnum", "alpha", "ascii", "blank", "cntrl", "digit", "graph", "lower", "print", "punct",
    "space", "upper", "word", "xdigit",
];

fn normalize(p: &str) -> Result<String, String> {
    let s: Vec<char> = p.chars().collect();
    let mut out = String::with_capacity(p.len() + 8);
    let mut i = 0;
    // RE2 (Perl mode) rejects stacked repetition operators such as `a**`.
    let mut after_repeat = false;
    while i < s.len() {
        let is_repeat = match s[i] {
            '*' | '+' | '?' => true,
            '{' => repeat(&s, i).is_some(),
            _ => false,
        };
        if is_repeat && after_repeat {
            return Err("invalid nested repetition operator".into());
        }
        after_repeat = is_repeat;
        match s[i] {
            '\\' => i = escape_outside_class(&s, i, &mut out)?,
            '[' => i = class(&s, i, &mut out)?,
            '{' => match repeat(&s, i) {
                Some((text, len, min, max)) => {
                    if min > MAX_REPEAT || max.is_some_and(|m| m > MAX_REPEAT || m < min) {
                        return Err(format!("invalid repeat count: `{text}`"));
                    }
                    out.push_str(&text);
                    i += len;
                    if s.get(i) == Some(&'?') {
                        out.push('?');
                        i += 1;
                    }
                }
                None => {
                    out.push_str("\\{");
                    i += 1;
                }
            },
            '}' => {
                out.push_str("\\}");
                i += 1;
            }
            '(' if s.get(i + 1) == Some(&'?') => i = group_prefix(&s, i, &mut out)?,
            // Meta characters with the same meaning in RE2 and regex-syntax.
            c @ ('*' | '+' | '?') => {
                out.push(c);
                i += 1;
                // A single `?` after a repetition makes it lazy; it is not a new operator.
                if s.get(i) == Some(&'?') {
                    out.push('?');
                    i += 1;
                }
            }
            c @ ('.' | '|' | '(' | ')' | '^' | '$') => {
                out.push(c);
                i += 1;
            }
            c => {
                push_literal(&mut out, c);
                i += 1;
            }
        }
    }
    Ok(out)
}

/// `{n}`, `{n,}`, `{n,m}` at `i`: (text, length, min, max). RE2 treats any other `{` literally.
fn repeat(s: &[char], i: usize) -> Option<(String, usize, u32, Option<u32>)> {
    let mut j = i + 1;
    let num = |j: &mut usize| -> Option<u32> {
        let start = *j;
        while *j < s.len() && s[*j].is_ascii_digit() {
            *j += 1;
        }
        if *j == start || *j - start > 8 {
            return None;
        }
        s[start..*j].iter().collect::<String>().parse().ok()
    };
    let min = num(&mut j)?;
    let max = if s.get(j) == Some(&',') {
        j += 1;
        if s.get(j) == Some(&'}') {
            None
        } else {
            Some(num(&mut j)?)
        }
    } else {
        Some(min)
    };
    if s.get(j) != Some(&'}') {
        return None;
    }
    let text: String = s[i..=j].iter().collect();
    Some((text, j + 1 - i, min, max))
}

/// `(?` at `i`: flags, named groups; anything else RE2 rejects.
fn group_prefix(s: &[char], i: usize, out: &mut String) -> Result<usize, String> {
    let rest: String = s[i..s.len().min(i + 4)].iter().collect();
    if rest.starts_with("(?P<") || rest.starts_with("(?<") {
        let mut j = i + if rest.starts_with("(?P<") { 4 } else { 3 };
        let start = j;
        while j < s.len() && (s[j].is_ascii_alphanumeric() || s[j] == '_') {
            j += 1;
        }
        if j == start || s.get(j) != Some(&'>') {
            return Err("invalid named capture".into());
        }
        // Names do not affect matching; emit a plain group.
        out.push('(');
        return Ok(j + 1);
    }
    let mut j = i + 2;
    let mut seen_minus = false;
    let mut any = false;
    while j < s.len() {
        match s[j] {
            'i' | 'm' | 's' | 'U' => any = true,
            '-' if !seen_minus => {
                seen_minus = true;
                any = false;
            }
            ')' | ':' if any || (!seen_minus && s[j] == ':') => {
                let text: String = s[i..=j].iter().collect();
                out.push_str(&text);
                return Ok(j + 1);
            }
            _ => break,
        }
        j += 1;
    }
    let end = s.len().min(j + 1);
    Err(format!(
        "invalid or unsupported Perl syntax: `{}`",
        s[i..end].iter().collect::<String>()
    ))
}

/// A single-character escape valid both inside and outside classes (RE2's
/// parseEscape), starting at the backslash. Returns (char, next index).
fn escape_char(s: &[char], i: usize) -> Result<(char, usize), String> {
    let Some(&c) = s.get(i + 1) else {
        return Err("trailing backslash at end of expression".into());
    };
    let octal = |j: usize, max: usize| {
        let mut v = 0u32;
        let mut k = j;
        while k < s.len() && k - j < max && ('0'..='7').contains(&s[k]) {
            v = v * 8 + s[k].to_digit(8).unwrap_or(0);
            k += 1;
        }
        (v, k)
    };
    match c {
        '1'..='7' => {
            // A single digit would be a backreference, which RE2 rejects.
            if !s.get(i + 2).is_some_and(|d| ('0'..='7').contains(d)) {
                return Err(format!("invalid escape sequence: `\\{c}`"));
            }
            let (v, k) = octal(i + 1, 3);
            Ok((char::from_u32(v).unwrap_or('\0'), k))
        }
        '0' => {
            let (v, k) = octal(i + 2, 2);
            Ok((char::from_u32(v).unwrap_or('\0'), k))
        }
        'x' => {
            let bad = || format!("invalid escape sequence: `\\x` at {}", i);
            if s.get(i + 2) == Some(&'{') {
                let mut j = i + 3;
                let mut v: u32 = 0;
                let start = j;
                while j < s.len() && s[j].is_ascii_hexdigit() {
                    v = v.checked_mul(16).ok_or_else(bad)? + s[j].to_digit(16).unwrap_or(0);
                    if v > 0x10FFFF {
                        return Err(bad());
                    }
                    j += 1;
                }
                if j == start || s.get(j) != Some(&'}') {
                    return Err(bad());
                }
                Ok((char::from_u32(v).ok_or_else(bad)?, j + 1))
            } else {
                let h = |k: usize| s.get(k).and_then(|c| c.to_digit(16));
                match (h(i + 2), h(i + 3)) {
                    (Some(a), Some(b)) => Ok((char::from_u32(a * 16 + b).ok_or_else(bad)?, i + 4)),
                    _ => Err(bad()),
                }
            }
        }
        'a' => Ok(('\x07', i + 2)),
        'f' => Ok(('\x0C', i + 2)),
        't' => Ok(('\t', i + 2)),
        'n' => Ok(('\n', i + 2)),
        'r' => Ok(('\r', i + 2)),
        'v' => Ok(('\x0B', i + 2)),
        c if c.is_ascii() && !c.is_ascii_alphanumeric() => Ok((c, i + 2)),
        c => Err(format!("invalid escape sequence: `\\{c}`")),
    }
}

/// Copy `\pL`, `\p{Greek}`, `\PL`, `\P{^Greek}` verbatim (regex-syntax knows the same names).
fn unicode_class(s: &[char], i: usize, out: &mut String) -> Result<usize, String> {
    let mut j = i + 2;
    match s.get(j) {
        Some('{') => {
            while j < s.len() && s[j] != '}' {
                j += 1;
            }
            if j == s.len() {
                return Err("invalid character class range: unclosed `\\p{`".into());
            }
            j += 1;
        }
        Some(c) if c.is_alphabetic() => j += 1,
        _ => return Err("invalid character class range: `\\p`".into()),
    }
    out.extend(&s[i..j]);
    Ok(j)
}

fn escape_outside_class(s: &[char], i: usize, out: &mut String) -> Result<usize, String> {
    match s.get(i + 1) {
        Some('Q') => {
            let mut j = i + 2;
            while j < s.len() {
                if s[j] == '\\' && s.get(j + 1) == Some(&'E') {
                    return Ok(j + 2);
                }
                push_literal(out, s[j]);
                j += 1;
            }
            Ok(j)
        }
        Some(c @ ('d' | 'D' | 's' | 'S' | 'w' | 'W' | 'A' | 'z' | 'b' | 'B')) => {
            out.push('\\');
            out.push(*c);
            Ok(i + 2)
        }
        Some('p' | 'P') => unicode_class(s, i, out),
        _ => {
            let (c, next) = escape_char(s, i)?;
            push_literal(out, c);
            Ok(next)
        }
    }
}

/// A bracket class at `i`, with RE2's grammar (no nesting, no set operators).
fn class(s: &[char], i: usize, out: &mut String) -> Result<usize, String> {
    out.push('[');
    let mut j = i + 1;
    if s.get(j) == Some(&'^') {
        out.push('^');
        j += 1;
    }
    let mut first = true;
    loop {
        let Some(&c) = s.get(j) else {
            return Err("missing closing ]".into());
        };
        if c == ']' && !first {
            out.push(']');
            return Ok(j + 1);
        }
        first = false;
        if c == '[' && s.get(j + 1) == Some(&':') {
            if let Some(end) =
                (j + 2..s.len().saturating_sub(1)).find(|&k| s[k] == ':' && s[k + 1] == ']')
            {
                let name: String = s[j + 2..end].iter().collect();
                let bare = name.strip_prefix('^').unwrap_or(&name);
                if !POSIX_CLASSES.contains(&bare) {
                    return Err(format!("invalid character class range: `[:{name}:]`"));
                }
                out.push_str(&format!("[:{name}:]"));
                j = end + 2;
                continue;
            }
        }
        if c == '\\' {
            match s.get(j + 1) {
                Some(p @ ('d' | 'D' | 's' | 'S' | 'w' | 'W')) => {
                    out.push('\\');
                    out.push(*p);
                    j += 2;
                    continue;
                }
                Some('p' | 'P') => {
                    j = unicode_class(s, j, out)?;
                    continue;
                }
                _ => {}
            }
        }
        let (lo, next) = class_char(s, j)?;
        j = next;
        if s.get(j) == Some(&'-') && s.get(j + 1).is_some_and(|&c| c != ']') {
            let (hi, next) = class_char(s, j + 1)?;
            if hi < lo {
                return Err(format!("invalid character class range: `{lo}-{hi}`"));
            }
            out.push_str(&hex(lo));
            out.push('-');
            out.push_str(&hex(hi));
            j = next;
        } else {
            out.push_str(&hex(lo));
        }
    }
}

fn class_char(s: &[char], j: usize) -> Result<(char, usize), String> {
    match s.get(j) {
        Some('\\') => escape_char(s, j),
        Some(&c) => Ok((c, j + 1)),
        None => Err("missing closing ]".into()),
    }
}

// ---------------------------------------------------------------------------
// AST rewrite: RE2's Perl classes are ASCII-only (`\s` has no `\v`).

fn perl_ranges(kind: &ClassPerlKind) -> &'static [(char, char)] {
    match kind {
        ClassPerlKind::Digit => &[('0', '9')],
        ClassPerlKind::Space => &[('\t', '\n'), ('\x0C', '\r'), (' ', ' ')],
        ClassPerlKind::Word => &[('0', '9'), ('A', 'Z'), ('_', '_'), ('a', 'z')],
    }
}

fn perl_to_bracketed(p: &ast::ClassPerl) -> ast::ClassBracketed {
    let lit = |c: char| ast::Literal {
        span: p.span,
        kind: ast::LiteralKind::Verbatim,
        c,
    };
    let items = perl_ranges(&p.kind)
        .iter()
        .map(|&(a, b)| {
            ClassSetItem::Range(ast::ClassSetRange {
                span: p.span,
                start: lit(a),
                end: lit(b),
            })
        })
        .collect();
    ast::ClassBracketed {
        span: p.span,
        negated: p.negated,
        kind: ClassSet::union(ast::ClassSetUnion {
            span: p.span,
            items,
        }),
    }
}

fn asciify_perl_classes(ast: &mut Ast) {
    match ast {
        Ast::ClassPerl(p) => *ast = Ast::class_bracketed(perl_to_bracketed(p)),
        Ast::ClassBracketed(b) => asciify_set(&mut b.kind),
        Ast::Repetition(r) => asciify_perl_classes(&mut r.ast),
        Ast::Group(g) => asciify_perl_classes(&mut g.ast),
        Ast::Alternation(a) => a.asts.iter_mut().for_each(asciify_perl_classes),
        Ast::Concat(c) => c.asts.iter_mut().for_each(asciify_perl_classes),
        _ => {}
    }
}

fn asciify_set(set: &mut ClassSet) {
    match set {
        ClassSet::Item(item) => asciify_item(item),
        ClassSet::BinaryOp(op) => {
            asciify_set(&mut op.lhs);
            asciify_set(&mut op.rhs);
        }
    }
}

fn asciify_item(item: &mut ClassSetItem) {
    match item {
        ClassSetItem::Perl(p) => *item = ClassSetItem::Bracketed(Box::new(perl_to_bracketed(p))),
        ClassSetItem::Bracketed(b) => asciify_set(&mut b.kind),
        ClassSetItem::Union(u) => u.items.iter_mut().for_each(asciify_item),
        _ => {}
    }
}

// ---------------------------------------------------------------------------
// HIR → Java.

/// A class that matches no character (surrogates included), in plain syntax
/// rather than a lookaround so simpler Java-compatible engines accept it.
const NOTHING: &str = "[^\\x{0}-\\x{10FFFF}]";

/// Escape one character for Java, inside or outside a class.
fn push_java_char(out: &mut String, c: char) {
    if c.is_ascii_alphanumeric() {
        out.push(c);
    } else if c.is_ascii_punctuation() {
        // In Java a backslash before a non-alphabetic character is always that literal.
        out.push('\\');
        out.push(c);
    } else {
        out.push_str(&hex(c));
    }
}

fn emit_class(ranges: &[(char, char)], negated: bool, out: &mut String) {
    out.push('[');
    if negated {
        out.push('^');
    }
    for &(a, b) in ranges {
        push_java_char(out, a);
        if b != a {
            if b as u32 > a as u32 + 1 {
                out.push('-');
            }
            push_java_char(out, b);
        }
    }
    out.push(']');
}

/// Why emitting stopped.
enum Emit {
    /// A construct with no exact Java equivalent.
    Unsupported(String),
    /// The output passed the budget (its length then).
    OverBudget(usize),
}

impl From<String> for Emit {
    fn from(construct: String) -> Emit {
        Emit::Unsupported(construct)
    }
}

/// Emits `hir` as Java into `out`, stopping as soon as `out` is longer than `budget`.
fn emit(hir: &Hir, out: &mut String, budget: usize) -> Result<(), Emit> {
    emit_node(hir, out, budget)?;
    if out.len() > budget {
        return Err(Emit::OverBudget(out.len()));
    }
    Ok(())
}

fn emit_node(hir: &Hir, out: &mut String, budget: usize) -> Result<(), Emit> {
    if out.len() > budget {
        return Err(Emit::OverBudget(out.len()));
    }
    match hir.kind() {
        HirKind::Empty => out.push_str("(?:)"),
        HirKind::Literal(lit) => {
            let s = std::str::from_utf8(&lit.0)
                .map_err(|_| Emit::Unsupported("a non-UTF-8 byte literal".to_string()))?;
            s.chars().for_each(|c| push_java_char(out, c));
        }
        HirKind::Class(Class::Unicode(cls)) => {
            let ranges: Vec<(char, char)> = cls.iter().map(|r| (r.start(), r.end())).collect();
            let mut complement = cls.clone();
            complement.negate();
            let comp: Vec<(char, char)> = complement.iter().map(|r| (r.start(), r.end())).collect();
            if ranges.is_empty() {
                // Matches nothing.
                out.push_str(NOTHING);
            } else if comp.is_empty() {
                out.push_str("(?s:.)");
            } else if comp.len() < ranges.len() {
                emit_class(&comp, true, out);
            } else {
                emit_class(&ranges, false, out);
            }
        }
        // regex-syntax represents the empty class as bytes; ASCII-only byte
        // classes are code-point classes too.
        HirKind::Class(Class::Bytes(cls)) => {
            if cls.ranges().is_empty() {
                out.push_str(NOTHING);
            } else if cls.is_ascii() {
                let ranges: Vec<(char, char)> = cls
                    .iter()
                    .map(|r| (char::from(r.start()), char::from(r.end())))
                    .collect();
                emit_class(&ranges, false, out);
            } else {
                return Err(Emit::Unsupported("a byte-oriented class".into()));
            }
        }
        HirKind::Look(look) => out.push_str(match look {
            Look::Start => "\\A",
            Look::End => "\\z",
            // RE2 (?m): only \n is a line terminator; Java's ^/$ know more.
            Look::StartLF => "(?<![^\\n])",
            Look::EndLF => "(?![^\\n])",
            // RE2's \b is ASCII; Java 17's \b is Unicode-aware, so spell it out.
            Look::WordAscii | Look::WordUnicode => {
                "(?:(?<=[0-9A-Z_a-z])(?![0-9A-Z_a-z])|(?<![0-9A-Z_a-z])(?=[0-9A-Z_a-z]))"
            }
            Look::WordAsciiNegate | Look::WordUnicodeNegate => {
                "(?:(?<=[0-9A-Z_a-z])(?=[0-9A-Z_a-z])|(?<![0-9A-Z_a-z])(?![0-9A-Z_a-z]))"
            }
            other => return Err(Emit::Unsupported(format!("the assertion {other:?}"))),
        }),
        HirKind::Repetition(rep) => {
            out.push_str("(?:");
            emit_node(&rep.sub, out, budget)?;
            out.push(')');
            match (rep.min, rep.max) {
                (0, None) => out.push('*'),
                (1, None) => out.push('+'),
                (0, Some(1)) => out.push('?'),
                (n, None) => out.push_str(&format!("{{{n},}}")),
                (n, Some(m)) if n == m => out.push_str(&format!("{{{n}}}")),
                (n, Some(m)) => out.push_str(&format!("{{{n},{m}}}")),
            }
        }
        HirKind::Capture(cap) => {
            out.push_str("(?:");
            emit_node(&cap.sub, out, budget)?;
            out.push(')');
        }
        HirKind::Concat(subs) => {
            for sub in subs {
                emit_node(sub, out, budget)?;
            }
        }
        HirKind::Alternation(subs) => {
            out.push_str("(?:");
            for (k, sub) in subs.iter().enumerate() {
                if k > 0 {
                    out.push('|');
                }
                emit_node(sub, out, budget)?;
            }
            out.push(')');
        }
    }
    Ok(())
}

/// Whether the regex (fully anchored) matches "": at the only position of the
/// empty string every assertion can be decided exactly.
pub fn matches_empty(hir: &Hir) -> bool {
    match hir.kind() {
        HirKind::Empty => true,
        HirKind::Literal(lit) => lit.0.is_empty(),
        HirKind::Class(_) => false,
        HirKind::Look(look) => !matches!(
            look,
            Look::WordAscii
                | Look::WordUnicode
                | Look::WordStartAscii
                | Look::WordStartUnicode
                | Look::WordEndAscii
                | Look::WordEndUnicode
        ),
        HirKind::Repetition(rep) => rep.min == 0 || matches_empty(&rep.sub),
        HirKind::Capture(cap) => matches_empty(&cap.sub),
        HirKind::Concat(subs) => subs.iter().all(matches_empty),
        HirKind::Alternation(subs) => subs.iter().any(matches_empty),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(p: &str) -> String {
        translate(p, RegexOptions::default()).unwrap().java
    }

    fn err(p: &str) -> ReadError {
        translate(p, RegexOptions::default()).unwrap_err()
    }

    /// Local RE2 evaluation through the HIR: compile the HIR's Display form.
    fn re2_match(p: &str, opts: RegexOptions, s: &str) -> bool {
        let hir = parse(p, opts).unwrap();
        regex::Regex::new(&format!("^(?:{hir})$"))
            .unwrap()
            .is_match(s)
    }

    #[test]
    fn anchored_and_escaped() {
        assert_eq!(t("prom"), "\\A(?:prom)\\z");
        assert_eq!(t("a.b"), "\\A(?:a(?s:.)b)\\z");
        let two = translate(
            "a.b",
            RegexOptions {
                dot_matches_newline: false,
            },
        )
        .unwrap();
        assert_eq!(two.java, "\\A(?:a[^\\x{A}]b)\\z");
        assert!(t("it's").contains("\\'"));
    }

    #[test]
    fn posix_classes_expand_to_ranges() {
        assert_eq!(t("[[:alpha:]]"), "\\A(?:[A-Za-z])\\z");
        assert!(re2_match("[[:^alpha:]]+", RegexOptions::default(), "1:"));
        assert!(!re2_match("[[:alpha:]]", RegexOptions::default(), ":"));
    }

    #[test]
    fn perl_classes_are_ascii() {
        let o = RegexOptions::default();
        assert!(!re2_match("\\d", o, "٣"));
        assert!(!re2_match("\\s", o, "\x0B"));
        assert!(re2_match("\\s", o, "\x0C"));
        assert!(!re2_match("\\w", o, "é"));
        assert!(re2_match("[^\\d]", o, "٣"));
        assert!(re2_match("\\D", o, "٣"));
        assert_eq!(t("\\d"), "\\A(?:[0-9])\\z");
    }

    #[test]
    fn re2_class_grammar() {
        let o = RegexOptions::default();
        // `[` is literal in an RE2 class, `&&` is not intersection.
        assert!(re2_match("[[]", o, "["));
        assert!(re2_match("[a&&b]", o, "&"));
        assert!(re2_match("[a[b]]", o, "[]"));
        assert!(!re2_match("[a[b]]", o, "b"));
        assert!(re2_match("[a~~b]", o, "~"));
        assert!(re2_match("[]a]", o, "]"));
        assert!(re2_match("[a-]", o, "-"));
        assert!(re2_match("[\\d-z]", o, "-"));
        assert!(!re2_match("[\\d-z]", o, "y"));
    }

    #[test]
    fn braces_and_escapes() {
        let o = RegexOptions::default();
        assert!(re2_match("x{,5}", o, "x{,5}"));
        assert!(re2_match("a{", o, "a{"));
        assert!(re2_match("a{2}", o, "aa"));
        assert!(re2_match("\\123", o, "S"));
        assert!(re2_match("\\0", o, "\0"));
        assert!(re2_match("\\Qa.b*\\E+", o, "a.b**"));
        assert!(!re2_match("\\Qa.b\\E", o, "axb"));
        assert!(re2_match("\\v", o, "\x0B"));
        assert!(re2_match("\\<", o, "<"));
        assert!(re2_match("(?P<n>a)(?<m>b)", o, "ab"));
        assert_eq!(t("\\123"), "\\A(?:S)\\z");
        assert_eq!(t("\\v"), "\\A(?:\\x{B})\\z");
    }

    #[test]
    fn case_folding_is_explicit() {
        let j = t("(?i)k");
        assert!(j.contains("\\x{212A}"), "{j}");
        assert!(!j.contains("(?i"));
        assert!(re2_match("(?i)é", RegexOptions::default(), "É"));
    }

    #[test]
    fn rejects_what_re2_rejects() {
        for p in [
            "(",
            "a)",
            "[a",
            "\\1",
            "a**",
            "(?x)a",
            "(?u)a",
            "a{1001}",
            "\\e",
            "(?P=n)",
            "[[:foo:]]",
            "\\",
        ] {
            match err(p) {
                ReadError::InvalidRegex { .. } => {}
                e => panic!("{p}: {e:?}"),
            }
        }
        assert!(
            matches!(err("\\C"), ReadError::InvalidRegex { .. }),
            "{:?}",
            err("\\C")
        );
    }

    #[test]
    fn empty_matching() {
        let me = |p: &str| translate(p, RegexOptions::default()).unwrap().matches_empty;
        for p in [
            ".*", "a|", "x?", "", "^$", "()", "\\B", "(?m)^", "a*b*", "(|a)+",
        ] {
            assert!(me(p), "{p}");
        }
        for p in [".+", "a", "\\b", "[^a]*a", "(a|b)+", "[a&&b]"] {
            assert!(!me(p), "{p}");
        }
    }

    #[test]
    fn word_boundary_is_ascii_lookaround() {
        assert!(t("\\bfoo\\b").contains("(?<=[0-9A-Z_a-z])"));
        assert!(t("(?m)^a$").contains("(?<![^\\n])"));
    }

    #[test]
    fn big_unicode_class_uses_complement_when_shorter() {
        let j = t("[^a]");
        assert_eq!(j, "\\A(?:[^a])\\z");
        assert_eq!(t("[^\\x{0}-\\x{10FFFF}]"), format!("\\A(?:{NOTHING})\\z"));
    }
}
