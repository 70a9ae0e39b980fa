//! Issue #19, point 5: the status page (`GET /status`) in headless Chromium. Against a live
//! gateway and two llm-services: after traffic it shows the instances, the request rate,
//! the percentiles and the rates since the start; after the pool breaker opens, OPEN and
//! the transition (from the history database; from `/admin/status` with the history off);
//! under the page's Content-Security-Policy, with a clean console; a screenshot is saved
//! under `target/`. With answers scripted in place of the gateway's (the page from
//! `file://`): rates and percentiles over the time between two readings, and a failed poll
//! marked stale with the last data kept.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use regex::Regex;
use serde_json::json;
use test_support::unique_id;

use crate::harness::chromium::{self, Rendered};
use crate::harness::{Gateway, GatewayExt, LlmService};

/// Virtual time for one poll: the first poll runs at load, the next one 2 s later.
const ONE_POLL_MS: u64 = 1500;

/// The start tag of the element whose `id` is `id`.
fn start_tag<'a>(dom: &'a str, id: &str) -> &'a str {
    let pattern = Regex::new(&format!(
        r#"<[a-z]+\s[^>]*\bid="{}"[^>]*>"#,
        regex::escape(id)
    ))
    .unwrap();
    pattern
        .find(dom)
        .unwrap_or_else(|| panic!("no element #{id} in the page:\n{dom}"))
        .as_str()
}

/// Attribute `name` of the element `#id`.
fn attribute(dom: &str, id: &str, name: &str) -> Option<String> {
    let tag = start_tag(dom, id);
    let pattern = Regex::new(&format!(r#"\s{}="([^"]*)""#, regex::escape(name))).unwrap();
    pattern.captures(tag).map(|c| c[1].to_owned())
}

/// The text of `#id` (up to its first child tag).
fn text<'a>(dom: &'a str, id: &str) -> &'a str {
    let tag = start_tag(dom, id);
    let at = dom.find(tag).unwrap() + tag.len();
    dom[at..].split('<').next().unwrap_or("")
}

/// The number in `data-value` of `#id`; fails when the page shows none.
fn value(dom: &str, id: &str) -> f64 {
    let raw = attribute(dom, id, "data-value")
        .unwrap_or_else(|| panic!("#{id} has no value: {}", start_tag(dom, id)));
    raw.parse()
        .unwrap_or_else(|_| panic!("#{id} shows no number ({raw:?}): {}", text(dom, id)))
}

/// Whether `a` and `b` agree to 1e-9.
fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

/// The rows of the transitions table about `service` entering `to`.
fn transition_rows(dom: &str, service: &str, to: &str) -> Vec<String> {
    let pattern = Regex::new(&format!(
        r#"<tr data-service="{}" data-to="{}">.*?</tr>"#,
        regex::escape(service),
        regex::escape(to)
    ))
    .unwrap();
    pattern
        .find_iter(dom)
        .map(|m| m.as_str().to_owned())
        .collect()
}

/// The page of `gw` after its first poll, with a clean console.
async fn render(gw: &Gateway) -> String {
    let rendered = chromium::dump_dom(&format!("{}/status", gw.url), ONE_POLL_MS).await;
    rendered.assert_clean_console();
    assert_eq!(
        attribute(&rendered.dom, "updated", "data-fresh").as_deref(),
        Some("true"),
        "the first poll succeeded: {}",
        rendered.dom
    );
    rendered.dom
}

/// Fails every try on `upstreams` and sends three requests: the pool breaker (threshold 3)
/// opens; the three are answered by a fallback tier.
async fn trip(gw: &Gateway, upstreams: &[&LlmService]) {
    for llm in upstreams {
        llm.add_fault(json!({"kind": "error", "status": 500, "rate": 1.0}))
            .await;
    }
    for n in 0..3 {
        let answer = gw.generate(&format!("status page trip {n} zq")).await;
        assert_eq!(answer.fallback_used(), Some(true), "{answer:?}");
    }
    assert_eq!(gw.breaker_state().await, "OPEN");
}

