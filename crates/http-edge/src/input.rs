//! Reading request bodies so that every bad input becomes a 4xx that names the field.
//!
//! [`JsonBody`] checks the content type (415), parses (400 for broken JSON, 422 for a wrong
//! type or a missing field, with the field's path from `serde_path_to_error`), and hands
//! back a [`BadInput`] that each API renders in its own error shape.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use llm_api::openai::OpenAiError;
use llm_api::{ErrorBody, FieldError};
use serde::de::DeserializeOwned;

/// The largest body read, in bytes.
pub const BODY_LIMIT: usize = 1024 * 1024;

/// A JSON body of type `T`.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq)]
pub struct BadInput {
    /// 400, 413, 415 or 422.
    pub status: StatusCode,
    /// `invalid_json`, `validation_error`, `unsupported_media_type`, `payload_too_large`.
    pub kind: &'static str,
    /// The field to blame and why.
    pub error: FieldError,
}

impl BadInput {
    /// A 422 for a value that parsed but is not acceptable.
    pub fn invalid(error: FieldError) -> Self {
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            kind: "validation_error",
            error,
        }
    }

    /// A 413 for a body over `limit` bytes.
    pub fn too_large(limit: usize) -> Self {
        Self {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            kind: "payload_too_large",
            error: FieldError::new("body", format!("must be at most {limit} bytes")),
        }
    }

    /// A 408 for a body that did not arrive whole within `deadline`.
    pub fn too_slow(deadline: std::time::Duration) -> Self {
        Self {
            status: StatusCode::REQUEST_TIMEOUT,
            kind: "request_timeout",
            error: FieldError::new(
                "body",
                format!("must arrive within {} ms", deadline.as_millis()),
            ),
        }
    }

    /// A 415 for a body that does not say it is JSON.
    pub fn not_json() -> Self {
        Self {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            kind: "unsupported_media_type",
            error: FieldError::new("content-type", "must be application/json"),
        }
    }

    /// Rendered in OpenAI's error shape, for `/v1`.
    pub fn openai(self) -> Response {
        let mut body = OpenAiError::invalid_request(&self.error);
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            body.error.kind = self.kind.to_owned();
            body.error.code = Some(self.kind.to_owned());
        }
        if self.error.field == "body" {
            body.error.param = None;
        }
        with_retry_after((self.status, axum::Json(body)).into_response())
    }

    /// Rendered in the lab's error shape, carrying the request's id when given.
    pub fn lab(self, request_id: Option<String>) -> Response {
        let mut body = ErrorBody::new(self.kind, self.error.message, Some(self.error.field));
        body.request_id = request_id;
        with_retry_after((self.status, axum::Json(body)).into_response())
    }
}

/// A 503 (no room: try again) says when: `Retry-After: 1`.
fn with_retry_after(mut response: Response) -> Response {
    if response.status() == StatusCode::SERVICE_UNAVAILABLE {
        response.headers_mut().insert(
            header::RETRY_AFTER,
            axum::http::HeaderValue::from_static("1"),
        );
    }
    response
}

/// Rendered in the lab's error shape, for `/generate`.
impl IntoResponse for BadInput {
    fn into_response(self) -> Response {
        self.lab(None)
    }
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = BadInput;

    async fn from_request(req: Request, state: &S) -> Result<Self, BadInput> {
        if !is_json(req.headers()) {
            return Err(BadInput::not_json());
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|_| BadInput::too_large(BODY_LIMIT))?;
        parse(&bytes).map(JsonBody)
    }
}

/// Whether `headers` say the body is JSON (`application/json` or `…+json`).
pub fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime == "application/json" || mime.ends_with("+json")
        })
        .unwrap_or(false)
}

/// A body already read, as a `T`: 415 unless `headers` say JSON, then [`parse`].
pub fn read_json<T: DeserializeOwned>(headers: &HeaderMap, bytes: &[u8]) -> Result<T, BadInput> {
    if !is_json(headers) {
        return Err(BadInput::not_json());
    }
    parse(bytes)
}

