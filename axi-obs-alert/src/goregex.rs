//! Go's RE2 syntax on Rust's `regex`: the one place they read the same pattern differently.
//!
//! Prometheus, Alertmanager and Go templates compile regular expressions with Go's `regexp`,
//! where the Perl classes are ASCII: `\d` is `[0-9]`, `\w` is `[0-9A-Za-z_]`, `\s` is
//! `[\t\n\f\r ]`, and `\b` is a boundary between those word characters and the rest. Rust's
//! `regex` makes them Unicode by default, so `\d+` would match `٣` and `\w+` `é`, and a
//! matcher, a `label_replace` or a silence would select what it does not select in
//! Prometheus or Alertmanager. [`go_syntax`] rewrites the Perl classes to their ASCII
//! meaning before the pattern is compiled; everything else (`.`, literals, `\pL`, case
//! folding) already means the same in both.

use std::borrow::Cow;

/// `pattern` with Go's ASCII meaning of `\d \D \w \W \s \S` (inside and outside
/// bracketed classes) and `\b \B` made explicit for Rust's `regex`, and a `{` that starts no
/// repetition (`{n}`, `{n,}`, `{n,m}`) escaped: Go reads it as a literal (`/users/{id}`), Rust
/// refuses the pattern. A pattern without a backslash or `{` is returned as it is.
pub(crate) fn go_syntax(pattern: &str) -> Cow<'_, str> {
    if !pattern.contains(['\\', '{']) {
        return Cow::Borrowed(pattern);
    }
    let mut out = String::with_capacity(pattern.len() + 16);
    let mut chars = pattern.chars().peekable();
    let mut in_class = false;
    // Right after `[` or `[^`, where a `]` is a literal.
    let mut class_start = false;
    while let Some(c) = chars.next() {
        let at_start = std::mem::take(&mut class_start);
        match c {
            '\\' => {
                let Some(e) = chars.next() else {
                    out.push('\\');
                    break;
                };
                match perl_class(e, in_class) {
                    Some(ascii) => out.push_str(ascii),
                    None => {
                        out.push('\\');
                        out.push(e);
                        // `\p{Greek}`, `\x{263a}`: the braces are the escape's, copied whole.
                        if matches!(e, 'p' | 'P' | 'x') && chars.peek() == Some(&'{') {
                            for b in chars.by_ref() {
                                out.push(b);
                                if b == '}' {
                                    break;
                                }
                            }
                        }
                    }
                }
            }
            '{' if !in_class => {
                let rest: String = chars.clone().take_while(|c| *c != '}').collect();
                let closed = chars.clone().nth(rest.chars().count()) == Some('}');
                if closed && is_repeat(&rest) {
                    out.push('{');
                } else {
                    out.push_str("\\{");
                }
            }
            '[' if !in_class => {
                in_class = true;
                class_start = true;
                out.push('[');
                if chars.peek() == Some(&'^') {
                    chars.next();
                    out.push('^');
                }
            }
            // A POSIX class (`[:alpha:]`) inside a bracketed class, copied whole.
            '[' if chars.peek() == Some(&':') => {
                out.push('[');
                let mut prev = '[';
                for p in chars.by_ref() {
                    out.push(p);
                    if prev == ':' && p == ']' {
                        break;
                    }
                    prev = p;
                }
            }
            ']' if in_class && !at_start => {
                in_class = false;
                out.push(']');
            }
            _ => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Whether `inner` (between `{` and `}`) is a repetition count as Go's parser takes one:
/// `n`, `n,` or `n,m`, in decimal digits.
fn is_repeat(inner: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match inner.split_once(',') {
        None => digits(inner),
        Some((n, m)) => digits(n) && (m.is_empty() || digits(m)),
    }
}

/// The ASCII form of the Perl class `\{e}` (outside or inside a bracketed class), or
/// `None` for any other escape. Inside a class the negated ones become nested classes,
/// which Rust's `regex` reads as their union with the rest.
fn perl_class(e: char, in_class: bool) -> Option<&'static str> {
    Some(match (e, in_class) {
        ('d', false) => "[0-9]",
        ('d', true) => "0-9",
        ('D', _) => "[^0-9]",
        ('w', false) => "[0-9A-Za-z_]",
        ('w', true) => "0-9A-Za-z_",
        ('W', _) => "[^0-9A-Za-z_]",
        ('s', false) => r"[\t\n\f\r ]",
        ('s', true) => r"\t\n\f\r ",
        ('S', _) => r"[^\t\n\f\r ]",
        ('b', false) => r"(?-u:\b)",
        ('B', false) => r"(?-u:\B)",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::go_syntax;
    use regex::Regex;

    fn re(p: &str) -> Regex {
        Regex::new(&format!("^(?:{})$", go_syntax(p))).expect("compiles")
    }

    #[test]
    fn perl_classes_are_ascii_as_in_go() {
        // Arabic-Indic three, Devanagari one, a fullwidth 5.
        for digit in ["٣", "१", "５"] {
            assert!(!re(r"\d").is_match(digit), "{digit}");
            assert!(re(r"\D").is_match(digit), "{digit}");
            assert!(!re(r"[\d]").is_match(digit), "{digit}");
            assert!(re(r"[\D]").is_match(digit), "{digit}");
        }
        assert!(re(r"\d+").is_match("0123456789"));
        assert!(!re(r"\w+").is_match("café"));
        assert!(re(r"\w+\W").is_match("caf\u{e9}"));
        assert!(re(r"[\w.-]+").is_match("api-1.prod_eu"));
        assert!(!re(r"[\w.-]+").is_match("api-ü"));
        // Go's \s has no vertical tab; the no-break space and the ideographic space are not
        // white space to it either.
        for space in ["\u{b}", "\u{a0}", "\u{3000}"] {
            assert!(!re(r"\s").is_match(space), "{space:?}");
            assert!(re(r"\S").is_match(space), "{space:?}");
        }
        for space in ["\t", "\n", "\u{c}", "\r", " "] {
            assert!(re(r"\s").is_match(space), "{space:?}");
            assert!(re(r"[\s]").is_match(space), "{space:?}");
        }
        // A boundary between ASCII word characters and the rest: `é` is not a word
        // character, so `caf` ends a word there.
        let b = Regex::new(&go_syntax(r"caf\b")).expect("compiles");
        assert!(b.is_match("café"));
        let nb = Regex::new(&go_syntax(r"caf\B")).expect("compiles");
        assert!(!nb.is_match("café"));
    }

    #[test]
    fn other_syntax_is_left_alone() {
        for p in [
            "a.*b",
            r"\.",
            r"\\d",
            r"[]\d]",
            r"[^]a]",
            r"[[:alpha:]\d]+",
            r"\pL+",
            r"\p{Greek}",
            r"(?i)abc",
            r"x\{1\}",
        ] {
            Regex::new(&go_syntax(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
        }
        assert_eq!(go_syntax("plain"), "plain");
        assert_eq!(go_syntax(r"\\d"), r"\\d");
        assert!(re(r"\\d").is_match(r"\d"));
        assert!(re(r"[]\d]+").is_match("]1"));
        assert!(!re(r"[]\d]+").is_match("١"));
        assert!(re(r"[[:alpha:]\d]+").is_match("ab12"));
        assert!(re(r"\pL+").is_match("café"));
        assert!(re(r"\p{Greek}+").is_match("αβ"));
        assert!(re(r"\x{263a}").is_match("\u{263a}"));
    }

    /// Go reads a `{` that starts no repetition as a literal (Prometheus and Alertmanager
    /// users write route templates like `/users/{id}` into regexes); repetitions stay.
    #[test]
    fn a_brace_that_starts_no_repetition_is_a_literal_as_in_go() {
        assert!(re("/users/{id}").is_match("/users/{id}"));
        assert!(re("/users/{id}|/users/(.*)").is_match("/users/42"));
        assert!(re("a{").is_match("a{"));
        assert!(re("a{,2}").is_match("a{,2}"));
        assert!(re("{}").is_match("{}"));
        assert!(re("x{1,}y{x}").is_match("xxy{x}"));
        assert!(re("[{]").is_match("{"));
        for (p, yes, no) in [
            ("a{2}", "aa", "a"),
            ("a{1,}", "aaa", ""),
            ("a{1,2}", "aa", "aaa"),
        ] {
            assert!(re(p).is_match(yes), "{p}");
            assert!(!re(p).is_match(no), "{p}");
        }
    }
}
