//! Execution of parsed templates, following `text/template/exec.go` (including its error
//! messages and the node it blames).

use super::funcs::{self, FuncDef, Pt};
use super::gofmt;
use super::parse::{Arg, Branch, Command, Node, Pipe, TreeSet};
use super::value::Value;
use super::{Env, MissingKey};

/// Maximum nesting of `{{template}}` calls (Go allows 100000; a native stack cannot).
const MAX_EXEC_DEPTH: usize = 200;

/// The node an error is reported at (Go's `state.node`).
#[derive(Clone, Copy)]
pub(crate) enum At<'a> {
    Arg(&'a Arg),
    Cmd(&'a Command),
    Pipe(&'a Pipe),
    Node(&'a Node),
    Branch(&'a Branch, &'static str),
}

impl At<'_> {
    fn pos(&self) -> usize {
        match self {
            At::Arg(a) => a.pos(),
            At::Cmd(c) => c.pos,
            At::Pipe(p) => p.pos,
            At::Branch(b, _) => b.pos,
            At::Node(n) => match n {
                Node::Text(_) => 0,
                Node::Action { pos, .. }
                | Node::Template { pos, .. }
                | Node::Break { pos }
                | Node::Continue { pos } => *pos,
                Node::If(b) | Node::Range(b) | Node::With(b) => b.pos,
            },
        }
    }

    fn context(&self) -> String {
        match self {
            At::Arg(a) => a.to_string(),
            At::Cmd(c) => c.to_string(),
            At::Pipe(p) => p.to_string(),
            At::Node(n) => n.to_string(),
            At::Branch(b, kw) => {
                let n = match *kw {
                    "if" => Node::If(Box::new((*b).clone())),
                    "with" => Node::With(Box::new((*b).clone())),
                    _ => Node::Range(Box::new((*b).clone())),
                };
                n.to_string()
            }
        }
    }
}

/// Control flow out of a list walk.
enum Flow {
    Normal,
    Break,
    Continue,
}

type R<T> = Result<T, String>;

/// Shared, immutable execution context.
pub(crate) struct Ctx<'a> {
    pub(crate) trees: &'a TreeSet,
    pub(crate) parse_name: &'a str,
    pub(crate) text: &'a str,
    pub(crate) env: &'a Env<'a>,
    pub(crate) missing: MissingKey,
}

pub(crate) struct State<'a> {
    ctx: &'a Ctx<'a>,
    tmpl_name: String,
    vars: Vec<(String, Value)>,
    node: Option<At<'a>>,
    depth: usize,
    pub(crate) out: String,
}

/// A function value being called: a template function or a method of a receiver.
enum Callee<'f> {
    Func(&'f FuncDef),
    Method(funcs::Method, Value),
}

