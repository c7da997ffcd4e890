//! `rule_files` entries: a path, or a file-name pattern with `*` and `?`, relative to the
//! file that names it (Prometheus's configuration, promtool's unit-test files).

use std::path::{Path, PathBuf};

/// The files one entry names: the path itself when it has no wildcard and exists, else the
/// files in its folder whose names match, sorted. As Go's `filepath.Glob`, which Prometheus
/// and promtool use: a path that does not exist names no file (the caller warns).
///
/// Paths are cleaned as Go's `filepath.Join` cleans them (`./a/../rules.yml` is
/// `rules.yml`): a group's file path is part of its identity and of its evaluation slot,
/// which then match Prometheus's for the same configuration.
pub(crate) fn rule_files(base: &Path, pattern: &str) -> Result<Vec<PathBuf>, String> {
    let full = clean(&if Path::new(pattern).is_absolute() {
        PathBuf::from(pattern)
    } else {
        base.join(pattern)
    });
    let name = full
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !name.contains(['*', '?']) {
        return Ok(if std::fs::symlink_metadata(&full).is_ok() {
            vec![full]
        } else {
            Vec::new()
        });
    }
    // A pattern in the working directory (`*.yml`, `./*.yml` cleaned) has an empty parent.
    let dir = match full.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("rule_files {pattern:?}: {}: {e}", dir.display()))?
        .flatten()
        .filter(|e| glob_match(&name, &e.file_name().to_string_lossy()))
        // As Go's `filepath.Glob`: the folder joined with the name, cleaned (`rules.yml`,
        // not `./rules.yml`, for a pattern in the working directory).
        .map(|e| clean(&dir.join(e.file_name())))
        .collect();
    out.sort();
    Ok(out)
}

/// `path` cleaned lexically, as Go's `filepath.Clean`: no `.` elements, each inner `..`
/// removed with the element before it, no `..` right after the root; `.` when nothing is left.
pub(crate) fn clean(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out: Vec<Component<'_>> = Vec::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => match out.last() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                Some(Component::RootDir | Component::Prefix(_)) => {}
                _ => out.push(c),
            },
            c => out.push(c),
        }
    }
    if out.is_empty() {
        PathBuf::from(".")
    } else {
        out.iter().collect()
    }
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

    #[test]
    fn paths_are_cleaned_as_go_cleans_them() {
        for (given, cleaned) in [
            ("./rules.yml", "rules.yml"),
            ("a/./b/../rules.yml", "a/rules.yml"),
            ("/etc//prom/../rules.yml", "/etc/rules.yml"),
            ("/../rules.yml", "/rules.yml"),
            ("../rules.yml", "../rules.yml"),
            ("a/../../rules.yml", "../rules.yml"),
            (".", "."),
        ] {
            assert_eq!(clean(Path::new(given)), Path::new(cleaned), "{given}");
        }
        // Tests run in the package's folder.
        assert_eq!(
            rule_files(Path::new("."), "Cargo.toml").unwrap(),
            [PathBuf::from("Cargo.toml")]
        );
        assert!(
            rule_files(Path::new("."), "no-such-rules.yml")
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn globs_in_the_working_directory_and_above_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("conf")).unwrap();
        std::fs::write(dir.path().join("a.yml"), "").unwrap();
        std::fs::write(dir.path().join("b.txt"), "").unwrap();
        let base = dir.path().join("conf");
        // `../*.yml` from `conf/`, cleaned: the file in the folder above.
        assert_eq!(
            rule_files(&base, "../*.yml").unwrap(),
            [dir.path().join("a.yml")]
        );
        // A configuration in the working directory (`prometheus.yml`: its folder is empty);
        // tests run in the package's folder, which holds one `*.toml`.
        for pattern in ["*.toml", "./*.toml"] {
            assert_eq!(
                rule_files(Path::new(""), pattern).unwrap(),
                [PathBuf::from("Cargo.toml")],
                "{pattern}"
            );
        }
    }
}
