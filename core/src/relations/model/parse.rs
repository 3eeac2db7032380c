//! The modelling language's syntax: one `*.fga` file into its types and relation definitions.
//!
//! A hand-written tokenizer and recursive-descent parser, like the tuple parser. The grammar is
//! OpenFGA's schema 1.1 DSL, checked against the `fga` CLI:
//!
//! ```text
//! file        := 'model' NL 'schema' '1.1' NL typedef*
//! typedef     := 'type' NAME NL ( 'relations' NL define+ )?
//! define      := 'define' NAME ':' expr NL
//! expr        := operand ( ('or' operand)+ | ('and' operand)+ | 'but not' operand )?
//! operand     := '[' restriction (',' restriction)* ']'        (only first in a definition)
//!              | '(' expr ')'
//!              | NAME ( 'from' NAME )?
//! restriction := TYPE | TYPE ':*' | TYPE '#' NAME
//! ```
//!
//! OpenFGA's precedence rule is that there is none: one level of an expression uses one
//! operator, and mixing `or`, `and` and `but not` needs parentheses (`a or b and c` is an
//! error, as is `a but not b but not c`). `from` binds tighter than all three. A direct type
//! restriction may only open a definition (`[user] or editor`, `([user] or a) and b`), never
//! follow an operator. `#` starts a comment at the start of a line or after white space; inside
//! a word it separates a type from a relation (`Team#member`). Newlines end a definition,
//! except inside `[…]`.
//!
//! Conditions (`with`, `condition`) and modules (`module`, `extend type`) are OpenFGA features
//! Verdict does not support: they are refused by name, never ignored.

use super::{Name, Restriction, Rewrite, SyntaxError};

/// A parsed type definition, before validation.
#[derive(Debug, Clone)]
pub(super) struct TypeAst {
    pub(super) name: Name,
    pub(super) relations: Vec<RelationAst>,
}

/// A parsed `define`, before validation.
#[derive(Debug, Clone)]
pub(super) struct RelationAst {
    pub(super) name: Name,
    pub(super) rewrite: Rewrite,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok<'a> {
    /// A run of name characters; `::` inside it joins a namespaced type (`Acme::Doc`).
    Word(&'a str),
    Punct(char),
    Newline,
    End,
}

#[derive(Debug, Clone, Copy)]
struct Token<'a> {
    tok: Tok<'a>,
    line: usize,
    column: usize,
}

const PUNCTUATION: &[char] = &['[', ']', ',', '(', ')', ':', '#', '*'];

fn tokenize(text: &str) -> Vec<Token<'_>> {
    let mut tokens = Vec::new();
    for (line_index, line) in text.lines().enumerate() {
        let line_number = line_index + 1;
        let chars: Vec<(usize, char)> = line.char_indices().collect();
        let mut i = 0;
        while let Some(&(byte, c)) = chars.get(i) {
            let column = i + 1;
            if c.is_whitespace() {
                i += 1;
                continue;
            }
            let after_space = i == 0 || chars.get(i - 1).is_some_and(|&(_, p)| p.is_whitespace());
            if c == '#' && after_space {
                // A comment runs to the end of the line.
                break;
            }
            if PUNCTUATION.contains(&c) {
                // `::` followed by a name character continues a namespaced word; handled below.
                tokens.push(Token {
                    tok: Tok::Punct(c),
                    line: line_number,
                    column,
                });
                i += 1;
                continue;
            }
            let start = byte;
            let mut end = i;
            loop {
                match chars.get(end) {
                    Some(&(_, ch)) if !ch.is_whitespace() && !PUNCTUATION.contains(&ch) => {
                        end += 1;
                    }
                    Some(&(_, ':'))
                        if chars.get(end + 1).is_some_and(|&(_, n)| n == ':')
                            && chars
                                .get(end + 2)
                                .is_some_and(|&(_, n)| n == '_' || n.is_alphanumeric()) =>
                    {
                        end += 2;
                    }
                    _ => break,
                }
            }
            let stop = chars.get(end).map_or(line.len(), |&(b, _)| b);
            tokens.push(Token {
                tok: Tok::Word(&line[start..stop]),
                line: line_number,
                column,
            });
            i = end;
        }
        tokens.push(Token {
            tok: Tok::Newline,
            line: line_number,
            column: chars.len() + 1,
        });
    }
    let (line, column) = (text.lines().count().max(1), 1);
    tokens.push(Token {
        tok: Tok::End,
        line,
        column,
    });
    tokens
}

/// The operator of one level of an expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operator {
    Or,
    And,
    ButNot,
}

impl Operator {
    fn text(self) -> &'static str {
        match self {
            Self::Or => "or",
            Self::And => "and",
            Self::ButNot => "but not",
        }
    }
}

/// The most parentheses one definition may nest: deeper is an error, not a deep recursion.
const MAX_NESTING: usize = 32;

struct Parser<'a> {
    tokens: Vec<Token<'a>>,
    pos: usize,
    /// Parentheses open at this point of the definition.
    nesting: usize,
}

type Parsed<T> = Result<T, SyntaxError>;

