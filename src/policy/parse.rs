//! The rule language of oslo.policy (the subset troved supports), parsed by recursive
//! descent into a [`Check`] tree.
//!
//! Tokens are what oslo.policy's tokenizer makes: the rule is split on whitespace, and
//! `(` at the start or `)` at the end of a piece are tokens of their own (so
//! `(project_id:%(tenant)s)` is `(`, a check, `)`). `and`, `or` and `not` are
//! operators whatever their case. Grammar, by oslo's precedence (not > and > or):
//!
//! ```text
//! expr     := and_expr ("or" and_expr)*
//! and_expr := not_expr ("and" not_expr)*
//! not_expr := "not" not_expr | atom
//! atom     := "(" expr ")" | "@" | "!" | check
//! check    := "rule:" NAME | "role:" VALUE | KEY ":" VALUE
//! ```
//!
//! The empty rule (only whitespace) always passes. Unlike oslo.policy, which turns what
//! it cannot parse into a check that always fails (and logs it), every mistake here is
//! an error, so that a policy file cannot silently deny or allow.

use std::fmt;

/// How deeply `not` and parentheses may nest in one rule: the parser, the load-time
/// checks and the evaluation recurse once per level, and a request is checked on a
/// worker thread's stack.
pub const MAX_NESTING: usize = 64;

/// One parsed rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    /// `@` or the empty rule.
    Always,
    /// `!`.
    Never,
    /// `rule:NAME`: another rule of the policy.
    Rule(String),
    /// `role:NAME`: the caller has the role (case-insensitive, as oslo's RoleCheck).
    Role(Value),
    /// `KEY:VALUE`: the caller's credential `KEY` equals `VALUE`.
    Generic {
        key: String,
        value: Value,
    },
    Not(Box<Check>),
    And(Vec<Check>),
    Or(Vec<Check>),
}

/// The right-hand side of a check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// Text, possibly with `%(target_key)s` substitutions (oslo compares text: `True`
    /// matches a credential that is true).
    Text(Vec<Piece>),
    /// A quoted literal, `'x'` or `"x"`: compared as is.
    Literal(String),
}

/// Part of a [`Value::Text`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece {
    Plain(String),
    /// `%(name)s`: the target's `name`.
    Target(String),
}

/// Why a rule does not parse: what, and where (a character offset in the rule).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (at character {})", .at + 1)]
pub struct ParseError {
    pub message: String,
    pub at: usize,
}

/// A token and where it starts in the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Token<'a> {
    text: &'a str,
    at: usize,
}

/// oslo.policy's tokenizer: whitespace-separated pieces, leading `(` and trailing `)`
/// split off.
fn tokenize(rule: &str) -> Vec<Token<'_>> {
    let mut out = Vec::new();
    let mut start = None;
    let bytes = rule.as_bytes();
    for i in 0..=bytes.len() {
        let space = i == bytes.len() || bytes[i].is_ascii_whitespace();
        match (start, space) {
            (None, false) => start = Some(i),
            (Some(s), true) => {
                split_parens(&rule[s..i], s, &mut out);
                start = None;
            }
            _ => {}
        }
    }
    out
}

fn split_parens<'a>(piece: &'a str, at: usize, out: &mut Vec<Token<'a>>) {
    let body = piece.trim_start_matches('(');
    let opening = piece.len() - body.len();
    for k in 0..opening {
        out.push(Token {
            text: "(",
            at: at + k,
        });
    }
    let clean = body.trim_end_matches(')');
    if !clean.is_empty() {
        out.push(Token {
            text: clean,
            at: at + opening,
        });
    }
    for k in 0..body.len() - clean.len() {
        out.push(Token {
            text: ")",
            at: at + opening + clean.len() + k,
        });
    }
}

/// Parses one rule.
pub fn parse(rule: &str) -> Result<Check, ParseError> {
    let tokens = tokenize(rule);
    if tokens.is_empty() {
        return Ok(Check::Always);
    }
    let mut p = Parser {
        tokens: &tokens,
        pos: 0,
        end: rule.len(),
        depth: 0,
    };
    let parsed = p.expr().and_then(|check| match p.peek() {
        None => Ok(check),
        Some(t) if t.text == ")" => Err(p.error("unbalanced `)`")),
        Some(t) => Err(p.error(&format!(
            "expected `and`, `or` or the end, found `{}`",
            t.text
        ))),
    });
    // Positions are found as byte offsets; a user counts characters.
    parsed.map_err(|e| ParseError {
        at: rule.get(..e.at).map_or(e.at, |s| s.chars().count()),
        message: e.message,
    })
}

struct Parser<'t, 'a> {
    tokens: &'t [Token<'a>],
    pos: usize,
    /// The rule's length: where an unexpected end is reported.
    end: usize,
    /// How many `not` and `(` enclose the current token ([`MAX_NESTING`] at most).
    depth: usize,
}

