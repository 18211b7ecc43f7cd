//! Recursive-descent parser producing the query AST (Trino operator precedence).

use super::lexer::{syntax_error, tokenize, Pos, Tok, Token};
use super::{QueryError, ScalarType};

#[derive(Debug, Clone)]
pub enum Lit {
    Null,
    Bool(bool),
    Int(String),
    Decimal(String),
    Str(String),
    /// Day-to-second interval in nanoseconds.
    Interval(i64),
    Timestamp(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    And,
    Or,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Concat,
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Eq => "=",
            BinOp::Ne => "<>",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::And => "AND",
            BinOp::Or => "OR",
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Mod => "%",
            BinOp::Concat => "||",
        }
    }
}

#[derive(Debug, Clone)]
pub enum Expr {
    Col {
        name: String,
        pos: Pos,
    },
    Lit {
        v: Lit,
        pos: Pos,
    },
    Neg {
        e: Box<Expr>,
        pos: Pos,
    },
    Not {
        e: Box<Expr>,
        pos: Pos,
    },
    Bin {
        op: BinOp,
        l: Box<Expr>,
        r: Box<Expr>,
        pos: Pos,
    },
    Between {
        e: Box<Expr>,
        lo: Box<Expr>,
        hi: Box<Expr>,
        neg: bool,
        pos: Pos,
    },
    In {
        e: Box<Expr>,
        list: Vec<Expr>,
        neg: bool,
        pos: Pos,
    },
    IsNull {
        e: Box<Expr>,
        neg: bool,
        pos: Pos,
    },
    Like {
        e: Box<Expr>,
        pat: Box<Expr>,
        esc: Option<Box<Expr>>,
        neg: bool,
        pos: Pos,
    },
    Func {
        name: String,
        args: Vec<Expr>,
        distinct: bool,
        star: bool,
        pos: Pos,
    },
    Case {
        operand: Option<Box<Expr>>,
        whens: Vec<(Expr, Expr)>,
        else_: Option<Box<Expr>>,
        pos: Pos,
    },
    Cast {
        e: Box<Expr>,
        ty: ScalarType,
        pos: Pos,
    },
}

impl Expr {
    pub fn pos(&self) -> Pos {
        match self {
            Expr::Col { pos, .. }
            | Expr::Lit { pos, .. }
            | Expr::Neg { pos, .. }
            | Expr::Not { pos, .. }
            | Expr::Bin { pos, .. }
            | Expr::Between { pos, .. }
            | Expr::In { pos, .. }
            | Expr::IsNull { pos, .. }
            | Expr::Like { pos, .. }
            | Expr::Func { pos, .. }
            | Expr::Case { pos, .. }
            | Expr::Cast { pos, .. } => *pos,
        }
    }

    /// Position-free canonical text, used to match expressions against GROUP BY keys.
    pub fn key(&self) -> String {
        fn list(v: &[Expr]) -> String {
            v.iter().map(Expr::key).collect::<Vec<_>>().join(",")
        }
        match self {
            Expr::Col { name, .. } => format!("\"{}\"", name.replace('"', "\"\"")),
            Expr::Lit { v, .. } => format!("{v:?}"),
            Expr::Neg { e, .. } => format!("(-{})", e.key()),
            Expr::Not { e, .. } => format!("(NOT {})", e.key()),
            Expr::Bin { op, l, r, .. } => format!("({} {} {})", l.key(), op.symbol(), r.key()),
            Expr::Between { e, lo, hi, neg, .. } => {
                format!("({} {neg} BETWEEN {} AND {})", e.key(), lo.key(), hi.key())
            }
            Expr::In {
                e, list: l, neg, ..
            } => format!("({} {neg} IN ({}))", e.key(), list(l)),
            Expr::IsNull { e, neg, .. } => format!("({} IS {neg} NULL)", e.key()),
            Expr::Like {
                e, pat, esc, neg, ..
            } => format!(
                "({} {neg} LIKE {} {})",
                e.key(),
                pat.key(),
                esc.as_ref().map(|x| x.key()).unwrap_or_default()
            ),
            Expr::Func {
                name,
                args,
                distinct,
                star,
                ..
            } => format!(
                "{name}({}{})",
                if *distinct { "DISTINCT " } else { "" },
                if *star { "*".to_string() } else { list(args) }
            ),
            Expr::Case {
                operand,
                whens,
                else_,
                ..
            } => {
                let mut s = format!(
                    "CASE {}",
                    operand.as_ref().map(|x| x.key()).unwrap_or_default()
                );
                for (w, t) in whens {
                    s += &format!(" WHEN {} THEN {}", w.key(), t.key());
                }
                s + &format!(
                    " ELSE {} END",
                    else_.as_ref().map(|x| x.key()).unwrap_or_default()
                )
            }
            Expr::Cast { e, ty, .. } => format!("CAST({} AS {})", e.key(), ty.as_str()),
        }
    }

