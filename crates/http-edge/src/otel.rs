//! OpenTelemetry spans, exported over OTLP/HTTP (JSON) when `OTEL_EXPORTER_OTLP_ENDPOINT`
//! is set, and nothing at all otherwise.
//!
//! [`init`] builds the exporter once at start (`service.name` = the binary, a batch span
//! processor configured by the standard `OTEL_BSP_*` variables) and keeps its tracer in a
//! global; [`start`] opens a span, which is a no-op [`Span`] when tracing is off: one
//! atomic load, the ids made by [`crate::trace`] as they would be anyway. When it is on,
//! the SDK makes the ids, and the caller uses them: the span id is what a request sends
//! upstream in `traceparent`, the trace id is what its log line shows.
//!
//! Spans carry no prompt, no answer text and no credential: only names, ids, statuses and
//! bounded labels.

use std::borrow::Cow;
use std::sync::OnceLock;
use std::time::Duration;

use opentelemetry::trace::{
    self as api, Span as _, SpanContext, SpanKind, Status, TraceContextExt as _, TraceFlags,
    TraceState, Tracer as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};

use crate::trace::{SpanId, TraceId, TraceParent};

/// The endpoint variable that turns the export on.
pub const ENDPOINT_VAR: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// How long the spans still waiting may take to leave at shutdown.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(3);

static TRACER: OnceLock<SdkTracer> = OnceLock::new();

/// Flushes the spans still waiting (within [`SHUTDOWN_DEADLINE`]) when dropped.
#[must_use = "dropping the guard stops the export; keep it until the program ends"]
pub struct OtelGuard {
    provider: SdkTracerProvider,
}

impl Drop for OtelGuard {
    fn drop(&mut self) {
        if let Err(error) = self.provider.shutdown_with_timeout(SHUTDOWN_DEADLINE) {
            tracing::warn!(%error, "spans not all exported at shutdown");
        }
    }
}

/// Starts the export when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (not empty), naming the
/// service `service_name`; `None` when it is off or cannot start (said in the log).
/// Call it once, after logging is set up, outside any async runtime's worker (the
/// exporter's HTTP client blocks on a thread of its own).
pub fn init(service_name: &'static str) -> Option<OtelGuard> {
    let endpoint = std::env::var(ENDPOINT_VAR)
        .ok()
        .filter(|e| !e.trim().is_empty())?;
    let exporter = match opentelemetry_otlp::SpanExporter::builder().build() {
        Ok(exporter) => exporter,
        Err(error) => {
            tracing::error!(%error, endpoint, "cannot start the OTLP span exporter; no traces");
            return None;
        }
    };
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name(service_name).build())
        .build();
    let tracer = opentelemetry::trace::TracerProvider::tracer(&provider, service_name);
    if TRACER.set(tracer).is_err() {
        tracing::warn!("OpenTelemetry set up twice; the first tracer stays");
    }
    tracing::info!(
        endpoint,
        service = service_name,
        "exporting traces over OTLP/HTTP"
    );
    Some(OtelGuard { provider })
}

/// Whether spans are exported.
pub fn enabled() -> bool {
    TRACER.get().is_some()
}

/// What kind of span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A request received.
    Server,
    /// A call made.
    Client,
    /// Work inside the process.
    Internal,
}

impl From<Kind> for SpanKind {
    fn from(kind: Kind) -> Self {
        match kind {
            Kind::Server => Self::Server,
            Kind::Client => Self::Client,
            Kind::Internal => Self::Internal,
        }
    }
}

/// An open span: ended when dropped (or by [`Span::end`]); a no-op when tracing is off.
pub struct Span {
    /// The span's trace.
    pub trace_id: TraceId,
    /// The span's id.
    pub span_id: SpanId,
    /// The trace flags it carries on.
    pub flags: u8,
    inner: Option<opentelemetry_sdk::trace::Span>,
}

impl std::fmt::Debug for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Span")
            .field("trace_id", &self.trace_id.hex())
            .field("span_id", &self.span_id.hex())
            .field("recording", &self.inner.is_some())
            .finish()
    }
}

