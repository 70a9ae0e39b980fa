//! Header bombs: one 400 KB header, 10,000 small headers, a 1 MB total in 64 headers. Pass
//! when each is refused (431, 400, 413, or the connection closed) promptly and the service
//! stays healthy.

use std::time::Duration;

use tokio::time::Instant;

use super::super::raw;
use super::super::report::Findings;
use super::super::rules::Ending;
use super::Ctx;

/// How long a refusal may take.
const PROMPT: Duration = Duration::from_secs(5);
/// The statuses that count as a refusal.
const REFUSALS: [u16; 3] = [400, 413, 431];

/// One bomb: its name and its headers (without the request line and `Host`).
pub fn bombs() -> Vec<(&'static str, String)> {
    let big = format!("X-Big: {}\r\n", "a".repeat(400 * 1024));
    let many: String = (0..10_000).map(|i| format!("X-H{i}: v\r\n")).collect();
    let total: String = (0..64)
        .map(|i| format!("X-T{i}: {}\r\n", "b".repeat(16 * 1024)))
        .collect();
    vec![
        ("one 400 KB header", big),
        ("10,000 headers", many),
        ("1 MB in 64 headers", total),
    ]
}

/// See the module documentation.
pub async fn run(ctx: &Ctx, findings: &mut Findings) {
    let client = ctx.client.start(ctx.rate);
    let mut answers = serde_json::Map::new();
    for (name, headers) in bombs() {
        let request = format!(
            "GET /live HTTP/1.1\r\nHost: {}\r\n{headers}\r\n",
            ctx.target.host
        );
        let ending = send(ctx, request.as_bytes()).await;
        let (shown, problem) = match ending {
            Ending::Answered(status, after) if REFUSALS.contains(&status) && after <= PROMPT => {
                (status.to_string(), None)
            }
            Ending::Answered(status, _) if REFUSALS.contains(&status) => (
                status.to_string(),
                Some(format!("{name}: refused, but after more than {PROMPT:?}")),
            ),
            Ending::Answered(status, _) => (
                status.to_string(),
                Some(format!("{name}: answered {status}, not refused")),
            ),
            Ending::Closed(after) if after <= PROMPT => ("closed".to_owned(), None),
            Ending::Closed(_) => (
                "closed late".to_owned(),
                Some(format!("{name}: closed after more than {PROMPT:?}")),
            ),
            Ending::StillOpen => (
                "no answer".to_owned(),
                Some(format!(
                    "{name}: neither refused nor closed within {PROMPT:?}"
                )),
            ),
            Ending::NotOpened => (
                "connect failed".to_owned(),
                Some(format!("{name}: could not connect")),
            ),
        };
        answers.insert(name.to_owned(), shown.into());
        if let Some(problem) = problem {
            findings.fail(problem);
        }
    }
    let figures = client.stop().await;
    findings.fail_all(figures.problems(None));
    findings.client = Some(figures);
    findings.figure("answers", answers);
    super::still_live(ctx, findings).await;
}

/// Sends `request` and waits for the answer or the close, all within [`PROMPT`] (and a
/// little more, to tell late from never).
async fn send(ctx: &Ctx, request: &[u8]) -> Ending {
    let Ok(mut stream) = raw::connect(ctx.target.addr).await else {
        return Ending::NotOpened;
    };
    let started = Instant::now();
    let deadline = started + PROMPT * 2;
    match raw::write_within(&mut stream, request, PROMPT).await {
        // Written, or not yet all (a server that stopped reading): wait for its answer.
        Ok(_) => raw::await_ending(&mut stream, started, deadline).await,
        // A reset while writing may still leave the answer readable.
        Err(_) => match raw::await_ending(&mut stream, started, deadline).await {
            Ending::StillOpen => Ending::Closed(started.elapsed()),
            other => other,
        },
    }
}
