//! Reading what Prometheus targets expose.

mod exposition;

pub use exposition::{ScrapedSample, parse_text};