/// `target/` (the directory of the build this test runs from).
fn target_dir() -> PathBuf {
    let gateway = test_support::binary("gateway");
    gateway
        .ancestors()
        .nth(2)
        .map(PathBuf::from)
        .expect("target/<profile>/gateway")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_live_signals_then_the_pool_breaker_opening() {
    let a = LlmService::builder().latency(60, 80).start().await;
    let b = LlmService::builder().latency(60, 80).start().await;
    let gw = Gateway::builder()
        .upstreams(&[&a, &b])
        .breaker(3, 30)
        .start()
        .await;
    for n in 0..12 {
        let answer = gw.generate(&format!("status page {n} zq")).await;
        assert!(answer.is_primary_success(), "{answer:?}");
    }

    let dom = render(&gw).await;
    assert_eq!(
        attribute(&dom, "pool-breaker", "data-state").as_deref(),
        Some("CLOSED")
    );
    assert!(start_tag(&dom, "stale").contains("hidden"), "not stale");
    for llm in [&a, &b] {
        let row = Regex::new(&format!(
            r#"<tr data-instance="[^"]*(?:{}|127\.0\.0\.1:{})">.*?</tr>"#,
            regex::escape(&llm.service_id),
            llm.port
        ))
        .unwrap();
        let row = row
            .find(&dom)
            .unwrap_or_else(|| panic!("a row for {}: {dom}", llm.url))
            .as_str();
        assert!(
            row.contains(">healthy<") && row.contains(">CLOSED<"),
            "{row}"
        );
    }
    assert_eq!(
        attribute(&dom, "window", "data-span").as_deref(),
        Some("start")
    );
    assert!(
        text(&dom, "window").contains("12 requests"),
        "the twelve answers: {}",
        text(&dom, "window")
    );
    assert!(
        value(&dom, "rate") > 0.0,
        "a request rate: {}",
        text(&dom, "rate")
    );
    assert_eq!(value(&dom, "error-rate"), 0.0);
    assert_eq!(value(&dom, "fallback-rate"), 0.0);
    let (p50, p95, p99) = (value(&dom, "p50"), value(&dom, "p95"), value(&dom, "p99"));
    // The instances take 60–80 ms: no answer under 50 ms, most under 100 ms (the bound
    // leaves room for a loaded machine).
    assert!(
        (0.05..=0.25).contains(&p50) && p50 <= p95 && p95 <= p99 && p99 <= 1.0,
        "p50 {p50}, p95 {p95}, p99 {p99}"
    );
    assert_eq!(
        attribute(&dom, "transitions-source", "data-source").as_deref(),
        Some("history")
    );

    trip(&gw, &[&a, &b]).await;
    // The history has the transition within about a second.
    let started = Instant::now();
    loop {
        let page = gw.get("/admin/history", "application/json").await.body;
        let entries = page["entries"].as_array().cloned().unwrap_or_default();
        if entries
            .iter()
            .any(|e| e["service"] == "llm-service" && e["state"] == "OPEN")
        {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{page}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let dom = render(&gw).await;
    assert_eq!(
        attribute(&dom, "pool-breaker", "data-state").as_deref(),
        Some("OPEN")
    );
    assert!(
        text(&dom, "pool-breaker").starts_with("OPEN"),
        "{}",
        text(&dom, "pool-breaker")
    );
    let opened = transition_rows(&dom, "llm-service", "OPEN");
    assert!(
        opened
            .iter()
            .any(|row| row.contains("pool breaker") && row.contains("CLOSED → OPEN")),
        "the pool breaker's CLOSED → OPEN among the transitions: {dom}"
    );
    assert!(
        text(&dom, "window").contains("15 requests"),
        "{}",
        text(&dom, "window")
    );
    assert!(
        close(value(&dom, "fallback-rate"), 3.0 / 15.0),
        "3 of 15 answered by a fallback: {}",
        text(&dom, "fallback-rate")
    );
    assert_eq!(value(&dom, "error-rate"), 0.0, "fallbacks are not errors");

    let shot = target_dir().join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    chromium::screenshot(&format!("{}/status", gw.url), ONE_POLL_MS, &shot)
        .await
        .assert_clean_console();
    let png = std::fs::read(&shot).unwrap_or_else(|e| panic!("{}: {e}", shot.display()));
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "a screenshot of the page: {} bytes",
        png.len()
    );
    eprintln!("status page screenshot: {}", shot.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_history_off_the_page_shows_the_gateways_own_transitions() {
    let llm = LlmService::builder().start().await;
    let gw = Gateway::builder()
        .upstreams(&[&llm])
        .breaker(3, 30)
        .env("DATABASE_URL", "off")
        .start()
        .await;
    trip(&gw, &[&llm]).await;
    let dom = render(&gw).await;
    assert_eq!(
        attribute(&dom, "transitions-source", "data-source").as_deref(),
        Some("status"),
        "{dom}"
    );
    assert!(text(&dom, "transitions-source").contains("the history is off"));
    let opened = transition_rows(&dom, "llm-service", "OPEN");
    assert!(
        opened.iter().any(|row| row.contains("CLOSED → OPEN")),
        "the pool breaker's transition from /admin/status: {dom}"
    );
    assert_eq!(
        attribute(&dom, "pool-breaker", "data-state").as_deref(),
        Some("OPEN")
    );
}

/// Answers the page's fetches in place of the gateway: `/admin/status` fails its third
/// time (503), `/admin/history` is off (404), `/admin/signals` gives two readings 2 s of
/// the gateway's uptime apart.
const FAKE_API: &str = r#"'use strict';
const SIGNALS = [
  { at_ms: 1700000000000, uptime_s: 100, requests: 1000, errors: 10, fallbacks: 50, in_flight: 1,
    latency: { bounds_s: [0.01, 0.05, 0.1], counts: [0, 500, 1000], total: 1000 } },
  { at_ms: 1700000002000, uptime_s: 102, requests: 1010, errors: 11, fallbacks: 52, in_flight: 2,
    latency: { bounds_s: [0.01, 0.05, 0.1], counts: [0, 500, 1010], total: 1010 } },
];
const STATUS = {
  overall_status: 'degraded', ready: true,
  circuit_breaker: { state: 'OPEN', retry_after_ms: 25000, consecutive_failures: 0 },
  pools: { primary: { breakers: {}, instances: [
    { id: 'llm_service_1', tier: 'primary', healthy: false, circuit_state: 'OPEN', model: null, url: 'http://127.0.0.1:1' },
  ] } },
  endpoints: [],
  transitions: [{ at_ms: 1700000000000, breaker: 'llm-service', from: 'CLOSED', to: 'OPEN',
    reason: { kind: 'consecutive_failures', count: 3 } }],
};
const calls = { '/admin/status': 0, '/admin/signals': 0 };
function answer(status, body) {
  return new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });
}
window.fetch = async (path) => {
  if (path.startsWith('/admin/history')) return answer(404, { status: 'error' });
  const n = calls[path]++;
  if (path === '/admin/status') return n < 2 ? answer(200, STATUS) : answer(503, { status: 'error' });
  return answer(200, SIGNALS[Math.min(n, SIGNALS.length - 1)]);
};
"#;

/// Checks of the script's computations, written into `#checks`.
const CHECKS: &str = r#"'use strict';
const wrong = [];
let ok = 0;
function check(what, got, want) {
  const same = typeof want === 'number' && typeof got === 'number' ? Math.abs(got - want) < 1e-9 : got === want;
  if (same) ok++; else wrong.push(what + ': got ' + got + ', want ' + want);
}
check('no samples', quantile(0.5, [0.1, 1], [0, 0], 0), null);
check('first bucket from 0', quantile(0.5, [0.1, 1], [10, 10], 10), 0.05);
check('linear in its bucket', quantile(0.75, [0.1, 1], [5, 10], 10), 0.55);
check('beyond the last bound: the last bound', quantile(0.99, [0.1, 1], [5, 5], 10), 1);
check('an empty bucket is skipped', quantile(0.5, [0.1, 0.2, 0.3], [0, 0, 4], 4), 0.25);
const reading = (uptime_s, requests) => ({ uptime_s, requests, errors: 0, fallbacks: 0,
  latency: { bounds_s: [1], counts: [requests], total: requests } });
let held = keep([], reading(50, 100));
check('the first reading starts from the start', held.length === 2 && held[0].origin === true, true);
check('since the start: the rate over the uptime', summarize(held).rate, 2);
held = keep(held, reading(52, 106));
check('from the second reading on, between readings', !summarize(held).sinceStart && summarize(held).rate === 3, true);
for (let t = 54; t <= 120; t += 2) held = keep(held, reading(t, 100 + (t - 50) * 3));
check('the oldest held is at least the window old', 120 - held[0].uptime_s >= 30, true);
check('and the next one younger', 120 - held[1].uptime_s < 30, true);
check('over the window: the rate between its ends', summarize(held).rate, 3);
check('not since the start any more', summarize(held).sinceStart, false);
held = keep(held, reading(3, 7));
check('a restart starts over', held.length === 2 && held[0].origin === true && summarize(held).requests === 7, true);
const out = document.createElement('pre');
out.id = 'checks';
out.dataset.ok = String(ok);
out.dataset.wrong = String(wrong.length);
out.textContent = wrong.join('\n');
document.body.append(out);
"#;

/// A temporary directory, removed when dropped (a failed assertion included).
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The page from `file://`: index.html with its own script and stylesheet beside it, the
/// fake API loaded before the script and the checks after it.
fn scripted_page() -> TempDir {
    let dir = std::env::temp_dir().join(unique_id("status-page"));
    std::fs::create_dir_all(&dir).unwrap();
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/routes/status_page");
    let html = std::fs::read_to_string(source.join("index.html")).unwrap();
    let html = html
        .replace(
            r#"<script src="/status/app.js" defer></script>"#,
            r#"<script src="fake_api.js"></script><script src="app.js" defer></script><script src="checks.js" defer></script>"#,
        )
        .replace("/status/app.css", "app.css");
    assert!(
        html.contains("fake_api.js"),
        "the page still loads /status/app.js"
    );
    std::fs::write(dir.join("index.html"), html).unwrap();
    for file in ["app.js", "app.css"] {
        std::fs::copy(source.join(file), dir.join(file)).unwrap();
    }
    std::fs::write(dir.join("fake_api.js"), FAKE_API).unwrap();
    std::fs::write(dir.join("checks.js"), CHECKS).unwrap();
    TempDir(dir)
}

#[tokio::test]
async fn rates_come_from_two_readings_and_a_failed_poll_is_marked_stale() {
    let dir = scripted_page();
    let url = format!("file://{}", dir.0.join("index.html").display());

    // One poll: since the start (1000 requests in 100 s).
    let first: Rendered = chromium::dump_dom(&url, ONE_POLL_MS).await;
    first.assert_clean_console();
    let dom = &first.dom;
    assert_eq!(
        attribute(dom, "checks", "data-wrong").as_deref(),
        Some("0"),
        "{}",
        text(dom, "checks")
    );
    assert_eq!(attribute(dom, "checks", "data-ok").as_deref(), Some("13"));
    assert_eq!(
        attribute(dom, "window", "data-span").as_deref(),
        Some("start")
    );
    assert!(close(value(dom, "rate"), 10.0), "{}", text(dom, "rate"));
    assert!(close(value(dom, "error-rate"), 0.01));
    assert!(close(value(dom, "fallback-rate"), 0.05));
    assert_eq!(
        attribute(dom, "updated", "data-fresh").as_deref(),
        Some("true")
    );

    // Three polls: the second reading, 2 s later; the third poll fails.
    let later = chromium::dump_dom(&url, 5000).await;
    later.assert_clean_console();
    let dom = &later.dom;
    assert_eq!(
        attribute(dom, "window", "data-span").as_deref(),
        Some("window"),
        "{dom}"
    );
    assert_eq!(text(dom, "window"), "Over the last 2 s: 10 requests.");
    assert!(
        close(value(dom, "rate"), 5.0),
        "10 requests in 2 s: {}",
        text(dom, "rate")
    );
    assert!(close(value(dom, "error-rate"), 0.1));
    assert!(close(value(dom, "fallback-rate"), 0.2));
    // All 10 answers between 50 and 100 ms.
    assert!(close(value(dom, "p50"), 0.075), "{}", text(dom, "p50"));
    assert!(close(value(dom, "p95"), 0.0975));
    assert!(close(value(dom, "p99"), 0.0995));
    assert!(close(value(dom, "in-flight"), 2.0));
    assert!(
        !start_tag(dom, "stale").contains("hidden"),
        "a failed poll shows: {dom}"
    );
    let stale = text(dom, "stale");
    assert!(
        stale.contains("/admin/status answered 503") && stale.contains("showing the data of"),
        "{stale}"
    );
    assert_eq!(
        attribute(dom, "updated", "data-fresh").as_deref(),
        Some("false")
    );
    assert_eq!(
        attribute(dom, "pool-breaker", "data-state").as_deref(),
        Some("OPEN")
    );
    assert!(text(dom, "pool-breaker").contains("probes in 25 s"));
    assert_eq!(
        attribute(dom, "transitions-source", "data-source").as_deref(),
        Some("status")
    );
    assert_eq!(
        transition_rows(dom, "llm-service", "OPEN").len(),
        1,
        "{dom}"
    );
}
