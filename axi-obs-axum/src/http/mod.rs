//! The per-request layer: [`ObsLayer`] → [`Obs`] → [`ResponseFuture`], tower-http style.

mod append_map;
mod clock;
mod counted_body;
mod future;
mod instruments;
mod layer;
mod methods;
mod route_table;
mod service;

pub use future::ResponseFuture;
pub(crate) use future::redact_query;
pub use instruments::{CUSTOM_LABEL_OVERFLOW, Naming};
pub(crate) use instruments::{Sink, keeps_metrics, version_label};
pub use layer::{DEFAULT_EXCLUDED, ObsLayer};
pub use methods::KNOWN_METHODS_ENV;
pub(crate) use methods::{env_known_methods, method_label};
pub(crate) use service::panic_message;
pub use service::{Obs, RequestView};
