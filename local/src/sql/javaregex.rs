//! Java (`java.util.regex.Pattern`) regular expressions evaluated with the Rust `regex` crate,
//! as Timestream's `regexp_like` does: a *contains* test (`Matcher.find()`).
//!
//! The Java pattern is parsed here and re-emitted as an equivalent Rust pattern. Constructs
//! whose meaning cannot be reproduced exactly are rejected with an error naming them, never
//! translated approximately. Java's `$` (end of input, or before a final line terminator) has
//! no Rust equivalent without look-ahead; it is accepted where nothing can follow it and is
//! evaluated by also matching against the input with its final line terminator cut off.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

#[derive(Debug)]
pub struct JavaRegex {
    re: regex::Regex,
    /// `Some(unix_lines)` when the pattern has a trailing `$`/`\Z` (translated to `\z`).
    end_dollar: Option<bool>,
}

impl JavaRegex {
    /// `Pattern.compile(pattern).matcher(s).find()`.
    pub fn find(&self, s: &str) -> bool {
        if self.re.is_match(s) {
            return true;
        }
        let Some(unix) = self.end_dollar else {
            return false;
        };
        // `$` may also match before a line terminator that ends the input; "\r\n" counts as one
        // terminator, and Java does not match between its two characters.
        if unix {
            return s.ends_with('\n') && self.re.is_match(&s[..s.len() - 1]);
        }
        if let Some(p) = s.strip_suffix("\r\n") {
            return self.re.is_match(p);
        }
        match s.chars().next_back() {
            Some(c @ ('\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}')) => {
                self.re.is_match(&s[..s.len() - c.len_utf8()])
            }
            _ => false,
        }
    }
}

/// Compiles (or fetches from a process-wide cache) the translation of a Java pattern.
pub fn compile_cached(pattern: &str) -> Result<Arc<JavaRegex>, String> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<JavaRegex>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(r) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(pattern) {
        return Ok(r.clone());
    }
    let r = Arc::new(compile(pattern)?);
    let mut c = cache.lock().unwrap_or_else(|e| e.into_inner());
    // Bounded: a crude reset keeps memory in check under unbounded distinct patterns.
    if c.len() >= 4096 {
        c.clear();
    }
    c.insert(pattern.to_string(), r.clone());
    Ok(r)
}

pub fn compile(pattern: &str) -> Result<JavaRegex, String> {
    let mut p = P {
        depth: 0,
        s: pattern.chars().collect(),
        i: 0,
        flags: Flags::default(),
        has_hard_end: false,
    };
    let node = p.alternation()?;
    if p.i < p.s.len() {
        // Only an unmatched ')' stops the top-level parse early.
        return Err(format!("Unmatched closing ')' near index {}", p.i));
    }
    let mut dollar: Option<bool> = None;
    let body = emit(&node, true, &mut dollar)?;
    if dollar.is_some() && p.has_hard_end {
        return Err("'$' or '\\Z' combined with '\\z' is not supported".into());
    }
    let re = regex::RegexBuilder::new(&body)
        .size_limit(32 << 20)
        .build()
        .map_err(|e| format!("pattern not supported: {e}"))?;
    Ok(JavaRegex {
        re,
        end_dollar: dollar,
    })
}

#[derive(Debug, Clone, Copy, Default)]
struct Flags {
    ci: bool,
    unicode_case: bool,
    dotall: bool,
    unix_lines: bool,
    comments: bool,
}

#[derive(Debug)]
enum Node {
    /// Rust regex text of one atom (already escaped / bracketed).
    Atom(String),
    /// `$` or `\Z`; the flag is UNIX_LINES at that point.
    Dollar(bool),
    Concat(Vec<Node>),
    Alt(Vec<Node>),
    Group(Box<Node>),
    Repeat(Box<Node>, String),
    /// A one-character lookaround, kept only in the forms with an exact Rust equivalent.
    Look {
        behind: bool,
        negative: bool,
        word: bool,
    },
}

/// Emits the ASCII word-boundary pairs `(?<=W)(?!W)` / `(?<!W)(?=W)` (W = ASCII word class).
fn word_pair(a: &Node, b: &Node) -> Option<(bool, bool)> {
    match (a, b) {
        (
            Node::Look {
                behind: true,
                negative: nb,
                word: true,
            },
            Node::Look {
                behind: false,
                negative: na,
                word: true,
            },
        ) => Some((*nb, *na)),
        _ => None,
    }
}

fn concat_pair(n: &Node) -> Option<(bool, bool)> {
    match n {
        Node::Concat(v) if v.len() == 2 => word_pair(&v[0], &v[1]),
        Node::Group(g) => concat_pair(g),
        _ => None,
    }
}

