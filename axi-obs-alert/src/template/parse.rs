//! Parser for Go `text/template`, following `text/template/parse/parse.go` including its
//! error messages.

use std::collections::{BTreeMap, HashSet};

use super::gofmt::quote;
use super::lexer::{Item, Tok, lex};

/// A parsed number constant (Go's `NumberNode`).
#[derive(Debug, Clone)]
pub(crate) struct Number {
    pub(crate) text: String,
    pub(crate) int: Option<i64>,
    pub(crate) uint: Option<u64>,
    pub(crate) float: Option<f64>,
    pub(crate) is_char: bool,
    pub(crate) is_complex: bool,
}

/// An operand of a command.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Field {
        pos: usize,
        idents: Vec<String>,
    },
    Chain {
        pos: usize,
        node: Box<Arg>,
        fields: Vec<String>,
    },
    Identifier {
        pos: usize,
        name: String,
    },
    Variable {
        pos: usize,
        idents: Vec<String>,
    },
    Dot {
        pos: usize,
    },
    Nil {
        pos: usize,
    },
    Bool {
        pos: usize,
        val: bool,
    },
    Number {
        pos: usize,
        num: Number,
    },
    Str {
        pos: usize,
        quoted: String,
        text: String,
    },
    Pipe(Box<Pipe>),
}

impl Arg {
    pub(crate) fn pos(&self) -> usize {
        match self {
            Arg::Field { pos, .. }
            | Arg::Chain { pos, .. }
            | Arg::Identifier { pos, .. }
            | Arg::Variable { pos, .. }
            | Arg::Dot { pos }
            | Arg::Nil { pos }
            | Arg::Bool { pos, .. }
            | Arg::Number { pos, .. }
            | Arg::Str { pos, .. } => *pos,
            Arg::Pipe(p) => p.pos,
        }
    }
}

impl std::fmt::Display for Arg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Arg::Field { idents, .. } => {
                for i in idents {
                    write!(f, ".{i}")?;
                }
                Ok(())
            }
            Arg::Chain { node, fields, .. } => {
                if let Arg::Pipe(p) = node.as_ref() {
                    write!(f, "({p})")?;
                } else {
                    write!(f, "{node}")?;
                }
                for i in fields {
                    write!(f, ".{i}")?;
                }
                Ok(())
            }
            Arg::Identifier { name, .. } => write!(f, "{name}"),
            Arg::Variable { idents, .. } => write!(f, "{}", idents.join(".")),
            Arg::Dot { .. } => write!(f, "."),
            Arg::Nil { .. } => write!(f, "nil"),
            Arg::Bool { val, .. } => write!(f, "{val}"),
            Arg::Number { num, .. } => write!(f, "{}", num.text),
            Arg::Str { quoted, .. } => write!(f, "{quoted}"),
            Arg::Pipe(p) => write!(f, "{p}"),
        }
    }
}

/// A command: operands separated by spaces.
#[derive(Debug, Clone)]
pub(crate) struct Command {
    pub(crate) pos: usize,
    pub(crate) args: Vec<Arg>,
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, a) in self.args.iter().enumerate() {
            if i > 0 {
                write!(f, " ")?;
            }
            if let Arg::Pipe(p) = a {
                write!(f, "({p})")?;
            } else {
                write!(f, "{a}")?;
            }
        }
        Ok(())
    }
}

/// A pipeline with optional variable declarations.
#[derive(Debug, Clone)]
pub(crate) struct Pipe {
    pub(crate) pos: usize,
    pub(crate) is_assign: bool,
    pub(crate) decl: Vec<String>,
    pub(crate) cmds: Vec<Command>,
}

