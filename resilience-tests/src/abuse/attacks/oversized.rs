//! Oversized identifiers: requests naming a 900 KB model. Pass when every one gets a 4xx
//! and neither the target's RSS nor Redis's `used_memory` grew by 20 MiB or more, 15 s
//! after the last answer (the growth 2 s after it is reported too).

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::super::report::Findings;
use super::super::rules::{self, mib};
use super::Ctx;

/// The model name's length.
const MODEL_LEN: usize = 900 * 1024;
/// Requests in flight at once.
const CONCURRENCY: usize = 8;
/// When after the last answer memory is first read (reported: the burst's footprint).
const FIRST_LOOK: Duration = Duration::from_secs(2);
/// How long after the last answer memory is read for the verdict: what the target keeps,
/// not what it used while answering (an allocator gives freed pages back over seconds;
/// the services' jemalloc within about ten).
const SETTLE: Duration = Duration::from_secs(15);
/// How long a Redis `INFO` may take.
const REDIS_TIMEOUT: Duration = Duration::from_secs(3);

/// See the module documentation.
pub async fn run(ctx: &Ctx, findings: &mut Findings) {
    let rss_before = ctx.rss_now();
    let redis_before = match &ctx.redis {
        Some(url) => redis_used_memory(url).await,
        None => None,
    };
    let model = "m".repeat(MODEL_LEN);
    let body = hyper::body::Bytes::from(ctx.target.body("an oversized model", Some(&model)));
    let client = ctx.client.start(ctx.rate);
    let url = ctx.target.url();
    let statuses: Vec<String> = futures::stream::iter(0..ctx.sizes.oversized)
        .map(|_| {
            let request = ctx
                .client
                .http()
                .post(&url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
            async move {
                match request.send().await {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        let _ = response.bytes().await;
                        status.to_string()
                    }
                    Err(error) if error.is_timeout() => "timeout".to_owned(),
                    Err(_) => "closed".to_owned(),
                }
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let figures = client.stop().await;
    findings.fail_all(figures.problems(None));
    findings.client = Some(figures);

    let mut by_status: BTreeMap<String, u64> = BTreeMap::new();
    for status in &statuses {
        *by_status.entry(status.clone()).or_default() += 1;
    }
    let not_4xx = statuses
        .iter()
        .filter(|status| !status.starts_with('4'))
        .count();
    findings.figure("requests", ctx.sizes.oversized);
    findings.figure("model_bytes", MODEL_LEN);
    findings.figure("answers", &by_status);
    if not_4xx > 0 {
        findings.fail(format!("{not_4xx} requests did not get a 4xx"));
    }

    tokio::time::sleep(FIRST_LOOK).await;
    if let (Some(before), Some(soon)) = (rss_before, ctx.rss_now()) {
        findings.figure("rss_growth_after_2s_mib", mib(soon.saturating_sub(before)));
    }
    tokio::time::sleep(SETTLE.saturating_sub(FIRST_LOOK)).await;
    match (rss_before, ctx.rss_now()) {
        (Some(before), Some(after)) => {
            findings.figure("rss_growth_mib", mib(after.saturating_sub(before)));
            if !rules::grew_less_than_limit(before, after) {
                findings.fail(format!(
                    "RSS grew from {} MiB to {} MiB (limit: less than 20 MiB)",
                    mib(before),
                    mib(after)
                ));
            }
        }
        _ => findings.skip("RSS check: the target's process is not known"),
    }
    if let Some(url) = &ctx.redis {
        match (redis_before, redis_used_memory(url).await) {
            (Some(before), Some(after)) => {
                findings.figure("redis_growth_mib", mib(after.saturating_sub(before)));
                if !rules::grew_less_than_limit(before, after) {
                    findings.fail(format!(
                        "Redis used_memory grew from {} MiB to {} MiB (limit: less than 20 MiB)",
                        mib(before),
                        mib(after)
                    ));
                }
            }
            _ => findings.skip("Redis check: INFO memory did not answer"),
        }
    }
}

/// Redis's `used_memory`, through `INFO memory` on a plain connection to `url`
/// (`redis://host:port`, no authentication).
pub async fn redis_used_memory(url: &str) -> Option<u64> {
    let parsed = reqwest::Url::parse(url).ok()?;
    let host = parsed.host_str()?.to_owned();
    let port = parsed.port().unwrap_or(6379);
    tokio::time::timeout(REDIS_TIMEOUT, async move {
        let mut stream = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .ok()?;
        stream.write_all(b"INFO memory\r\n").await.ok()?;
        let mut text = Vec::new();
        let mut buf = [0_u8; 4096];
        // A bulk string: `$len\r\n…\r\n`; read until the field is there or the answer ends.
        loop {
            let n = stream.read(&mut buf).await.ok()?;
            if n == 0 {
                break;
            }
            text.extend_from_slice(buf.get(..n)?);
            if let Some(value) = used_memory(&String::from_utf8_lossy(&text)) {
                return Some(value);
            }
            if text.len() > 64 * 1024 {
                break;
            }
        }
        used_memory(&String::from_utf8_lossy(&text))
    })
    .await
    .ok()
    .flatten()
}

/// `used_memory:<bytes>` of an `INFO` text (the line complete).
pub fn used_memory(info: &str) -> Option<u64> {
    info.rsplit("\r\n")
        .skip(1)
        .find_map(|line| line.strip_prefix("used_memory:"))
        .and_then(|value| value.trim().parse().ok())
}
