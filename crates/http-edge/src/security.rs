//! What every HTTP answer of the workspace's services says about itself to a browser:
//! [`headers`], the seed's security headers on every response, and [`CorsOrigins`], the
//! cross-origin access a service grants (none unless configured).
//!
//! The headers are set only when the handler did not set its own (a page may bring a
//! stricter policy); the Content-Security-Policy `default-src 'self'` means a page served
//! here loads its scripts and styles from the same origin, never inline.

use std::time::Duration;

use axum::http::header::{
    AUTHORIZATION, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, RETRY_AFTER,
    STRICT_TRANSPORT_SECURITY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderName, HeaderValue, Method};
use axum::response::Response;
use tower::util::MapResponseLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// The security headers and their values, as the seed sets them.
pub const SECURITY_HEADERS: [(HeaderName, &str); 5] = [
    (X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (X_FRAME_OPTIONS, "DENY"),
    (
        STRICT_TRANSPORT_SECURITY,
        "max-age=31536000; includeSubDomains",
    ),
    (CONTENT_SECURITY_POLICY, "default-src 'self'"),
    (REFERRER_POLICY, "strict-origin-when-cross-origin"),
];

/// The layer [`headers`] returns: one function over the response (one layer, not one per
/// header: the stack is cloned for every request).
pub type SecurityHeaders = MapResponseLayer<fn(Response) -> Response>;

/// A layer that puts [`SECURITY_HEADERS`] on every response that has not set them itself.
pub fn headers() -> SecurityHeaders {
    MapResponseLayer::new(add_security_headers as fn(Response) -> Response)
}

/// [`SECURITY_HEADERS`] on `response`, where it has not set them itself.
fn add_security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        headers
            .entry(name)
            .or_insert_with(|| HeaderValue::from_static(value));
    }
    response
}

/// How long a browser may keep a preflight's answer.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

/// The origins a service answers cross-origin requests from: none (the default: no CORS
/// header at all, so browsers keep other origins out), any (`*`: for public read-only
/// APIs, not for admin routes), or an exact list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CorsOrigins {
    /// No CORS headers.
    #[default]
    Off,
    /// `*`: every origin, without credentials.
    Any,
    /// These origins exactly (`scheme://host[:port]`).
    List(Vec<HeaderValue>),
}

impl CorsOrigins {
    /// A comma-separated list of origins (`https://app.example.com,http://localhost:3000`),
    /// `*` alone, or nothing; `Err` names the first origin that is not `http(s)://host[:port]`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let items: Vec<&str> = raw
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        if items.is_empty() {
            return Ok(Self::Off);
        }
        if items.contains(&"*") {
            return if items.len() == 1 {
                Ok(Self::Any)
            } else {
                Err("`*` allows every origin and cannot be listed with others".to_owned())
            };
        }
        let mut origins = Vec::with_capacity(items.len());
        for item in items {
            let value = origin(item).ok_or_else(|| {
                format!("`{item}` is not an origin (`http://host[:port]` or `https://host[:port]`)")
            })?;
            if !origins.contains(&value) {
                origins.push(value);
            }
        }
        Ok(Self::List(origins))
    }

    /// The CORS layer, or `None` when off. Allowed: `GET`, `POST`, `OPTIONS`; the request
    /// headers `content-type`, `authorization`, `x-request-id`; exposed: `x-request-id`,
    /// `retry-after`, `x-served-by`, `x-fallback-tier`. Credentials (cookies) are never
    /// allowed.
    pub fn layer(&self) -> Option<CorsLayer> {
        let allow = match self {
            Self::Off => return None,
            Self::Any => AllowOrigin::any(),
            Self::List(origins) => AllowOrigin::list(origins.iter().cloned()),
        };
        Some(
            CorsLayer::new()
                .allow_origin(allow)
                .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
                .allow_headers([
                    CONTENT_TYPE,
                    AUTHORIZATION,
                    HeaderName::from_static("x-request-id"),
                ])
                .expose_headers([
                    HeaderName::from_static("x-request-id"),
                    RETRY_AFTER,
                    HeaderName::from_static("x-served-by"),
                    HeaderName::from_static("x-fallback-tier"),
                ])
                .max_age(PREFLIGHT_MAX_AGE),
        )
    }
}