impl std::fmt::Display for Pipe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.decl.is_empty() {
            write!(f, "{}", self.decl.join(", "))?;
            write!(f, "{}", if self.is_assign { " = " } else { " := " })?;
        }
        for (i, c) in self.cmds.iter().enumerate() {
            if i > 0 {
                write!(f, " | ")?;
            }
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

/// `if`, `range` and `with` share this shape.
#[derive(Debug, Clone)]
pub(crate) struct Branch {
    pub(crate) pos: usize,
    pub(crate) pipe: Pipe,
    pub(crate) list: Vec<Node>,
    pub(crate) else_list: Option<Vec<Node>>,
}

/// A node of a template body.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    Text(String),
    Action {
        pos: usize,
        pipe: Pipe,
    },
    If(Box<Branch>),
    Range(Box<Branch>),
    With(Box<Branch>),
    Template {
        pos: usize,
        name: String,
        pipe: Option<Pipe>,
    },
    Break {
        pos: usize,
    },
    Continue {
        pos: usize,
    },
}

fn write_list(f: &mut std::fmt::Formatter<'_>, list: &[Node]) -> std::fmt::Result {
    for n in list {
        write!(f, "{n}")?;
    }
    Ok(())
}

impl std::fmt::Display for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Node::Text(t) => write!(f, "{t}"),
            Node::Action { pipe, .. } => write!(f, "{{{{{pipe}}}}}"),
            Node::If(b) | Node::Range(b) | Node::With(b) => {
                let kw = match self {
                    Node::If(_) => "if",
                    Node::Range(_) => "range",
                    _ => "with",
                };
                write!(f, "{{{{{kw} {}}}}}", b.pipe)?;
                write_list(f, &b.list)?;
                if let Some(e) = &b.else_list {
                    write!(f, "{{{{else}}}}")?;
                    write_list(f, e)?;
                }
                write!(f, "{{{{end}}}}")
            }
            Node::Template { name, pipe, .. } => match pipe {
                Some(p) => write!(f, "{{{{template {} {p}}}}}", quote(name)),
                None => write!(f, "{{{{template {}}}}}", quote(name)),
            },
            Node::Break { .. } => write!(f, "{{{{break}}}}"),
            Node::Continue { .. } => write!(f, "{{{{continue}}}}"),
        }
    }
}

/// What `itemList` stops at.
enum Stop {
    End,
    Else,
}

/// Result of parsing: the trees by name (the main one under the template's name).
pub(crate) type TreeSet = BTreeMap<String, Vec<Node>>;

pub(crate) struct Parser<'a> {
    name: &'a str,
    items: Vec<Item>,
    idx: usize,
    token: [Item; 3],
    peek_count: usize,
    vars: Vec<String>,
    range_depth: usize,
    /// Parenthesized pipelines and control structures (`if`, `range`, `with`) open around the
    /// token being parsed: parsing and executing recurse this deep.
    nesting: usize,
    /// `else if` (`else with`) branches of the chain being parsed, each one recursion deeper
    /// (as in Go's tree), but not nesting: a long value mapping is a flat template.
    chain: usize,
    action_line: usize,
    funcs: &'a HashSet<&'static str>,
    trees: TreeSet,
}

/// Most parenthesized pipelines and control structures one inside another. Go allows 10,000
/// parentheses (its stacks grow); parsing and executing here recurse on a fixed thread stack,
/// so a template nested deeper (a mistake, or a rule file written to crash its reader) is an
/// error rather than a stack overflow that ends the process. No real template comes near.
pub(crate) const MAX_NESTING: usize = 100;

/// Most levels of recursion in all: nesting plus the `else if` links of the chains open
/// (each link recurses once, as in Go's tree). A flat chain (a value mapping) may have this
/// many branches; Go has no limit, and no real template comes near. Measured: 400 levels
/// parse and run on a 2 MiB thread in a debug build.
pub(crate) const MAX_ELSE_CHAIN: usize = 250;

type PResult<T> = Result<T, String>;

fn empty_item() -> Item {
    Item {
        typ: Tok::Eof,
        pos: 0,
        val: String::new(),
        line: 1,
    }
}

/// Whether a list holds only whitespace text (Go's `IsEmptyTree`).
fn is_empty_tree(list: &[Node]) -> bool {
    list.iter()
        .all(|n| matches!(n, Node::Text(t) if t.trim().is_empty()))
}

