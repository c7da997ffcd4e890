//! `http.request.method`: the known methods, recorded as themselves, and `_OTHER` for the
//! rest, with the override semantic conventions require ("instrumentation MUST provide a way
//! to override the list of known HTTP methods"): [`ObsLayer::known_methods`] in code, or the
//! `OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS` environment variable (a comma-separated,
//! case-sensitive list that replaces the default one).
//!
//! Every method label has a small index (metric handles and in-flight gauges are cached by
//! it): the default list's position, or, for a method only an override names, a slot in a
//! process-wide table of at most [`MAX_EXTRA_METHODS`].
//!
//! [`ObsLayer::known_methods`]: super::ObsLayer::known_methods

use std::sync::{Arc, Mutex, OnceLock, PoisonError};

/// The default known methods (semantic conventions' list, and `QUERY`), then `_OTHER`.
pub(crate) const METHODS: [&str; 11] = [
    "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", "TRACE", "QUERY",
    "_OTHER",
];

/// The environment variable semantic conventions name for the override.
pub const KNOWN_METHODS_ENV: &str = "OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS";

/// Most methods outside [`METHODS`] that overrides can name in one process.
pub(crate) const MAX_EXTRA_METHODS: usize = 32;

/// Methods outside [`METHODS`] named by an override, in the order first named.
static EXTRA: Table = Table::new();

/// Slots filled under a lock, in order, and read without one.
struct Table {
    slots: [OnceLock<&'static str>; MAX_EXTRA_METHODS],
    lock: Mutex<()>,
}

impl Table {
    const fn new() -> Self {
        Self {
            slots: [const { OnceLock::new() }; MAX_EXTRA_METHODS],
            lock: Mutex::new(()),
        }
    }

    /// The slot holding `name`.
    fn position(&self, name: &str) -> Option<usize> {
        self.slots
            .iter()
            .map_while(OnceLock::get)
            .position(|x| *x == name)
    }

    /// The table's copy of `name`, taking a free slot; `None` when full.
    fn take(&self, name: &str) -> Option<&'static str> {
        let _guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        for slot in &self.slots {
            match slot.get() {
                Some(kept) if *kept == name => return Some(kept),
                Some(_) => {}
                None => {
                    let kept: &'static str = Box::leak(Box::from(name));
                    return Some(slot.get_or_init(|| kept));
                }
            }
        }
        None
    }
}

/// A known-methods override: the methods recorded as themselves, every other one `_OTHER`.
pub(crate) type KnownMethods = Arc<[&'static str]>;

/// The index of a method label: its position in [`METHODS`], else `METHODS.len() + 1 +` its
/// slot in the override table, else `METHODS.len()`.
pub(crate) fn method_index(m: &str) -> u8 {
    if let Some(i) = METHODS.iter().position(|x| *x == m) {
        return i as u8;
    }
    EXTRA
        .position(m)
        .map_or(METHODS.len() as u8, |i| (METHODS.len() + 1 + i) as u8)
}

/// The semantic-convention method value: a known method, or `_OTHER`. `known` is an
/// override's list; `None`, the default one.
#[inline]
pub(crate) fn method_label(m: &http::Method, known: Option<&KnownMethods>) -> &'static str {
    match known {
        None => default_label(m),
        Some(list) => list
            .iter()
            .copied()
            .find(|k| *k == m.as_str())
            .unwrap_or("_OTHER"),
    }
}

fn default_label(m: &http::Method) -> &'static str {
    match *m {
        http::Method::GET => "GET",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::DELETE => "DELETE",
        http::Method::HEAD => "HEAD",
        http::Method::OPTIONS => "OPTIONS",
        http::Method::PATCH => "PATCH",
        http::Method::CONNECT => "CONNECT",
        http::Method::TRACE => "TRACE",
        _ if m.as_str() == "QUERY" => "QUERY",
        _ => "_OTHER",
    }
}

/// The override for `methods`: each method once, in the order given. A method outside the
/// default list takes a slot of the process-wide table; once its [`MAX_EXTRA_METHODS`] are
/// taken, further ones stay `_OTHER`, with a warning naming them.
pub(crate) fn known_methods(methods: impl IntoIterator<Item = http::Method>) -> KnownMethods {
    let (list, refused) = known_methods_in(&EXTRA, methods);
    if !refused.is_empty() {
        tracing::warn!(
            refused = ?refused,
            "more than {MAX_EXTRA_METHODS} known methods outside the default list in this process: these stay _OTHER"
        );
    }
    list
}