    /// Direct children, for tree walks.
    pub fn children(&self) -> Vec<&Expr> {
        match self {
            Expr::Col { .. } | Expr::Lit { .. } => vec![],
            Expr::Neg { e, .. } | Expr::Not { e, .. } | Expr::IsNull { e, .. } => vec![e],
            Expr::Cast { e, .. } => vec![e],
            Expr::Bin { l, r, .. } => vec![l, r],
            Expr::Between { e, lo, hi, .. } => vec![e, lo, hi],
            Expr::In { e, list, .. } => std::iter::once(&**e).chain(list.iter()).collect(),
            Expr::Like { e, pat, esc, .. } => {
                let mut v: Vec<&Expr> = vec![e, pat];
                if let Some(x) = esc {
                    v.push(x);
                }
                v
            }
            Expr::Func { args, .. } => args.iter().collect(),
            Expr::Case {
                operand,
                whens,
                else_,
                ..
            } => {
                let mut v: Vec<&Expr> = Vec::new();
                if let Some(o) = operand {
                    v.push(o);
                }
                for (w, t) in whens {
                    v.push(w);
                    v.push(t);
                }
                if let Some(e) = else_ {
                    v.push(e);
                }
                v
            }
        }
    }
}

#[derive(Debug, Clone)]
pub enum SelectItem {
    Star(Pos),
    Expr { e: Expr, alias: Option<String> },
}

#[derive(Debug, Clone)]
pub struct TableRef {
    pub database: Option<String>,
    pub table: String,
    pub pos: Pos,
}

#[derive(Debug, Clone)]
pub struct OrderItem {
    pub e: Expr,
    pub desc: bool,
    pub nulls_first: Option<bool>,
}

#[derive(Debug, Clone)]
pub struct Select {
    pub distinct: bool,
    pub items: Vec<SelectItem>,
    pub from: Option<TableRef>,
    pub where_: Option<Expr>,
    pub group_by: Vec<Expr>,
    pub having: Option<Expr>,
    pub order_by: Vec<OrderItem>,
    pub limit: Option<u64>,
}

/// Words that cannot be used as bare identifiers (subset of Trino's reserved words that matter
/// for this grammar). `time` is deliberately absent: Timestream queries use it unquoted.
const RESERVED: &[&str] = &[
    "select",
    "from",
    "where",
    "group",
    "by",
    "having",
    "order",
    "limit",
    "and",
    "or",
    "not",
    "in",
    "is",
    "null",
    "like",
    "between",
    "as",
    "true",
    "false",
    "case",
    "when",
    "then",
    "else",
    "end",
    "distinct",
    "all",
    "join",
    "on",
    "union",
    "escape",
    "cast",
    "with",
    "inner",
    "left",
    "right",
    "cross",
    "full",
    "outer",
    "except",
    "intersect",
    "exists",
    "using",
    "natural",
    "asc",
    "desc",
    "nulls",
    "offset",
    "values",
];

fn is_reserved(w: &str) -> bool {
    RESERVED.iter().any(|r| r.eq_ignore_ascii_case(w))
}

/// `DESCRIBE "db"."table"`: `Some(table)` when the statement is a DESCRIBE, `None` when it
/// is something else (then [`parse`] applies).
pub fn parse_describe(src: &str) -> Result<Option<TableRef>, QueryError> {
    let toks = tokenize(src)?;
    if !matches!(toks.first().map(|t| &t.tok), Some(Tok::Word(w)) if w.eq_ignore_ascii_case("describe"))
    {
        return Ok(None);
    }
    let mut p = Parser {
        toks,
        i: 1,
        depth: 0,
    };
    let t = p.table_ref()?;
    p.eat_op(";");
    if p.peek() != &Tok::Eof {
        return Err(p.unexpected("<EOF>"));
    }
    Ok(Some(t))
}

/// A `SHOW` statement (Timestream's metadata queries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Show {
    Databases,
    /// `SHOW TABLES [FROM db]`.
    Tables(Option<String>),
    /// `SHOW MEASURES FROM db.table`.
    Measures(String, String),
}

