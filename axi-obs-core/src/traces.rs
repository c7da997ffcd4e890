//! Traces: `tracing` spans become OpenTelemetry spans (tracing-opentelemetry), sampled by a
//! parent-based sampler and exported in batches over OTLP.

use opentelemetry::propagation::TextMapCompositePropagator;
use opentelemetry::propagation::text_map_propagator::TextMapPropagator;
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use opentelemetry_sdk::trace::SdkTracerProvider;

use crate::config::{Propagator, Sampler};

pub(crate) fn sdk_sampler(s: &Sampler) -> opentelemetry_sdk::trace::Sampler {
    use opentelemetry_sdk::trace::Sampler as S;
    match s {
        Sampler::AlwaysOn => S::AlwaysOn,
        Sampler::AlwaysOff => S::AlwaysOff,
        Sampler::TraceIdRatio(r) => S::TraceIdRatioBased(*r),
        Sampler::ParentBased(inner) => S::ParentBased(Box::new(sdk_sampler(inner))),
    }
}

/// The composite W3C propagator for the configured list.
pub(crate) fn propagator(list: &[Propagator]) -> TextMapCompositePropagator {
    let parts: Vec<Box<dyn TextMapPropagator + Send + Sync>> = list
        .iter()
        .map(|p| -> Box<dyn TextMapPropagator + Send + Sync> {
            match p {
                Propagator::TraceContext => Box::new(TraceContextPropagator::new()),
                Propagator::Baggage => Box::new(BaggagePropagator::new()),
            }
        })
        .collect();
    TextMapCompositePropagator::new(parts)
}

pub(crate) fn provider(
    sampler: &Sampler,
    resource: &[(String, String)],
    limits: crate::config::SpanLimits,
    processor: Option<crate::export::SpanQueue>,
) -> SdkTracerProvider {
    let mut b = SdkTracerProvider::builder()
        .with_sampler(sdk_sampler(sampler))
        .with_resource(sdk_resource(resource))
        .with_span_limits(opentelemetry_sdk::trace::SpanLimits {
            max_attributes_per_span: limits.attributes,
            max_events_per_span: limits.events,
            max_links_per_span: limits.links,
            max_attributes_per_event: limits.attributes_per_event,
            max_attributes_per_link: limits.attributes_per_link,
        });
    if let Some(p) = processor {
        b = b.with_span_processor(p);
    }
    b.build()
}

pub(crate) fn sdk_resource(resource: &[(String, String)]) -> opentelemetry_sdk::Resource {
    opentelemetry_sdk::Resource::builder_empty()
        .with_attributes(
            resource
                .iter()
                .map(|(k, v)| opentelemetry::KeyValue::new(k.clone(), v.clone())),
        )
        .build()
}