fn emit(n: &Node, trailing: bool, dollar: &mut Option<bool>) -> Result<String, String> {
    Ok(match n {
        Node::Atom(s) => s.clone(),
        Node::Dollar(unix) => {
            if !trailing {
                return Err("'$' or '\\Z' followed by more pattern is not supported".into());
            }
            if dollar.is_some_and(|u| u != *unix) {
                return Err("'$' under different (?d) settings is not supported".into());
            }
            *dollar = Some(*unix);
            r"\z".into()
        }
        Node::Concat(v) => {
            let mut out = String::new();
            let mut i = 0;
            while i < v.len() {
                if let Some(p) = v.get(i + 1).and_then(|b| word_pair(&v[i], b)) {
                    out += match p {
                        (false, true) => r"(?-u:\b{end})",
                        (true, false) => r"(?-u:\b{start})",
                        _ => return Err(UNSUPPORTED_LOOK.into()),
                    };
                    i += 2;
                    continue;
                }
                let rest_is_end = v[i + 1..].iter().all(|y| matches!(y, Node::Dollar(_)));
                out += &emit(&v[i], trailing && rest_is_end, dollar)?;
                i += 1;
            }
            out
        }
        Node::Look {
            behind,
            negative: true,
            word: false,
        } => if *behind { "(?m:^)" } else { "(?m:$)" }.into(),
        Node::Look { .. } => return Err(UNSUPPORTED_LOOK.into()),
        Node::Alt(v)
            if v.len() == 2 && {
                let pairs = (concat_pair(&v[0]), concat_pair(&v[1]));
                matches!(
                    pairs,
                    (Some((false, false)), Some((true, true)))
                        | (Some((true, true)), Some((false, false)))
                )
            } =>
        {
            // (?<=W)(?=W)|(?<!W)(?!W): not at an ASCII word boundary.
            r"(?-u:\B)".into()
        }
        Node::Alt(v)
            if v.len() == 2 && {
                let pairs = (concat_pair(&v[0]), concat_pair(&v[1]));
                matches!(
                    pairs,
                    (Some((false, true)), Some((true, false)))
                        | (Some((true, false)), Some((false, true)))
                )
            } =>
        {
            r"(?-u:\b)".into()
        }
        Node::Alt(v) => v
            .iter()
            .map(|x| emit(x, trailing, dollar))
            .collect::<Result<Vec<_>, _>>()?
            .join("|"),
        Node::Group(x) => format!("(?:{})", emit(x, trailing, dollar)?),
        Node::Repeat(x, q) => format!("(?:{}){q}", emit(x, false, dollar)?),
    })
}

const UNSUPPORTED_LOOK: &str = "lookaround groups are only supported as (?<![^\\n]), (?![^\\n]) \
     and ASCII word-boundary pairs such as (?<=[0-9A-Z_a-z])(?![0-9A-Z_a-z])";

/// Group / class nesting accepted (the parser and emitter recurse per level).
const MAX_NESTING: usize = 100;

struct P {
    depth: usize,
    s: Vec<char>,
    i: usize,
    flags: Flags,
    has_hard_end: bool,
}

const LINE_TERMINATORS: &str = r"\n\r\x{85}\x{2028}\x{2029}";

fn lit(c: char) -> String {
    regex::escape(c.encode_utf8(&mut [0; 4]))
}

/// A char inside a Rust class: escape everything that could be class syntax.
fn class_char(c: char) -> String {
    // `\<` and `\>` are word-boundary assertions in Rust's syntax, not escaped literals.
    if c.is_ascii_punctuation() && c != '<' && c != '>' {
        format!("\\{c}")
    } else if c.is_control() || c.is_whitespace() {
        format!("\\x{{{:X}}}", c as u32)
    } else {
        c.to_string()
    }
}

/// Rust class items (without brackets) for Java's ASCII predefined classes, or None.
fn predefined(c: char) -> Option<(&'static str, bool)> {
    Some(match c {
        'd' => ("0-9", false),
        'D' => ("0-9", true),
        'w' => ("a-zA-Z_0-9", false),
        'W' => ("a-zA-Z_0-9", true),
        's' => (r"\t\n\x0B\f\r ", false),
        'S' => (r"\t\n\x0B\f\r ", true),
        'h' => (
            r" \t\xA0\x{1680}\x{180E}\x{2000}-\x{200A}\x{202F}\x{205F}\x{3000}",
            false,
        ),
        'H' => (
            r" \t\xA0\x{1680}\x{180E}\x{2000}-\x{200A}\x{202F}\x{205F}\x{3000}",
            true,
        ),
        'v' => (r"\n\x0B\f\r\x{85}\x{2028}\x{2029}", false),
        'V' => (r"\n\x0B\f\r\x{85}\x{2028}\x{2029}", true),
        _ => return None,
    })
}

fn bracket(items: &str, neg: bool) -> String {
    format!("[{}{items}]", if neg { "^" } else { "" })
}