/// `SHOW DATABASES | TABLES [FROM db] | MEASURES FROM db.table [LIKE pattern]`: `Some` when
/// the statement is a SHOW, `None` when it is something else.
pub fn parse_show(src: &str) -> Result<Option<Show>, QueryError> {
    let toks = tokenize(src)?;
    if !matches!(toks.first().map(|t| &t.tok), Some(Tok::Word(w)) if w.eq_ignore_ascii_case("show"))
    {
        return Ok(None);
    }
    let mut p = Parser {
        toks,
        i: 1,
        depth: 0,
    };
    let show = if p.eat_kw("databases") {
        Show::Databases
    } else if p.eat_kw("tables") {
        Show::Tables(if p.eat_kw("from") {
            Some(p.ident()?.0)
        } else {
            None
        })
    } else if p.eat_kw("measures") {
        p.expect_kw("from")?;
        let t = p.table_ref()?;
        let Some(db) = t.database else {
            return Err(syntax_error(
                t.pos,
                "SHOW MEASURES needs FROM database.table",
            ));
        };
        Show::Measures(db, t.table)
    } else {
        return Err(p.unexpected("DATABASES, TABLES, MEASURES"));
    };
    if p.eat_kw("like") {
        if !matches!(p.peek(), Tok::Str(_)) {
            return Err(p.unexpected("<string>"));
        }
        p.bump();
    }
    p.eat_op(";");
    if p.peek() != &Tok::Eof {
        return Err(p.unexpected("<EOF>"));
    }
    Ok(Some(show))
}

pub fn parse(src: &str) -> Result<Select, QueryError> {
    let toks = tokenize(src)?;
    let mut p = Parser {
        toks,
        i: 0,
        depth: 0,
    };
    let q = p.select()?;
    p.eat_op(";");
    if p.peek() != &Tok::Eof {
        return Err(p.unexpected("<EOF>"));
    }
    let roots = q
        .items
        .iter()
        .filter_map(|i| match i {
            SelectItem::Expr { e, .. } => Some(e),
            SelectItem::Star(_) => None,
        })
        .chain(q.where_.iter())
        .chain(q.group_by.iter())
        .chain(q.having.iter())
        .chain(q.order_by.iter().map(|o| &o.e));
    for e in roots {
        check_depth(e)?;
    }
    Ok(q)
}

/// Parenthesis / prefix-operator nesting accepted by the recursive-descent parser.
const MAX_NESTING: usize = 64;
/// Expression tree depth accepted after parsing (the translator recurses over the tree).
const MAX_TREE_DEPTH: usize = 200;

/// Rejects trees deep enough to threaten the stack of later recursive passes (iterative walk).
fn check_depth(root: &Expr) -> Result<(), QueryError> {
    let mut stack = vec![(root, 1usize)];
    while let Some((e, d)) = stack.pop() {
        if d > MAX_TREE_DEPTH {
            return Err(syntax_error(e.pos(), "Expression is nested too deeply"));
        }
        stack.extend(e.children().into_iter().map(|c| (c, d + 1)));
    }
    Ok(())
}

/// Builds a balanced tree over an associative AND/OR chain, so that long predicate lists
/// (e.g. one term per label) stay shallow.
fn balanced(op: BinOp, mut items: Vec<Expr>, mut ops: Vec<Pos>) -> Expr {
    if items.len() == 1 {
        return items.pop().unwrap_or(Expr::Lit {
            v: Lit::Null,
            pos: Pos { line: 1, col: 1 },
        });
    }
    let mid = items.len() / 2;
    let right_items = items.split_off(mid);
    let right_ops = ops.split_off(mid);
    let pos = ops.pop().unwrap_or(Pos { line: 1, col: 1 });
    Expr::Bin {
        op,
        l: Box::new(balanced(op, items, ops)),
        r: Box::new(balanced(op, right_items, right_ops)),
        pos,
    }
}