/// [`known_methods`] in `table`; the methods it had no slot for as the second value.
fn known_methods_in(
    table: &Table,
    methods: impl IntoIterator<Item = http::Method>,
) -> (KnownMethods, Vec<http::Method>) {
    let mut list: Vec<&'static str> = Vec::new();
    let mut refused = Vec::new();
    for m in methods {
        let label = match METHODS
            .iter()
            .find(|x| **x == m.as_str() && **x != "_OTHER")
        {
            Some(known) => Some(*known),
            None => table.take(m.as_str()),
        };
        match label {
            Some(l) if !list.contains(&l) => list.push(l),
            Some(_) => {}
            None => refused.push(m),
        }
    }
    (list.into(), refused)
}

/// The override `OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS` sets, read once per process. Unset
/// or empty: `None`. A value that is not a comma-separated list of method tokens is ignored
/// with a warning (as the OpenTelemetry specification treats an unusable variable: as unset).
pub(crate) fn env_known_methods() -> Option<&'static KnownMethods> {
    static FROM_ENV: OnceLock<Option<KnownMethods>> = OnceLock::new();
    FROM_ENV
        .get_or_init(|| {
            let value = std::env::var(KNOWN_METHODS_ENV).ok()?;
            match parse_known_methods(&value) {
                Ok(Some(methods)) => Some(known_methods(methods)),
                Ok(None) => None,
                Err(bad) => {
                    tracing::warn!(
                        variable = KNOWN_METHODS_ENV,
                        value = %value,
                        entry = %bad,
                        "not an HTTP method token: the variable is ignored, the default known methods are used"
                    );
                    None
                }
            }
        })
        .as_ref()
}

/// The methods of a comma-separated list (blanks around entries and empty entries ignored);
/// `Ok(None)` when there are none; the first entry that is not a method token as the error.
pub(crate) fn parse_known_methods(value: &str) -> Result<Option<Vec<http::Method>>, String> {
    let mut methods = Vec::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        match http::Method::from_bytes(entry.as_bytes()) {
            Ok(m) => methods.push(m),
            Err(_) => return Err(entry.to_owned()),
        }
    }
    Ok((!methods.is_empty()).then_some(methods))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_list_and_an_override() {
        assert_eq!(method_label(&http::Method::GET, None), "GET");
        let propfind = http::Method::from_bytes(b"PROPFIND").unwrap();
        assert_eq!(method_label(&propfind, None), "_OTHER");
        let (list, refused) = known_methods_in(
            &EXTRA,
            [
                http::Method::GET,
                propfind.clone(),
                http::Method::GET,
                http::Method::from_bytes(b"REPORT").unwrap(),
            ],
        );
        assert!(refused.is_empty());
        assert_eq!(&*list, ["GET", "PROPFIND", "REPORT"]);
        assert_eq!(method_label(&propfind, Some(&list)), "PROPFIND");
        // A full override: POST is in the default list, not in this one.
        assert_eq!(method_label(&http::Method::POST, Some(&list)), "_OTHER");
        // Distinct indexes, beyond the default list's.
        let (p, r) = (method_index("PROPFIND"), method_index("REPORT"));
        assert!(usize::from(p) > METHODS.len() && usize::from(r) > METHODS.len());
        assert_ne!(p, r);
        assert_eq!(method_index("GET"), 0);
        assert_eq!(usize::from(method_index("_OTHER")), METHODS.len() - 1);
    }

    #[test]
    fn the_environment_value_is_a_comma_separated_token_list() {
        assert_eq!(parse_known_methods(""), Ok(None));
        assert_eq!(parse_known_methods(" , "), Ok(None));
        let m = parse_known_methods("GET, PROPFIND,,MKCOL ")
            .unwrap()
            .unwrap();
        let names: Vec<&str> = m.iter().map(http::Method::as_str).collect();
        assert_eq!(names, ["GET", "PROPFIND", "MKCOL"]);
        assert_eq!(
            parse_known_methods("GET,BAD METHOD"),
            Err("BAD METHOD".to_owned())
        );
    }

    #[test]
    fn the_table_of_extra_methods_is_bounded() {
        let many: Vec<http::Method> = (0..MAX_EXTRA_METHODS + 5)
            .map(|i| http::Method::from_bytes(format!("X-BOUNDED-{i}").as_bytes()).unwrap())
            .collect();
        // A table of its own: the process's is shared with the other tests.
        let table = Table::new();
        let (list, refused) = known_methods_in(&table, many.iter().cloned());
        assert_eq!(list.len(), MAX_EXTRA_METHODS);
        assert_eq!(refused, many[MAX_EXTRA_METHODS..]);
        for m in &refused {
            assert_eq!(method_label(m, Some(&list)), "_OTHER");
        }
        assert_eq!(table.position("X-BOUNDED-0"), Some(0));
        assert_eq!(
            table.position(&format!("X-BOUNDED-{}", MAX_EXTRA_METHODS - 1)),
            Some(MAX_EXTRA_METHODS - 1)
        );
        // Named again: the same slots, nothing more taken.
        let (again, refused_again) = known_methods_in(&table, many);
        assert_eq!(again, list);
        assert_eq!(refused_again, refused);
    }
}
