//! What outlives one try: a [`LiveStream`] — an upstream stream that reached its first
//! token and now belongs to the handler, which tells it how it ended so the instance's
//! breaker, health and metrics learn it.

use std::sync::Arc;

use resilience_core::policy::continuation::Resume;
use resilience_core::retry::RetryBudget;

use crate::upstream::{OpenStream, UpstreamError};

/// How a stream that reached the client ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEnd {
    /// It finished (`[DONE]`, or a finished choice and then the end of the body).
    Completed,
    /// It broke, stalled or ended truncated.
    Failed(UpstreamError),
    /// The client left first.
    Abandoned,
}

/// The report of a stream's end to its pool (breaker, health, metrics).
pub(crate) type StreamReport = Box<dyn FnOnce(StreamEnd) + Send>;

/// An upstream stream past its first token. Dropped without [`Self::finish`], it counts
/// as abandoned by the client.
pub struct LiveStream {
    /// The events.
    pub stream: OpenStream,
    /// The instance or endpoint streaming.
    pub served_by: String,
    /// The model it names.
    pub model: String,
    /// For a continuation of a broken stream: how it was asked for.
    pub resumed: Option<Resume>,
    /// The retry budget of the target streaming (a continuation takes one retry from it).
    pub budget: Option<Arc<RetryBudget>>,
    report: Option<StreamReport>,
}

impl LiveStream {
    pub(crate) fn new(
        stream: OpenStream,
        served_by: String,
        model: String,
        report: StreamReport,
    ) -> Self {
        Self {
            stream,
            served_by,
            model,
            resumed: None,
            budget: None,
            report: Some(report),
        }
    }

    /// The same stream, asked for as `resumed`, its target's retry `budget` known.
    pub(crate) fn resumed(mut self, resumed: Option<Resume>, budget: Arc<RetryBudget>) -> Self {
        self.resumed = resumed;
        self.budget = Some(budget);
        self
    }

    /// Tells the pool how the stream ended.
    pub fn finish(mut self, end: StreamEnd) {
        if let Some(report) = self.report.take() {
            report(end);
        }
    }
}

impl Drop for LiveStream {
    fn drop(&mut self) {
        if let Some(report) = self.report.take() {
            report(StreamEnd::Abandoned);
        }
    }
}

impl std::fmt::Debug for LiveStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveStream")
            .field("served_by", &self.served_by)
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}