/// Parses one model file into its type definitions.
pub(super) fn parse_file(text: &str) -> Parsed<Vec<TypeAst>> {
    let mut parser = Parser {
        tokens: tokenize(text),
        pos: 0,
        nesting: 0,
    };
    parser.file()
}

fn describe(tok: Tok<'_>) -> String {
    match tok {
        Tok::Word(w) => format!("`{w}`"),
        Tok::Punct(c) => format!("`{c}`"),
        Tok::Newline => "end of line".to_owned(),
        Tok::End => "end of file".to_owned(),
    }
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Token<'a> {
        self.tokens
            .get(self.pos)
            .or_else(|| self.tokens.last())
            .copied()
            .unwrap_or(Token {
                tok: Tok::End,
                line: 1,
                column: 1,
            })
    }

    fn next(&mut self) -> Token<'a> {
        let token = self.peek();
        if self.pos < self.tokens.len() {
            self.pos += 1;
        }
        token
    }

    fn error_at(token: Token<'_>, message: String) -> SyntaxError {
        SyntaxError {
            line: token.line,
            column: token.column,
            message,
        }
    }

    fn unexpected(&self, wanted: &str) -> SyntaxError {
        let token = self.peek();
        Self::error_at(
            token,
            format!("expected {wanted}, found {}", describe(token.tok)),
        )
    }

    fn skip_newlines(&mut self) {
        while self.peek().tok == Tok::Newline {
            self.next();
        }
    }

    fn at_word(&self, word: &str) -> bool {
        self.peek().tok == Tok::Word(word)
    }

    fn expect_word(&mut self, word: &str, wanted: &str) -> Parsed<Token<'a>> {
        if self.at_word(word) {
            Ok(self.next())
        } else {
            Err(self.unexpected(wanted))
        }
    }

    fn expect_punct(&mut self, c: char, wanted: &str) -> Parsed<Token<'a>> {
        if self.peek().tok == Tok::Punct(c) {
            Ok(self.next())
        } else {
            Err(self.unexpected(wanted))
        }
    }

    fn end_of_line(&mut self, after: &str) -> Parsed<()> {
        match self.peek().tok {
            Tok::Newline => {
                self.skip_newlines();
                Ok(())
            }
            Tok::End => Ok(()),
            _ => Err(self.unexpected(&format!("end of line after {after}"))),
        }
    }

    /// Reads a name (a type or a relation); whether it is a valid one is checked later, so
    /// that the error can say which rule it breaks.
    fn name(&mut self, wanted: &str) -> Parsed<Name> {
        let token = self.peek();
        match token.tok {
            Tok::Word(word) => {
                self.next();
                Ok(Name::new(word, token.line, token.column))
            }
            _ => Err(self.unexpected(wanted)),
        }
    }

    fn refuse_unsupported(&self) -> Parsed<()> {
        let token = self.peek();
        let message = match token.tok {
            Tok::Word("module") | Tok::Word("extend") => {
                "modules (`module`, `extend type`) are not supported; put every type of the \
                 model in `*.fga` files that start with `model` and `schema 1.1`"
            }
            Tok::Word("condition") => {
                "conditions (`condition`, `with`) are not supported; express the condition in \
                 a Cedar policy instead"
            }
            _ => return Ok(()),
        };
        Err(Self::error_at(token, message.to_owned()))
    }

    fn file(&mut self) -> Parsed<Vec<TypeAst>> {
        self.skip_newlines();
        self.refuse_unsupported()?;
        self.expect_word("model", "`model` at the start of the file")?;
        self.end_of_line("`model`")?;
        self.expect_word("schema", "`schema 1.1`")?;
        let version = self.peek();
        match version.tok {
            Tok::Word("1.1") => {
                self.next();
            }
            Tok::Word(other) => {
                return Err(Self::error_at(
                    version,
                    format!("schema version `{other}` is not supported; only `1.1` is"),
                ));
            }
            _ => return Err(self.unexpected("the schema version `1.1`")),
        }
        self.end_of_line("the schema version")?;
        let mut types = Vec::new();
        loop {
            self.skip_newlines();
            if self.peek().tok == Tok::End {
                return Ok(types);
            }
            self.refuse_unsupported()?;
            types.push(self.type_definition()?);
        }
    }

    fn type_definition(&mut self) -> Parsed<TypeAst> {
        self.expect_word("type", "`type`")?;
        let name = self.name("a type name")?;
        self.end_of_line("the type name")?;
        let mut relations = Vec::new();
        if self.at_word("relations") {
            let keyword = self.next();
            self.end_of_line("`relations`")?;
            while self.at_word("define") {
                relations.push(self.define()?);
            }
            if relations.is_empty() {
                return Err(Self::error_at(
                    keyword,
                    format!(
                        "`relations` of type `{}` must be followed by at least one `define`",
                        name.text
                    ),
                ));
            }
        }
        if matches!(self.peek().tok, Tok::Word(w) if w != "type") {
            self.refuse_unsupported()?;
            return Err(self.unexpected("`define`, `type` or end of file"));
        }
        Ok(TypeAst { name, relations })
    }

    fn define(&mut self) -> Parsed<RelationAst> {
        self.expect_word("define", "`define`")?;
        let name = self.name("a relation name")?;
        self.expect_punct(':', "`:` after the relation name")?;
        let rewrite = self.expression(true)?;
        self.end_of_line("the definition")?;
        Ok(RelationAst { name, rewrite })
    }

    /// Parses one level of an expression; `first` is whether it opens the definition (a direct
    /// type restriction may only come first).
    fn expression(&mut self, first: bool) -> Parsed<Rewrite> {
        let head = self.operand(first)?;
        let mut operator: Option<Operator> = None;
        let mut rest = Vec::new();
        loop {
            let token = self.peek();
            let found = match token.tok {
                Tok::Word("or") => Operator::Or,
                Tok::Word("and") => Operator::And,
                Tok::Word("but") => Operator::ButNot,
                _ => break,
            };
            if let Some(current) = operator
                && (current != found || current == Operator::ButNot)
            {
                return Err(Self::error_at(
                    token,
                    format!(
                        "`{}` cannot follow `{}` without parentheses; OpenFGA gives the operators \
                         no precedence, so group them with `(…)`",
                        found.text(),
                        current.text()
                    ),
                ));
            }
            self.next();
            if found == Operator::ButNot {
                self.expect_word("not", "`not` after `but`")?;
            }
            operator = Some(found);
            rest.push(self.operand(false)?);
        }
        Ok(match (operator, rest.pop()) {
            (Some(Operator::ButNot), Some(subtract)) => {
                Rewrite::Exclusion(Box::new(head), Box::new(subtract))
            }
            (Some(Operator::Or), Some(last)) => {
                Rewrite::Union([head].into_iter().chain(rest).chain([last]).collect())
            }
            (Some(Operator::And), Some(last)) => {
                Rewrite::Intersection([head].into_iter().chain(rest).chain([last]).collect())
            }
            _ => head,
        })
    }

    fn operand(&mut self, first: bool) -> Parsed<Rewrite> {
        let token = self.peek();
        match token.tok {
            Tok::Punct('[') if first => self.direct(),
            Tok::Punct('[') => Err(Self::error_at(
                token,
                "a direct type restriction `[…]` must come first in a definition".to_owned(),
            )),
            Tok::Punct('(') => {
                if self.nesting >= MAX_NESTING {
                    return Err(Self::error_at(
                        token,
                        format!("parentheses are nested deeper than {MAX_NESTING} levels"),
                    ));
                }
                self.next();
                self.nesting += 1;
                let inner = self.expression(first)?;
                self.nesting -= 1;
                self.expect_punct(')', "`)` or an operator (`or`, `and`, `but not`)")?;
                Ok(inner)
            }
            Tok::Word("or" | "and" | "but" | "from" | "not") => {
                Err(self.unexpected("a relation, `(` or `[`"))
            }
            Tok::Word(_) => {
                let computed = self.name("a relation name")?;
                if self.at_word("from") {
                    self.next();
                    let tupleset = self.name("a relation name after `from`")?;
                    if self.at_word("from") {
                        return Err(Self::error_at(
                            self.peek(),
                            "`from` cannot be chained: `a from b` names a relation of the \
                             objects that `b` holds"
                                .to_owned(),
                        ));
                    }
                    return Ok(Rewrite::TupleToUserset { tupleset, computed });
                }
                Ok(Rewrite::Computed(computed))
            }
            _ => Err(self.unexpected("a relation, `(` or `[`")),
        }
    }

    fn skip_newlines_in_brackets(&mut self) {
        self.skip_newlines();
    }

    fn direct(&mut self) -> Parsed<Rewrite> {
        self.expect_punct('[', "`[`")?;
        let mut restrictions = Vec::new();
        loop {
            self.skip_newlines_in_brackets();
            let type_name = self.name("a type in the type restriction")?;
            let restriction = match self.peek().tok {
                Tok::Punct(':') => {
                    self.next();
                    self.expect_punct('*', "`*` after `:` (a wildcard is `Type:*`)")?;
                    Restriction::Wildcard(type_name)
                }
                Tok::Punct('#') => {
                    self.next();
                    let relation = self.name("a relation after `#`")?;
                    Restriction::Userset(type_name, relation)
                }
                _ => Restriction::Type(type_name),
            };
            restrictions.push(restriction);
            self.skip_newlines_in_brackets();
            if self.at_word("with") {
                return Err(Self::error_at(
                    self.peek(),
                    "conditions (`with`) are not supported; express the condition in a Cedar \
                     policy instead"
                        .to_owned(),
                ));
            }
            match self.peek().tok {
                Tok::Punct(',') => {
                    self.next();
                }
                Tok::Punct(']') => {
                    self.next();
                    break;
                }
                _ => return Err(self.unexpected("`,` or `]` in the type restriction")),
            }
        }
        debug_assert!(!restrictions.is_empty());
        Ok(Rewrite::Direct(restrictions))
    }
}
