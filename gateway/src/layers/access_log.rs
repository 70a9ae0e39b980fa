//! Layer 2: the request's trace and the access log.
//!
//! The trace: a valid W3C `traceparent` is continued (a malformed one is ignored and a new
//! trace started), and the request's `request` span opened as a child of its parent
//! ([`crate::telemetry`]); its context goes into the request's extensions as
//! [`RequestTrace`], for the tries upstream and the history.
//!
//! The access log: one `tracing` line per request when its answer starts (target `access`,
//! level INFO), with `request_id` and `trace_id` first, then the method, the route (a
//! model route's name on the model endpoints, the path otherwise), the path (never the
//! query, which may hold secrets), status, latency, and on the model endpoints what the
//! handler recorded ([`Recorded`]): the upstream instance or provider that answered
//! (`served_by`), the tier, the tries beyond the first (`retries`), the tokens, and the
//! prompt as `prompt_sha256` (the first 8 bytes of its SHA-256, in hex) and `prompt_len`
//! (bytes), never its text. Then the caller (an authenticated caller's `sub` or key owner,
//! never the credential; `anonymous` otherwise). With `LOG_FORMAT=json` (the default) it
//! is one JSON object per line.
//!
//! The request runs inside a `tracing` span (method, path, request id) only when DEBUG is
//! on for the gateway: at the default level a span per request cost as much as the line
//! itself, and the lines a request logs carry its request id anyway.

use std::time::Instant;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use http_edge::otel::{self, Kind};
use http_edge::trace::{TRACEPARENT, TraceParent};
use tracing::Instrument;

use super::{Recorded, RequestId};
use crate::auth::layer::CallerName;
use crate::telemetry::RequestTrace;

/// Continues or starts the request's trace, and logs its answer (see the module's rules).
pub async fn access_log(mut req: Request, next: Next) -> Response {
    let incoming = req
        .headers()
        .get(TRACEPARENT)
        .and_then(|value| TraceParent::parse(value.as_bytes()));
    let mut span = otel::start("request", Kind::Server, incoming);
    let trace = span.context();
    req.extensions_mut().insert(RequestTrace(trace));
    let logged = tracing::enabled!(target: "access", tracing::Level::INFO);
    let debug = tracing::enabled!(tracing::Level::DEBUG);
    if !logged && !debug && !span.is_recording() {
        return next.run(req).await;
    }
    let started = Instant::now();
    let method = req.method().clone();
    let uri = req.uri().clone();
    let id = req.extensions().get::<RequestId>().cloned();
    let id = id.as_ref().map_or("", |id| id.0.as_str());
    let trace_id = trace.trace_id.hex();
    let response = if debug {
        let debug_span = tracing::debug_span!("request", %method, path = uri.path(),
            request_id = id, trace_id = trace_id.as_str());
        next.run(req).instrument(debug_span).await
    } else {
        next.run(req).await
    };
    let status = response.status().as_u16();
    let recorded = response.extensions().get::<Recorded>();
    let route = match recorded {
        Some(Recorded::Answered { route, .. }) => route.as_str(),
        _ => uri.path(),
    };
    if span.is_recording() {
        span.set("http.request.method", method.as_str().to_owned());
        span.set("url.path", uri.path().to_owned());
        span.set("http.route", route.to_owned());
        span.set("http.response.status_code", i64::from(status));
        span.set("request_id", id.to_owned());
        if let Some(Recorded::Answered { service, tier, .. }) = recorded {
            span.set("served_by", service.clone());
            span.set("tier", tier.as_str());
        }
        if status >= 500 {
            span.error(|| format!("status {status}"));
        }
    }
    span.end();
    if logged {
        log(
            &response, id, &trace_id, &method, &uri, route, status, started, recorded,
        );
    }
    response
}