/// Parses `text` into trees. Errors are Go's messages (`template: name:line: ...`).
pub(crate) fn parse(
    name: &str,
    text: &str,
    funcs: &HashSet<&'static str>,
) -> Result<TreeSet, String> {
    let mut p = Parser {
        name,
        items: lex(text),
        idx: 0,
        token: [empty_item(), empty_item(), empty_item()],
        peek_count: 0,
        vars: vec!["$".to_string()],
        range_depth: 0,
        nesting: 0,
        chain: 0,
        action_line: 0,
        funcs,
        trees: TreeSet::new(),
    };
    let root = p.parse_root()?;
    p.add(name.to_string(), root)?;
    Ok(p.trees)
}

impl Parser<'_> {
    fn lex_next(&mut self) -> Item {
        let it = self
            .items
            .get(self.idx)
            .cloned()
            .or_else(|| self.items.last().cloned())
            .unwrap_or_else(empty_item);
        if self.idx < self.items.len() {
            self.idx += 1;
        }
        it
    }

    fn next(&mut self) -> Item {
        if self.peek_count > 0 {
            self.peek_count -= 1;
        } else {
            self.token[0] = self.lex_next();
        }
        self.token[self.peek_count].clone()
    }

    fn backup(&mut self) {
        self.peek_count += 1;
    }

    fn backup2(&mut self, t1: Item) {
        self.token[1] = t1;
        self.peek_count = 2;
    }

    fn backup3(&mut self, t2: Item, t1: Item) {
        self.token[1] = t1;
        self.token[2] = t2;
        self.peek_count = 3;
    }

    fn peek(&mut self) -> Item {
        if self.peek_count > 0 {
            return self.token[self.peek_count - 1].clone();
        }
        self.peek_count = 1;
        self.token[0] = self.lex_next();
        self.token[0].clone()
    }

    fn next_non_space(&mut self) -> Item {
        loop {
            let t = self.next();
            if t.typ != Tok::Space {
                return t;
            }
        }
    }

    fn peek_non_space(&mut self) -> Item {
        let t = self.next_non_space();
        self.backup();
        t
    }

    fn errorf<T>(&self, msg: String) -> PResult<T> {
        Err(format!(
            "template: {}:{}: {}",
            self.name, self.token[0].line, msg
        ))
    }

    fn expect(&mut self, typ: Tok, context: &str) -> PResult<Item> {
        let t = self.next_non_space();
        if t.typ != typ {
            return self.unexpected(&t, context);
        }
        Ok(t)
    }

    fn unexpected<T>(&self, token: &Item, context: &str) -> PResult<T> {
        if token.typ == Tok::Error {
            let mut extra = String::new();
            if self.action_line != 0 && self.action_line != token.line {
                extra = format!(" in action started at {}:{}", self.name, self.action_line);
                if token.val.ends_with(" action") {
                    extra = extra[" in action".len()..].to_string();
                }
            }
            return self.errorf(format!("{}{}", token.describe(), extra));
        }
        self.errorf(format!("unexpected {} in {}", token.describe(), context))
    }

    fn add(&mut self, name: String, root: Vec<Node>) -> PResult<()> {
        match self.trees.get(&name) {
            Some(existing) if !is_empty_tree(existing) => {
                if !is_empty_tree(&root) {
                    return self.errorf(format!(
                        "template: multiple definition of template {}",
                        quote(&name)
                    ));
                }
            }
            _ => {
                self.trees.insert(name, root);
            }
        }
        Ok(())
    }

    fn parse_root(&mut self) -> PResult<Vec<Node>> {
        let mut root = Vec::new();
        while self.peek().typ != Tok::Eof {
            if self.peek().typ == Tok::LeftDelim {
                let delim = self.next();
                if self.next_non_space().typ == Tok::Define {
                    self.parse_definition()?;
                    continue;
                }
                self.backup2(delim);
            }
            match self.text_or_action()? {
                Parsed::Node(n) => root.push(n),
                Parsed::End => return self.errorf("unexpected {{end}}".into()),
                Parsed::Else => return self.errorf("unexpected {{else}}".into()),
            }
        }
        Ok(root)
    }

    fn parse_definition(&mut self) -> PResult<()> {
        let context = "define clause";
        let saved_vars = std::mem::replace(&mut self.vars, vec!["$".to_string()]);
        let saved_depth = std::mem::replace(&mut self.range_depth, 0);
        let token = self.next_non_space();
        if token.typ != Tok::String && token.typ != Tok::RawString {
            return self.unexpected(&token, context);
        }
        let name = unquote(&token.val).or_else(|e| self.errorf(e))?;
        self.expect(Tok::RightDelim, context)?;
        let (list, stop) = self.item_list()?;
        if !matches!(stop, Stop::End) {
            return self.errorf(format!("unexpected {{{{else}}}} in {context}"));
        }
        self.add(name, list)?;
        self.vars = saved_vars;
        self.range_depth = saved_depth;
        Ok(())
    }

    fn item_list(&mut self) -> PResult<(Vec<Node>, Stop)> {
        let mut list = Vec::new();
        while self.peek_non_space().typ != Tok::Eof {
            match self.text_or_action()? {
                Parsed::Node(n) => list.push(n),
                Parsed::End => return Ok((list, Stop::End)),
                Parsed::Else => return Ok((list, Stop::Else)),
            }
        }
        self.errorf("unexpected EOF".into())
    }

    fn text_or_action(&mut self) -> PResult<Parsed> {
        let token = self.next_non_space();
        match token.typ {
            Tok::Text => Ok(Parsed::Node(Node::Text(token.val))),
            Tok::LeftDelim => {
                self.action_line = token.line;
                let r = self.action();
                self.action_line = 0;
                r
            }
            _ => self.unexpected(&token, "input"),
        }
    }

    fn action(&mut self) -> PResult<Parsed> {
        let token = self.next_non_space();
        match token.typ {
            Tok::Block => return self.block_control().map(Parsed::Node),
            Tok::Break | Tok::Continue => {
                let name = if token.typ == Tok::Break {
                    "break"
                } else {
                    "continue"
                };
                let t = self.next_non_space();
                if t.typ != Tok::RightDelim {
                    return self.unexpected(&t, &format!("{{{{{name}}}}}"));
                }
                if self.range_depth == 0 {
                    return self.errorf(format!("{{{{{name}}}}} outside {{{{range}}}}"));
                }
                return Ok(Parsed::Node(if token.typ == Tok::Break {
                    Node::Break { pos: token.pos }
                } else {
                    Node::Continue { pos: token.pos }
                }));
            }
            Tok::Else => {
                let peek = self.peek_non_space();
                if peek.typ == Tok::If || peek.typ == Tok::With {
                    return Ok(Parsed::Else);
                }
                self.expect(Tok::RightDelim, "else")?;
                return Ok(Parsed::Else);
            }
            Tok::End => {
                self.expect(Tok::RightDelim, "end")?;
                return Ok(Parsed::End);
            }
            Tok::If => {
                return self
                    .control("if")
                    .map(|b| Parsed::Node(Node::If(Box::new(b))));
            }
            Tok::Range => {
                return self
                    .control("range")
                    .map(|b| Parsed::Node(Node::Range(Box::new(b))));
            }
            Tok::With => {
                return self
                    .control("with")
                    .map(|b| Parsed::Node(Node::With(Box::new(b))));
            }
            Tok::Template => return self.template_control().map(Parsed::Node),
            _ => {}
        }
        self.backup();
        let token = self.peek();
        let pipe = self.pipeline("command", Tok::RightDelim)?;
        Ok(Parsed::Node(Node::Action {
            pos: token.pos,
            pipe,
        }))
    }

    fn control(&mut self, context: &str) -> PResult<Branch> {
        if self.nesting >= MAX_NESTING || self.nesting + self.chain >= MAX_ELSE_CHAIN {
            return self.errorf(format!(
                "max nesting depth exceeded ({MAX_NESTING} if, range, with and parentheses)"
            ));
        }
        self.nesting += 1;
        let branch = self.control_body(context);
        self.nesting -= 1;
        branch
    }

    /// The branch after an `else if` (`else with`): the chain's next link, at the nesting
    /// level of the chain's first branch.
    fn chained(&mut self, context: &str) -> PResult<Branch> {
        if self.nesting + self.chain >= MAX_ELSE_CHAIN {
            return self.errorf(format!(
                "too many else {context} branches in one chain (at most {MAX_ELSE_CHAIN})"
            ));
        }
        self.chain += 1;
        let branch = self.control_body(context);
        self.chain -= 1;
        branch
    }

    fn control_body(&mut self, context: &str) -> PResult<Branch> {
        let nvars = self.vars.len();
        let pipe = self.pipeline(context, Tok::RightDelim)?;
        if context == "range" {
            self.range_depth += 1;
        }
        let (list, stop) = self.item_list()?;
        if context == "range" {
            self.range_depth -= 1;
        }
        let mut else_list = None;
        if let Stop::Else = stop {
            if context == "if" && self.peek().typ == Tok::If {
                self.next();
                let b = self.chained("if")?;
                else_list = Some(vec![Node::If(Box::new(b))]);
            } else if context == "with" && self.peek().typ == Tok::With {
                self.next();
                let b = self.chained("with")?;
                else_list = Some(vec![Node::With(Box::new(b))]);
            } else {
                let (l, stop) = self.item_list()?;
                if !matches!(stop, Stop::End) {
                    return self.errorf("expected end; found {{else}}".into());
                }
                else_list = Some(l);
            }
        }
        self.vars.truncate(nvars);
        Ok(Branch {
            pos: pipe.pos,
            pipe,
            list,
            else_list,
        })
    }

    fn parse_template_name(&mut self, token: &Item, context: &str) -> PResult<String> {
        match token.typ {
            Tok::String | Tok::RawString => unquote(&token.val).or_else(|e| self.errorf(e)),
            _ => self.unexpected(token, context),
        }
    }

    fn template_control(&mut self) -> PResult<Node> {
        let context = "template clause";
        let token = self.next_non_space();
        let name = self.parse_template_name(&token, context)?;
        let mut pipe = None;
        if self.next_non_space().typ != Tok::RightDelim {
            self.backup();
            pipe = Some(self.pipeline(context, Tok::RightDelim)?);
        }
        Ok(Node::Template {
            pos: token.pos,
            name,
            pipe,
        })
    }

    fn block_control(&mut self) -> PResult<Node> {
        let context = "block clause";
        let token = self.next_non_space();
        let name = self.parse_template_name(&token, context)?;
        let pipe = self.pipeline(context, Tok::RightDelim)?;
        let saved_vars = std::mem::replace(&mut self.vars, vec!["$".to_string()]);
        let saved_depth = std::mem::replace(&mut self.range_depth, 0);
        let (list, stop) = self.item_list()?;
        if !matches!(stop, Stop::End) {
            return self.errorf(format!("unexpected {{{{else}}}} in {context}"));
        }
        self.add(name.clone(), list)?;
        self.vars = saved_vars;
        self.range_depth = saved_depth;
        Ok(Node::Template {
            pos: token.pos,
            name,
            pipe: Some(pipe),
        })
    }

    fn pipeline(&mut self, context: &str, end: Tok) -> PResult<Pipe> {
        let token = self.peek_non_space();
        let mut pipe = Pipe {
            pos: token.pos,
            is_assign: false,
            decl: Vec::new(),
            cmds: Vec::new(),
        };
        'decls: loop {
            let v = self.peek_non_space();
            if v.typ == Tok::Variable {
                self.next();
                let token_after_variable = self.peek();
                let next = self.peek_non_space();
                if next.typ == Tok::Assign || next.typ == Tok::Declare {
                    pipe.is_assign = next.typ == Tok::Assign;
                    self.next_non_space();
                    pipe.decl.push(v.val.clone());
                    self.vars.push(v.val.clone());
                } else if next.typ == Tok::Char && next.val == "," {
                    self.next_non_space();
                    pipe.decl.push(v.val.clone());
                    self.vars.push(v.val.clone());
                    if context == "range" && pipe.decl.len() < 2 {
                        let p = self.peek_non_space();
                        match p.typ {
                            Tok::Variable | Tok::RightDelim | Tok::RightParen => continue 'decls,
                            _ => return self.errorf("range can only initialize variables".into()),
                        }
                    }
                    return self.errorf(format!("too many declarations in {context}"));
                } else if token_after_variable.typ == Tok::Space {
                    self.backup3(v, token_after_variable);
                } else {
                    self.backup2(v);
                }
            }
            break;
        }
        loop {
            let token = self.next_non_space();
            if token.typ == end {
                self.check_pipeline(&pipe, context)?;
                return Ok(pipe);
            }
            match token.typ {
                Tok::Bool
                | Tok::CharConstant
                | Tok::Dot
                | Tok::Field
                | Tok::Identifier
                | Tok::Number
                | Tok::Nil
                | Tok::RawString
                | Tok::String
                | Tok::Variable
                | Tok::LeftParen => {
                    self.backup();
                    let c = self.command()?;
                    pipe.cmds.push(c);
                }
                _ => return self.unexpected(&token, context),
            }
        }
    }

    fn check_pipeline(&self, pipe: &Pipe, context: &str) -> PResult<()> {
        if pipe.cmds.is_empty() {
            return self.errorf(format!("missing value for {context}"));
        }
        for (i, c) in pipe.cmds.iter().enumerate().skip(1) {
            if let Some(
                Arg::Bool { .. }
                | Arg::Dot { .. }
                | Arg::Nil { .. }
                | Arg::Number { .. }
                | Arg::Str { .. },
            ) = c.args.first()
            {
                return self.errorf(format!(
                    "non executable command in pipeline stage {}",
                    i + 1
                ));
            }
        }
        Ok(())
    }

    fn command(&mut self) -> PResult<Command> {
        let pos = self.peek_non_space().pos;
        let mut cmd = Command {
            pos,
            args: Vec::new(),
        };
        loop {
            self.peek_non_space();
            if let Some(op) = self.operand()? {
                cmd.args.push(op);
            }
            let token = self.next();
            match token.typ {
                Tok::Space => continue,
                Tok::RightDelim | Tok::RightParen => self.backup(),
                Tok::Pipe => {}
                _ => return self.unexpected(&token, "operand"),
            }
            break;
        }
        if cmd.args.is_empty() {
            return self.errorf("empty command".into());
        }
        Ok(cmd)
    }

    fn operand(&mut self) -> PResult<Option<Arg>> {
        let Some(node) = self.term()? else {
            return Ok(None);
        };
        if self.peek().typ == Tok::Field {
            let pos = self.peek().pos;
            let mut fields = Vec::new();
            while self.peek().typ == Tok::Field {
                let f = self.next().val;
                fields.push(f[1..].to_string());
            }
            return match node {
                Arg::Field { idents, .. } => {
                    let mut idents = idents;
                    idents.extend(fields);
                    Ok(Some(Arg::Field { pos, idents }))
                }
                Arg::Variable { idents, .. } => {
                    let mut idents = idents;
                    idents.extend(fields);
                    Ok(Some(Arg::Variable { pos, idents }))
                }
                Arg::Bool { .. }
                | Arg::Str { .. }
                | Arg::Number { .. }
                | Arg::Nil { .. }
                | Arg::Dot { .. } => self.errorf(format!(
                    "unexpected . after term {}",
                    quote(&node.to_string())
                )),
                other => Ok(Some(Arg::Chain {
                    pos,
                    node: Box::new(other),
                    fields,
                })),
            };
        }
        Ok(Some(node))
    }

    fn term(&mut self) -> PResult<Option<Arg>> {
        let token = self.next_non_space();
        let pos = token.pos;
        Ok(Some(match token.typ {
            Tok::Identifier => {
                if !self.funcs.contains(token.val.as_str()) {
                    return self.errorf(format!("function {} not defined", quote(&token.val)));
                }
                Arg::Identifier {
                    pos,
                    name: token.val,
                }
            }
            Tok::Dot => Arg::Dot { pos },
            Tok::Nil => Arg::Nil { pos },
            Tok::Variable => {
                let parts: Vec<String> = token.val.split('.').map(str::to_string).collect();
                if !self.vars.iter().any(|v| *v == parts[0]) {
                    return self.errorf(format!("undefined variable {}", quote(&parts[0])));
                }
                Arg::Variable { pos, idents: parts }
            }
            Tok::Field => Arg::Field {
                pos,
                idents: token.val[1..].split('.').map(str::to_string).collect(),
            },
            Tok::Bool => Arg::Bool {
                pos,
                val: token.val == "true",
            },
            Tok::CharConstant | Tok::Number => {
                let num = new_number(&token.val, token.typ == Tok::CharConstant)
                    .or_else(|e| self.errorf(e))?;
                Arg::Number { pos, num }
            }
            Tok::LeftParen => {
                if self.nesting >= MAX_NESTING || self.nesting + self.chain >= MAX_ELSE_CHAIN {
                    return self.errorf("max expression depth exceeded".into());
                }
                self.nesting += 1;
                let pipe = self.pipeline("parenthesized pipeline", Tok::RightParen);
                self.nesting -= 1;
                Arg::Pipe(Box::new(pipe?))
            }
            Tok::String | Tok::RawString => {
                let text = unquote(&token.val).or_else(|e| self.errorf(e))?;
                Arg::Str {
                    pos,
                    quoted: token.val,
                    text,
                }
            }
            _ => {
                self.backup();
                return Ok(None);
            }
        }))
    }
}

