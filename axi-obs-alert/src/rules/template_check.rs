//! A syntax check of alert templates (Go `text/template`), as Prometheus runs at load time:
//! actions must be closed, strings terminated, and every variable declared before use
//! (`$labels`, `$externalLabels`, `$value` and `$` are predeclared).
//!
//! This is the load-time check only; expansion comes with the alert life-cycle.

/// Checks one template; `name` is the template's name in messages, as Prometheus names it
/// (`__alert_<AlertName>`).
pub(crate) fn check(name: &str, text: &str) -> Result<(), String> {
    let mut declared: Vec<String> = ["$", "$labels", "$externalLabels", "$value"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    let mut rest = text;
    let mut line = 1;
    while let Some(open) = rest.find("{{") {
        line += rest[..open].matches('\n').count();
        let action_start = &rest[open + 2..];
        let (body, after) = split_action(action_start)
            .ok_or_else(|| format!("template: {name}:{line}: unclosed action"))?;
        let body_line = line;
        line += body.matches('\n').count();
        check_action(name, body_line, body, &mut declared)?;
        rest = after;
    }
    Ok(())
}

/// Splits `body}}rest` at the closing delimiter, skipping delimiters inside strings and
/// comments.
fn split_action(s: &str) -> Option<(&str, &str)> {
    let trimmed = s.trim_start_matches('-').trim_start();
    if trimmed.starts_with("/*") {
        let end = s.find("*/")?;
        let close = s[end..].find("}}")? + end;
        return Some((&s[..close], &s[close + 2..]));
    }
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    if bytes[i] == b'\\' {
                        i += 1;
                    }
                    if bytes[i.min(bytes.len() - 1)] == b'\n' {
                        return None;
                    }
                    i += 1;
                }
            }
            b'`' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'`' {
                    i += 1;
                }
            }
            b'\'' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'\'' {
                    if bytes[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'}' if bytes.get(i + 1) == Some(&b'}') => {
                return Some((&s[..i], &s[i + 2..]));
            }
            _ => {}
        }
        i += 1;
    }
    None
}

fn check_action(
    name: &str,
    line: usize,
    body: &str,
    declared: &mut Vec<String>,
) -> Result<(), String> {
    let body = body.trim_start_matches('-').trim_end_matches('-');
    if body.trim_start().starts_with("/*") {
        return Ok(());
    }
    // Variables this action declares (`$x :=`, `range $i, $v :=`).
    let code = strip_strings(body);
    if let Some(decl) = code.find(":=") {
        for var in variables(&code[..decl]) {
            declared.push(var);
        }
        check_uses(name, line, &code[decl + 2..], declared)
    } else {
        check_uses(name, line, &code, declared)
    }
}

fn check_uses(name: &str, line: usize, code: &str, declared: &[String]) -> Result<(), String> {
    for var in variables(code) {
        if !declared.contains(&var) {
            return Err(format!(
                "template: {name}:{line}: undefined variable {var:?}"
            ));
        }
    }
    Ok(())
}

/// `$name` tokens (and bare `$`) in code with strings removed; fields after a variable
/// (`$labels.instance`) are not part of its name.
fn variables(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' {
            let start = i;
            i += 1;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            out.push(code[start..i].to_owned());
        } else {
            i += 1;
        }
    }
    out
}

/// The action with string literals blanked, so `"$x"` is not a variable.
fn strip_strings(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in s.chars() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' && q != '`' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                    out.push(c);
                }
            }
            None => {
                if c == '"' || c == '`' || c == '\'' {
                    quote = Some(c);
                }
                out.push(c);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn predeclared_and_declared_variables_pass() {
        assert!(check("t", "{{ $labels.instance }} is {{ $value | humanize }}").is_ok());
        assert!(check("t", "{{ $x := 1 }}{{ $x }}").is_ok());
        assert!(
            check(
                "t",
                "{{ range $i, $v := $labels }}{{ $i }}={{ $v }}{{ end }}"
            )
            .is_ok()
        );
        assert!(check("t", "{{ \"$nothing\" }} {{/* $comment */}}").is_ok());
        assert!(check("t", "{{- $externalLabels.env -}}").is_ok());
        assert!(check("t", "no actions at all").is_ok());
    }

    #[test]
    fn undefined_variables_and_unclosed_actions_fail() {
        assert_eq!(
            check("__alert_A", "x\n{{ $label.instance }}").unwrap_err(),
            "template: __alert_A:2: undefined variable \"$label\""
        );
        assert_eq!(
            check("__alert_A", "{{ $labels.x ").unwrap_err(),
            "template: __alert_A:1: unclosed action"
        );
    }
}
