//! Label values that are bounded by construction: an HTTP status as a `'static` string (no
//! formatting on the request path, and no series per odd status), and the `error_code` of
//! an upstream failure.

use crate::upstream::UpstreamError;

/// `error_code` of a failure that carried no HTTP status (a connection failure, a timeout,
/// a malformed answer).
pub const NO_STATUS: &str = "none";

/// `model` of `llm_tokens_processed_total` for a model no route is named after.
pub const OTHER_MODEL: &str = "other";

/// The label of an HTTP status: the statuses the gateway and its upstreams use as their
/// three digits, any other as its class (`2xx`… `5xx`, which `=~"5.."` still matches),
/// and a number outside 100..=599 as `other`.
pub fn status_label(status: u16) -> &'static str {
    match status {
        200 => "200",
        201 => "201",
        204 => "204",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        408 => "408",
        409 => "409",
        413 => "413",
        415 => "415",
        422 => "422",
        429 => "429",
        500 => "500",
        501 => "501",
        502 => "502",
        503 => "503",
        504 => "504",
        other => status_class(other),
    }
}

/// The class of a status no [`status_label`] arm names.
fn status_class(status: u16) -> &'static str {
    match status / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        5 => "5xx",
        _ => "other",
    }
}

/// The `error_code` of a failed try: the upstream's HTTP status, or [`NO_STATUS`].
pub fn error_code(error: &UpstreamError) -> &'static str {
    match error {
        UpstreamError::Status { status, .. } => status_label(*status),
        UpstreamError::Connect(_) | UpstreamError::Timeout(_) | UpstreamError::Malformed(_) => {
            NO_STATUS
        }
    }
}