enum Parsed {
    Node(Node),
    End,
    Else,
}

/// Go's `strconv.Unquote` for "...", `...` and '...' literals.
pub(crate) fn unquote(s: &str) -> Result<String, String> {
    let syntax = || "invalid syntax".to_string();
    if s.len() < 2 {
        return Err(syntax());
    }
    let q = s.as_bytes()[0];
    if s.as_bytes()[s.len() - 1] != q {
        return Err(syntax());
    }
    let body = &s[1..s.len() - 1];
    match q {
        b'`' => {
            if body.contains('`') {
                return Err(syntax());
            }
            Ok(body.replace('\r', ""))
        }
        b'"' | b'\'' => {
            let mut out = String::new();
            let mut chars = body.chars().peekable();
            while let Some(c) = chars.next() {
                if c == q as char {
                    return Err(syntax());
                }
                if c == '\n' {
                    return Err(syntax());
                }
                if c != '\\' {
                    out.push(c);
                    continue;
                }
                let e = chars.next().ok_or_else(syntax)?;
                let hex = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
                           n: usize|
                 -> Result<u32, String> {
                    let mut v = 0u32;
                    for _ in 0..n {
                        let d = chars
                            .next()
                            .and_then(|c| c.to_digit(16))
                            .ok_or_else(syntax)?;
                        v = v * 16 + d;
                    }
                    Ok(v)
                };
                match e {
                    'a' => out.push('\u{7}'),
                    'b' => out.push('\u{8}'),
                    'f' => out.push('\u{c}'),
                    'n' => out.push('\n'),
                    'r' => out.push('\r'),
                    't' => out.push('\t'),
                    'v' => out.push('\u{b}'),
                    '\\' => out.push('\\'),
                    '\'' | '"' => {
                        if e as u8 != q {
                            return Err(syntax());
                        }
                        out.push(e);
                    }
                    'x' => out.push(char::from_u32(hex(&mut chars, 2)?).ok_or_else(syntax)?),
                    'u' => out.push(char::from_u32(hex(&mut chars, 4)?).ok_or_else(syntax)?),
                    'U' => out.push(char::from_u32(hex(&mut chars, 8)?).ok_or_else(syntax)?),
                    '0'..='7' => {
                        let mut v = e.to_digit(8).unwrap_or(0);
                        for _ in 0..2 {
                            let d = chars
                                .next()
                                .and_then(|c| c.to_digit(8))
                                .ok_or_else(syntax)?;
                            v = v * 8 + d;
                        }
                        if v > 255 {
                            return Err(syntax());
                        }
                        out.push(char::from_u32(v).ok_or_else(syntax)?);
                    }
                    _ => return Err(syntax()),
                }
            }
            if q == b'\'' && out.chars().count() != 1 {
                return Err(syntax());
            }
            Ok(out)
        }
        _ => Err(syntax()),
    }
}

