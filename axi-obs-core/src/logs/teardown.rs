//! [`Teardown`]: keeps a panic in another crate's layer from aborting the process when a
//! thread's locals are being torn down.
//!
//! An event or span from a thread-local's `Drop` (a connection pool that logs as its thread
//! ends) reaches every layer. OpenTelemetry's layers read the current context from a
//! thread-local with `LocalKey::with`, which panics once that thread-local is gone, and a panic
//! in a thread-local destructor aborts the process. The wrapped layer's calls that can reach
//! the context run under `catch_unwind`: such a span or event is then left out of that layer
//! (the local log line is still written), and the process lives. A panic costs nothing when
//! there is none. Limits: the panic hook still runs (a "panicked at" line on standard error),
//! a hook that itself logs through `tracing` panics again and aborts, and with
//! `panic = "abort"` nothing can be caught.
//!
//! Only for layers that need no `downcast_raw` (forwarding it takes `unsafe`, which this
//! workspace forbids): the OTLP log bridge. tracing-opentelemetry's span layer is reached
//! through it (`OpenTelemetrySpanExt::context`), so a span *created* in a thread-local's `Drop`
//! can still abort in that crate; events are safe.

use std::panic::{AssertUnwindSafe, catch_unwind};

use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// See the [module documentation](self).
pub(crate) struct Teardown<L>(pub(crate) L);

fn guarded(f: impl FnOnce()) {
    let _ = catch_unwind(AssertUnwindSafe(f));
}

impl<S, L> Layer<S> for Teardown<L>
where
    S: Subscriber,
    L: Layer<S>,
{
    fn on_register_dispatch(&self, subscriber: &tracing::Dispatch) {
        self.0.on_register_dispatch(subscriber);
    }

    fn on_layer(&mut self, subscriber: &mut S) {
        self.0.on_layer(subscriber);
    }

    fn register_callsite(
        &self,
        metadata: &'static Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        self.0.register_callsite(metadata)
    }

    fn enabled(&self, metadata: &Metadata<'_>, ctx: Context<'_, S>) -> bool {
        self.0.enabled(metadata, ctx)
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        guarded(|| self.0.on_new_span(attrs, id, ctx));
    }

    fn on_record(&self, span: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        guarded(|| self.0.on_record(span, values, ctx));
    }

    fn on_follows_from(&self, span: &Id, follows: &Id, ctx: Context<'_, S>) {
        guarded(|| self.0.on_follows_from(span, follows, ctx));
    }

    fn event_enabled(&self, event: &Event<'_>, ctx: Context<'_, S>) -> bool {
        self.0.event_enabled(event, ctx)
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        guarded(|| self.0.on_event(event, ctx));
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        guarded(|| self.0.on_enter(id, ctx));
    }

    fn on_exit(&self, id: &Id, ctx: Context<'_, S>) {
        guarded(|| self.0.on_exit(id, ctx));
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        guarded(|| self.0.on_close(id, ctx));
    }

    fn on_id_change(&self, old: &Id, new: &Id, ctx: Context<'_, S>) {
        self.0.on_id_change(old, new, ctx);
    }
}