impl<'a> State<'a> {
    pub(crate) fn new(ctx: &'a Ctx<'a>, name: &str, dot: &Value) -> State<'a> {
        State {
            ctx,
            tmpl_name: name.to_string(),
            vars: vec![("$".to_string(), dot.clone())],
            node: None,
            depth: 0,
            out: String::new(),
        }
    }

    fn at(&mut self, n: At<'a>) {
        self.node = Some(n);
    }

    fn errorf(&self, msg: impl Into<String>) -> String {
        let msg = msg.into();
        let name = &self.tmpl_name;
        match &self.node {
            None => format!("template: {name}: {msg}"),
            Some(n) => {
                let pos = n.pos().min(self.ctx.text.len());
                let mut pos = pos;
                while !self.ctx.text.is_char_boundary(pos) {
                    pos -= 1;
                }
                let before = &self.ctx.text[..pos];
                let line = 1 + before.matches('\n').count();
                let col = match before.rfind('\n') {
                    Some(i) => pos - (i + 1),
                    None => pos,
                };
                format!(
                    "template: {}:{}:{}: executing {} at <{}>: {}",
                    self.ctx.parse_name,
                    line,
                    col,
                    gofmt::quote(name),
                    n.context(),
                    msg
                )
            }
        }
    }

    fn push(&mut self, name: &str, v: Value) {
        self.vars.push((name.to_string(), v));
    }

    fn set_var(&mut self, name: &str, v: Value) -> R<()> {
        for (n, val) in self.vars.iter_mut().rev() {
            if n == name {
                *val = v;
                return Ok(());
            }
        }
        Err(self.errorf(format!("undefined variable: {name}")))
    }

    fn set_top_var(&mut self, n: usize, v: Value) {
        let len = self.vars.len();
        self.vars[len - n].1 = v;
    }

    fn var_value(&self, name: &str) -> R<Value> {
        for (n, v) in self.vars.iter().rev() {
            if n == name {
                return Ok(v.clone());
            }
        }
        Err(self.errorf(format!("undefined variable: {name}")))
    }

    /// Executes the main tree.
    pub(crate) fn exec_root(&mut self, root: &'a [Node], dot: &Value) -> R<()> {
        self.walk_list(dot, root).map(|_| ())
    }

    fn walk_list(&mut self, dot: &Value, list: &'a [Node]) -> R<Flow> {
        for n in list {
            match self.walk(dot, n)? {
                Flow::Normal => {}
                f => return Ok(f),
            }
        }
        Ok(Flow::Normal)
    }

    fn walk(&mut self, dot: &Value, node: &'a Node) -> R<Flow> {
        self.at(At::Node(node));
        match node {
            Node::Text(t) => self.out.push_str(t),
            Node::Action { pipe, .. } => {
                let v = self.eval_pipeline(dot, pipe)?;
                if pipe.decl.is_empty() {
                    self.at(At::Node(node));
                    self.print_value(&v);
                }
            }
            Node::Break { .. } => return Ok(Flow::Break),
            Node::Continue { .. } => return Ok(Flow::Continue),
            Node::If(b) => return self.walk_if_or_with(false, dot, b),
            Node::With(b) => return self.walk_if_or_with(true, dot, b),
            Node::Range(b) => return self.walk_range(dot, b),
            Node::Template { name, pipe, .. } => {
                let Some(tree) = self.ctx.trees.get(name) else {
                    return Err(self.errorf(format!("template {} not defined", gofmt::quote(name))));
                };
                if self.depth >= MAX_EXEC_DEPTH {
                    return Err(self.errorf(format!(
                        "exceeded maximum template depth ({MAX_EXEC_DEPTH})"
                    )));
                }
                let new_dot = match pipe {
                    Some(p) => self.eval_pipeline(dot, p)?,
                    None => Value::Nil,
                };
                let mut st = State {
                    ctx: self.ctx,
                    tmpl_name: name.clone(),
                    vars: vec![("$".to_string(), new_dot.clone())],
                    node: None,
                    depth: self.depth + 1,
                    out: std::mem::take(&mut self.out),
                };
                let r = st.walk_list(&new_dot, tree);
                self.out = std::mem::take(&mut st.out);
                r?;
            }
        }
        Ok(Flow::Normal)
    }

    fn print_value(&mut self, v: &Value) {
        match v {
            Value::Nil => self.out.push_str("<no value>"),
            // Go prints what a pointer points to in an action (`printableValue`): a sample
            // from `query` is `{map[...] 11}` there, `&{...}` only through `print`/`printf`.
            Value::Sample(_) => {
                let s = gofmt::sprint_value(v);
                self.out.push_str(s.strip_prefix('&').unwrap_or(&s));
            }
            _ => {
                let s = gofmt::sprint_value(v);
                self.out.push_str(&s);
            }
        }
    }

    fn walk_if_or_with(&mut self, with: bool, dot: &Value, b: &'a Branch) -> R<Flow> {
        let mark = self.vars.len();
        let val = self.eval_pipeline(dot, &b.pipe)?;
        let r = if val.is_true() {
            if with {
                self.walk_list(&val, &b.list)
            } else {
                self.walk_list(dot, &b.list)
            }
        } else if let Some(e) = &b.else_list {
            self.walk_list(dot, e)
        } else {
            Ok(Flow::Normal)
        };
        self.vars.truncate(mark);
        r
    }

    fn one_iteration(&mut self, b: &'a Branch, index: Value, elem: Value, mark: usize) -> R<Flow> {
        let p = &b.pipe;
        if !p.decl.is_empty() {
            if p.is_assign {
                if p.decl.len() > 1 {
                    self.set_var(&p.decl[0], index.clone())?;
                } else {
                    self.set_var(&p.decl[0], elem.clone())?;
                }
            } else {
                self.set_top_var(1, elem.clone());
            }
        }
        if p.decl.len() > 1 {
            if p.is_assign {
                self.set_var(&p.decl[1], elem.clone())?;
            } else {
                self.set_top_var(2, index);
            }
        }
        let r = self.walk_list(&elem, &b.list);
        self.vars.truncate(mark);
        r
    }

    fn walk_range(&mut self, dot: &Value, b: &'a Branch) -> R<Flow> {
        self.at(At::Branch(b, "range"));
        let outer = self.vars.len();
        let val = self.eval_pipeline(dot, &b.pipe)?;
        let mark = self.vars.len();
        let mut items: Vec<(Value, Value)> = Vec::new();
        // Counting ranges (`range 5`) go lazily, as in Go: `range 200000000` with a `break`
        // allocates nothing.
        let mut counted: Option<Box<dyn Iterator<Item = (Value, Value)>>> = None;
        match &val {
            Value::List(l) => {
                for (i, v) in l.iter().enumerate() {
                    items.push((Value::Int(i as i64), v.clone()));
                }
            }
            Value::QueryResult(q) => {
                for (i, s) in q.iter().enumerate() {
                    items.push((Value::Int(i as i64), Value::Sample(Box::new(s.clone()))));
                }
            }
            Value::StrMap(m) | Value::Kv(m) => {
                for (k, v) in m {
                    items.push((Value::String(k.clone()), Value::String(v.clone())));
                }
            }
            Value::Map(m) => {
                for (k, v) in m {
                    items.push((Value::String(k.clone()), v.clone()));
                }
            }
            Value::Nil => {}
            Value::Int(n) | Value::Duration(n) => {
                if b.pipe.decl.len() > 1 {
                    return Err(self.errorf(format!(
                        "can't use {n} to iterate over more than one variable"
                    )));
                }
                counted = Some(Box::new((0..*n).map(|i| (Value::Int(i), Value::Int(i)))));
            }
            Value::Uint(n) => {
                if b.pipe.decl.len() > 1 {
                    return Err(self.errorf(format!(
                        "can't use {n} to iterate over more than one variable"
                    )));
                }
                counted = Some(Box::new((0..*n).map(|i| (Value::Uint(i), Value::Uint(i)))));
            }
            other => {
                return Err(self.errorf(format!(
                    "range can't iterate over {}",
                    gofmt::sprint_value(other)
                )));
            }
        }
        let mut items = counted
            .unwrap_or_else(|| Box::new(items.into_iter()))
            .peekable();
        let r = if items.peek().is_none() {
            match &b.else_list {
                Some(e) => self.walk_list(dot, e),
                None => Ok(Flow::Normal),
            }
        } else {
            let mut res = Ok(Flow::Normal);
            for (i, e) in items {
                match self.one_iteration(b, i, e, mark) {
                    Ok(Flow::Break) => break,
                    Ok(_) => {}
                    Err(e) => {
                        res = Err(e);
                        break;
                    }
                }
            }
            res.map(|_| Flow::Normal)
        };
        self.vars.truncate(outer);
        r
    }

    pub(crate) fn eval_pipeline(&mut self, dot: &Value, pipe: &'a Pipe) -> R<Value> {
        self.at(At::Pipe(pipe));
        let mut value: Option<Value> = None;
        for cmd in &pipe.cmds {
            value = Some(self.eval_command(dot, cmd, value)?);
        }
        let value = value.unwrap_or_default();
        for v in &pipe.decl {
            if pipe.is_assign {
                self.set_var(v, value.clone())?;
            } else {
                self.push(v, value.clone());
            }
        }
        Ok(value)
    }

    fn not_a_function(&self, args: &[Arg], fin: &Option<Value>) -> R<()> {
        if args.len() > 1 || fin.is_some() {
            return Err(self.errorf(format!("can't give argument to non-function {}", args[0])));
        }
        Ok(())
    }

    fn eval_command(&mut self, dot: &Value, cmd: &'a Command, fin: Option<Value>) -> R<Value> {
        let first = &cmd.args[0];
        match first {
            Arg::Field { idents, .. } => {
                self.at(At::Arg(first));
                return self.eval_field_chain(dot, dot.clone(), idents, &cmd.args, fin);
            }
            Arg::Chain { .. } => return self.eval_chain(dot, first, &cmd.args, fin),
            Arg::Identifier { name, .. } => {
                return self.eval_function(dot, first, name, cmd, &cmd.args, fin);
            }
            Arg::Pipe(p) => {
                self.not_a_function(&cmd.args, &fin)?;
                return self.eval_pipeline(dot, p);
            }
            Arg::Variable { idents, .. } => {
                return self.eval_variable(dot, first, idents, &cmd.args, fin);
            }
            _ => {}
        }
        self.at(At::Arg(first));
        self.not_a_function(&cmd.args, &fin)?;
        match first {
            Arg::Bool { val, .. } => Ok(Value::Bool(*val)),
            Arg::Dot { .. } => Ok(dot.clone()),
            Arg::Nil { .. } => Err(self.errorf("nil is not a command")),
            Arg::Number { .. } => self.ideal_constant(first),
            Arg::Str { text, .. } => Ok(Value::String(text.clone())),
            _ => Err(self.errorf(format!(
                "can't evaluate command {}",
                gofmt::quote(&first.to_string())
            ))),
        }
    }

    fn ideal_constant(&self, arg: &Arg) -> R<Value> {
        let Arg::Number { num, .. } = arg else {
            return Ok(Value::Nil);
        };
        if num.is_complex {
            return Err(self.errorf(format!("complex constant {} is not supported", num.text)));
        }
        let t = &num.text;
        let is_hex = {
            let l = t.trim_start_matches(['+', '-']).to_ascii_lowercase();
            l.starts_with("0x") && !l.contains('p')
        };
        if let Some(f) = num.float
            && !is_hex
            && !num.is_char
            && t.contains(['.', 'e', 'E', 'p', 'P'])
        {
            return Ok(Value::Float(f));
        }
        if let Some(i) = num.int {
            return Ok(Value::Int(i));
        }
        if num.uint.is_some() {
            return Err(self.errorf(format!("{t} overflows int")));
        }
        Ok(Value::Nil)
    }

    fn eval_chain(
        &mut self,
        dot: &Value,
        chain: &'a Arg,
        args: &'a [Arg],
        fin: Option<Value>,
    ) -> R<Value> {
        let Arg::Chain { node, fields, .. } = chain else {
            return Ok(Value::Nil);
        };
        self.at(At::Arg(chain));
        if let Arg::Nil { .. } = node.as_ref() {
            return Err(self.errorf(format!("indirection through explicit nil in {chain}")));
        }
        let pipe = self.eval_arg(dot, node)?;
        self.eval_field_chain(dot, pipe, fields, args, fin)
    }

    fn eval_variable(
        &mut self,
        dot: &Value,
        var: &'a Arg,
        idents: &'a [String],
        args: &'a [Arg],
        fin: Option<Value>,
    ) -> R<Value> {
        self.at(At::Arg(var));
        let value = self.var_value(&idents[0])?;
        if idents.len() == 1 {
            self.not_a_function(args, &fin)?;
            return Ok(value);
        }
        self.eval_field_chain(dot, value, &idents[1..], args, fin)
    }

    fn eval_field_chain(
        &mut self,
        dot: &Value,
        receiver: Value,
        idents: &'a [String],
        args: &'a [Arg],
        fin: Option<Value>,
    ) -> R<Value> {
        let n = idents.len();
        let mut receiver = receiver;
        for id in &idents[..n - 1] {
            receiver = self.eval_field(dot, id, &[], None, receiver)?;
        }
        self.eval_field(dot, &idents[n - 1], args, fin, receiver)
    }

    fn eval_field(
        &mut self,
        dot: &Value,
        name: &str,
        args: &'a [Arg],
        fin: Option<Value>,
        receiver: Value,
    ) -> R<Value> {
        if let Value::Nil = receiver {
            if self.ctx.missing == MissingKey::Error {
                return Err(
                    self.errorf(format!("nil data; no entry for key {}", gofmt::quote(name)))
                );
            }
            return Ok(Value::Nil);
        }
        if let Some(m) = funcs::method(&receiver, name) {
            return self.eval_call(dot, Callee::Method(m, receiver), None, name, args, fin);
        }
        let has_args = args.len() > 1 || fin.is_some();
        let missing = |s: &Self, zero: Value| -> R<Value> {
            match s.ctx.missing {
                MissingKey::Invalid => Ok(Value::Nil),
                MissingKey::Zero => Ok(zero),
                MissingKey::Error => {
                    Err(s.errorf(format!("map has no entry for key {}", gofmt::quote(name))))
                }
            }
        };
        match &receiver {
            Value::Struct(s) => {
                if let Some((_, v)) = s.fields.iter().find(|(n, _)| n == name) {
                    if has_args {
                        return Err(self.errorf(format!(
                            "{name} has arguments but cannot be invoked as function"
                        )));
                    }
                    return Ok(v.clone());
                }
            }
            Value::Sample(s) => match name {
                "Labels" | "Value" if has_args => {
                    return Err(self.errorf(format!(
                        "{name} has arguments but cannot be invoked as function"
                    )));
                }
                "Labels" => return Ok(Value::StrMap(s.labels.clone())),
                "Value" => return Ok(Value::Float(s.value)),
                _ => {}
            },
            Value::StrMap(m) | Value::Kv(m) => {
                if has_args {
                    return Err(self.errorf(format!("{name} is not a method but has arguments")));
                }
                return match m.get(name) {
                    Some(v) => Ok(Value::String(v.clone())),
                    None => missing(self, Value::String(String::new())),
                };
            }
            Value::Map(m) => {
                if has_args {
                    return Err(self.errorf(format!("{name} is not a method but has arguments")));
                }
                return match m.get(name) {
                    Some(v) => Ok(v.clone()),
                    None => missing(self, Value::Nil),
                };
            }
            _ => {}
        }
        Err(self.errorf(format!(
            "can't evaluate field {name} in type {}",
            receiver.type_name()
        )))
    }

    fn eval_function(
        &mut self,
        dot: &Value,
        ident: &'a Arg,
        name: &str,
        cmd: &'a Command,
        args: &'a [Arg],
        fin: Option<Value>,
    ) -> R<Value> {
        self.at(At::Arg(ident));
        let Some(def) = funcs::lookup(name) else {
            return Err(self.errorf(format!("{} is not a defined function", gofmt::quote(name))));
        };
        self.eval_call(dot, Callee::Func(def), Some(cmd), name, args, fin)
    }

    /// Evaluates an argument for an `interface{}` parameter (`evalEmptyInterface`).
    fn eval_arg(&mut self, dot: &Value, arg: &'a Arg) -> R<Value> {
        self.at(At::Arg(arg));
        match arg {
            Arg::Bool { val, .. } => Ok(Value::Bool(*val)),
            Arg::Dot { .. } => Ok(dot.clone()),
            Arg::Field { idents, .. } => {
                self.eval_field_chain(dot, dot.clone(), idents, std::slice::from_ref(arg), None)
            }
            Arg::Identifier { name, .. } => {
                let Some(def) = funcs::lookup(name) else {
                    return Err(
                        self.errorf(format!("{} is not a defined function", gofmt::quote(name)))
                    );
                };
                self.eval_call(dot, Callee::Func(def), None, name, &[], None)
            }
            Arg::Nil { .. } => Ok(Value::Nil),
            Arg::Number { .. } => self.ideal_constant(arg),
            Arg::Str { text, .. } => Ok(Value::String(text.clone())),
            Arg::Variable { idents, .. } => self.eval_variable(dot, arg, idents, &[], None),
            Arg::Pipe(p) => self.eval_pipeline(dot, p),
            Arg::Chain { .. } => self.eval_chain(dot, arg, &[], None),
        }
    }

    /// Evaluates an argument for a typed parameter (`evalArg` + `validateType`).
    fn eval_typed_arg(&mut self, dot: &Value, pt: Pt, arg: &'a Arg) -> R<Value> {
        if pt == Pt::Any {
            return self.eval_arg(dot, arg);
        }
        self.at(At::Arg(arg));
        match arg {
            Arg::Nil { .. } => {
                if pt.can_be_nil() {
                    return Ok(Value::Nil);
                }
                return Err(self.errorf(format!("cannot assign nil to {}", pt.go_name())));
            }
            Arg::Str { text, .. } if pt == Pt::Str => return Ok(Value::String(text.clone())),
            Arg::Number { num, .. } if pt == Pt::Duration => {
                // Any integral constant, `1e9` and `60.0` too (Go's `IsInt`).
                return match num.int {
                    Some(i) => Ok(Value::Duration(i)),
                    None => Err(self.errorf(format!("expected integer; found {arg}"))),
                };
            }
            Arg::Str { .. } | Arg::Number { .. } | Arg::Bool { .. } => {
                return Err(match pt {
                    Pt::Str => self.errorf(format!("expected string; found {arg}")),
                    Pt::Duration => self.errorf(format!("expected integer; found {arg}")),
                    _ => self.errorf(format!(
                        "can't handle {arg} for arg of type {}",
                        pt.go_name()
                    )),
                });
            }
            _ => {}
        }
        let v = self.eval_arg(dot, arg)?;
        self.validate_type(v, pt)
    }

    fn validate_type(&self, v: Value, pt: Pt) -> R<Value> {
        if let Value::Nil = v {
            if pt.can_be_nil() {
                return Ok(Value::Nil);
            }
            return Err(self.errorf(format!("invalid value; expected {}", pt.go_name())));
        }
        let ok = match pt {
            Pt::Any => true,
            Pt::Str => matches!(v, Value::String(_)),
            Pt::Sample => matches!(v, Value::Sample(_)),
            Pt::QueryResult => matches!(v, Value::QueryResult(_)),
            Pt::Duration => matches!(v, Value::Duration(_)),
            Pt::Time => matches!(v, Value::Time(_)),
        };
        if !ok {
            return Err(self.errorf(format!(
                "wrong type for value; expected {}; got {}",
                pt.go_name(),
                v.type_name()
            )));
        }
        Ok(v)
    }

    fn eval_call(
        &mut self,
        dot: &Value,
        callee: Callee<'_>,
        node: Option<&'a Command>,
        name: &str,
        args: &'a [Arg],
        fin: Option<Value>,
    ) -> R<Value> {
        let args: &'a [Arg] = if args.is_empty() { args } else { &args[1..] };
        let (params, variadic): (&[Pt], Option<Pt>) = match &callee {
            Callee::Func(d) => (d.params, d.variadic),
            Callee::Method(m, _) => (m.params, None),
        };
        let num_in = args.len() + usize::from(fin.is_some());
        let num_params = params.len() + usize::from(variadic.is_some());
        let num_fixed = if variadic.is_some() {
            params.len()
        } else {
            args.len()
        };
        if variadic.is_some() {
            if num_in < num_fixed {
                return Err(self.errorf(format!(
                    "wrong number of args for {name}: want at least {} got {}",
                    params.len(),
                    args.len()
                )));
            }
        } else if num_in != num_params {
            return Err(self.errorf(format!(
                "wrong number of args for {name}: want {num_params} got {num_in}"
            )));
        }
        // and/or short-circuit.
        if let Callee::Func(d) = &callee
            && (d.name == "and" || d.name == "or")
        {
            let is_or = d.name == "or";
            let mut v = Value::Nil;
            for a in args {
                v = self.eval_arg(dot, a)?;
                if v.is_true() == is_or {
                    return Ok(v);
                }
            }
            if let Some(f) = fin {
                v = f;
            }
            return Ok(v);
        }
        let mut argv = Vec::with_capacity(num_in);
        let mut i = 0;
        while i < num_fixed && i < args.len() {
            let v = self.eval_typed_arg(dot, params[i], &args[i])?;
            argv.push(v);
            i += 1;
        }
        if let Some(vt) = variadic {
            while i < args.len() {
                let v = self.eval_typed_arg(dot, vt, &args[i])?;
                argv.push(v);
                i += 1;
            }
        }
        if let Some(f) = fin {
            let t = if variadic.is_some() && num_in > num_fixed {
                variadic.unwrap_or(Pt::Any)
            } else {
                params[num_in - 1]
            };
            argv.push(self.validate_type(f, t)?);
        }
        let result = match callee {
            Callee::Func(d) => (d.f)(self.ctx.env, argv),
            Callee::Method(m, recv) => (m.f)(&recv, argv),
        };
        match result {
            Ok(v) => Ok(v),
            Err(e) => {
                if let Some(n) = node {
                    self.node = Some(At::Cmd(n));
                }
                Err(self.errorf(format!("error calling {name}: {e}")))
            }
        }
    }
}
