//! A small lexer for SQL files: splits the text into statements on `;` and rewrites named
//! parameters (`:ds`, `:params.min_amount`) into positional `$1..$n` binds, leaving string
//! literals, quoted identifiers, comments, dollar-quoted bodies and `::` casts untouched.
//!
//! It knows no parameter names; the `sql` kind decides which ones exist.

/// One statement of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The text with named parameters replaced by `$1..$n`, trimmed.
    pub sql: String,
    /// The parameters in `$n` order: `params[0]` is `$1`. Each name appears once.
    pub params: Vec<Placeholder>,
    /// 1-based line where the statement's first token is.
    pub line: usize,
}

/// A named parameter as written (`:params.min_amount` has the name `params.min_amount`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placeholder {
    pub name: String,
    /// 1-based line of its first occurrence in the statement.
    pub line: usize,
}

/// Text the lexer cannot make sense of.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LexError {
    #[error("unterminated {what} starting at line {line}")]
    Unterminated { what: &'static str, line: usize },
    /// `$1` written by hand would collide with the numbers given to named parameters.
    #[error("positional parameter `{text}` at line {line}: use named parameters such as `:ds`")]
    Positional { text: String, line: usize },
}

/// Splits `text` into its non-empty statements, with named parameters made positional.
pub fn split(text: &str) -> Result<Vec<Statement>, LexError> {
    let mut lexer = Lexer {
        chars: text.chars().collect(),
        pos: 0,
        line: 1,
        prev_ident: false,
        current: Pending::default(),
        done: Vec::new(),
    };
    lexer.run()?;
    Ok(lexer.done)
}

/// The statement being built.
#[derive(Default)]
struct Pending {
    sql: String,
    params: Vec<Placeholder>,
    /// Set by the first token that is not whitespace or a comment.
    line: Option<usize>,
}

struct Lexer {
    chars: Vec<char>,
    pos: usize,
    line: usize,
    /// Whether the last character copied can continue an identifier, which makes a
    /// following `$` part of the identifier and `E'` not an escape string.
    prev_ident: bool,
    current: Pending,
    done: Vec<Statement>,
}

fn ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_'
}