/// `\p{name}` / `\P{name}` in Java's spelling to a Rust class.
fn property(name: &str, neg: bool, ci: bool) -> Result<String, String> {
    const CATS: &[&str] = &[
        "L", "Lu", "Ll", "Lt", "Lm", "Lo", "LC", "M", "Mn", "Mc", "Me", "N", "Nd", "Nl", "No", "P",
        "Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po", "S", "Sm", "Sc", "Sk", "So", "Z", "Zs", "Zl",
        "Zp", "C", "Cc", "Cf", "Co", "Cs", "Cn",
    ];
    let posix: Option<&str> = match name {
        "Lower" => Some("a-z"),
        "Upper" => Some("A-Z"),
        "ASCII" => Some(r"\x00-\x7F"),
        "Alpha" => Some("a-zA-Z"),
        "Digit" => Some("0-9"),
        "Alnum" => Some("a-zA-Z0-9"),
        "Punct" => Some(r"!-/:-@\[-`\{-~"),
        "Graph" => Some(r"!-~"),
        "Print" => Some(r" -~"),
        "Blank" => Some(r" \t"),
        "Cntrl" => Some(r"\x00-\x1F\x7F"),
        "XDigit" => Some("0-9a-fA-F"),
        "Space" => Some(r" \t\n\x0B\f\r"),
        _ => None,
    };
    let case_sensitive_prop = matches!(
        name,
        "Lower"
            | "Upper"
            | "Lu"
            | "Ll"
            | "Lt"
            | "IsLu"
            | "IsLl"
            | "IsLt"
            | "IsLowercase"
            | "IsUppercase"
            | "IsTitlecase"
    );
    if ci && case_sensitive_prop {
        return Err(format!(
            "\\p{{{name}}} under case-insensitive matching is not supported"
        ));
    }
    if let Some(items) = posix {
        return Ok(bracket(items, neg));
    }
    let p = if neg { 'P' } else { 'p' };
    let strip = |pre: &str| name.strip_prefix(pre).filter(|r| !r.is_empty());
    // General categories: `L`, `IsL`, `gc=L`, `general_category=L`.
    let cat = if CATS.contains(&name) {
        Some(name)
    } else {
        strip("Is")
            .or_else(|| strip("gc="))
            .or_else(|| strip("general_category="))
            .filter(|c| CATS.contains(c))
    };
    if let Some(c) = cat {
        return Ok(format!("\\{p}{{{c}}}"));
    }
    if let Some(rest) = strip("In")
        .or_else(|| strip("block="))
        .or_else(|| strip("blk="))
    {
        return Err(format!("Unicode block \\p{{In{rest}}} is not supported"));
    }
    if name.starts_with("java") {
        return Err(format!("\\p{{{name}}} is not supported"));
    }
    // Binary properties (`IsAlphabetic`) and scripts (`IsGreek`, `script=Greek`, `sc=Greek`).
    if let Some(rest) = strip("Is") {
        let bin = match rest.to_ascii_lowercase().replace(['_', ' '], "").as_str() {
            "alphabetic" => Some("Alphabetic"),
            "ideographic" => Some("Ideographic"),
            "letter" => Some("L"),
            "lowercase" => Some("Lowercase"),
            "uppercase" => Some("Uppercase"),
            "titlecase" => Some("Lt"),
            "punctuation" => Some("P"),
            "control" => Some("Cc"),
            "whitespace" => Some("White_Space"),
            "digit" => Some("Nd"),
            "hexdigit" => Some("Hex_Digit"),
            "joincontrol" => Some("Join_Control"),
            "noncharactercodepoint" => Some("Noncharacter_Code_Point"),
            "assigned" => return Ok(format!("\\{}{{Cn}}", if neg { 'p' } else { 'P' })),
            "emoji" => Some("Emoji"),
            _ => None,
        };
        if let Some(b) = bin {
            return Ok(format!("\\{p}{{{b}}}"));
        }
        return script(rest, p);
    }
    if let Some(rest) = strip("script=").or_else(|| strip("sc=")) {
        return script(rest, p);
    }
    Err(format!("Unknown character property name {{{name}}}"))
}

fn script(name: &str, p: char) -> Result<String, String> {
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!("Unknown character script name {{{name}}}"));
    }
    let s = format!("\\{p}{{sc={name}}}");
    regex::Regex::new(&s)
        .map(|_| s)
        .map_err(|_| format!("Unknown character script name {{{name}}}"))
}

impl P {
    fn peek(&self) -> Option<char> {
        self.s.get(self.i).copied()
    }
    fn peek_at(&self, k: usize) -> Option<char> {
        self.s.get(self.i + k).copied()
    }
    fn err<T>(&self, msg: &str) -> Result<T, String> {
        Err(format!("{msg} near index {}", self.i))
    }

    fn skip_comments(&mut self) {
        if !self.flags.comments {
            return;
        }
        while let Some(c) = self.peek() {
            if c.is_whitespace() {
                self.i += 1;
            } else if c == '#' {
                while let Some(c) = self.peek() {
                    self.i += 1;
                    if c == '\n' {
                        break;
                    }
                }
            } else {
                break;
            }
        }
    }

