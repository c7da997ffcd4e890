//! Reading what Prometheus targets expose.

mod exposition;

pub use exposition::{FamilyMetadata, ScrapedSample, parse_metadata, parse_text};
