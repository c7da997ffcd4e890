//! Lexer for Go `text/template` source, following `text/template/parse/lex.go`.

/// Kinds of lexical items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tok {
    /// A lexing error; the item's text is the message.
    Error,
    /// Boolean constant.
    Bool,
    /// Character constant such as `'a'`.
    CharConstant,
    /// `:=`.
    Declare,
    /// `=`.
    Assign,
    /// A printable ASCII character such as `,`.
    Char,
    /// End of input.
    Eof,
    /// Alphanumeric identifier not starting with `.`.
    Field,
    /// Function name.
    Identifier,
    /// `{{` (trim handled by the lexer).
    LeftDelim,
    /// `(`.
    LeftParen,
    /// A number.
    Number,
    /// `|`.
    Pipe,
    /// Raw quoted string, including quotes.
    RawString,
    /// `}}`.
    RightDelim,
    /// `)`.
    RightParen,
    /// Run of spaces.
    Space,
    /// Quoted string, including quotes.
    String,
    /// Plain text.
    Text,
    /// `$x`.
    Variable,
    /// `.` by itself.
    Dot,
    /// Keywords.
    Block,
    /// `break`.
    Break,
    /// `continue`.
    Continue,
    /// `define`.
    Define,
    /// `else`.
    Else,
    /// `end`.
    End,
    /// `if`.
    If,
    /// `nil`.
    Nil,
    /// `range`.
    Range,
    /// `template`.
    Template,
    /// `with`.
    With,
}

/// One lexical item.
#[derive(Debug, Clone)]
pub(crate) struct Item {
    pub(crate) typ: Tok,
    pub(crate) pos: usize,
    pub(crate) val: String,
    pub(crate) line: usize,
}

impl Item {
    /// Go's `item.String()`, used in "unexpected ..." messages.
    pub(crate) fn describe(&self) -> String {
        match self.typ {
            Tok::Eof => "EOF".to_string(),
            Tok::Error => self.val.clone(),
            Tok::Block
            | Tok::Break
            | Tok::Continue
            | Tok::Define
            | Tok::Else
            | Tok::End
            | Tok::If
            | Tok::Nil
            | Tok::Range
            | Tok::Template
            | Tok::With => format!("<{}>", self.val),
            _ => {
                if self.val.chars().count() > 10 {
                    let short: String = self.val.chars().take(10).collect();
                    format!("{}...", super::gofmt::quote(&short))
                } else {
                    super::gofmt::quote(&self.val)
                }
            }
        }
    }
}

const LEFT: &str = "{{";
const RIGHT: &str = "}}";
const LEFT_COMMENT: &str = "/*";
const RIGHT_COMMENT: &str = "*/";

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn is_alnum(c: char) -> bool {
    c == '_' || c.is_alphabetic() || c.is_numeric()
}

/// Go's `%#U` formatting of a rune.
pub(crate) fn fmt_sharp_u(c: char) -> String {
    let code = format!("U+{:04X}", c as u32);
    if super::gofmt::is_print(c) {
        format!("{code} '{c}'")
    } else {
        code
    }
}

/// Lexes the whole input into items. Stops after the first error or EOF item.
pub(crate) fn lex(input: &str) -> Vec<Item> {
    let mut l = Lexer {
        input,
        pos: 0,
        start: 0,
        line: 1,
        start_line: 1,
        items: Vec::new(),
        paren_depth: 0,
    };
    l.run();
    l.items
}

struct Lexer<'a> {
    input: &'a str,
    pos: usize,
    start: usize,
    line: usize,
    start_line: usize,
    items: Vec<Item>,
    paren_depth: usize,
}

enum State {
    Text,
    LeftDelim,
    InsideAction,
    Done,
}