    fn alternation(&mut self) -> Result<Node, String> {
        let mut alts = vec![self.concat()?];
        while self.peek() == Some('|') {
            self.i += 1;
            alts.push(self.concat()?);
        }
        Ok(if alts.len() == 1 {
            alts.pop().unwrap_or(Node::Concat(vec![]))
        } else {
            Node::Alt(alts)
        })
    }

    fn concat(&mut self) -> Result<Node, String> {
        let mut items = Vec::new();
        loop {
            self.skip_comments();
            match self.peek() {
                None | Some('|') | Some(')') => break,
                Some(c @ ('*' | '+' | '?')) => {
                    return self.err(&format!("Dangling meta character '{c}'"));
                }
                _ => {}
            }
            let Some(atom) = self.atom()? else {
                continue;
            };
            let atom = self.quantified(atom)?;
            items.push(atom);
        }
        Ok(Node::Concat(items))
    }

    fn quantified(&mut self, atom: Node) -> Result<Node, String> {
        self.skip_comments();
        let q = match self.peek() {
            Some(c @ ('*' | '+' | '?')) => {
                self.i += 1;
                c.to_string()
            }
            Some('{') => {
                let start = self.i;
                self.i += 1;
                let mut text = String::from("{");
                let digits = |p: &mut P| {
                    let b = p.i;
                    while p.peek().is_some_and(|c| c.is_ascii_digit()) {
                        p.i += 1;
                    }
                    p.s[b..p.i].iter().collect::<String>()
                };
                let lo = digits(self);
                if lo.is_empty() {
                    self.i = start;
                    return self.err("Illegal repetition");
                }
                text += &lo;
                if self.peek() == Some(',') {
                    self.i += 1;
                    text.push(',');
                    let hi = digits(self);
                    if !hi.is_empty() {
                        let (l, h) = (lo.parse::<u64>(), hi.parse::<u64>());
                        if let (Ok(l), Ok(h)) = (l, h) {
                            if h < l {
                                return self.err("Illegal repetition range");
                            }
                        }
                    }
                    text += &hi;
                }
                if self.peek() != Some('}') {
                    return self.err("Unclosed counted closure");
                }
                self.i += 1;
                text.push('}');
                text
            }
            _ => return Ok(atom),
        };
        let q = match self.peek() {
            Some('?') => {
                self.i += 1;
                q + "?"
            }
            Some('+') => return self.err("possessive quantifiers are not supported"),
            _ => q,
        };
        if matches!(self.peek(), Some('*' | '+' | '?')) {
            // Java rejects `a**`; `a*?` was consumed above.
            return self.err(&format!("Dangling meta character '{}'", self.s[self.i]));
        }
        Ok(Node::Repeat(Box::new(atom), q))
    }

    /// One atom, or None for a construct that produces nothing (inline flags, empty `\Q\E`).
    fn atom(&mut self) -> Result<Option<Node>, String> {
        let c = self.s[self.i];
        self.i += 1;
        Ok(Some(match c {
            '(' => return self.group(),
            '[' => {
                let c = self.class()?;
                // Unicode case folding is a property of the whole Rust class.
                Node::Atom(if self.flags.ci && self.flags.unicode_case {
                    format!("(?i:{c})")
                } else {
                    c
                })
            }
            '{' => {
                self.i -= 1;
                return self.err("Illegal repetition");
            }
            '.' => Node::Atom(if self.flags.dotall {
                "(?s:.)".into()
            } else if self.flags.unix_lines {
                r"[^\n]".into()
            } else {
                format!("[^{LINE_TERMINATORS}]")
            }),
            '^' => Node::Atom(r"\A".into()),
            '$' => Node::Dollar(self.flags.unix_lines),
            '\\' => return self.escape(),
            c => Node::Atom(self.literal(c)),
        }))
    }

    fn literal(&self, c: char) -> String {
        if self.flags.ci {
            if self.flags.unicode_case {
                if c.to_lowercase().ne(c.to_uppercase()) {
                    return format!("(?i:{})", lit(c));
                }
            } else if c.is_ascii_alphabetic() {
                return format!("[{}{}]", c.to_ascii_lowercase(), c.to_ascii_uppercase());
            }
        }
        lit(c)
    }