fn parse_go_int(text: &str) -> Option<(bool, u128)> {
    let (neg, rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let lower = rest.to_ascii_lowercase();
    let (radix, digits, prefixed) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d, true)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d, true)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d, true)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, &lower[1..], true)
    } else {
        (10, lower.as_str(), false)
    };
    if digits.contains('_') && !prefixed {
        return None;
    }
    let digits: String = digits.chars().filter(|&c| c != '_').collect();
    if digits.is_empty() {
        return None;
    }
    u128::from_str_radix(&digits, radix).ok().map(|v| (neg, v))
}

/// Go's `parse.newNumber`.
fn new_number(text: &str, is_char: bool) -> Result<Number, String> {
    let mut n = Number {
        text: text.to_string(),
        int: None,
        uint: None,
        float: None,
        is_char,
        is_complex: false,
    };
    if is_char {
        let s = unquote(text).map_err(|_| format!("malformed character constant: {text}"))?;
        let c = s.chars().next().unwrap_or('\0') as u32;
        n.int = Some(c as i64);
        n.uint = Some(c as u64);
        n.float = Some(c as f64);
        return Ok(n);
    }
    if text.ends_with('i') {
        n.is_complex = true;
        return Ok(n);
    }
    if let Some((neg, v)) = parse_go_int(text) {
        if !neg && v <= u64::MAX as u128 {
            n.uint = Some(v as u64);
        }
        if neg && v <= i64::MAX as u128 + 1 {
            n.int = Some((-(v as i128)) as i64);
        } else if !neg && v <= i64::MAX as u128 {
            n.int = Some(v as i64);
        }
        if n.int == Some(0) {
            n.uint = Some(0);
        }
    }
    if let Some(i) = n.int {
        n.float = Some(i as f64);
    } else if let Some(u) = n.uint {
        n.float = Some(u as f64);
    } else {
        let cleaned: String = text.chars().filter(|&c| c != '_').collect();
        let is_hex = cleaned
            .trim_start_matches(['+', '-'])
            .to_ascii_lowercase()
            .starts_with("0x");
        let parsed = if is_hex {
            None
        } else {
            cleaned.parse::<f64>().ok().filter(|f| f.is_finite())
        };
        if let Some(f) = parsed {
            if !text.contains(['.', 'e', 'E', 'p', 'P']) {
                return Err(format!("integer overflow: {}", quote(text)));
            }
            n.float = Some(f);
            if f.fract() == 0.0 && f >= i64::MIN as f64 && f < i64::MAX as f64 {
                n.int = Some(f as i64);
            }
            if f.fract() == 0.0 && f >= 0.0 && f < u64::MAX as f64 {
                n.uint = Some(f as u64);
            }
        }
    }
    if n.int.is_none() && n.uint.is_none() && n.float.is_none() {
        return Err(format!("illegal number syntax: {}", quote(text)));
    }
    Ok(n)
}
