//! Field keys of JSON log lines, rendered once per callsite.
//!
//! A callsite's field names and target never change, so each thread renders them once
//! (`,"http.route":` with the escaping and renaming rules applied) and every later event from
//! that callsite copies the rendered text instead of scanning and escaping each name again.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::rc::Rc;

use tracing::field::Field;
use tracing_core::Metadata;
use tracing_core::callsite::Identifier;

use super::json::{push_json_str, push_json_str_inner};
use crate::fast_hash::FxHasher;

/// Keys this layer writes itself; event fields with these names are renamed `fields.<name>`.
const RESERVED: &[&str] = &[
    "@timestamp",
    "log.level",
    "log.logger",
    "service.name",
    "service.version",
    "service.namespace",
    "service.environment",
    "trace.id",
    "span.id",
];

/// Appends the output key for a field name (quoted, escaped, renamed if reserved).
pub(super) fn push_key(buf: &mut String, name: &str) {
    let reserved = || {
        // Every reserved key starts with one of these; skip the comparisons for the rest.
        matches!(name.as_bytes().first(), Some(b'@' | b'l' | b's' | b't'))
            && RESERVED.contains(&name)
    };
    if name == "error" {
        buf.push_str("\"error.message\"");
    } else if reserved() {
        buf.push_str("\"fields.");
        push_json_str_inner(buf, name);
        buf.push('"');
    } else {
        push_json_str(buf, name);
    }
}

/// Appends `,"key":` for an event field, or returns `false` for a field the line leaves out:
/// tracing-log's `log.*` fields of a `log` record, already in its normalized metadata.
pub(super) fn push_field_key(buf: &mut String, name: &str, is_log: bool) -> bool {
    if is_log && name.starts_with("log.") {
        return false;
    }
    buf.push(',');
    if name == "message" {
        buf.push_str("\"message\"");
    } else {
        push_key(buf, name);
    }
    buf.push(':');
    true
}

/// One callsite's rendered text.
pub(super) struct CallsiteKeys {
    /// The callsite these keys are for.
    callsite: Identifier,
    /// The quoted target (`log.logger`); `None` for `log` records, whose target is per record.
    pub(super) logger: Option<Box<str>>,
    /// By field index: `,"key":`, or `None` for a field the line leaves out.
    fields: Box<[Option<Box<str>>]>,
}

impl CallsiteKeys {
    fn render(meta: &Metadata<'_>, is_log: bool) -> Self {
        let logger = (!is_log).then(|| {
            let mut s = String::new();
            push_json_str(&mut s, meta.target());
            s.into_boxed_str()
        });
        let fields = meta
            .fields()
            .iter()
            .map(|f| {
                let mut s = String::new();
                push_field_key(&mut s, f.name(), is_log).then(|| s.into_boxed_str())
            })
            .collect();
        Self {
            callsite: meta.callsite(),
            logger,
            fields,
        }
    }

    /// The rendered key of one of this callsite's fields: `Some(None)` for a field left out,
    /// `None` for a field of another callsite (`Event::new` can pair one callsite's metadata
    /// with another's values; those keys are rendered per event).
    #[inline]
    pub(super) fn field(&self, field: &Field) -> Option<Option<&str>> {
        if field.callsite() != self.callsite {
            return None;
        }
        self.fields.get(field.index()).map(Option::as_deref)
    }
}

/// Most callsites a thread keeps rendered keys for. A program has a fixed set of callsites;
/// this bounds the memory should one create them without end. Past it, keys are rendered per
/// event, as before the cache.
const MAX_CALLSITES: usize = 4096;

type Cache = HashMap<Identifier, Rc<CallsiteKeys>, BuildHasherDefault<FxHasher>>;

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::default();
}

/// The rendered keys of the callsite of an event whose metadata is `meta` (`None` when the
/// cache is full, in use further up this thread's stack, or already torn down).
pub(super) fn callsite_keys(
    meta: &'static Metadata<'static>,
    is_log: bool,
) -> Option<Rc<CallsiteKeys>> {
    CACHE
        .try_with(|cache| {
            let mut cache = cache.try_borrow_mut().ok()?;
            let id = meta.callsite();
            if let Some(keys) = cache.get(&id) {
                return Some(keys.clone());
            }
            if cache.len() >= MAX_CALLSITES {
                return None;
            }
            let keys = Rc::new(CallsiteKeys::render(meta, is_log));
            cache.insert(id, keys.clone());
            Some(keys)
        })
        .ok()
        .flatten()
}