impl<'a> Parser<'_, 'a> {
    fn peek(&self) -> Option<&Token<'a>> {
        self.tokens.get(self.pos)
    }

    fn at(&self) -> usize {
        self.peek().map_or(self.end, |t| t.at)
    }

    fn error(&self, message: &str) -> ParseError {
        ParseError {
            message: message.to_string(),
            at: self.at(),
        }
    }

    /// One more level of `not` or `(`: refused beyond [`MAX_NESTING`], before the parser
    /// (and later the checks and the evaluation) recurse deeper than a thread's stack.
    fn enter(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(self.error(&format!(
                "`not` and parentheses nest deeper than {MAX_NESTING}"
            )));
        }
        Ok(())
    }

    fn eat_keyword(&mut self, word: &str) -> bool {
        let hit = self
            .peek()
            .is_some_and(|t| t.text.eq_ignore_ascii_case(word));
        if hit {
            self.pos += 1;
        }
        hit
    }

    fn expr(&mut self) -> Result<Check, ParseError> {
        let mut terms = vec![self.and_expr()?];
        while self.eat_keyword("or") {
            terms.push(self.and_expr()?);
        }
        Ok(if terms.len() == 1 {
            terms.remove(0)
        } else {
            Check::Or(terms)
        })
    }

    fn and_expr(&mut self) -> Result<Check, ParseError> {
        let mut terms = vec![self.not_expr()?];
        while self.eat_keyword("and") {
            terms.push(self.not_expr()?);
        }
        Ok(if terms.len() == 1 {
            terms.remove(0)
        } else {
            Check::And(terms)
        })
    }

    fn not_expr(&mut self) -> Result<Check, ParseError> {
        if self.eat_keyword("not") {
            self.enter()?;
            let inner = self.not_expr()?;
            self.depth -= 1;
            return Ok(Check::Not(Box::new(inner)));
        }
        self.atom()
    }

    fn atom(&mut self) -> Result<Check, ParseError> {
        let Some(token) = self.peek().cloned() else {
            return Err(self.error("unexpected end of the rule: a check is missing"));
        };
        let word = token.text.to_ascii_lowercase();
        if matches!(word.as_str(), "and" | "or" | ")") {
            return Err(self.error(&format!("expected a check, found `{}`", token.text)));
        }
        self.pos += 1;
        match token.text {
            "(" => {
                self.enter()?;
                let inner = self.expr()?;
                self.depth -= 1;
                match self.peek() {
                    Some(t) if t.text == ")" => {
                        self.pos += 1;
                        Ok(inner)
                    }
                    _ => Err(self.error("missing `)`")),
                }
            }
            "@" => Ok(Check::Always),
            "!" => Ok(Check::Never),
            text => check(text).map_err(|message| ParseError {
                message,
                at: token.at,
            }),
        }
    }
}

/// `kind:match`.
fn check(text: &str) -> Result<Check, String> {
    let Some((kind, value)) = text.split_once(':') else {
        return Err(format!(
            "`{text}` is not a check (`rule:NAME`, `role:NAME`, `KEY:VALUE`, `@` or `!`)"
        ));
    };
    if value.is_empty() {
        return Err(format!("`{text}`: nothing after `:`"));
    }
    match kind {
        "rule" => {
            if value.contains("%(") {
                return Err(format!("`{text}`: a rule name cannot be substituted"));
            }
            Ok(Check::Rule(value.to_string()))
        }
        "role" => Ok(Check::Role(
            parse_value(value).map_err(|e| format!("`{text}`: {e}"))?,
        )),
        "http" | "https" => Err(format!("`{text}`: http checks are not supported")),
        "" => Err(format!("`{text}`: nothing before `:`")),
        key => Ok(Check::Generic {
            key: key.to_string(),
            value: parse_value(value).map_err(|e| format!("`{text}`: {e}"))?,
        }),
    }
}

fn parse_value(value: &str) -> Result<Value, String> {
    for q in ['\'', '"'] {
        if value.starts_with(q) {
            return match value[1..].strip_suffix(q) {
                Some(inner) if !inner.contains(q) => Ok(Value::Literal(inner.to_string())),
                _ => Err(format!("unterminated quote in `{value}`")),
            };
        }
    }
    let mut pieces = Vec::new();
    let mut rest = value;
    while let Some(open) = rest.find("%(") {
        if open > 0 {
            pieces.push(Piece::Plain(rest[..open].to_string()));
        }
        let after = &rest[open + 2..];
        let Some(close) = after.find(")s") else {
            return Err(format!("`%(` without `)s` in `{value}`"));
        };
        let name = &after[..close];
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_alphanumeric() || c == '_' || c == '.')
        {
            return Err(format!("bad substitution `%({name})s`"));
        }
        pieces.push(Piece::Target(name.to_string()));
        rest = &after[close + 2..];
    }
    if !rest.is_empty() {
        pieces.push(Piece::Plain(rest.to_string()));
    }
    Ok(Value::Text(pieces))
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Literal(s) => write!(f, "'{s}'"),
            Value::Text(pieces) => pieces.iter().try_for_each(|p| match p {
                Piece::Plain(s) => f.write_str(s),
                Piece::Target(t) => write!(f, "%({t})s"),
            }),
        }
    }
}