fn ident_continue(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

impl Lexer {
    fn peek(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.pos + ahead).copied()
    }

    /// Copies the next character to the statement.
    fn bump(&mut self) -> Option<char> {
        let c = self.peek(0)?;
        self.pos += 1;
        if c == '\n' {
            self.line += 1;
        }
        self.current.sql.push(c);
        self.prev_ident = ident_continue(c) || c == '$';
        Some(c)
    }

    /// Records that the statement has content (not only whitespace and comments).
    fn code(&mut self) {
        self.current.line.get_or_insert(self.line);
    }

    fn run(&mut self) -> Result<(), LexError> {
        while let Some(c) = self.peek(0) {
            let next = self.peek(1);
            match c {
                ';' => {
                    self.pos += 1;
                    self.finish();
                }
                '-' if next == Some('-') => self.line_comment(),
                '/' if next == Some('*') => self.block_comment()?,
                '\'' => self.quoted('\'', false, "string literal")?,
                '"' => self.quoted('"', false, "quoted identifier")?,
                'E' | 'e' if next == Some('\'') && !self.prev_ident => {
                    self.code();
                    self.bump();
                    self.quoted('\'', true, "escape string literal")?;
                }
                '$' => self.dollar()?,
                ':' if next == Some(':') => {
                    self.code();
                    self.bump();
                    self.bump();
                }
                ':' if next.is_some_and(ident_start) => self.param(),
                _ => {
                    if !c.is_whitespace() {
                        self.code();
                    }
                    self.bump();
                }
            }
        }
        self.finish();
        Ok(())
    }

    fn finish(&mut self) {
        let pending = std::mem::take(&mut self.current);
        self.prev_ident = false;
        if let Some(line) = pending.line {
            self.done.push(Statement {
                sql: pending.sql.trim().to_string(),
                params: pending.params,
                line,
            });
        }
    }

    fn line_comment(&mut self) {
        while let Some(c) = self.bump() {
            if c == '\n' {
                break;
            }
        }
    }

    /// `/* ... */`, which Postgres lets nest.
    fn block_comment(&mut self) -> Result<(), LexError> {
        let start = self.line;
        let mut depth = 0usize;
        loop {
            match (self.peek(0), self.peek(1)) {
                (Some('/'), Some('*')) => {
                    depth += 1;
                    self.bump();
                    self.bump();
                }
                (Some('*'), Some('/')) => {
                    depth -= 1;
                    self.bump();
                    self.bump();
                    if depth == 0 {
                        return Ok(());
                    }
                }
                (Some(_), _) => {
                    self.bump();
                }
                (None, _) => {
                    return Err(LexError::Unterminated {
                        what: "block comment",
                        line: start,
                    });
                }
            }
        }
    }

    /// A literal or identifier between `quote`s, where a doubled quote stands for itself and,
    /// in `E'...'` strings, a backslash escapes the next character.
    fn quoted(&mut self, quote: char, backslash: bool, what: &'static str) -> Result<(), LexError> {
        let start = self.line;
        self.code();
        self.bump();
        loop {
            match self.bump() {
                None => return Err(LexError::Unterminated { what, line: start }),
                Some('\\') if backslash => {
                    self.bump();
                }
                Some(c) if c == quote => {
                    if self.peek(0) == Some(quote) {
                        self.bump();
                    } else {
                        break;
                    }
                }
                Some(_) => {}
            }
        }
        self.prev_ident = false;
        Ok(())
    }

    /// `$$...$$`, `$tag$...$tag$`, a hand-written `$1`, or a `$` inside an identifier.
    fn dollar(&mut self) -> Result<(), LexError> {
        self.code();
        if self.prev_ident {
            self.bump();
            return Ok(());
        }
        if self.peek(1).is_some_and(|c| c.is_ascii_digit()) {
            let digits: String = self.chars[self.pos + 1..]
                .iter()
                .take_while(|c| c.is_ascii_digit())
                .collect();
            return Err(LexError::Positional {
                text: format!("${digits}"),
                line: self.line,
            });
        }
        let mut len = 1;
        if self.peek(1).is_some_and(ident_start) {
            while self.peek(len).is_some_and(ident_continue) {
                len += 1;
            }
        }
        if self.peek(len) != Some('$') {
            self.bump();
            return Ok(());
        }
        let tag: Vec<char> = self.chars[self.pos..=self.pos + len].to_vec();
        let start = self.line;
        for _ in 0..tag.len() {
            self.bump();
        }
        while self.pos < self.chars.len() {
            if self.chars[self.pos..].starts_with(&tag) {
                for _ in 0..tag.len() {
                    self.bump();
                }
                self.prev_ident = false;
                return Ok(());
            }
            self.bump();
        }
        Err(LexError::Unterminated {
            what: "dollar-quoted string",
            line: start,
        })
    }

    /// `:name`, `:params.name` or `:var.name`, replaced by its `$n`.
    fn param(&mut self) {
        self.code();
        let line = self.line;
        self.pos += 1; // the colon, which is not copied
        let mut name = self.ident();
        if (name == "params" || name == "var")
            && self.peek(0) == Some('.')
            && self.peek(1).is_some_and(ident_start)
        {
            self.pos += 1;
            name.push('.');
            name.push_str(&self.ident());
        }
        let params = &mut self.current.params;
        let n = match params.iter().position(|p| p.name == name) {
            Some(i) => i + 1,
            None => {
                params.push(Placeholder { name, line });
                params.len()
            }
        };
        self.current.sql.push_str(&format!("${n}"));
        self.prev_ident = true;
    }

    /// An identifier starting at the current position, consumed but not copied.
    fn ident(&mut self) -> String {
        let mut out = String::new();
        while let Some(c) = self.peek(0).filter(|&c| ident_continue(c)) {
            out.push(c);
            self.pos += 1;
        }
        out
    }
}

#[cfg(test)]
mod tests;
