//! Route templates looked up once per layer configuration: the `http.route` label of each
//! matched path, and the server span's names for it.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::{Mutex, OnceLock, PoisonError};

use metrics::SharedString;

use super::append_map::AppendMap;
use super::methods::{METHODS, method_index};
use crate::names::UNMATCHED_ROUTE;

/// At most this many distinct route templates are interned (an application has far fewer);
/// paths beyond them are labelled as unmatched.
const MAX_ROUTES: usize = 10_000;

/// Matched paths to their interned label and span names, read without a lock.
pub(crate) struct RouteTable {
    map: AppendMap<Box<str>, Entry>,
}

impl Default for RouteTable {
    fn default() -> Self {
        Self {
            map: AppendMap::new(MAX_ROUTES),
        }
    }
}

/// One route template.
struct Entry {
    /// The label: the process's interned copy of the template (cloned per request without
    /// touching a reference count), or an `Arc` once the interned set is full.
    label: SharedString,
    /// `"{method} {route}"` by method index, made on first use.
    span_names: [OnceLock<Option<&'static str>>; METHODS.len()],
}

impl Clone for RouteTable {
    /// A new, empty table (a changed configuration interns its routes again).
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl std::fmt::Debug for RouteTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RouteTable")
    }
}

impl RouteTable {
    /// The route label for a matched path (`None`: the unmatched constant) and, when `span`
    /// is set, the server span's name: `"{method} {route}"`, `"{method}"` for unmatched
    /// requests, `HTTP` for methods outside the standard set, as semantic conventions name
    /// them. The sampler needs the name even for a span it drops, so each route's names are
    /// made once, not per request.
    pub(crate) fn lookup(
        &self,
        matched: Option<&str>,
        method: &'static str,
        span: bool,
    ) -> (SharedString, Option<Cow<'static, str>>) {
        let method_name = if method == "_OTHER" { "HTTP" } else { method };
        let unmatched = || {
            (
                SharedString::const_str(UNMATCHED_ROUTE),
                span.then_some(Cow::Borrowed(method_name)),
            )
        };
        let Some(path) = matched else {
            return unmatched();
        };
        let found = |e: &Entry| {
            (
                e.label.clone(),
                span.then(|| e.span_name(method, method_name)),
            )
        };
        if let Some(e) = self.map.get(path) {
            return found(e);
        }
        let inserted = self.map.get_or_insert_with(path.into(), || Entry {
            label: match intern(path) {
                Some(kept) => SharedString::const_str(kept),
                None => SharedString::from(std::sync::Arc::<str>::from(path)),
            },
            span_names: Default::default(),
        });
        match inserted {
            Some(e) => found(e),
            None => unmatched(),
        }
    }
}

impl Entry {
    fn span_name(&self, method: &'static str, method_name: &'static str) -> Cow<'static, str> {
        let format = || format!("{method_name} {}", &*self.label);
        match self.span_names.get(usize::from(method_index(method))) {
            Some(slot) => match slot.get_or_init(|| intern(&format())) {
                Some(name) => Cow::Borrowed(name),
                None => Cow::Owned(format()),
            },
            None => Cow::Owned(format()),
        }
    }
}

/// Most strings (route templates and span names) kept for the life of the process: an
/// application has routes × methods of them.
const MAX_INTERNED: usize = 20_000;

/// The process's one copy of a route template or span name, or `None` once [`MAX_INTERNED`]
/// are kept. They are kept for the life of the process, so a per-request clone of a route
/// label is a copy of a pointer and a span builder takes a `'static` name without allocating;
/// the cap bounds them. Taken once per route template (and method, for span names) of a table.
fn intern(name: &str) -> Option<&'static str> {
    static NAMES: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);
    let mut names = NAMES.lock().unwrap_or_else(PoisonError::into_inner);
    let names = names.get_or_insert_with(HashSet::new);
    if let Some(kept) = names.get(name) {
        return Some(kept);
    }
    if names.len() >= MAX_INTERNED {
        return None;
    }
    let kept: &'static str = Box::leak(Box::from(name));
    names.insert(kept);
    Some(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_interned_per_path() {
        let t = RouteTable::default();
        let (a, none) = t.lookup(Some("/users/{id}"), "GET", false);
        assert_eq!(&*a, "/users/{id}");
        assert!(none.is_none());
        let (again, _) = t.lookup(Some("/users/{id}"), "POST", false);
        assert_eq!(again.as_ptr(), a.as_ptr());
        // The same route reached under another prefix (a router nested twice).
        assert_eq!(
            &*t.lookup(Some("/v2/users/{id}"), "GET", false).0,
            "/v2/users/{id}"
        );
        assert_eq!(&*t.lookup(None, "GET", false).0, UNMATCHED_ROUTE);
    }

    #[test]
    fn span_names_follow_the_conventions_and_are_made_once() {
        let t = RouteTable::default();
        let name = |path, method| t.lookup(path, method, true).1.unwrap();
        let get = name(Some("/users/{id}"), "GET");
        assert_eq!(get, "GET /users/{id}");
        assert!(matches!(get, Cow::Borrowed(_)));
        assert_eq!(name(Some("/users/{id}"), "GET").as_ptr(), get.as_ptr());
        assert_eq!(name(Some("/users/{id}"), "POST"), "POST /users/{id}");
        assert_eq!(name(Some("/users/{id}"), "_OTHER"), "HTTP /users/{id}");
        assert_eq!(name(None, "GET"), "GET");
        assert_eq!(name(None, "_OTHER"), "HTTP");
        // Another table (another layer) finds the same interned copy.
        let other = RouteTable::default();
        let again = other.lookup(Some("/users/{id}"), "GET", true).1.unwrap();
        assert_eq!(again.as_ptr(), get.as_ptr());
    }

    #[test]
    fn paths_beyond_the_cap_are_unmatched() {
        let t = RouteTable::default();
        for i in 0..MAX_ROUTES {
            t.lookup(Some(&format!("/r{i}")), "GET", false);
        }
        assert_eq!(&*t.lookup(Some("/r0"), "GET", false).0, "/r0");
        let (label, name) = t.lookup(Some("/one-too-many"), "GET", true);
        assert_eq!(&*label, UNMATCHED_ROUTE);
        assert_eq!(name.unwrap(), "GET");
    }
}
