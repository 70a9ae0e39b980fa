//! Request bodies read whole before anything else, so that no later layer and no handler
//! waits on a client: a `Content-Length` over the limit is refused before a byte is read
//! (so `Expect: 100-continue` gets its 413 at once, never `100 Continue`), the whole body
//! must arrive within a deadline (not per chunk: a client trickling a byte a second is cut
//! at the deadline), and only so many bodies are read at once ([`Uploads`]: slow uploads
//! have their own budget and never hold a slot of the requests being answered).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use axum::body::{Body, HttpBody};
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use llm_api::FieldError;

use crate::BadInput;
use crate::limits::BodyLimits;

/// The bodies being read, under [`BodyLimits`]; shared by a server's requests.
#[derive(Debug)]
pub struct Uploads {
    limits: BodyLimits,
    reading: AtomicUsize,
    too_slow: AtomicU64,
    too_large: AtomicU64,
    turned_away: AtomicU64,
}

/// A snapshot of [`Uploads`], for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadStats {
    /// Bodies being read now.
    pub reading: usize,
    /// Bodies that missed the deadline (408) so far.
    pub too_slow: u64,
    /// Bodies over the size limit (413) so far.
    pub too_large: u64,
    /// Requests refused because the upload budget was spent (503) so far.
    pub turned_away: u64,
}

impl Uploads {
    /// No body being read yet.
    pub fn new(limits: BodyLimits) -> Self {
        Self {
            limits,
            reading: AtomicUsize::new(0),
            too_slow: AtomicU64::new(0),
            too_large: AtomicU64::new(0),
            turned_away: AtomicU64::new(0),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> BodyLimits {
        self.limits
    }

    /// The counts so far.
    pub fn stats(&self) -> UploadStats {
        UploadStats {
            reading: self.reading.load(Ordering::Acquire),
            too_slow: self.too_slow.load(Ordering::Relaxed),
            too_large: self.too_large.load(Ordering::Relaxed),
            turned_away: self.turned_away.load(Ordering::Relaxed),
        }
    }

    /// `req` with its body read into memory, or why not: 413 (declared or found too large),
    /// 408 (not whole within the deadline, or broken off), 503 (too many bodies being read).
    pub async fn read(&self, req: Request) -> Result<Request, BadInput> {
        let (parts, body) = req.into_parts();
        if body.is_end_stream() {
            return Ok(Request::from_parts(parts, Body::empty()));
        }
        if declared_length(&parts.headers).is_some_and(|n| n > self.limits.max_bytes as u64) {
            self.too_large.fetch_add(1, Ordering::Relaxed);
            return Err(BadInput::too_large(self.limits.max_bytes));
        }
        let _slot = self.enter()?;
        let read = Limited::new(body, self.limits.max_bytes).collect();
        match tokio::time::timeout(self.limits.deadline, read).await {
            Ok(Ok(collected)) => Ok(Request::from_parts(parts, Body::from(collected.to_bytes()))),
            Ok(Err(error)) if error.downcast_ref::<LengthLimitError>().is_some() => {
                self.too_large.fetch_add(1, Ordering::Relaxed);
                Err(BadInput::too_large(self.limits.max_bytes))
            }
            // The client broke the body off: it is gone, but answer in case it still listens.
            Ok(Err(_)) | Err(_) => {
                self.too_slow.fetch_add(1, Ordering::Relaxed);
                Err(BadInput::too_slow(self.limits.deadline))
            }
        }
    }

    fn enter(&self) -> Result<Reading<'_>, BadInput> {
        let now = self.reading.fetch_add(1, Ordering::AcqRel) + 1;
        let slot = Reading(&self.reading);
        if now > self.limits.max_concurrent {
            self.turned_away.fetch_add(1, Ordering::Relaxed);
            return Err(BadInput::busy(format!(
                "more than {} request bodies are being received; try again shortly",
                self.limits.max_concurrent
            )));
        }
        Ok(slot)
    }
}

/// A layer for services without metrics of their own: the body read by `uploads`, or the
/// refusal in the API's shape (OpenAI's under `/v1/`, the lab's elsewhere).
pub async fn read_whole(
    axum::extract::State(uploads): axum::extract::State<std::sync::Arc<Uploads>>,
    req: Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let openai = req.uri().path().starts_with("/v1/");
    match uploads.read(req).await {
        Ok(req) => next.run(req).await,
        Err(bad) if openai => bad.openai(),
        Err(bad) => bad.lab(None),
    }
}

/// One body being read; given back on drop (also when the client goes away).
struct Reading<'a>(&'a AtomicUsize);

