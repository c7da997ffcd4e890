//! Alertmanager's label matchers: `name="v"`, `name!="v"`, `name=~"re"`, `name!~"re"`.

use std::cmp::Ordering;
use std::fmt;

use regex::Regex;

use super::model::LabelSet;

/// How a matcher compares (Alertmanager's `labels.MatchType`, in its sort order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MatchOp {
    /// `=`
    Equal,
    /// `!=`
    NotEqual,
    /// `=~`, fully anchored.
    Regex,
    /// `!~`, fully anchored.
    NotRegex,
}

impl MatchOp {
    /// The operator as written.
    pub fn as_str(self) -> &'static str {
        match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        }
    }
}

/// One label matcher. A missing label matches as the empty string, as in Alertmanager.
///
/// ```
/// use axi_obs_alert::delivery::{LabelSet, Matcher};
///
/// let m = Matcher::parse_list(r#"{env=~"prod.*", team!="b"}"#).unwrap();
/// let alert = LabelSet::from([("env".to_string(), "production".to_string())]);
/// assert!(m.iter().all(|m| m.matches(&alert)));
/// assert_eq!(m[0].to_string(), r#"env=~"prod.*""#);
/// ```
#[derive(Debug, Clone)]
pub struct Matcher {
    /// The label name.
    pub name: String,
    /// The comparison.
    pub op: MatchOp,
    /// The value or the regular expression as written.
    pub value: String,
    re: Option<Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.op == other.op && self.value == other.value
    }
}

impl Eq for Matcher {}

impl Matcher {
    /// A matcher; regular expressions are anchored as `^(?:value)$`, with Go's ASCII
    /// `\d \w \s \b` (Alertmanager compiles them with Go's `regexp`).
    ///
    /// # Errors
    ///
    /// When a regular expression does not compile.
    pub fn new(name: &str, op: MatchOp, value: &str) -> Result<Matcher, String> {
        let re = match op {
            MatchOp::Regex | MatchOp::NotRegex => Some(
                Regex::new(&format!("^(?:{})$", crate::goregex::go_syntax(value)))
                    .map_err(|e| format!("invalid regular expression {value:?}: {e}"))?,
            ),
            MatchOp::Equal | MatchOp::NotEqual => None,
        };
        Ok(Matcher {
            name: name.to_string(),
            op,
            value: value.to_string(),
            re,
        })
    }

    /// Whether `labels` satisfy the matcher.
    pub fn matches(&self, labels: &LabelSet) -> bool {
        let v = labels.get(&self.name).map_or("", String::as_str);
        match (self.op, &self.re) {
            (MatchOp::Equal, _) => v == self.value,
            (MatchOp::NotEqual, _) => v != self.value,
            (MatchOp::Regex, Some(re)) => re.is_match(v),
            (MatchOp::NotRegex, Some(re)) => !re.is_match(v),
            // `new` compiles a regex for both regex operators.
            (MatchOp::Regex | MatchOp::NotRegex, None) => false,
        }
    }

    /// Parses one string of Alertmanager's matcher syntax: one or more comma-separated
    /// matchers, optionally inside `{}`; values double-quoted (with Go escapes) or bare.
    ///
    /// # Errors
    ///
    /// A message naming what is wrong in `input`.
    pub fn parse_list(input: &str) -> Result<Vec<Matcher>, String> {
        let err = |what: &str| format!("bad matcher {input:?}: {what}");
        let mut s = input.trim();
        if let Some(inner) = s.strip_prefix('{') {
            s = inner
                .strip_suffix('}')
                .ok_or_else(|| err("missing closing '}'"))?
                .trim();
        } else if s.ends_with('}') {
            return Err(err("missing opening '{'"));
        }
        let mut out = Vec::new();
        let mut rest = s;
        while !rest.trim().is_empty() {
            let (m, after) = parse_one(rest.trim_start()).map_err(|e| err(&e))?;
            out.push(m);
            let after = after.trim_start();
            rest = match after.strip_prefix(',') {
                Some(r) => r,
                None if after.is_empty() => after,
                None => return Err(err(&format!("unexpected {after:?}"))),
            };
        }
        if out.is_empty() && !s.is_empty() {
            return Err(err("no matcher"));
        }
        Ok(out)
    }
}

