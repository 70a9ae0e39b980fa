//! Test doubles: a request type, scripted providers that count their calls, and helpers.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::clock::{ManualClock, SharedClock};
use crate::fallback::{
    BoxFuture, CacheKey, FallbackProvider, ProviderError, ResponseCache, Tier, TierKind,
};

/// The request the tests send through chains.
#[derive(Debug, Clone)]
pub(super) struct Req {
    pub model: Option<String>,
    pub prompt: String,
}

/// A model-agnostic request for `prompt`.
pub(super) fn req(prompt: &str) -> Req {
    Req {
        model: None,
        prompt: prompt.to_owned(),
    }
}

/// A request for `prompt` asked of `model`.
pub(super) fn req_for(model: &str, prompt: &str) -> Req {
    Req {
        model: Some(model.to_owned()),
        prompt: prompt.to_owned(),
    }
}

/// The cache key of a test request.
pub(super) fn key(req: &Req) -> Option<CacheKey> {
    Some(CacheKey::new(req.model.as_deref(), &req.prompt))
}

/// What a scripted provider does when called.
#[derive(Debug, Clone)]
pub(super) enum Step {
    Answer(String),
    Fail(ProviderError),
    Hang,
    Delay(Duration, String),
}

/// A provider that follows its current [`Step`], counts its calls and writes its name to a
/// shared call log.
pub(super) struct Scripted {
    name: String,
    step: Mutex<Step>,
    calls: AtomicUsize,
    log: Option<CallLog>,
}

/// Names of the providers called, in call order.
pub(super) type CallLog = Arc<Mutex<Vec<String>>>;

impl Scripted {
    pub(super) fn new(name: &str, step: Step) -> Arc<Self> {
        Arc::new(Self {
            name: name.to_owned(),
            step: Mutex::new(step),
            calls: AtomicUsize::new(0),
            log: None,
        })
    }

    pub(super) fn logged(name: &str, step: Step, log: &CallLog) -> Arc<Self> {
        Arc::new(Self {
            name: name.to_owned(),
            step: Mutex::new(step),
            calls: AtomicUsize::new(0),
            log: Some(Arc::clone(log)),
        })
    }

    pub(super) fn answering(name: &str, text: &str) -> Arc<Self> {
        Self::new(name, Step::Answer(text.to_owned()))
    }

    pub(super) fn failing(name: &str, error: ProviderError) -> Arc<Self> {
        Self::new(name, Step::Fail(error))
    }

    pub(super) fn hanging(name: &str) -> Arc<Self> {
        Self::new(name, Step::Hang)
    }

    pub(super) fn set(&self, step: Step) {
        *self.step.lock().unwrap() = step;
    }

    pub(super) fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl FallbackProvider<Req, String> for Scripted {
    fn name(&self) -> &str {
        &self.name
    }

    fn call<'a>(&'a self, _req: &'a Req) -> BoxFuture<'a, Result<String, ProviderError>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if let Some(log) = &self.log {
            log.lock().unwrap().push(self.name.clone());
        }
        let step = self.step.lock().unwrap().clone();
        Box::pin(async move {
            match step {
                Step::Answer(text) => Ok(text),
                Step::Fail(error) => Err(error),
                Step::Hang => std::future::pending().await,
                Step::Delay(by, text) => {
                    tokio::time::sleep(by).await;
                    Ok(text)
                }
            }
        })
    }
}

/// A tier of `kind` holding `providers` in order, with the kind's default timeout.
pub(super) fn tier(kind: TierKind, providers: &[&Arc<Scripted>]) -> Tier<Req, String> {
    providers
        .iter()
        .fold(Tier::new(kind), |t, p| t.with_provider(Arc::clone(p)))
}

/// A manual clock and a cache reading it.
pub(super) fn manual_cache(
    ttl: Duration,
    capacity: usize,
) -> (Arc<ManualClock>, Arc<ResponseCache<String>>) {
    let clock = ManualClock::new();
    let shared: SharedClock = clock.clone();
    (clock, Arc::new(ResponseCache::new(shared, ttl, capacity)))
}