impl Drop for Reading<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The `Content-Length` a request declares, when it declares one that parses.
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

impl BadInput {
    /// A 503 for a request turned away for lack of room (answered with `Retry-After`).
    pub fn busy(message: String) -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            kind: "overloaded",
            error: FieldError::new("body", message),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::body::Bytes;
    use futures::StreamExt;

    use super::*;

    fn limits() -> BodyLimits {
        BodyLimits {
            max_bytes: 16,
            deadline: Duration::from_millis(200),
            max_concurrent: 1,
        }
    }

    fn post(body: Body, length: Option<&str>) -> Request {
        let mut builder = Request::post("/generate");
        if let Some(length) = length {
            builder = builder.header(header::CONTENT_LENGTH, length);
        }
        builder.body(body).unwrap()
    }

    /// A body that sends `first`, then nothing, ever.
    fn stalled(first: &'static [u8]) -> Body {
        let chunks = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(first))])
            .chain(futures::stream::pending());
        Body::from_stream(chunks)
    }

    #[tokio::test]
    async fn a_body_within_the_limits_is_read_whole() {
        let uploads = Uploads::new(limits());
        let req = uploads
            .read(post(Body::from("{\"a\": 1}"), Some("8")))
            .await
            .unwrap();
        let bytes = axum::body::to_bytes(req.into_body(), 100).await.unwrap();
        assert_eq!(&bytes[..], b"{\"a\": 1}");
        assert_eq!(uploads.stats().reading, 0);
    }

    #[tokio::test]
    async fn a_declared_length_over_the_limit_is_refused_before_reading() {
        let uploads = Uploads::new(limits());
        // The body would never end: refusing it must not wait for it.
        let refused = tokio::time::timeout(
            Duration::from_millis(50),
            uploads.read(post(stalled(b"x"), Some("52428800"))),
        )
        .await
        .expect("refused at once")
        .unwrap_err();
        assert_eq!(refused.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(uploads.stats().too_large, 1);
    }

    #[tokio::test]
    async fn a_body_over_the_limit_without_a_length_is_413() {
        let uploads = Uploads::new(limits());
        let refused = uploads
            .read(post(Body::from(vec![b'x'; 17]), None))
            .await
            .unwrap_err();
        assert_eq!(refused.status, StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[tokio::test]
    async fn a_stalled_body_is_408_at_the_deadline_not_413() {
        let uploads = Uploads::new(limits());
        let started = std::time::Instant::now();
        let refused = uploads
            .read(post(stalled(b"{"), Some("10")))
            .await
            .unwrap_err();
        assert_eq!(refused.status, StatusCode::REQUEST_TIMEOUT);
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(200) && took < Duration::from_secs(2),
            "{took:?}"
        );
        assert_eq!(uploads.stats().too_slow, 1);
        assert_eq!(uploads.stats().reading, 0);
    }

    #[tokio::test]
    async fn uploads_beyond_the_budget_are_turned_away_with_503() {
        let uploads = std::sync::Arc::new(Uploads::new(limits()));
        let first = {
            let uploads = std::sync::Arc::clone(&uploads);
            tokio::spawn(async move { uploads.read(post(stalled(b"{"), Some("10"))).await })
        };
        while uploads.stats().reading == 0 {
            tokio::task::yield_now().await;
        }
        let refused = uploads
            .read(post(Body::from("{}"), Some("2")))
            .await
            .unwrap_err();
        assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(refused.kind, "overloaded");
        assert_eq!(uploads.stats().turned_away, 1);
        // A request without a body needs no budget.
        assert!(
            uploads
                .read(Request::get("/health").body(Body::empty()).unwrap())
                .await
                .is_ok()
        );
        assert_eq!(
            first.await.unwrap().unwrap_err().status,
            StatusCode::REQUEST_TIMEOUT
        );
        assert_eq!(uploads.stats().reading, 0);
    }
}