    fn group(&mut self) -> Result<Option<Node>, String> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return self.err("groups nested too deeply");
        }
        let r = self.group_inner();
        self.depth -= 1;
        r
    }

    fn group_inner(&mut self) -> Result<Option<Node>, String> {
        let saved = self.flags;
        if self.peek() == Some('?') {
            self.i += 1;
            match self.peek() {
                Some(':') => self.i += 1,
                Some(c @ ('=' | '!')) => {
                    self.i += 1;
                    return self.look(false, c == '!');
                }
                Some('>') => return self.err("atomic groups are not supported"),
                Some('<') if matches!(self.peek_at(1), Some('=' | '!')) => {
                    let neg = self.peek_at(1) == Some('!');
                    self.i += 2;
                    return self.look(true, neg);
                }
                Some('<') => {
                    // Named group: names do not matter for a boolean match.
                    self.i += 1;
                    let b = self.i;
                    while self.peek().is_some_and(|c| c.is_ascii_alphanumeric()) {
                        self.i += 1;
                    }
                    if self.i == b || self.peek() != Some('>') || !self.s[b].is_ascii_alphabetic() {
                        return self.err("named capturing group is missing trailing '>'");
                    }
                    self.i += 1;
                }
                _ => {
                    // Inline flags: `(?i)` (rest of the enclosing group) or `(?i:...)`.
                    let mut on = true;
                    loop {
                        let Some(c) = self.peek() else {
                            return self.err("Unknown inline modifier");
                        };
                        self.i += 1;
                        match c {
                            '-' => on = false,
                            'i' => self.flags.ci = on,
                            'u' => self.flags.unicode_case = on,
                            's' => self.flags.dotall = on,
                            'd' => self.flags.unix_lines = on,
                            'x' => self.flags.comments = on,
                            'm' => {
                                if on {
                                    return self.err("the MULTILINE flag (?m) is not supported");
                                }
                            }
                            'U' => {
                                if on {
                                    return self.err(
                                        "the UNICODE_CHARACTER_CLASS flag (?U) is not supported",
                                    );
                                }
                            }
                            ')' => return Ok(None),
                            ':' => break,
                            _ => {
                                self.i -= 1;
                                return self.err("Unknown inline modifier");
                            }
                        }
                    }
                    let inner = self.alternation()?;
                    if self.peek() != Some(')') {
                        return self.err("Unclosed group");
                    }
                    self.i += 1;
                    self.flags = saved;
                    return Ok(Some(Node::Group(Box::new(inner))));
                }
            }
        }
        let inner = self.alternation()?;
        if self.peek() != Some(')') {
            return self.err("Unclosed group");
        }
        self.i += 1;
        self.flags = saved;
        Ok(Some(Node::Group(Box::new(inner))))
    }

    /// After `(?=`, `(?!`, `(?<=` or `(?<!`: accepted only with a single class that is the ASCII
    /// word set or "not a newline" (what an RE2 → Java translation emits for `\b` and `(?m)`).
    fn look(&mut self, behind: bool, negative: bool) -> Result<Option<Node>, String> {
        let saved = self.flags;
        let inner = self.alternation()?;
        if self.peek() != Some(')') {
            return self.err("Unclosed group");
        }
        self.i += 1;
        self.flags = saved;
        let atom = match &inner {
            Node::Concat(v) if v.len() == 1 => match &v[0] {
                Node::Atom(a) => Some(a.as_str()),
                _ => None,
            },
            _ => None,
        };
        let word_forms = [
            r"[0-9A-Z\_a-z]",
            r"[a-zA-Z\_0-9]",
            r"[a-zA-Z0-9\_]",
            r"[\_a-zA-Z0-9]",
        ];
        let word = match atom {
            Some(a) if word_forms.contains(&a) => true,
            Some(r"[^\x{A}]") if negative => {
                if !behind {
                    // Like `$`, a look-ahead at the end must not meet a cut-off terminator.
                    self.has_hard_end = true;
                }
                false
            }
            _ => return Err(UNSUPPORTED_LOOK.into()),
        };
        Ok(Some(Node::Look {
            behind,
            negative,
            word,
        }))
    }

    /// After a backslash outside a class.
    fn escape(&mut self) -> Result<Option<Node>, String> {
        let Some(c) = self.peek() else {
            return self.err("Unexpected internal error");
        };
        match c {
            'A' | 'G' => {
                // `\G` is the end of the previous match: the input start for a single find().
                self.i += 1;
                return Ok(Some(Node::Atom(r"\A".into())));
            }
            'z' => {
                self.i += 1;
                self.has_hard_end = true;
                return Ok(Some(Node::Atom(r"\z".into())));
            }
            'Z' => {
                self.i += 1;
                return Ok(Some(Node::Dollar(self.flags.unix_lines)));
            }
            'b' => {
                self.i += 1;
                if self.peek() == Some('{') {
                    return self.err("\\b{g} is not supported");
                }
                return Ok(Some(Node::Atom(r"\b".into())));
            }
            'B' => {
                self.i += 1;
                return Ok(Some(Node::Atom(r"\B".into())));
            }
            'Q' => {
                self.i += 1;
                let mut out = String::new();
                while self.i < self.s.len() {
                    if self.s[self.i] == '\\' && self.peek_at(1) == Some('E') {
                        self.i += 2;
                        break;
                    }
                    out += &self.literal(self.s[self.i]);
                    self.i += 1;
                }
                return Ok(if out.is_empty() {
                    None
                } else {
                    Some(Node::Group(Box::new(Node::Atom(out))))
                });
            }
            'E' => {
                // A stray `\E` is ignored by Java.
                self.i += 1;
                return Ok(None);
            }
            _ => {}
        }
        let item = self.class_escape()?;
        Ok(Some(Node::Atom(match item {
            ClassItem::Char(ch) => self.literal(ch),
            ClassItem::Set(s) => s,
        })))
    }

    /// Escapes valid both inside and outside classes (after the backslash).
    fn class_escape(&mut self) -> Result<ClassItem, String> {
        let Some(c) = self.peek() else {
            return self.err("Unexpected internal error");
        };
        self.i += 1;
        if let Some((items, neg)) = predefined(c) {
            return Ok(ClassItem::Set(bracket(items, neg)));
        }
        let ch = match c {
            't' => '\t',
            'n' => '\n',
            'r' => '\r',
            'f' => '\x0C',
            'a' => '\x07',
            'e' => '\x1B',
            '0' => self.octal_escape()?,
            'x' => self.hex_escape()?,
            'u' => self.unicode_escape()?,
            'c' => {
                let Some(x) = self.peek() else {
                    return self.err("Illegal control escape sequence");
                };
                self.i += 1;
                char::from_u32(x as u32 ^ 64).unwrap_or('\0')
            }
            'p' | 'P' => {
                let name = self.property_name()?;
                return property(&name, c == 'P', self.flags.ci).map(ClassItem::Set);
            }
            '1'..='9' | 'k' => return self.err("backreferences are not supported"),
            'R' => return self.err("\\R is not supported"),
            'X' => return self.err("\\X is not supported"),
            'N' => return self.err("\\N{name} is not supported"),
            c if c.is_ascii_alphanumeric() => {
                self.i -= 1;
                return self.err("Illegal/unsupported escape sequence");
            }
            c => c,
        };
        Ok(ClassItem::Char(ch))
    }

    /// `\0n`, `\0nn`, `\0mnn` (m ≤ 3): at most three octal digits, value at most 0377.
    fn octal_escape(&mut self) -> Result<char, String> {
        let mut v = 0u32;
        let mut n = 0;
        while n < 3 && self.peek().is_some_and(|d| ('0'..='7').contains(&d)) {
            let d = self.s[self.i].to_digit(8).unwrap_or(0);
            if n == 2 && v / 8 > 3 {
                break;
            }
            v = v * 8 + d;
            self.i += 1;
            n += 1;
        }
        if n == 0 {
            return self.err("Illegal octal escape sequence");
        }
        Ok(char::from_u32(v).unwrap_or('\0'))
    }

    /// `\xhh` or `\x{h...h}` (any code point).
    fn hex_escape(&mut self) -> Result<char, String> {
        if self.peek() != Some('{') {
            let h = self.hex(2)?;
            return Ok(char::from_u32(h).unwrap_or('\0'));
        }
        self.i += 1;
        let b = self.i;
        while self.peek().is_some_and(|d| d.is_ascii_hexdigit()) {
            self.i += 1;
        }
        let h: String = self.s[b..self.i].iter().collect();
        if h.is_empty() || self.peek() != Some('}') {
            return self.err("Unclosed hexadecimal escape sequence");
        }
        self.i += 1;
        u32::from_str_radix(&h, 16)
            .ok()
            .and_then(char::from_u32)
            .ok_or_else(|| format!("Hexadecimal codepoint is too big near index {}", self.i))
    }

    /// `\uhhhh`; a high surrogate followed by `\u` and a low one is one code point, as in Java.
    fn unicode_escape(&mut self) -> Result<char, String> {
        let hi = self.hex(4)?;
        if (0xD800..0xDC00).contains(&hi)
            && self.peek() == Some('\\')
            && self.peek_at(1) == Some('u')
        {
            let save = self.i;
            self.i += 2;
            let lo = self.hex(4)?;
            if (0xDC00..0xE000).contains(&lo) {
                let cp = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                return Ok(char::from_u32(cp).unwrap_or('\0'));
            }
            self.i = save;
            return self.err("lone surrogate escapes are not supported");
        }
        char::from_u32(hi).ok_or_else(|| {
            format!(
                "lone surrogate escapes are not supported near index {}",
                self.i
            )
        })
    }

    /// The name after `\p` or `\P`: `{Name}` or one letter (`\pL`).
    fn property_name(&mut self) -> Result<String, String> {
        if self.peek() != Some('{') {
            let Some(x) = self.peek() else {
                return self.err("Illegal character family");
            };
            self.i += 1;
            return Ok(x.to_string());
        }
        self.i += 1;
        let b = self.i;
        while self.peek().is_some_and(|x| x != '}') {
            self.i += 1;
        }
        if self.peek() != Some('}') {
            return self.err("Unclosed character family");
        }
        let name = self.s[b..self.i].iter().collect();
        self.i += 1;
        Ok(name)
    }

    fn hex(&mut self, n: usize) -> Result<u32, String> {
        let h: String = self.s.iter().skip(self.i).take(n).collect();
        if h.chars().count() != n || !h.chars().all(|c| c.is_ascii_hexdigit()) {
            return self.err("Illegal hexadecimal escape sequence");
        }
        self.i += n;
        u32::from_str_radix(&h, 16).map_err(|e| e.to_string())
    }

    /// After `[`: a Java class, emitted as a Rust class.
    fn class(&mut self) -> Result<String, String> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return self.err("character classes nested too deeply");
        }
        let r = self.class_inner();
        self.depth -= 1;
        r
    }

    fn class_inner(&mut self) -> Result<String, String> {
        let neg = if self.peek() == Some('^') {
            self.i += 1;
            true
        } else {
            false
        };
        let body = self.class_body()?;
        Ok(bracket(&body, neg))
    }

    /// Class contents up to and including the closing `]`, as Rust class items.
    fn class_body(&mut self) -> Result<String, String> {
        let mut out = String::new();
        let mut any = false;
        loop {
            if self.flags.comments {
                while self.peek().is_some_and(char::is_whitespace) {
                    self.i += 1;
                }
            }
            let Some(c) = self.peek() else {
                return self.err("Unclosed character class");
            };
            match c {
                ']' if any => {
                    self.i += 1;
                    return Ok(out);
                }
                '[' => {
                    self.i += 1;
                    out += &self.class()?;
                }
                '&' if self.peek_at(1) == Some('&') => {
                    self.i += 2;
                    // Java: `&&` intersects everything before with everything after.
                    let rest = self.class_body()?;
                    let left = if out.is_empty() {
                        String::new()
                    } else {
                        format!("[{out}]")
                    };
                    let right = if rest.is_empty() {
                        String::new()
                    } else {
                        format!("[{rest}]")
                    };
                    if left.is_empty() || right.is_empty() {
                        // Java treats an empty side as no constraint.
                        return Ok(format!("{left}{right}"));
                    }
                    return Ok(format!("{left}&&{right}"));
                }
                _ => {
                    let first = self.class_atom()?;
                    match first {
                        ClassItem::Set(s) => out += &s,
                        ClassItem::Char(lo) => {
                            if self.peek() == Some('-')
                                && self.peek_at(1).is_some_and(|n| n != ']' && n != '[')
                            {
                                self.i += 1;
                                let ClassItem::Char(hi) = self.class_atom()? else {
                                    return self.err("Illegal character range");
                                };
                                if hi < lo {
                                    return self.err("Illegal character range");
                                }
                                out += &self.class_range(lo, hi);
                            } else {
                                out += &self.class_range(lo, lo);
                            }
                        }
                    }
                }
            }
            any = true;
        }
    }

    fn class_atom(&mut self) -> Result<ClassItem, String> {
        let c = self.s[self.i];
        self.i += 1;
        if c == '\\' {
            if self.peek() == Some('Q') {
                return self.err("\\Q inside a character class is not supported");
            }
            return self.class_escape();
        }
        Ok(ClassItem::Char(c))
    }

    /// A range (or single char) as Rust class items, with case-insensitive closure applied.
    fn class_range(&self, lo: char, hi: char) -> String {
        let one = |a: char, b: char| {
            if a == b {
                class_char(a)
            } else {
                format!("{}-{}", class_char(a), class_char(b))
            }
        };
        let mut s = one(lo, hi);
        if self.flags.ci && !self.flags.unicode_case {
            // ASCII-only case folding: add the other case of the ASCII letters in range.
            for (a, z, shift) in [('a', 'z', -32i32), ('A', 'Z', 32)] {
                let l = lo.max(a);
                let h = hi.min(z);
                if l <= h {
                    let m = |c: char| char::from_u32((c as i32 + shift) as u32).unwrap_or(c);
                    s += &one(m(l), m(h));
                }
            }
        }
        s
    }
}