/// The access-log line.
#[expect(
    clippy::too_many_arguments,
    reason = "the fields of one log line, each read once"
)]
fn log(
    response: &Response,
    request_id: &str,
    trace_id: &http_edge::trace::Hex<32>,
    method: &axum::http::Method,
    uri: &axum::http::Uri,
    route: &str,
    status: u16,
    started: Instant,
    recorded: Option<&Recorded>,
) {
    let caller = response
        .extensions()
        .get::<CallerName>()
        .map_or("anonymous", |CallerName(name)| name.as_ref());
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    let (served_by, tier, retries, tokens, prompt) = match recorded {
        Some(Recorded::Answered {
            service,
            tier,
            tokens,
            tokens_used,
            retries,
            prompt,
            ..
        }) => (
            Some(service.as_str()),
            Some(tier.as_str()),
            Some(*retries),
            tokens.map(|usage| usage.total_tokens).or(*tokens_used),
            Some(prompt),
        ),
        Some(Recorded::Failed {
            retries, prompt, ..
        }) => (None, None, Some(*retries), None, Some(prompt)),
        None => (None, None, None, None, None),
    };
    let prompt_hash = prompt.and_then(|p| p.sha256);
    let prompt_sha256 = prompt_hash.as_ref().map(|h| h.as_str());
    let prompt_len = prompt.map(|p| p.len);
    let line = AccessLine {
        request_id,
        trace_id: trace_id.as_str(),
        method: method.as_str(),
        route,
        path: uri.path(),
        status,
        latency_ms,
        served_by,
        tier,
        retries,
        tokens,
        prompt_sha256,
        prompt_len,
        caller,
    };
    match http_edge::process::json_sink() {
        Some(mut sink) => {
            // The batched writer never fails a write (a line beyond its bound is counted).
            let _ = std::io::Write::write_all(&mut sink, &line.json(std::time::SystemTime::now()));
        }
        None => line.trace(),
    }
}

/// The fields of one access line.
struct AccessLine<'a> {
    request_id: &'a str,
    trace_id: &'a str,
    method: &'a str,
    route: &'a str,
    path: &'a str,
    status: u16,
    latency_ms: f64,
    served_by: Option<&'a str>,
    tier: Option<&'a str>,
    retries: Option<u32>,
    tokens: Option<u32>,
    prompt_sha256: Option<&'a str>,
    prompt_len: Option<usize>,
    caller: &'a str,
}

impl AccessLine<'_> {
    /// The line as a `tracing` event, for the pretty format.
    fn trace(&self) {
        tracing::info!(
            target: "access",
            request_id = self.request_id,
            trace_id = self.trace_id,
            method = self.method,
            route = self.route,
            path = self.path,
            status = self.status,
            latency_ms = self.latency_ms,
            served_by = self.served_by,
            tier = self.tier,
            retries = self.retries,
            tokens = self.tokens,
            prompt_sha256 = self.prompt_sha256,
            prompt_len = self.prompt_len,
            caller = self.caller,
            "answered"
        );
    }

    /// The line as `tracing-subscriber`'s JSON formatter writes an event (`timestamp`,
    /// `level`, `fields` with `message`, `target`; an absent field left out), written
    /// directly: the formatter's field visitors cost three times as much.
    fn json(&self, now: std::time::SystemTime) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        out.extend_from_slice(b"{\"timestamp\":\"");
        rfc3339_micros(&mut out, now);
        out.extend_from_slice(b"\",\"level\":\"INFO\",\"fields\":{\"message\":\"answered\"");
        let field = |out: &mut Vec<u8>, name: &str, value: &dyn erased::Value| {
            out.extend_from_slice(b",\"");
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\":");
            value.write(out);
        };
        field(&mut out, "request_id", &self.request_id);
        field(&mut out, "trace_id", &self.trace_id);
        field(&mut out, "method", &self.method);
        field(&mut out, "route", &self.route);
        field(&mut out, "path", &self.path);
        field(&mut out, "status", &self.status);
        field(&mut out, "latency_ms", &self.latency_ms);
        let optional: [(&str, Option<&dyn erased::Value>); 6] = [
            ("served_by", erased::some(&self.served_by)),
            ("tier", erased::some(&self.tier)),
            ("retries", erased::some(&self.retries)),
            ("tokens", erased::some(&self.tokens)),
            ("prompt_sha256", erased::some(&self.prompt_sha256)),
            ("prompt_len", erased::some(&self.prompt_len)),
        ];
        for (name, value) in optional {
            if let Some(value) = value {
                field(&mut out, name, value);
            }
        }
        field(&mut out, "caller", &self.caller);
        out.extend_from_slice(b"},\"target\":\"access\"}\n");
        out
    }
}

