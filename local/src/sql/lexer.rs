//! Tokenizer for the Timestream SQL dialect (Trino lexical rules plus Timestream's interval
//! literals such as `1h`/`10ms` and the `measure_value::double` column syntax).

use super::QueryError;

/// 1-based line and column (in characters), as Timestream reports positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

impl std::fmt::Display for Pos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    /// Unquoted word (keyword or identifier), original spelling.
    Word(String),
    /// `"quoted identifier"` with `""` unescaped.
    Quoted(String),
    Str(String),
    /// Integer literal text (digits only).
    Int(String),
    /// Decimal / exponent literal text.
    Decimal(String),
    /// Interval literal (`1h`, `10ms`) in nanoseconds.
    Interval(i64),
    Op(&'static str),
    Eof,
}

#[derive(Debug, Clone)]
pub struct Token {
    pub tok: Tok,
    pub pos: Pos,
}

pub fn syntax_error(pos: Pos, msg: impl std::fmt::Display) -> QueryError {
    QueryError::Validation(format!("line {pos}: {msg}"))
}

/// Nanoseconds per interval-literal unit (Timestream: ns, us, ms, s, m, h, d).
fn unit_ns(unit: &str) -> Option<i64> {
    Some(match unit.to_ascii_lowercase().as_str() {
        "ns" => 1,
        "us" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        "d" => 86_400_000_000_000,
        _ => return None,
    })
}

const OPS: &[&str] = &[
    "<>", "!=", "<=", ">=", "||", "::", "=", "<", ">", "+", "-", "*", "/", "%", "(", ")", ",", ".",
    ";",
];

pub fn tokenize(src: &str) -> Result<Vec<Token>, QueryError> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut at = Cursor {
        i: 0,
        pos: Pos { line: 1, col: 1 },
    };
    while at.i < chars.len() {
        let pos = at.pos;
        let (tok, end) = scan(&chars, at.i, pos)?;
        at.advance_to(&chars, end);
        if let Some(tok) = tok {
            out.push(Token { tok, pos });
        }
    }
    out.push(Token {
        tok: Tok::Eof,
        pos: at.pos,
    });
    merge_measure_value(&mut out);
    Ok(out)
}

/// Where the lexer stands: an index into the characters and its line and column.
struct Cursor {
    i: usize,
    pos: Pos,
}

impl Cursor {
    /// Moves to `end`, keeping line and column in step with the newlines passed.
    fn advance_to(&mut self, chars: &[char], end: usize) {
        for &c in &chars[self.i..end] {
            if c == '\n' {
                self.pos.line += 1;
                self.pos.col = 1;
            } else {
                self.pos.col += 1;
            }
        }
        self.i = end;
    }
}

/// The token starting at `chars[i]` (`None` for whitespace and comments) and the index just
/// past it. The first character decides the token class.
fn scan(chars: &[char], i: usize, pos: Pos) -> Result<(Option<Tok>, usize), QueryError> {
    let c = chars[i];
    let next = chars.get(i + 1).copied();
    let token = |(tok, end)| (Some(tok), end);
    Ok(match c {
        c if c.is_whitespace() => (None, i + 1),
        '-' if next == Some('-') => (None, line_comment_end(chars, i)),
        '/' if next == Some('*') => (None, block_comment_end(chars, i, pos)?),
        '\'' | '"' => token(quoted(chars, i, pos)?),
        c if c.is_ascii_digit() || (c == '.' && next.is_some_and(|d| d.is_ascii_digit())) => {
            token(number(chars, i, pos)?)
        }
        c if c.is_alphabetic() || c == '_' => token(word(chars, i)),
        _ => token(operator(chars, i, pos)?),
    })
}

/// `-- …` runs to the end of the line; the newline itself is whitespace.
fn line_comment_end(chars: &[char], i: usize) -> usize {
    chars[i..]
        .iter()
        .position(|&c| c == '\n')
        .map_or(chars.len(), |n| i + n)
}

/// `/* … */` (not nested).
fn block_comment_end(chars: &[char], i: usize, pos: Pos) -> Result<usize, QueryError> {
    let mut j = i + 2;
    while j + 1 < chars.len() && !(chars[j] == '*' && chars[j + 1] == '/') {
        j += 1;
    }
    if j + 1 >= chars.len() {
        return Err(syntax_error(pos, "unterminated comment"));
    }
    Ok(j + 2)
}

/// `'string'` or `"quoted identifier"`; the quote is escaped by doubling it.
fn quoted(chars: &[char], i: usize, pos: Pos) -> Result<(Tok, usize), QueryError> {
    let q = chars[i];
    let mut s = String::new();
    let mut j = i + 1;
    loop {
        match chars.get(j) {
            None => {
                let what = if q == '\'' {
                    "string literal"
                } else {
                    "quoted identifier"
                };
                return Err(syntax_error(pos, format!("unterminated {what}")));
            }
            Some(&ch) if ch == q => {
                if chars.get(j + 1) == Some(&q) {
                    s.push(q);
                    j += 2;
                } else {
                    j += 1;
                    break;
                }
            }
            Some(&ch) => {
                s.push(ch);
                j += 1;
            }
        }
    }
    if q == '\'' {
        return Ok((Tok::Str(s), j));
    }
    if s.is_empty() {
        return Err(syntax_error(
            pos,
            "Zero-length delimited identifier not allowed",
        ));
    }
    Ok((Tok::Quoted(s), j))
}