enum ClassItem {
    Char(char),
    Set(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, s: &str) -> bool {
        compile(p).unwrap_or_else(|e| panic!("{p}: {e}")).find(s)
    }

    #[test]
    fn contains_semantics_and_anchors() {
        assert!(m("b", "abc"));
        assert!(!m("^b", "abc"));
        assert!(m("^abc$", "abc"));
        assert!(
            m("^abc$", "abc\n"),
            "Java $ matches before a final terminator"
        );
        assert!(m("^abc$", "abc\r\n"));
        assert!(!m("^abc$", "abc\n\n"));
        assert!(!m(r"\Aabc\z", "abc\n"));
        assert!(m(r"\Aabc\z", "abc"));
        assert!(m(r"^(?:a|b$)", "b\n"));
        assert!(!m(r"\r$", "x\r\n"), "no match between \\r and \\n");
        assert!(m(r"(?d)^a$", "a\n"));
        assert!(!m(r"(?d)^a$", "a\r"));
        assert!(compile("a$b").is_err());
        assert!(compile("(a$)*").is_err());
    }

    #[test]
    fn dot_and_flags() {
        assert!(!m("^a.b$", "a\nb"));
        assert!(!m("^a.b$", "a\rb"));
        assert!(!m("^a.b$", "a\u{2028}b"));
        assert!(m("(?s)^a.b$", "a\nb"));
        assert!(m("^(?s:a.b)$", "a\rb"));
        assert!(m("^a[^\\n]b$", "a\rb"));
        assert!(m("(?i)abc", "xABCx"));
        assert!(!m("(?i)é", "É"), "ASCII-only case folding by default");
        assert!(m("(?iu)é", "É"));
        assert!(m("(?i)[a-c]+$", "AbC"));
        assert!(!m("(?i)[^a]", "A"));
        assert!(m("a(?i)b", "aB"));
        assert!(!m("(?:(?i)a)b", "AB"));
        assert!(m("(?x) a b # comment", "ab"));
        assert!(compile("(?m)^a$").is_err());
        assert!(compile("(?U)\\w").is_err());
    }