/// `item` as an origin header value, when it is `http(s)://host[:port]` with nothing after.
fn origin(item: &str) -> Option<HeaderValue> {
    let rest = item
        .strip_prefix("https://")
        .or_else(|| item.strip_prefix("http://"))?;
    let (host, port) = match rest.strip_prefix('[') {
        // An IPv6 literal: `[::1]` or `[::1]:8080`.
        Some(v6) => {
            let (addr, after) = v6.split_once(']')?;
            if addr.is_empty() || !addr.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
                return None;
            }
            let port = if after.is_empty() {
                ""
            } else {
                after.strip_prefix(':')?
            };
            ("[v6]", port)
        }
        None => match rest.rsplit_once(':') {
            Some((host, port)) => (host, port),
            None => (rest, ""),
        },
    };
    let host_ok = host == "[v6]"
        || (!host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'));
    let port_ok = port.is_empty() || port.parse::<u16>().is_ok_and(|p| p > 0);
    if !(host_ok && port_ok) {
        return None;
    }
    HeaderValue::from_str(item).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_parse_to_off_any_or_an_exact_list() {
        assert_eq!(CorsOrigins::parse(""), Ok(CorsOrigins::Off));
        assert_eq!(CorsOrigins::parse(" , "), Ok(CorsOrigins::Off));
        assert_eq!(CorsOrigins::parse("*"), Ok(CorsOrigins::Any));
        assert_eq!(
            CorsOrigins::parse("https://app.example.com, http://localhost:3000,http://[::1]:8080"),
            Ok(CorsOrigins::List(vec![
                HeaderValue::from_static("https://app.example.com"),
                HeaderValue::from_static("http://localhost:3000"),
                HeaderValue::from_static("http://[::1]:8080"),
            ]))
        );
        assert!(CorsOrigins::Off.layer().is_none());
        assert!(CorsOrigins::Any.layer().is_some());
    }

    #[test]
    fn anything_but_an_origin_is_refused_naming_it() {
        for bad in [
            "example.com",
            "https://example.com/",
            "https://example.com/path",
            "ftp://example.com",
            "https://",
            "https://user@example.com",
            "https://example.com:0",
            "https://example.com:99999",
            "https://exa mple.com",
            "http://[::1",
            "http://[zz]",
            "*, https://example.com",
        ] {
            let error = CorsOrigins::parse(bad).unwrap_err();
            assert!(error.contains('`'), "{bad}: {error}");
        }
    }
}

#[cfg(test)]
mod layer_tests {
    use axum::Router;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use axum::response::IntoResponse;
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn every_answer_carries_the_headers_and_a_handler_may_bring_its_own() {
        let app = Router::new()
            .route("/", get(|| async { "hi" }))
            .route(
                "/page",
                get(|| async {
                    ([(CONTENT_SECURITY_POLICY, "default-src 'none'")], "page").into_response()
                }),
            )
            .layer(headers());
        for (path, status) in [("/", StatusCode::OK), ("/missing", StatusCode::NOT_FOUND)] {
            let request = Request::get(path).body(Body::empty()).unwrap();
            let response = app.clone().oneshot(request).await.unwrap();
            assert_eq!(response.status(), status);
            for (name, value) in &SECURITY_HEADERS {
                assert_eq!(response.headers()[name], *value, "{path}: {name}");
            }
        }
        let request = Request::get("/page").body(Body::empty()).unwrap();
        let response = app.oneshot(request).await.unwrap();
        assert_eq!(
            response.headers()[CONTENT_SECURITY_POLICY],
            "default-src 'none'"
        );
        assert_eq!(response.headers()[X_FRAME_OPTIONS], "DENY");
    }
}
