//! Reading what Prometheus targets expose.

mod exposition;

pub use exposition::{
    FamilyMetadata, Format, ScrapedSample, parse_metadata, parse_metadata_as, parse_samples,
    parse_text,
};