/// Opens a span named `name` as a child of `parent` (the incoming `traceparent`, or a
/// span of this process as [`Span::context`] gives it); a new trace when there is none.
pub fn start(name: &'static str, kind: Kind, parent: Option<TraceParent>) -> Span {
    let Some(tracer) = TRACER.get() else {
        return start_off(parent);
    };
    let cx = match parent {
        Some(parent) => Context::new().with_remote_span_context(SpanContext::new(
            api::TraceId::from_bytes(parent.trace_id.0),
            api::SpanId::from_bytes(parent.parent_id.0),
            TraceFlags::new(parent.flags),
            true,
            TraceState::default(),
        )),
        None => Context::new(),
    };
    let span = tracer
        .span_builder(name)
        .with_kind(SpanKind::from(kind))
        .start_with_context(tracer, &cx);
    let sc = span.span_context();
    if !sc.is_valid() {
        // The provider is shutting down: no span, but ids all the same.
        let mut off = start_off(parent);
        off.inner = Some(span);
        return off;
    }
    Span {
        trace_id: TraceId(sc.trace_id().to_bytes()),
        span_id: SpanId(sc.span_id().to_bytes()),
        flags: sc.trace_flags().to_u8(),
        inner: Some(span),
    }
}

/// A span that is only its ids: the parent's trace and flags, or a new sampled trace.
fn start_off(parent: Option<TraceParent>) -> Span {
    match parent {
        Some(parent) => Span {
            trace_id: parent.trace_id,
            span_id: SpanId::random(),
            flags: parent.flags,
            inner: None,
        },
        None => Span {
            trace_id: TraceId::random(),
            span_id: SpanId::random(),
            flags: 1,
            inner: None,
        },
    }
}

impl Span {
    /// The context its children are started in, and that a call it makes sends upstream.
    pub fn context(&self) -> TraceParent {
        TraceParent {
            trace_id: self.trace_id,
            parent_id: self.span_id,
            flags: self.flags,
        }
    }

    /// Whether it is exported (tracing on).
    pub fn is_recording(&self) -> bool {
        self.inner.is_some()
    }

    /// Sets an attribute (nothing when off).
    pub fn set(&mut self, key: &'static str, value: impl Into<opentelemetry::Value>) {
        if let Some(span) = &mut self.inner {
            span.set_attribute(KeyValue::new(key, value));
        }
    }

    /// Sets an attribute whose value is made only when tracing is on.
    pub fn set_with<V: Into<opentelemetry::Value>>(
        &mut self,
        key: &'static str,
        value: impl FnOnce() -> V,
    ) {
        if let Some(span) = &mut self.inner {
            span.set_attribute(KeyValue::new(key, value()));
        }
    }

    /// Records an event with attributes (nothing when off).
    pub fn event(&mut self, name: &'static str, attributes: impl FnOnce() -> Vec<KeyValue>) {
        if let Some(span) = &mut self.inner {
            span.add_event(name, attributes());
        }
    }

    /// Marks it failed with `description` (nothing when off).
    pub fn error(&mut self, description: impl FnOnce() -> String) {
        if let Some(span) = &mut self.inner {
            span.set_status(Status::Error {
                description: Cow::Owned(description()),
            });
        }
    }

    /// Ends it now.
    pub fn end(mut self) {
        if let Some(span) = &mut self.inner {
            span.end();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_a_child_keeps_the_parents_trace_and_flags_with_a_new_span_id() {
        let parent =
            TraceParent::parse(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").unwrap();
        let span = start("request", Kind::Server, Some(parent));
        assert!(!span.is_recording());
        assert_eq!(span.trace_id, parent.trace_id);
        assert_ne!(span.span_id, parent.parent_id);
        assert_eq!(
            span.context().header().as_str()[..36],
            parent.header().as_str()[..36]
        );
        assert_eq!(span.context().flags, 0);
    }

    #[test]
    fn off_without_a_parent_a_new_sampled_trace() {
        let span = start("request", Kind::Server, None);
        assert_ne!(span.trace_id.0, [0; 16]);
        assert!(span.context().sampled());
    }
}