struct Parser {
    toks: Vec<Token>,
    i: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.i].tok
    }
    fn peek_at(&self, k: usize) -> &Tok {
        &self.toks[(self.i + k).min(self.toks.len() - 1)].tok
    }
    fn pos(&self) -> Pos {
        self.toks[self.i].pos
    }
    fn bump(&mut self) -> Token {
        let t = self.toks[self.i].clone();
        if self.i + 1 < self.toks.len() {
            self.i += 1;
        }
        t
    }
    fn is_kw(&self, kw: &str) -> bool {
        matches!(self.peek(), Tok::Word(w) if w.eq_ignore_ascii_case(kw))
    }
    fn is_kw_at(&self, k: usize, kw: &str) -> bool {
        matches!(self.peek_at(k), Tok::Word(w) if w.eq_ignore_ascii_case(kw))
    }
    fn eat_kw(&mut self, kw: &str) -> bool {
        if self.is_kw(kw) {
            self.bump();
            true
        } else {
            false
        }
    }
    fn eat_op(&mut self, op: &str) -> bool {
        if matches!(self.peek(), Tok::Op(o) if *o == op) {
            self.bump();
            true
        } else {
            false
        }
    }
    fn expect_kw(&mut self, kw: &str) -> Result<(), QueryError> {
        if self.eat_kw(kw) {
            Ok(())
        } else {
            Err(self.unexpected(&format!("'{}'", kw.to_ascii_uppercase())))
        }
    }
    fn expect_op(&mut self, op: &str) -> Result<(), QueryError> {
        if self.eat_op(op) {
            Ok(())
        } else {
            Err(self.unexpected(&format!("'{op}'")))
        }
    }
    fn unexpected(&self, expecting: &str) -> QueryError {
        let shown = match self.peek() {
            Tok::Eof => "<EOF>".to_string(),
            Tok::Word(w) => w.clone(),
            Tok::Quoted(q) => format!("\"{q}\""),
            Tok::Str(s) => format!("'{s}'"),
            Tok::Int(s) | Tok::Decimal(s) => s.clone(),
            Tok::Interval(_) => "interval literal".into(),
            Tok::Op(o) => (*o).to_string(),
        };
        syntax_error(
            self.pos(),
            format!("mismatched input '{shown}'. Expecting: {expecting}"),
        )
    }

    /// An identifier (quoted, or a non-reserved word); returns (name, quoted, pos).
    fn ident(&mut self) -> Result<(String, bool, Pos), QueryError> {
        let pos = self.pos();
        match self.peek().clone() {
            Tok::Quoted(q) => {
                self.bump();
                Ok((q, true, pos))
            }
            Tok::Word(w) if !is_reserved(&w) => {
                self.bump();
                Ok((w, false, pos))
            }
            _ => Err(self.unexpected("<identifier>")),
        }
    }

    fn select(&mut self) -> Result<Select, QueryError> {
        if self.is_kw("with") {
            return Err(syntax_error(
                self.pos(),
                "WITH queries are not supported by timestream-local",
            ));
        }
        // SHOW is parsed (parse_show) so that it is authorized as Timestream does, but not run:
        // say so rather than "Expecting: 'SELECT'".
        if self.is_kw("show") {
            return Err(syntax_error(
                self.pos(),
                "SHOW statements are not supported by timestream-local",
            ));
        }
        self.expect_kw("select")?;
        let distinct = if self.eat_kw("distinct") {
            true
        } else {
            self.eat_kw("all");
            false
        };
        let mut items = vec![self.select_item()?];
        while self.eat_op(",") {
            items.push(self.select_item()?);
        }
        let from = if self.eat_kw("from") {
            Some(self.table_ref()?)
        } else {
            None
        };
        if matches!(self.peek(), Tok::Op(","))
            || self.is_kw("join")
            || self.is_kw("cross")
            || self.is_kw("inner")
            || self.is_kw("left")
            || self.is_kw("right")
            || self.is_kw("full")
        {
            return Err(syntax_error(
                self.pos(),
                "joins are not supported by timestream-local",
            ));
        }
        let where_ = if self.eat_kw("where") {
            Some(self.expr()?)
        } else {
            None
        };
        let mut group_by = Vec::new();
        if self.eat_kw("group") {
            self.expect_kw("by")?;
            loop {
                group_by.push(self.expr()?);
                if !self.eat_op(",") {
                    break;
                }
            }
        }
        let having = if self.eat_kw("having") {
            Some(self.expr()?)
        } else {
            None
        };
        if self.is_kw("union") || self.is_kw("except") || self.is_kw("intersect") {
            return Err(syntax_error(
                self.pos(),
                "set operations are not supported by timestream-local",
            ));
        }
        let mut order_by = Vec::new();
        if self.eat_kw("order") {
            self.expect_kw("by")?;
            order_by.push(self.order_item()?);
            while self.eat_op(",") {
                order_by.push(self.order_item()?);
            }
        }
        let limit = if self.eat_kw("limit") {
            self.limit()?
        } else {
            None
        };
        Ok(Select {
            distinct,
            items,
            from,
            where_,
            group_by,
            having,
            order_by,
            limit,
        })
    }

    /// `*` or an expression with an optional alias (`AS` may be left out).
    fn select_item(&mut self) -> Result<SelectItem, QueryError> {
        if matches!(self.peek(), Tok::Op("*")) {
            let pos = self.pos();
            self.bump();
            return Ok(SelectItem::Star(pos));
        }
        let e = self.expr()?;
        let alias = if self.eat_kw("as")
            || matches!(self.peek(), Tok::Quoted(_))
            || matches!(self.peek(), Tok::Word(w) if !is_reserved(w))
        {
            Some(self.ident()?.0)
        } else {
            None
        };
        Ok(SelectItem::Expr { e, alias })
    }

    /// `expr [ASC | DESC] [NULLS FIRST | NULLS LAST]`.
    fn order_item(&mut self) -> Result<OrderItem, QueryError> {
        let e = self.expr()?;
        let desc = if self.eat_kw("desc") {
            true
        } else {
            self.eat_kw("asc");
            false
        };
        let nulls_first = if self.eat_kw("nulls") {
            if self.eat_kw("first") {
                Some(true)
            } else {
                self.expect_kw("last")?;
                Some(false)
            }
        } else {
            None
        };
        Ok(OrderItem {
            e,
            desc,
            nulls_first,
        })
    }

    /// What follows `LIMIT`: a row count, or `ALL` (no limit).
    fn limit(&mut self) -> Result<Option<u64>, QueryError> {
        if self.eat_kw("all") {
            return Ok(None);
        }
        let Tok::Int(n) = self.peek().clone() else {
            return Err(self.unexpected("<integer>, 'ALL'"));
        };
        let pos = self.pos();
        self.bump();
        n.parse::<u64>()
            .map(Some)
            .map_err(|_| syntax_error(pos, format!("Invalid numeric literal: {n}")))
    }

    fn table_ref(&mut self) -> Result<TableRef, QueryError> {
        let pos = self.pos();
        if matches!(self.peek(), Tok::Op("(")) {
            return Err(syntax_error(
                pos,
                "subqueries are not supported by timestream-local",
            ));
        }
        let (first, _, _) = self.ident()?;
        let (database, table) = if self.eat_op(".") {
            let (second, _, _) = self.ident()?;
            if matches!(self.peek(), Tok::Op(".")) {
                return Err(syntax_error(
                    self.pos(),
                    "mismatched input '.'. Expecting: <identifier>",
                ));
            }
            (Some(first), second)
        } else {
            (None, first)
        };
        // A table alias only qualifies column references, which resolve by their last part.
        if self.eat_kw("as")
            || matches!(self.peek(), Tok::Quoted(_))
            || matches!(self.peek(), Tok::Word(w) if !is_reserved(w))
        {
            self.ident()?;
        }
        Ok(TableRef {
            database,
            table,
            pos,
        })
    }

    /// Guards recursion so hostile nesting yields an error instead of a stack overflow.
    fn enter(&mut self) -> Result<(), QueryError> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(syntax_error(self.pos(), "Expression is nested too deeply"));
        }
        Ok(())
    }

    pub fn expr(&mut self) -> Result<Expr, QueryError> {
        self.enter()?;
        let e = self.or();
        self.depth -= 1;
        e
    }

    fn or(&mut self) -> Result<Expr, QueryError> {
        let mut items = vec![self.and()?];
        let mut ops = Vec::new();
        while self.is_kw("or") {
            ops.push(self.bump().pos);
            items.push(self.and()?);
        }
        Ok(balanced(BinOp::Or, items, ops))
    }

    fn and(&mut self) -> Result<Expr, QueryError> {
        let mut items = vec![self.not()?];
        let mut ops = Vec::new();
        while self.is_kw("and") {
            ops.push(self.bump().pos);
            items.push(self.not()?);
        }
        Ok(balanced(BinOp::And, items, ops))
    }

    fn not(&mut self) -> Result<Expr, QueryError> {
        if self.is_kw("not") {
            let pos = self.bump().pos;
            self.enter()?;
            let e = self.not();
            self.depth -= 1;
            return Ok(Expr::Not {
                e: Box::new(e?),
                pos,
            });
        }
        self.predicate()
    }

    fn predicate(&mut self) -> Result<Expr, QueryError> {
        let mut e = self.value()?;
        loop {
            let pos = self.pos();
            let cmp = match self.peek() {
                Tok::Op("=") => Some(BinOp::Eq),
                Tok::Op("<>") | Tok::Op("!=") => Some(BinOp::Ne),
                Tok::Op("<") => Some(BinOp::Lt),
                Tok::Op("<=") => Some(BinOp::Le),
                Tok::Op(">") => Some(BinOp::Gt),
                Tok::Op(">=") => Some(BinOp::Ge),
                _ => None,
            };
            if let Some(op) = cmp {
                self.bump();
                let r = self.value()?;
                e = Expr::Bin {
                    op,
                    l: Box::new(e),
                    r: Box::new(r),
                    pos,
                };
                continue;
            }
            let neg = self.is_kw("not")
                && (self.is_kw_at(1, "between")
                    || self.is_kw_at(1, "in")
                    || self.is_kw_at(1, "like"));
            if neg {
                self.bump();
            }
            if self.eat_kw("between") {
                let lo = self.value()?;
                self.expect_kw("and")?;
                let hi = self.value()?;
                e = Expr::Between {
                    e: Box::new(e),
                    lo: Box::new(lo),
                    hi: Box::new(hi),
                    neg,
                    pos,
                };
            } else if self.eat_kw("in") {
                self.expect_op("(")?;
                if self.is_kw("select") {
                    return Err(syntax_error(
                        self.pos(),
                        "subqueries are not supported by timestream-local",
                    ));
                }
                let mut list = Vec::new();
                loop {
                    list.push(self.expr()?);
                    if !self.eat_op(",") {
                        break;
                    }
                }
                self.expect_op(")")?;
                e = Expr::In {
                    e: Box::new(e),
                    list,
                    neg,
                    pos,
                };
            } else if self.eat_kw("like") {
                let pat = self.value()?;
                let esc = if self.eat_kw("escape") {
                    Some(Box::new(self.value()?))
                } else {
                    None
                };
                e = Expr::Like {
                    e: Box::new(e),
                    pat: Box::new(pat),
                    esc,
                    neg,
                    pos,
                };
            } else if self.is_kw("is") {
                self.bump();
                let neg = self.eat_kw("not");
                self.expect_kw("null")?;
                e = Expr::IsNull {
                    e: Box::new(e),
                    neg,
                    pos,
                };
            } else {
                return Ok(e);
            }
        }
    }

    fn value(&mut self) -> Result<Expr, QueryError> {
        let mut l = self.additive()?;
        while matches!(self.peek(), Tok::Op("||")) {
            let pos = self.bump().pos;
            let r = self.additive()?;
            l = Expr::Bin {
                op: BinOp::Concat,
                l: Box::new(l),
                r: Box::new(r),
                pos,
            };
        }
        Ok(l)
    }

    fn additive(&mut self) -> Result<Expr, QueryError> {
        let mut l = self.multiplicative()?;
        loop {
            let op = match self.peek() {
                Tok::Op("+") => BinOp::Add,
                Tok::Op("-") => BinOp::Sub,
                _ => return Ok(l),
            };
            let pos = self.bump().pos;
            let r = self.multiplicative()?;
            l = Expr::Bin {
                op,
                l: Box::new(l),
                r: Box::new(r),
                pos,
            };
        }
    }

    fn multiplicative(&mut self) -> Result<Expr, QueryError> {
        let mut l = self.unary()?;
        loop {
            let op = match self.peek() {
                Tok::Op("*") => BinOp::Mul,
                Tok::Op("/") => BinOp::Div,
                Tok::Op("%") => BinOp::Mod,
                _ => return Ok(l),
            };
            let pos = self.bump().pos;
            let r = self.unary()?;
            l = Expr::Bin {
                op,
                l: Box::new(l),
                r: Box::new(r),
                pos,
            };
        }
    }

    fn unary(&mut self) -> Result<Expr, QueryError> {
        let pos = self.pos();
        if self.eat_op("-") || self.eat_op("+") {
            let neg = matches!(self.toks[self.i - 1].tok, Tok::Op("-"));
            self.enter()?;
            let e = self.unary();
            self.depth -= 1;
            let e = e?;
            return Ok(if neg {
                Expr::Neg {
                    e: Box::new(e),
                    pos,
                }
            } else {
                e
            });
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, QueryError> {
        let pos = self.pos();
        let lit = |v| Ok(Expr::Lit { v, pos });
        match self.peek().clone() {
            Tok::Str(s) => {
                self.bump();
                lit(Lit::Str(s))
            }
            Tok::Int(s) => {
                self.bump();
                lit(Lit::Int(s))
            }
            Tok::Decimal(s) => {
                self.bump();
                lit(Lit::Decimal(s))
            }
            Tok::Interval(ns) => {
                self.bump();
                lit(Lit::Interval(ns))
            }
            Tok::Op("(") => {
                self.bump();
                if self.is_kw("select") {
                    return Err(syntax_error(
                        self.pos(),
                        "subqueries are not supported by timestream-local",
                    ));
                }
                let e = self.expr()?;
                self.expect_op(")")?;
                Ok(e)
            }
            Tok::Quoted(_) => self.column_or_call(),
            Tok::Word(w) => {
                let lw = w.to_ascii_lowercase();
                match lw.as_str() {
                    "null" => {
                        self.bump();
                        lit(Lit::Null)
                    }
                    "true" | "false" => {
                        self.bump();
                        lit(Lit::Bool(lw == "true"))
                    }
                    "case" => self.case(),
                    "cast" => self.cast(),
                    "timestamp" if matches!(self.peek_at(1), Tok::Str(_)) => {
                        self.bump();
                        let Tok::Str(s) = self.bump().tok else {
                            unreachable!("checked by the guard")
                        };
                        lit(Lit::Timestamp(s))
                    }
                    "interval" if matches!(self.peek_at(1), Tok::Str(_)) => self.interval(),
                    "current_timestamp" if !matches!(self.peek_at(1), Tok::Op("(")) => {
                        self.bump();
                        Ok(Expr::Func {
                            name: "now".into(),
                            args: vec![],
                            distinct: false,
                            star: false,
                            pos,
                        })
                    }
                    _ if is_reserved(&w) => Err(self.unexpected("<expression>")),
                    _ => self.column_or_call(),
                }
            }
            _ => Err(self.unexpected("<expression>")),
        }
    }

    fn column_or_call(&mut self) -> Result<Expr, QueryError> {
        let (name, quoted, pos) = self.ident()?;
        if !quoted && matches!(self.peek(), Tok::Op("(")) {
            self.bump();
            let lname = name.to_ascii_lowercase();
            let mut args = Vec::new();
            let mut star = false;
            let mut distinct = false;
            if matches!(self.peek(), Tok::Op("*")) {
                self.bump();
                star = true;
            } else if !matches!(self.peek(), Tok::Op(")")) {
                distinct = self.eat_kw("distinct");
                if !distinct {
                    self.eat_kw("all");
                }
                loop {
                    args.push(self.expr()?);
                    if !self.eat_op(",") {
                        break;
                    }
                }
            }
            self.expect_op(")")?;
            return Ok(Expr::Func {
                name: lname,
                args,
                distinct,
                star,
                pos,
            });
        }
        // Qualified references (`t.col`, `"db"."tbl"."col"`): the last part names the column.
        let mut last = (name, quoted, pos);
        while matches!(self.peek(), Tok::Op(".")) {
            self.bump();
            let (n, q, _) = self.ident()?;
            last = (n, q, last.2);
            last.2 = self.toks[self.i - 1].pos;
        }
        Ok(Expr::Col {
            name: last.0,
            pos: last.2,
        })
    }

    fn case(&mut self) -> Result<Expr, QueryError> {
        let pos = self.bump().pos;
        let operand = if self.is_kw("when") {
            None
        } else {
            Some(Box::new(self.expr()?))
        };
        let mut whens = Vec::new();
        while self.eat_kw("when") {
            let w = self.expr()?;
            self.expect_kw("then")?;
            let t = self.expr()?;
            whens.push((w, t));
        }
        if whens.is_empty() {
            return Err(self.unexpected("'WHEN'"));
        }
        let else_ = if self.eat_kw("else") {
            Some(Box::new(self.expr()?))
        } else {
            None
        };
        self.expect_kw("end")?;
        Ok(Expr::Case {
            operand,
            whens,
            else_,
            pos,
        })
    }

    fn cast(&mut self) -> Result<Expr, QueryError> {
        let pos = self.bump().pos;
        self.expect_op("(")?;
        let e = self.expr()?;
        self.expect_kw("as")?;
        let tpos = self.pos();
        let Tok::Word(t) = self.bump().tok else {
            return Err(syntax_error(tpos, "mismatched input. Expecting: <type>"));
        };
        let ty = match t.to_ascii_lowercase().as_str() {
            "varchar" => ScalarType::Varchar,
            "double" => ScalarType::Double,
            "bigint" => ScalarType::Bigint,
            "integer" | "int" => ScalarType::Integer,
            "boolean" => ScalarType::Boolean,
            "timestamp" => ScalarType::Timestamp,
            _ => return Err(syntax_error(tpos, format!("Unknown type: {t}"))),
        };
        self.expect_op(")")?;
        Ok(Expr::Cast {
            e: Box::new(e),
            ty,
            pos,
        })
    }

    /// `INTERVAL '5' MINUTE` (day-to-second units only).
    fn interval(&mut self) -> Result<Expr, QueryError> {
        let pos = self.bump().pos;
        let Tok::Str(n) = self.bump().tok else {
            unreachable!("checked by the caller")
        };
        let upos = self.pos();
        let Tok::Word(unit) = self.bump().tok else {
            return Err(syntax_error(
                upos,
                "mismatched input. Expecting: DAY, HOUR, MINUTE, SECOND",
            ));
        };
        let mult: i64 = match unit.to_ascii_lowercase().as_str() {
            "day" => 86_400_000_000_000,
            "hour" => 3_600_000_000_000,
            "minute" => 60_000_000_000,
            "second" => 1_000_000_000,
            _ => {
                return Err(syntax_error(
                    upos,
                    format!("interval unit {unit} is not supported by timestream-local"),
                ))
            }
        };
        let v: f64 = n.trim().parse().map_err(|_| {
            syntax_error(
                pos,
                format!("Invalid INTERVAL {} value: {n}", unit.to_ascii_uppercase()),
            )
        })?;
        let ns = v * mult as f64;
        if !ns.is_finite() || ns.abs() > 9.2e18 {
            return Err(syntax_error(pos, "interval is out of range"));
        }
        Ok(Expr::Lit {
            v: Lit::Interval(ns.round() as i64),
            pos,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_and_predicates() {
        let q = parse("SELECT a FROM \"d\".\"t\" WHERE NOT x = 1 OR y BETWEEN 1 + 2 * 3 AND 4 AND z NOT IN ('a') AND w IS NOT NULL").unwrap();
        let w = q.where_.unwrap().key();
        assert_eq!(
            w,
            "((NOT (\"x\" = Int(\"1\"))) OR ((\"y\" false BETWEEN (Int(\"1\") + (Int(\"2\") * Int(\"3\"))) AND Int(\"4\")) AND ((\"z\" true IN (Str(\"a\"))) AND (\"w\" IS true NULL))))"
        );
    }

    #[test]
    fn clauses() {
        let q = parse("select count(*) c, bin(time, 1h) AS b from db.tbl group by 2 having count(*) > 1 order by b desc, 1 limit 10;").unwrap();
        assert_eq!(q.items.len(), 2);
        let t = q.from.unwrap();
        assert_eq!(
            (t.database.as_deref(), t.table.as_str()),
            (Some("db"), "tbl")
        );
        assert_eq!(q.group_by.len(), 1);
        assert!(q.having.is_some());
        assert_eq!(q.order_by.len(), 2);
        assert!(q.order_by[0].desc);
        assert_eq!(q.limit, Some(10));
    }

    #[test]
    fn hostile_nesting_is_an_error_not_a_stack_overflow() {
        let deep = format!("SELECT {}1{}", "(".repeat(10_000), ")".repeat(10_000));
        assert!(parse(&deep).is_err());
        let negs = format!("SELECT {}1", "- ".repeat(10_000));
        assert!(parse(&negs).is_err());
        let nots = format!("SELECT {}TRUE", "NOT ".repeat(10_000));
        assert!(parse(&nots).is_err());
        let sum = format!("SELECT 1{}", " + 1".repeat(10_000));
        assert!(parse(&sum).is_err());
        // Long AND/OR chains are balanced, so they remain accepted.
        let chain = format!("SELECT 1 WHERE TRUE{}", " AND x = 1".repeat(10_000));
        assert!(parse(&chain).is_ok());
    }

    #[test]
    fn syntax_errors_have_positions() {
        for (q, want) in [
            (
                "SELECT FROM x",
                "line 1:8: mismatched input 'FROM'. Expecting: <expression>",
            ),
            (
                "SELECT a\nFROM",
                "line 2:5: mismatched input '<EOF>'. Expecting: <identifier>",
            ),
            (
                "SELECT a b c",
                "line 1:12: mismatched input 'c'. Expecting: <EOF>",
            ),
        ] {
            match parse(q) {
                Err(QueryError::Validation(m)) => assert_eq!(m, want, "{q}"),
                other => panic!("{q}: {other:?}"),
            }
        }
    }
}