/// Parses `name op value` at the start of `s`, returning the rest.
fn parse_one(s: &str) -> Result<(Matcher, &str), String> {
    // A quoted name is only read by Alertmanager's new parser (the classic one refuses it),
    // which reads the value with Go's escapes too.
    let name_quoted = s.starts_with('"');
    let (name, rest) = if name_quoted {
        let (n, r) = unquote_prefix(s, Escapes::Go)?;
        (n, r.trim_start())
    } else {
        let end = s
            .find(|c: char| matches!(c, '=' | '!' | '~') || c.is_whitespace())
            .unwrap_or(s.len());
        (s[..end].to_string(), s[end..].trim_start())
    };
    if name.is_empty() {
        return Err("missing label name".into());
    }
    let (op, rest) = if let Some(r) = rest.strip_prefix("=~") {
        (MatchOp::Regex, r)
    } else if let Some(r) = rest.strip_prefix("!~") {
        (MatchOp::NotRegex, r)
    } else if let Some(r) = rest.strip_prefix("!=") {
        (MatchOp::NotEqual, r)
    } else if let Some(r) = rest.strip_prefix('=') {
        (MatchOp::Equal, r)
    } else {
        return Err(format!("expected an operator after {name:?}"));
    };
    let rest = rest.trim_start();
    let (value, rest) = if rest.starts_with('"') {
        let escapes = if name_quoted {
            Escapes::Go
        } else {
            Escapes::Classic
        };
        unquote_prefix(rest, escapes)?
    } else {
        let end = rest.find(',').unwrap_or(rest.len());
        let v = rest[..end].trim();
        let mut out = String::with_capacity(v.len());
        let mut chars = v.chars();
        while let Some(c) = chars.next() {
            match c {
                '"' => return Err(format!("unbalanced quotes in {v:?}")),
                '\\' => match chars.next() {
                    Some(e) => classic_escape(&mut out, e),
                    None => out.push('\\'),
                },
                c => out.push(c),
            }
        }
        (out, &rest[end..])
    };
    Ok((Matcher::new(&name, op, &value)?, rest))
}

/// How backslashes read inside a quoted string.
#[derive(Clone, Copy, PartialEq)]
enum Escapes {
    /// Go's `strconv.Unquote` (quoted label names, which only Alertmanager's new parser reads).
    Go,
    /// Alertmanager's classic matcher parser, whose reading of a value wins under its default
    /// fallback parser: `\n`, `\"` and `\\` are escapes; any other backslash is kept, so
    /// `instance=~"db\.prod"` is the regex `db\.prod`.
    Classic,
}

/// Reads a double-quoted string at the start of `s`; returns it unescaped and the rest.
fn unquote_prefix(s: &str, escapes: Escapes) -> Result<(String, &str), String> {
    let mut out = String::new();
    let mut chars = s.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, &s[i + 1..])),
            '\\' => {
                let Some((_, e)) = chars.next() else { break };
                match (escapes, e) {
                    (Escapes::Classic, e) => classic_escape(&mut out, e),
                    (Escapes::Go, 'n') => out.push('\n'),
                    (Escapes::Go, 't') => out.push('\t'),
                    (Escapes::Go, 'r') => out.push('\r'),
                    (Escapes::Go, '\\' | '"' | '\'') => out.push(e),
                    (Escapes::Go, _) => return Err(format!("invalid escape '\\{e}'")),
                }
            }
            c => out.push(c),
        }
    }
    Err(format!("unterminated quoted string {s:?}"))
}

/// The classic parser's reading of a backslash followed by `e`.
fn classic_escape(out: &mut String, e: char) {
    match e {
        'n' => out.push('\n'),
        '"' | '\\' => out.push(e),
        e => {
            out.push('\\');
            out.push(e);
        }
    }
}

/// Whether a label name must be quoted when printed (Alertmanager's `isReserved`).
fn needs_quotes(name: &str) -> bool {
    name.chars().any(|c| {
        c.is_whitespace()
            || matches!(
                c,
                '{' | '}' | '!' | '=' | '~' | ',' | '\\' | '"' | '\'' | '`'
            )
    })
}

/// Go's `strconv.Quote` for the printable ASCII and UTF-8 text found in labels.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl fmt::Display for Matcher {
    /// Alertmanager's `Matcher.String()`: `name="value"` with `\`, newline and `"` escaped.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if needs_quotes(&self.name) {
            f.write_str(&go_quote(&self.name))?;
        } else {
            f.write_str(&self.name)?;
        }
        f.write_str(self.op.as_str())?;
        f.write_str("\"")?;
        for c in self.value.chars() {
            match c {
                '\\' => f.write_str("\\\\")?,
                '\n' => f.write_str("\\n")?,
                '"' => f.write_str("\\\"")?,
                c => write!(f, "{c}")?,
            }
        }
        f.write_str("\"")
    }
}