    #[test]
    fn escapes_and_classes() {
        assert!(m(r"\[\&\{\.", "[&{."));
        assert!(!m(r"\.", "a"));
        assert!(m(r"\x{1F600}", "😀"));
        assert!(m(r"\x41\u0042\0103", "ABC"));
        assert!(m(r"\uD83D\uDE00", "😀"));
        assert!(m(r"^\Qa.b*c\E$", "a.b*c"));
        assert!(!m(r"^\Qa.b\E$", "axb"));
        assert!(m(r"^\Qa.b$", "a.b$"), "\\Q without \\E quotes to the end");
        assert!(m(r"^[a-c&&[^b]]+$", "ac"));
        assert!(!m(r"^[a-c&&[^b]]+$", "b"));
        assert!(m(r"^[]a]+$", "]a"));
        assert!(m(r"^[a-]+$", "-a"));
        assert!(m(r"^[\d\s]+$", "1 2"));
        assert!(!m(r"\d", "٣"), "\\d is ASCII-only in Java");
        assert!(!m(r"\w", "é"));
        assert!(m(r"^\p{L}+$", "héllo"));
        assert!(m(r"^\p{IsGreek}+$", "αβγ"));
        assert!(!m(r"\p{IsGreek}", "abc"));
        assert!(m(r"^\p{Lu}", "Ab"));
        assert!(m(r"^\p{Punct}+$", "!#"));
        assert!(m(r"^\P{L}$", "1"));
        assert!(m(r"^[^\n]*$", "abc"));
        assert!(m(r"^a{2,3}$", "aaa"));
        assert!(!m(r"^a{2,3}$", "aaaa"));
        assert!(m(r"^(?<n>ab)+?$", "abab"));
        for bad in [
            r"\p{Greek}",
            r"(?P<n>a)",
            r"a{",
            r"x{,5}",
            r"[[]",
            r"(a)\1",
            r"(?=a)",
            r"a++",
            r"*a",
            r"(a",
            r"a)",
            r"\p{InGreek}",
            r"\k<n>",
            r"[a",
            r"\y",
        ] {
            assert!(compile(bad).is_err(), "{bad} must be rejected");
        }
    }

