//! Malformed JSON: a fixed list of broken bodies and wrong content types sent to the model
//! route. Pass when every one gets a 4xx whose body is JSON (an error object), none a 5xx,
//! a 2xx or no answer.

use std::time::Duration;

use super::super::report::Findings;
use super::super::target::Api;
use super::Ctx;

/// How long one case may take to be answered.
const CASE_TIMEOUT: Duration = Duration::from_secs(10);
/// Nesting depth of the deep-nesting case.
const DEPTH: usize = 100_000;

/// One broken request.
#[derive(Debug, Clone)]
pub struct Case {
    /// What is wrong with it.
    pub name: &'static str,
    /// Its `Content-Type`, if any.
    pub content_type: Option<&'static str>,
    /// Its body.
    pub body: Vec<u8>,
}

/// The cases for the model route of `api`; `valid` is a valid body of that route.
pub fn cases(api: Api, valid: &[u8]) -> Vec<Case> {
    const JSON: Option<&str> = Some("application/json");
    let case = |name, content_type, body: &[u8]| Case {
        name,
        content_type,
        body: body.to_vec(),
    };
    let deep = {
        let mut body = b"{\"prompt\":".to_vec();
        body.extend(std::iter::repeat_n(b'[', DEPTH));
        body.extend(std::iter::repeat_n(b']', DEPTH));
        body.push(b'}');
        body
    };
    let [wrong_types, huge_number, duplicate, invalid_utf8, nul]: [&[u8]; 5] = match api {
        Api::Lab => [
            br#"{"prompt":5,"max_tokens":"many"}"#,
            br#"{"prompt":"hi","max_tokens":1e400}"#,
            br#"{"prompt":"a","prompt":"b"}"#,
            b"{\"prompt\":\"\xff\xfe\xfd\"}",
            b"{\"prompt\":\"a\x00b\"}",
        ],
        Api::Openai => [
            br#"{"model":5,"messages":"many"}"#,
            br#"{"model":"default","messages":[{"role":"user","content":"hi"}],"max_tokens":1e400}"#,
            br#"{"model":"default","model":"other","messages":[{"role":"user","content":"hi"}]}"#,
            b"{\"model\":\"default\",\"messages\":[{\"role\":\"user\",\"content\":\"\xff\xfe\"}]}",
            b"{\"model\":\"default\",\"messages\":[{\"role\":\"user\",\"content\":\"a\x00b\"}]}",
        ],
    };
    let truncated = valid.get(..valid.len() / 2).unwrap_or_default();
    let mut trailing = valid.to_vec();
    trailing.extend_from_slice(b"}}garbage");
    let mut bom = b"\xef\xbb\xbf".to_vec();
    bom.extend_from_slice(valid);
    vec![
        case("empty body", JSON, b""),
        case("truncated", JSON, truncated),
        case("trailing garbage", JSON, &trailing),
        case("deep nesting", JSON, &deep),
        case("wrong types", JSON, wrong_types),
        case("huge number", JSON, huge_number),
        case("duplicate keys", JSON, duplicate),
        case("invalid UTF-8", JSON, invalid_utf8),
        case("NUL byte", JSON, nul),
        case("byte order mark", JSON, &bom),
        case("array", JSON, b"[1,2,3]"),
        case("null", JSON, b"null"),
        case("string", JSON, b"\"prompt\""),
        case("text/plain", Some("text/plain"), valid),
        case("no content type", None, valid),
        case(
            "form",
            Some("application/x-www-form-urlencoded"),
            b"prompt=hi",
        ),
        case(
            "multipart",
            Some("multipart/form-data; boundary=x"),
            b"--x\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\nhi\r\n--x--\r\n",
        ),
    ]
}

/// See the module documentation.
pub async fn run(ctx: &Ctx, findings: &mut Findings) {
    let valid = ctx.target.body("a valid prompt", None);
    let cases = cases(ctx.target.api, &valid);
    let client = ctx.client.start(ctx.rate);
    let url = ctx.target.url();
    let mut answers = serde_json::Map::new();
    for case in &cases {
        let mut request = ctx
            .client
            .http()
            .post(&url)
            .timeout(CASE_TIMEOUT)
            .body(case.body.clone());
        if let Some(content_type) = case.content_type {
            request = request.header(reqwest::header::CONTENT_TYPE, content_type);
        }
        let verdict = match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let body = response.bytes().await.unwrap_or_default();
                let json = serde_json::from_slice::<serde_json::Value>(&body)
                    .is_ok_and(|value| value.is_object());
                answers.insert(case.name.to_owned(), status.into());
                if !(400..500).contains(&status) {
                    Some(format!("{}: answered {status}, not a 4xx", case.name))
                } else if !json {
                    Some(format!(
                        "{}: the {status} body is not a JSON object",
                        case.name
                    ))
                } else {
                    None
                }
            }
            Err(error) if error.is_timeout() => {
                answers.insert(case.name.to_owned(), "timeout".into());
                Some(format!("{}: no answer within {CASE_TIMEOUT:?}", case.name))
            }
            Err(_) => {
                answers.insert(case.name.to_owned(), "closed".into());
                Some(format!(
                    "{}: the connection closed without an answer",
                    case.name
                ))
            }
        };
        if let Some(reason) = verdict {
            findings.fail(reason);
        }
    }
    let figures = client.stop().await;
    findings.fail_all(figures.problems(None));
    findings.client = Some(figures);
    findings.figure("cases", cases.len());
    findings.figure("answers", answers);
    super::still_live(ctx, findings).await;
}
