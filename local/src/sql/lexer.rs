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
    let (mut i, mut line, mut col) = (0usize, 1u32, 1u32);
    // Advances over `n` chars keeping line/column in step.
    let advance = |i: &mut usize, line: &mut u32, col: &mut u32, n: usize| {
        for _ in 0..n {
            if chars[*i] == '\n' {
                *line += 1;
                *col = 1;
            } else {
                *col += 1;
            }
            *i += 1;
        }
    };
    while i < chars.len() {
        let c = chars[i];
        let pos = Pos { line, col };
        if c.is_whitespace() {
            {
                let n = 1;
                advance(&mut i, &mut line, &mut col, n);
            }
            continue;
        }
        if c == '-' && chars.get(i + 1) == Some(&'-') {
            while i < chars.len() && chars[i] != '\n' {
                {
                    let n = 1;
                    advance(&mut i, &mut line, &mut col, n);
                }
            }
            continue;
        }
        if c == '/' && chars.get(i + 1) == Some(&'*') {
            let mut j = i + 2;
            while j + 1 < chars.len() && !(chars[j] == '*' && chars[j + 1] == '/') {
                j += 1;
            }
            if j + 1 >= chars.len() {
                return Err(syntax_error(pos, "unterminated comment"));
            }
            {
                let n = j + 2 - i;
                advance(&mut i, &mut line, &mut col, n);
            }
            continue;
        }
        if c == '\'' || c == '"' {
            let mut s = String::new();
            let mut j = i + 1;
            loop {
                match chars.get(j) {
                    None => {
                        let what = if c == '\'' {
                            "string literal"
                        } else {
                            "quoted identifier"
                        };
                        return Err(syntax_error(pos, format!("unterminated {what}")));
                    }
                    Some(&ch) if ch == c => {
                        if chars.get(j + 1) == Some(&c) {
                            s.push(c);
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
            {
                let n = j - i;
                advance(&mut i, &mut line, &mut col, n);
            }
            if c == '"' && s.is_empty() {
                return Err(syntax_error(
                    pos,
                    "Zero-length delimited identifier not allowed",
                ));
            }
            out.push(Token {
                tok: if c == '\'' {
                    Tok::Str(s)
                } else {
                    Tok::Quoted(s)
                },
                pos,
            });
            continue;
        }
        if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            let start = i;
            let mut j = i;
            while j < chars.len() && chars[j].is_ascii_digit() {
                j += 1;
            }
            let mut decimal = false;
            if j < chars.len() && chars[j] == '.' {
                decimal = true;
                j += 1;
                while j < chars.len() && chars[j].is_ascii_digit() {
                    j += 1;
                }
            }
            if j < chars.len()
                && (chars[j] == 'e' || chars[j] == 'E')
                && (chars.get(j + 1).is_some_and(|d| d.is_ascii_digit())
                    || (matches!(chars.get(j + 1), Some('+' | '-'))
                        && chars.get(j + 2).is_some_and(|d| d.is_ascii_digit())))
            {
                decimal = true;
                j += 2;
                while j < chars.len() && chars[j].is_ascii_digit() {
                    j += 1;
                }
            }
            let num: String = chars[start..j].iter().collect();
            // A unit glued to the number makes it an interval literal (`1h`, `1.5s`, `10ms`).
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
                let ns = interval_ns(&num, mult).ok_or_else(|| {
                    syntax_error(pos, format!("interval '{num}{unit}' is out of range"))
                })?;
                {
                    let n = k - i;
                    advance(&mut i, &mut line, &mut col, n);
                }
                out.push(Token {
                    tok: Tok::Interval(ns),
                    pos,
                });
                continue;
            }
            {
                let n = j - i;
                advance(&mut i, &mut line, &mut col, n);
            }
            out.push(Token {
                tok: if decimal {
                    Tok::Decimal(num)
                } else {
                    Tok::Int(num)
                },
                pos,
            });
            continue;
        }
        if c.is_alphabetic() || c == '_' {
            let mut j = i;
            while j < chars.len()
                && (chars[j].is_alphanumeric()
                    || chars[j] == '_'
                    || chars[j] == '@'
                    || chars[j] == '$')
            {
                j += 1;
            }
            let word: String = chars[i..j].iter().collect();
            {
                let n = j - i;
                advance(&mut i, &mut line, &mut col, n);
            }
            out.push(Token {
                tok: Tok::Word(word),
                pos,
            });
            continue;
        }
        let rest: String = chars[i..(i + 2).min(chars.len())].iter().collect();
        if let Some(op) = OPS.iter().find(|op| rest.starts_with(**op)) {
            {
                let n = op.chars().count();
                advance(&mut i, &mut line, &mut col, n);
            }
            out.push(Token {
                tok: Tok::Op(op),
                pos,
            });
            continue;
        }
        return Err(syntax_error(
            pos,
            format!("token recognition error at: '{c}'"),
        ));
    }
    out.push(Token {
        tok: Tok::Eof,
        pos: Pos { line, col },
    });
    merge_measure_value(&mut out);
    Ok(out)
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