    #[test]
    fn lookarounds_from_re2_translations() {
        let b = r"(?:(?<=[0-9A-Z_a-z])(?![0-9A-Z_a-z])|(?<![0-9A-Z_a-z])(?=[0-9A-Z_a-z]))";
        let nb = r"(?:(?<=[0-9A-Z_a-z])(?=[0-9A-Z_a-z])|(?<![0-9A-Z_a-z])(?![0-9A-Z_a-z]))";
        assert!(m(&format!("{b}foo{b}"), "a foo."));
        assert!(!m(&format!("{b}foo{b}"), "afoo"));
        assert!(m(&format!("{b}foo{b}"), "éfooé"), "ASCII word boundary");
        assert!(m(&format!("o{nb}o"), "foo"));
        assert!(!m(&format!("o{nb}"), "o"));
        assert!(m(r"(?<![^\n])b(?![^\n])", "a\nb\nc"));
        assert!(!m(r"(?<![^\n])b(?![^\n])", "ab"));
    }

    #[test]
    fn hostile_nesting_is_an_error() {
        assert!(compile(&format!("{}a{}", "(".repeat(100_000), ")".repeat(100_000))).is_err());
        assert!(compile(&format!("{}a{}", "[".repeat(100_000), "]".repeat(100_000))).is_err());
        assert!(compile(&format!("{}a{}", "(".repeat(50), ")".repeat(50))).is_ok());
    }

    #[test]
    fn cache_returns_same_instance() {
        let a = compile_cached("^x+$").unwrap();
        let b = compile_cached("^x+$").unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert!(compile_cached("(").is_err());
    }
}
