//! The status page: `GET /status` (HTML), its script `/status/app.js` and stylesheet
//! `/status/app.css`, the files of `status_page/` compiled into the binary (no build step,
//! nothing from another origin, so it works offline), and `GET /admin/signals`, the
//! golden signals' running totals that the script turns into rates and quantiles.
//!
//! The script polls `/admin/status`, `/admin/signals` and `/admin/history` every 2 s. It
//! reads running totals rather than the Prometheus text: one small JSON object instead of
//! the whole exposition (hundreds of series, the process collector's reads of `/proc`, the
//! scrape-time gauges set under a lock a real Prometheus scrape also takes) every 2 s per
//! open page; the totals come from the same series (`metrics::Totals`), so the page and a
//! dashboard agree; and each reading carries the gateway's clock and uptime, so rates are
//! per second of the gateway's time, right from the first reading.
//!
//! The page is an admin route (`admin_guard`, scope `admin`). Its own Content-Security-Policy
//! is stricter than the `default-src 'self'` of every answer: scripts, styles and fetches
//! from this origin only, nothing else (no inline script or style anywhere).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use llm_api::gateway::GoldenSignals;
use resilience_core::clock::unix_millis;

use crate::state::Gateway;

/// The page.
const PAGE: &str = include_str!("status_page/index.html");
/// Its script.
const SCRIPT: &str = include_str!("status_page/app.js");
/// Its stylesheet.
const STYLE: &str = include_str!("status_page/app.css");

/// The page's Content-Security-Policy: its own script, stylesheet and fetches, nothing
/// else; it may not be framed.
pub const PAGE_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

/// One of the page's files: its content type, revalidated on every load (`no-cache`: an
/// upgraded gateway's page is never mixed with an old script).
fn file(content_type: &'static str, body: &'static str) -> Response {
    let mut response = (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response();
    if content_type.starts_with("text/html") {
        response.headers_mut().insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(PAGE_POLICY),
        );
    }
    response
}

/// The status page.
#[utoipa::path(
    get,
    path = "/status",
    tag = "admin",
    responses(
        (status = 200, description = "The status page: pools, instances, breakers, request rate, latency percentiles, error and fallback rates, recent transitions; refreshes itself every 2 s (script `/status/app.js`, stylesheet `/status/app.css`)",
            content_type = "text/html", body = String),
        (status = 401, description = "Missing or invalid credentials (when `AUTH_MODE` is not `none`)", body = llm_api::ErrorBody),
        (status = 403, description = "The credentials lack the `admin` scope; or, in every mode, a cross-site browser request or an address outside `ADMIN_ALLOW`", body = llm_api::ErrorBody),
    ),
    security((), ("bearer" = []), ("api_key" = []))
)]
pub async fn page() -> Response {
    file("text/html; charset=utf-8", PAGE)
}

/// The status page's script.
#[utoipa::path(
    get,
    path = "/status/app.js",
    tag = "admin",
    responses(
        (status = 200, description = "The status page's script", content_type = "text/javascript", body = String),
        (status = 401, description = "Missing or invalid credentials (when `AUTH_MODE` is not `none`)", body = llm_api::ErrorBody),
        (status = 403, description = "The credentials lack the `admin` scope; or, in every mode, a cross-site browser request or an address outside `ADMIN_ALLOW`", body = llm_api::ErrorBody),
    ),
    security((), ("bearer" = []), ("api_key" = []))
)]
pub async fn script() -> Response {
    file("text/javascript; charset=utf-8", SCRIPT)
}

/// The status page's stylesheet.
#[utoipa::path(
    get,
    path = "/status/app.css",
    tag = "admin",
    responses(
        (status = 200, description = "The status page's stylesheet", content_type = "text/css", body = String),
        (status = 401, description = "Missing or invalid credentials (when `AUTH_MODE` is not `none`)", body = llm_api::ErrorBody),
        (status = 403, description = "The credentials lack the `admin` scope; or, in every mode, a cross-site browser request or an address outside `ADMIN_ALLOW`", body = llm_api::ErrorBody),
    ),
    security((), ("bearer" = []), ("api_key" = []))
)]
pub async fn style() -> Response {
    file("text/css; charset=utf-8", STYLE)
}

/// The golden signals as running totals since the start: two readings give rates and
/// latency quantiles over the time between them.
#[utoipa::path(
    get,
    path = "/admin/signals",
    tag = "admin",
    responses(
        (status = 200, description = "Requests, 5xx answers, fallback answers and the latency histogram since the start, with the gateway's clock and uptime", body = GoldenSignals),
        (status = 401, description = "Missing or invalid credentials (when `AUTH_MODE` is not `none`)", body = llm_api::ErrorBody),
        (status = 403, description = "The credentials lack the `admin` scope; or, in every mode, a cross-site browser request or an address outside `ADMIN_ALLOW`", body = llm_api::ErrorBody),
    ),
    security((), ("bearer" = []), ("api_key" = []))
)]
pub async fn signals(State(gateway): State<Arc<Gateway>>) -> Json<GoldenSignals> {
    let totals = gateway.metrics.totals();
    Json(GoldenSignals {
        at_ms: unix_millis(SystemTime::now()),
        errors: totals.errors,
        fallbacks: totals.fallbacks,
        in_flight: u64::try_from(gateway.in_flight.load(Ordering::Relaxed)).unwrap_or(u64::MAX),
        latency: totals.latency,
        requests: totals.requests,
        uptime_s: gateway.started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(response: Response) -> String {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn each_file_has_its_type_and_is_revalidated() {
        for (response, kind) in [
            (page().await, "text/html"),
            (script().await, "text/javascript"),
            (style().await, "text/css"),
        ] {
            let headers = response.headers();
            let content_type = headers[header::CONTENT_TYPE].to_str().unwrap();
            assert!(content_type.starts_with(kind), "{content_type}");
            assert_eq!(headers[header::CACHE_CONTROL], "no-cache", "{kind}");
            assert!(!body(response).await.is_empty(), "{kind}");
        }
    }

    #[tokio::test]
    async fn the_page_loads_its_own_files_and_nothing_inline() {
        let response = page().await;
        assert_eq!(
            response.headers()[header::CONTENT_SECURITY_POLICY],
            PAGE_POLICY
        );
        let html = body(response).await;
        assert!(html.contains(r#"<script src="/status/app.js""#), "{html}");
        assert!(html.contains(r#"href="/status/app.css""#), "{html}");
        assert_eq!(html.matches("<script").count(), 1, "one script, ours");
        for inline in ["<style", "style=", "javascript:", "http://", "https://"] {
            assert!(!html.contains(inline), "no `{inline}` in the page");
        }
        let handler = regex::Regex::new(r"\son[a-z]+\s*=").unwrap();
        assert!(!handler.is_match(&html), "no inline event handler");
        for external in ["http://", "https://", "//cdn"] {
            assert!(
                !SCRIPT.contains(external),
                "the script loads nothing from elsewhere"
            );
            assert!(
                !STYLE.contains(external),
                "the stylesheet loads nothing from elsewhere"
            );
        }
        assert!(!SCRIPT.contains("innerHTML"), "text goes in as text");
    }
}