impl Lexer<'_> {
    fn rest(&self) -> &str {
        &self.input[self.pos..]
    }

    fn next(&mut self) -> Option<char> {
        let c = self.rest().chars().next()?;
        self.pos += c.len_utf8();
        if c == '\n' {
            self.line += 1;
        }
        Some(c)
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn backup(&mut self, c: char) {
        self.pos -= c.len_utf8();
        if c == '\n' {
            self.line -= 1;
        }
    }

    fn emit(&mut self, typ: Tok) {
        let val = self.input[self.start..self.pos].to_string();
        self.items.push(Item {
            typ,
            pos: self.start,
            val,
            line: self.start_line,
        });
        self.start = self.pos;
        self.start_line = self.line;
    }

    fn ignore(&mut self) {
        self.line += self.input[self.start..self.pos].matches('\n').count();
        self.start = self.pos;
        self.start_line = self.line;
    }

    fn errorf(&mut self, msg: String) -> State {
        self.items.push(Item {
            typ: Tok::Error,
            pos: self.start,
            val: msg,
            line: self.start_line,
        });
        State::Done
    }

    fn run(&mut self) {
        let mut state = State::Text;
        loop {
            state = match state {
                State::Text => self.lex_text(),
                State::LeftDelim => self.lex_left_delim(),
                State::InsideAction => self.lex_inside_action(),
                State::Done => return,
            };
        }
    }

    fn lex_text(&mut self) -> State {
        if let Some(x) = self.rest().find(LEFT) {
            if x > 0 {
                self.pos += x;
                let mut trim_length = 0;
                let delim_end = self.pos + LEFT.len();
                if has_left_trim_marker(&self.input[delim_end..]) {
                    let text = &self.input[self.start..self.pos];
                    trim_length = text.len() - text.trim_end_matches(is_space).len();
                }
                self.pos -= trim_length;
                self.line += self.input[self.start..self.pos].matches('\n').count();
                // emit without recounting lines
                let val = self.input[self.start..self.pos].to_string();
                if !val.is_empty() {
                    self.items.push(Item {
                        typ: Tok::Text,
                        pos: self.start,
                        val,
                        line: self.start_line,
                    });
                }
                self.pos += trim_length;
                self.line += self.input[self.pos - trim_length..self.pos]
                    .matches('\n')
                    .count();
                self.start = self.pos;
                self.start_line = self.line;
            }
            return State::LeftDelim;
        }
        self.pos = self.input.len();
        if self.pos > self.start {
            self.line += self.input[self.start..self.pos].matches('\n').count();
            let val = self.input[self.start..self.pos].to_string();
            self.items.push(Item {
                typ: Tok::Text,
                pos: self.start,
                val,
                line: self.start_line,
            });
            self.start = self.pos;
            self.start_line = self.line;
        }
        self.items.push(Item {
            typ: Tok::Eof,
            pos: self.pos,
            val: String::new(),
            line: self.line,
        });
        State::Done
    }

    fn at_right_delim(&self) -> (bool, bool) {
        let r = self.rest();
        if has_right_trim_marker(r) && r[2..].starts_with(RIGHT) {
            return (true, true);
        }
        if r.starts_with(RIGHT) {
            return (true, false);
        }
        (false, false)
    }

    fn lex_left_delim(&mut self) -> State {
        self.pos += LEFT.len();
        let trim_space = has_left_trim_marker(self.rest());
        let after_marker = if trim_space { 2 } else { 0 };
        if self.rest()[after_marker..].starts_with(LEFT_COMMENT) {
            self.pos += after_marker;
            self.ignore();
            return self.lex_comment();
        }
        self.emit(Tok::LeftDelim);
        self.pos += after_marker;
        self.ignore();
        self.paren_depth = 0;
        State::InsideAction
    }

    fn lex_comment(&mut self) -> State {
        self.pos += LEFT_COMMENT.len();
        let Some(x) = self.rest().find(RIGHT_COMMENT) else {
            return self.errorf("unclosed comment".to_string());
        };
        self.pos += x + RIGHT_COMMENT.len();
        let (delim, trim_space) = self.at_right_delim();
        if !delim {
            return self.errorf("comment ends before closing delimiter".to_string());
        }
        // Comments are dropped (Go emits them only with ParseComments).
        if trim_space {
            self.pos += 2;
        }
        self.pos += RIGHT.len();
        if trim_space {
            let r = self.rest();
            self.pos += r.len() - r.trim_start_matches(is_space).len();
        }
        self.ignore();
        State::Text
    }

    fn lex_right_delim(&mut self) -> State {
        let (_, trim_space) = self.at_right_delim();
        if trim_space {
            self.pos += 2;
            self.ignore();
        }
        self.pos += RIGHT.len();
        self.emit(Tok::RightDelim);
        if trim_space {
            let r = self.rest();
            self.pos += r.len() - r.trim_start_matches(is_space).len();
            self.ignore();
        }
        State::Text
    }

    fn lex_inside_action(&mut self) -> State {
        let (delim, _) = self.at_right_delim();
        if delim {
            if self.paren_depth == 0 {
                return self.lex_right_delim();
            }
            return self.errorf("unclosed left paren".to_string());
        }
        let Some(r) = self.next() else {
            return self.errorf("unclosed action".to_string());
        };
        match r {
            c if is_space(c) => {
                self.backup(c);
                return self.lex_space();
            }
            '=' => self.emit(Tok::Assign),
            ':' => {
                if self.next() != Some('=') {
                    return self.errorf("expected :=".to_string());
                }
                self.emit(Tok::Declare);
            }
            '|' => self.emit(Tok::Pipe),
            '"' => return self.lex_quote(),
            '`' => return self.lex_raw_quote(),
            '$' => return self.lex_variable(),
            '\'' => return self.lex_char(),
            '.' => {
                if let Some(c) = self.peek()
                    && c.is_ascii_digit()
                {
                    self.backup('.');
                    return self.lex_number();
                }
                return self.lex_field();
            }
            '+' | '-' | '0'..='9' => {
                self.backup(r);
                return self.lex_number();
            }
            c if is_alnum(c) => {
                self.backup(c);
                return self.lex_identifier();
            }
            '(' => {
                self.emit(Tok::LeftParen);
                self.paren_depth += 1;
            }
            ')' => {
                if self.paren_depth == 0 {
                    return self.errorf("unexpected right paren".to_string());
                }
                self.paren_depth -= 1;
                self.emit(Tok::RightParen);
            }
            c if (c as u32) <= 0x7f && super::gofmt::is_print(c) => self.emit(Tok::Char),
            c => {
                return self.errorf(format!(
                    "unrecognized character in action: {}",
                    fmt_sharp_u(c)
                ));
            }
        }
        State::InsideAction
    }

    fn lex_space(&mut self) -> State {
        let mut num_spaces = 0;
        while let Some(c) = self.peek() {
            if !is_space(c) {
                break;
            }
            self.next();
            num_spaces += 1;
        }
        // Be careful about a trim-marked closing delimiter, which has a minus after a space.
        if has_right_trim_marker(&self.input[self.pos - 1..])
            && self.input[self.pos - 1 + 2..].starts_with(RIGHT)
        {
            self.backup(self.input[self.pos - 1..].chars().next().unwrap_or(' '));
            if num_spaces == 1 {
                return State::InsideAction;
            }
        }
        self.emit(Tok::Space);
        State::InsideAction
    }

    fn lex_identifier(&mut self) -> State {
        loop {
            match self.next() {
                Some(c) if is_alnum(c) => {}
                other => {
                    if let Some(c) = other {
                        self.backup(c);
                    }
                    let word = &self.input[self.start..self.pos];
                    if !self.at_terminator() {
                        let c = self.peek().unwrap_or(' ');
                        return self.errorf(format!("bad character {}", fmt_sharp_u(c)));
                    }
                    let typ = match word {
                        "block" => Tok::Block,
                        "break" => Tok::Break,
                        "continue" => Tok::Continue,
                        "define" => Tok::Define,
                        "else" => Tok::Else,
                        "end" => Tok::End,
                        "if" => Tok::If,
                        "range" => Tok::Range,
                        "nil" => Tok::Nil,
                        "template" => Tok::Template,
                        "with" => Tok::With,
                        "true" | "false" => Tok::Bool,
                        w if w.starts_with('.') => Tok::Field,
                        _ => Tok::Identifier,
                    };
                    self.emit(typ);
                    return State::InsideAction;
                }
            }
        }
    }

    fn lex_field(&mut self) -> State {
        self.lex_field_or_variable(Tok::Field)
    }

    fn lex_variable(&mut self) -> State {
        self.lex_field_or_variable(Tok::Variable)
    }

    fn lex_field_or_variable(&mut self, typ: Tok) -> State {
        if self.at_terminator() {
            if typ == Tok::Variable {
                self.emit(Tok::Variable);
            } else {
                self.emit(Tok::Dot);
            }
            return State::InsideAction;
        }
        loop {
            match self.next() {
                Some(c) if is_alnum(c) => {}
                other => {
                    if let Some(c) = other {
                        self.backup(c);
                    }
                    break;
                }
            }
        }
        if !self.at_terminator() {
            let c = self.peek().unwrap_or(' ');
            return self.errorf(format!("bad character {}", fmt_sharp_u(c)));
        }
        self.emit(typ);
        State::InsideAction
    }

    fn at_terminator(&self) -> bool {
        let Some(r) = self.peek() else { return true };
        if is_space(r) {
            return true;
        }
        if matches!(r, '.' | ',' | '|' | ':' | ')' | '(') {
            return true;
        }
        self.rest().starts_with(RIGHT)
    }

    fn lex_char(&mut self) -> State {
        loop {
            match self.next() {
                Some('\\') => {
                    if let Some(c) = self.next()
                        && c != '\n'
                    {
                        continue;
                    }
                    return self.errorf("unterminated character constant".to_string());
                }
                None | Some('\n') => {
                    return self.errorf("unterminated character constant".to_string());
                }
                Some('\'') => break,
                Some(_) => {}
            }
        }
        self.emit(Tok::CharConstant);
        State::InsideAction
    }

    fn lex_number(&mut self) -> State {
        if !self.scan_number() {
            let text = self.input[self.start..self.pos].to_string();
            return self.errorf(format!("bad number syntax: {}", super::gofmt::quote(&text)));
        }
        if matches!(self.peek(), Some('+') | Some('-')) {
            // Complex constant such as 1+2i: no spaces, must end in 'i'.
            if !self.scan_number() || self.input.as_bytes()[self.pos - 1] != b'i' {
                let text = self.input[self.start..self.pos].to_string();
                return self.errorf(format!("bad number syntax: {}", super::gofmt::quote(&text)));
            }
        }
        self.emit(Tok::Number);
        State::InsideAction
    }

    fn accept(&mut self, valid: &str) -> bool {
        if let Some(c) = self.peek()
            && valid.contains(c)
        {
            self.next();
            return true;
        }
        false
    }

    fn accept_run(&mut self, valid: &str) {
        while self.accept(valid) {}
    }

    fn scan_number(&mut self) -> bool {
        self.accept("+-");
        let mut digits = "0123456789_";
        if self.accept("0") {
            if self.accept("xX") {
                digits = "0123456789abcdefABCDEF_";
            } else if self.accept("oO") {
                digits = "01234567_";
            } else if self.accept("bB") {
                digits = "01_";
            }
        }
        self.accept_run(digits);
        if self.accept(".") {
            self.accept_run(digits);
        }
        if digits.len() == 11 && self.accept("eE") {
            self.accept("+-");
            self.accept_run("0123456789_");
        }
        if digits.len() == 23 && self.accept("pP") {
            self.accept("+-");
            self.accept_run("0123456789_");
        }
        self.accept("i");
        if let Some(c) = self.peek()
            && is_alnum(c)
        {
            self.next();
            return false;
        }
        true
    }

    fn lex_quote(&mut self) -> State {
        loop {
            match self.next() {
                Some('\\') => {
                    if let Some(c) = self.next()
                        && c != '\n'
                    {
                        continue;
                    }
                    return self.errorf("unterminated quoted string".to_string());
                }
                None | Some('\n') => return self.errorf("unterminated quoted string".to_string()),
                Some('"') => break,
                Some(_) => {}
            }
        }
        self.emit(Tok::String);
        State::InsideAction
    }

    fn lex_raw_quote(&mut self) -> State {
        loop {
            match self.next() {
                None => return self.errorf("unterminated raw quoted string".to_string()),
                Some('`') => break,
                Some(_) => {}
            }
        }
        self.emit(Tok::RawString);
        State::InsideAction
    }
}

fn has_left_trim_marker(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 2 && b[0] == b'-' && is_space(b[1] as char)
}

fn has_right_trim_marker(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 2 && is_space(b[0] as char) && b[1] == b'-'
}