/// Parses `bytes` as a `T`, naming the field at fault.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, BadInput> {
    // Broken JSON first (400), then the shape: serde would read a struct from an array.
    serde_json::from_slice::<serde::de::IgnoredAny>(bytes).map_err(|e| from_serde(e, "."))?;
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(BadInput::invalid(FieldError::new(
            "body",
            "must be a JSON object",
        )));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|error| {
        let path = error.path().to_string();
        from_serde(error.into_inner(), &path)
    })?;
    de.end().map_err(|error| from_serde(error, "."))?;
    Ok(value)
}

/// Classifies a serde error found at `path` (`.` for the root).
fn from_serde(error: serde_json::Error, path: &str) -> BadInput {
    if error.is_syntax() || error.is_eof() || error.is_io() {
        return BadInput {
            status: StatusCode::BAD_REQUEST,
            kind: "invalid_json",
            error: FieldError::new("body", format!("is not valid JSON: {error}")),
        };
    }
    let message = error.to_string();
    let field = match (missing_field(&message), path) {
        (Some(name), ".") => name.to_owned(),
        (Some(name), path) => format!("{path}.{name}"),
        (None, ".") => "body".to_owned(),
        (None, path) => path.to_owned(),
    };
    BadInput::invalid(FieldError::new(field, strip_position(&message)))
}

/// `missing field `prompt`` → `prompt`.
fn missing_field(message: &str) -> Option<&str> {
    message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
}

/// Drops serde's " at line 1 column 20", which says nothing to an API client.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use llm_api::generate::GenerateRequest;
    use llm_api::openai::ChatCompletionRequest;

    use super::*;

    fn field<T: DeserializeOwned + std::fmt::Debug>(body: &str) -> (StatusCode, String) {
        let e = parse::<T>(body.as_bytes()).unwrap_err();
        (e.status, e.error.field)
    }

    #[test]
    fn broken_json_is_400_on_the_body() {
        assert_eq!(
            field::<GenerateRequest>("{\"prompt\": "),
            (StatusCode::BAD_REQUEST, "body".into())
        );
        assert_eq!(
            field::<GenerateRequest>("{} trailing"),
            (StatusCode::BAD_REQUEST, "body".into())
        );
    }

    #[test]
    fn wrong_types_and_missing_fields_are_422_on_the_field() {
        let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;
        assert_eq!(
            field::<GenerateRequest>(r#"{"prompt": 5}"#),
            (unprocessable, "prompt".into())
        );
        assert_eq!(
            field::<GenerateRequest>(r#"{"prompt": "x", "max_tokens": -1}"#),
            (unprocessable, "max_tokens".into())
        );
        assert_eq!(
            field::<GenerateRequest>(r#"{"max_tokens": 3}"#),
            (unprocessable, "prompt".into())
        );
        assert_eq!(
            field::<GenerateRequest>("[]"),
            (unprocessable, "body".into())
        );
        assert_eq!(
            field::<ChatCompletionRequest>(r#"{"model":"m","messages":[{"content":"x"}]}"#),
            (unprocessable, "messages[0].role".into())
        );
    }

    #[test]
    fn messages_do_not_leak_parser_positions() {
        let e = parse::<GenerateRequest>(br#"{"prompt": 5}"#).unwrap_err();
        assert!(!e.error.message.contains("line"), "{}", e.error.message);
    }

    #[test]
    fn a_body_read_already_is_json_only_when_its_headers_say_so() {
        let mut headers = HeaderMap::new();
        let body = br#"{"prompt": "hi"}"#;
        let refused = read_json::<GenerateRequest>(&headers, body).unwrap_err();
        assert_eq!(refused, BadInput::not_json());
        assert_eq!(refused.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        for mime in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/vnd.x+json",
        ] {
            headers.insert(header::CONTENT_TYPE, mime.parse().unwrap());
            let request = read_json::<GenerateRequest>(&headers, body).unwrap();
            assert_eq!(request.prompt, "hi", "{mime}");
        }
        let broken = read_json::<GenerateRequest>(&headers, b"{").unwrap_err();
        assert_eq!(broken.status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn size_and_deadline_refusals_say_their_bound() {
        let large = BadInput::too_large(1024);
        assert_eq!(large.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(large.error.message, "must be at most 1024 bytes");
        let slow = BadInput::too_slow(std::time::Duration::from_secs(10));
        assert_eq!(slow.status, StatusCode::REQUEST_TIMEOUT);
        assert_eq!(slow.kind, "request_timeout");
        assert_eq!(slow.error.message, "must arrive within 10000 ms");
    }
}
