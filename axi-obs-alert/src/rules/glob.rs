//! `rule_files` entries: a path, or a file-name pattern with `*` and `?`, relative to the
//! file that names it (Prometheus's configuration, promtool's unit-test files).

use std::path::{Path, PathBuf};

/// The files one entry names: the path itself when it has no wildcard, else the files in its
/// folder whose names match, sorted.
pub(crate) fn rule_files(base: &Path, pattern: &str) -> Result<Vec<PathBuf>, String> {
    let full = if Path::new(pattern).is_absolute() {
        PathBuf::from(pattern)
    } else {
        base.join(pattern)
    };
    let name = full
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !name.contains(['*', '?']) {
        return Ok(vec![full]);
    }
    let dir = full.parent().unwrap_or(Path::new("."));
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("rule_files {pattern:?}: {}: {e}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| glob_match(&name, &n.to_string_lossy()))
        })
        .collect();
    out.sort();
    Ok(out)
}

/// `*` and `?` wildcards (no character classes), as far as rule-file globs need.
fn glob_match(pattern: &str, name: &str) -> bool {
    fn go(p: &[u8], n: &[u8]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], n) || (!n.is_empty() && go(p, &n[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &n[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), name.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("rules*.yml", "rules_large.yml"));
        assert!(!glob_match("rules*.yml", "x.yml"));
        assert!(glob_match("r?les.yml", "rules.yml"));
    }
}