/// Alertmanager's `Matchers.Less`: by name, then value, then operator.
pub fn sort_matchers(ms: &mut [Matcher]) {
    ms.sort_by(|a, b| {
        a.name
            .cmp(&b.name)
            .then_with(|| a.value.cmp(&b.value))
            .then_with(|| a.op.cmp(&b.op))
            .then(Ordering::Equal)
    });
}

/// Alertmanager's `Matchers.String()`: `{a="1",b!="2"}`.
pub fn matchers_string(ms: &[Matcher]) -> String {
    let inner: Vec<String> = ms.iter().map(ToString::to_string).collect();
    format!("{{{}}}", inner.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perl_classes_are_ascii_as_in_alertmanager() {
        let labels = |v: &str| LabelSet::from([("a".to_string(), v.to_string())]);
        let m = Matcher::new("a", MatchOp::Regex, r"\d+").expect("matcher");
        assert!(m.matches(&labels("42")));
        assert!(!m.matches(&labels("٤٢")));
        let m = Matcher::new("a", MatchOp::NotRegex, r"[\w-]+").expect("matcher");
        assert!(!m.matches(&labels("api-1")));
        assert!(m.matches(&labels("café")));
    }

    #[test]
    fn parses_all_forms() {
        for (input, want) in [
            (r#"{owner="team-A"}"#, vec![r#"owner="team-A""#]),
            (r#"env=~"produ.*""#, vec![r#"env=~"produ.*""#]),
            (r#"baz!~".*quux""#, vec![r#"baz!~".*quux""#]),
            ("wait=long", vec![r#"wait="long""#]),
            (r#"{a="1", b!="x,y"}"#, vec![r#"a="1""#, r#"b!="x,y""#]),
            (r#"a="q\"uote""#, vec![r#"a="q\"uote""#]),
            (r#""odd name"="v""#, vec![r#""odd name"="v""#]),
        ] {
            let got: Vec<String> = Matcher::parse_list(input)
                .unwrap()
                .iter()
                .map(ToString::to_string)
                .collect();
            assert_eq!(got, want, "{input}");
        }
    }

    #[test]
    fn backslashes_in_values_read_as_alertmanagers_classic_parser() {
        // A regex escape is kept: the config loads and the regex means what it says.
        let m = &Matcher::parse_list(r#"instance=~"db\.prod""#).unwrap()[0];
        assert_eq!(m.value, r"db\.prod");
        let labels = |v: &str| LabelSet::from([("instance".to_owned(), v.to_owned())]);
        assert!(m.matches(&labels("db.prod")));
        assert!(!m.matches(&labels("dbXprod")));
        for (input, value) in [
            (r#"a="x\ty""#, r"x\ty"),
            (r#"a="x\'y""#, r"x\'y"),
            (r#"a="x\ny""#, "x\ny"),
            (r#"a="x\\y""#, r"x\y"),
            (r#"a="x\"y""#, "x\"y"),
            (r"a=db\.prod", r"db\.prod"),
            (r"a=x\\y", r"x\y"),
            (r"a=x\", r"x\"),
        ] {
            assert_eq!(
                Matcher::parse_list(input).unwrap()[0].value,
                value,
                "{input}"
            );
        }
        // Quoted label names keep Go's escapes, and so does the value after one.
        let m = &Matcher::parse_list(r#""a\tb"="x\ty""#).unwrap()[0];
        assert_eq!((m.name.as_str(), m.value.as_str()), ("a\tb", "x\ty"));
        assert!(Matcher::parse_list(r#""svc name"=~"db\.prod""#).is_err());
    }

    #[test]
    fn rejects_bad_input() {
        for bad in [
            "a",
            "{a=\"1\"",
            "a=\"1",
            "=\"1\"",
            "a=~\"(\"",
            "a=\"1\" b=\"2\"",
        ] {
            assert!(Matcher::parse_list(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn matching_treats_missing_as_empty_and_anchors() {
        let ls = LabelSet::from([("env".to_string(), "production".to_string())]);
        let m = |s: &str| Matcher::parse_list(s).unwrap().remove(0);
        assert!(m(r#"env=~"prod.*""#).matches(&ls));
        assert!(!m(r#"env=~"prod""#).matches(&ls));
        assert!(m(r#"team="""#).matches(&ls));
        assert!(m(r#"team!~".+""#).matches(&ls));
        assert!(!m(r#"env!="production""#).matches(&ls));
    }

    #[test]
    fn sorted_by_name_value_op() {
        let mut ms = Matcher::parse_list(r#"b="1",a!="2",a="2",a="1""#).unwrap();
        sort_matchers(&mut ms);
        assert_eq!(matchers_string(&ms), r#"{a="1",a="2",a!="2",b="1"}"#);
    }
}