/// An integer (`12`), a decimal (`1.5`, `.5`, `2e3`) or, with a unit glued to it, an interval
/// literal (`1h`, `1.5s`, `10ms`).
fn number(chars: &[char], i: usize, pos: Pos) -> Result<(Tok, usize), QueryError> {
    let digits_from = |mut j: usize| {
        while j < chars.len() && chars[j].is_ascii_digit() {
            j += 1;
        }
        j
    };
    let mut j = digits_from(i);
    let mut decimal = false;
    if j < chars.len() && chars[j] == '.' {
        decimal = true;
        j = digits_from(j + 1);
    }
    // An exponent needs a digit after `e` (or after its sign); otherwise `e` starts a unit.
    if j < chars.len()
        && (chars[j] == 'e' || chars[j] == 'E')
        && (chars.get(j + 1).is_some_and(|d| d.is_ascii_digit())
            || (matches!(chars.get(j + 1), Some('+' | '-'))
                && chars.get(j + 2).is_some_and(|d| d.is_ascii_digit())))
    {
        decimal = true;
        j = digits_from(j + 2);
    }
    let num: String = chars[i..j].iter().collect();
    let mut k = j;
    while k < chars.len() && (chars[k].is_alphanumeric() || chars[k] == '_') {
        k += 1;
    }
    if k > j {
        let unit: String = chars[j..k].iter().collect();
        let Some(mult) = unit_ns(&unit) else {
            return Err(syntax_error(
                pos,
                format!("mismatched input '{num}{unit}'. Invalid interval literal"),
            ));
        };
        let ns = interval_ns(&num, mult)
            .ok_or_else(|| syntax_error(pos, format!("interval '{num}{unit}' is out of range")))?;
        return Ok((Tok::Interval(ns), k));
    }
    let tok = if decimal {
        Tok::Decimal(num)
    } else {
        Tok::Int(num)
    };
    Ok((tok, j))
}

/// A keyword or unquoted identifier; `@` and `$` may follow the first character.
fn word(chars: &[char], i: usize) -> (Tok, usize) {
    let mut j = i;
    while j < chars.len()
        && (chars[j].is_alphanumeric() || chars[j] == '_' || chars[j] == '@' || chars[j] == '$')
    {
        j += 1;
    }
    (Tok::Word(chars[i..j].iter().collect()), j)
}

/// An operator or punctuation of [`OPS`], the two-character ones first.
fn operator(chars: &[char], i: usize, pos: Pos) -> Result<(Tok, usize), QueryError> {
    let rest: String = chars[i..(i + 2).min(chars.len())].iter().collect();
    match OPS.iter().find(|op| rest.starts_with(**op)) {
        Some(op) => Ok((Tok::Op(op), i + op.chars().count())),
        None => Err(syntax_error(
            pos,
            format!("token recognition error at: '{}'", chars[i]),
        )),
    }
}

/// Decimal text times a unit, exactly (no float rounding for the common integral case).
fn interval_ns(num: &str, mult: i64) -> Option<i64> {
    if let Ok(n) = num.parse::<i64>() {
        return n.checked_mul(mult);
    }
    let v = num.parse::<f64>().ok()? * mult as f64;
    (v.is_finite() && v.abs() < 9.2e18).then(|| v.round() as i64)
}

/// Timestream spells typed measure columns `measure_value::double` (also unquoted): join a
/// word, `::` and a word written without spaces into one identifier token.
fn merge_measure_value(toks: &mut Vec<Token>) {
    let mut i = 0;
    while i + 2 < toks.len() {
        let joinable = matches!(&toks[i].tok, Tok::Word(_))
            && toks[i + 1].tok == Tok::Op("::")
            && matches!(&toks[i + 2].tok, Tok::Word(_))
            && toks[i + 1].pos.line == toks[i].pos.line
            && toks[i + 2].pos.line == toks[i].pos.line;
        if joinable {
            if let (Tok::Word(a), Tok::Word(b)) = (&toks[i].tok, &toks[i + 2].tok) {
                let adjacent = toks[i + 1].pos.col == toks[i].pos.col + a.chars().count() as u32
                    && toks[i + 2].pos.col == toks[i + 1].pos.col + 2;
                if adjacent {
                    let name = format!("{}::{}", a, b.to_ascii_lowercase());
                    toks[i].tok = Tok::Quoted(name);
                    toks.drain(i + 1..i + 3);
                }
            }
        }
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Tok> {
        tokenize(s).unwrap().into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn literals_and_intervals() {
        assert_eq!(
            toks("'it''s' \"a\"\"b\" 12 1.5 2e3 1h 10ms .5"),
            vec![
                Tok::Str("it's".into()),
                Tok::Quoted("a\"b".into()),
                Tok::Int("12".into()),
                Tok::Decimal("1.5".into()),
                Tok::Decimal("2e3".into()),
                Tok::Interval(3_600_000_000_000),
                Tok::Interval(10_000_000),
                Tok::Decimal(".5".into()),
                Tok::Eof
            ]
        );
    }

    #[test]
    fn measure_value_syntax_and_positions() {
        let t = tokenize("SELECT\n  measure_value::double, x :: y").unwrap();
        assert_eq!(t[1].tok, Tok::Quoted("measure_value::double".into()));
        assert_eq!(t[1].pos, Pos { line: 2, col: 3 });
        // With spaces it stays three tokens (a cast syntax Timestream does not have).
        assert_eq!(t[3].tok, Tok::Word("x".into()));
        assert_eq!(t[4].tok, Tok::Op("::"));
    }

    #[test]
    fn backslash_is_literal_and_errors_have_positions() {
        assert_eq!(toks(r"'\d'")[0], Tok::Str(r"\d".into()));
        match tokenize("SELECT 'abc") {
            Err(QueryError::Validation(m)) => {
                assert_eq!(m, "line 1:8: unterminated string literal")
            }
            other => panic!("{other:?}"),
        }
        assert!(tokenize("SELECT 5xyz").is_err());
    }
}