/// JSON values written into a line (strings escaped by serde_json).
mod erased {
    /// One value.
    pub trait Value {
        fn write(&self, out: &mut Vec<u8>);
    }

    macro_rules! by_serde {
        ($($t:ty),*) => {$(
            impl Value for $t {
                fn write(&self, out: &mut Vec<u8>) {
                    // Writing into a Vec cannot fail; a value that will not serialise
                    // (a non-finite float) is written as null.
                    if serde_json::to_writer(&mut *out, self).is_err() {
                        out.extend_from_slice(b"null");
                    }
                }
            }
        )*};
    }

    by_serde!(&str, u16, u32, usize, f64);

    /// An optional value, when present.
    pub fn some<T: Value>(value: &Option<T>) -> Option<&dyn Value> {
        value.as_ref().map(|v| v as &dyn Value)
    }
}

/// `now` as RFC 3339 in UTC with microseconds (`2026-12-07T16:12:36.123456Z`), as
/// `tracing-subscriber`'s default timer writes it.
fn rfc3339_micros(out: &mut Vec<u8>, now: std::time::SystemTime) {
    use std::io::Write as _;
    let since = now
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = llm_api::time::civil_from_days(days);
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        since.subsec_micros()
    );
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn line(served_by: Option<&str>) -> AccessLine<'_> {
        AccessLine {
            request_id: "req \"1\"",
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736",
            method: "POST",
            route: "default",
            path: "/generate",
            status: 200,
            latency_ms: 1.5,
            served_by,
            tier: served_by.map(|_| "primary"),
            retries: Some(1),
            tokens: None,
            prompt_sha256: Some("0123456789abcdef"),
            prompt_len: Some(42),
            caller: "anonymous",
        }
    }

    #[test]
    fn the_line_is_the_formatters_shape_with_absent_fields_left_out() {
        let at = UNIX_EPOCH + Duration::from_micros(1_796_652_000_123_456);
        let text = line(Some("llm_service_1")).json(at);
        assert_eq!(text.last(), Some(&b'\n'));
        let json: serde_json::Value = serde_json::from_slice(&text).unwrap();
        assert_eq!(json["timestamp"], "2026-12-07T14:00:00.123456Z");
        assert_eq!(json["level"], "INFO");
        assert_eq!(json["target"], "access");
        let fields = &json["fields"];
        assert_eq!(fields["message"], "answered");
        assert_eq!(
            fields["request_id"], "req \"1\"",
            "escaped, read back whole"
        );
        assert_eq!(fields["status"], 200);
        assert_eq!(fields["latency_ms"], 1.5);
        assert_eq!(fields["served_by"], "llm_service_1");
        assert_eq!(fields["retries"], 1);
        assert_eq!(fields["prompt_len"], 42);
        assert!(fields.get("tokens").is_none(), "{json}");
        let without = serde_json::from_slice::<serde_json::Value>(&line(None).json(at)).unwrap();
        assert!(without["fields"].get("served_by").is_none());
        assert!(without["fields"].get("tier").is_none());
    }

    #[test]
    fn timestamps_are_utc_dates_across_leap_years_and_centuries() {
        for (secs, text) in [
            (0, "1970-01-01T00:00:00.000000Z"),
            (951_782_400, "2000-02-29T00:00:00.000000Z"),
            (1_709_251_199, "2024-02-29T23:59:59.000000Z"),
            (4_107_542_400, "2100-03-01T00:00:00.000000Z"),
        ] {
            let mut out = Vec::new();
            rfc3339_micros(&mut out, UNIX_EPOCH + Duration::from_secs(secs));
            assert_eq!(String::from_utf8(out).unwrap(), text, "{secs}");
        }
    }
}
