//! Layer 6: the caller's rate limit on the model routes (`/generate`, `/v1/*`), before the
//! body is read: a refused request costs one limiter check and nothing else — it reaches no
//! upstream and no breaker. Every answer of a limited route carries `X-RateLimit-Limit`,
//! `-Remaining` and `-Reset`; a refusal is 429 with `Retry-After` in the API's error shape.
//! When the caller's tier limits tokens, a [`TokenCharge`] in the request's extensions lets
//! the handler charge what the answer used.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;

use super::{Api, ErrorKind, RequestId};
use crate::auth::{Identity, RouteGroup};
use crate::ratelimit::{Caller, Limits, Refusal};
use crate::state::Gateway;

/// Charges the tokens an answer used to its caller's tokens allowance.
#[derive(Clone)]
pub struct TokenCharge {
    limits: Arc<Limits>,
    caller: Caller,
}

impl TokenCharge {
    /// Charges `tokens` in the background (the answer is not held up by the store).
    pub fn charge(self, tokens: u32) {
        tokio::spawn(async move { self.limits.charge_tokens(&self.caller, tokens).await });
    }
}

/// Admits the request within its caller's allowance, or answers 429.
pub async fn rate_limit(
    State(gateway): State<Arc<Gateway>>,
    mut req: Request,
    next: Next,
) -> Response {
    let limits = &gateway.limits;
    if !limits.active() || RouteGroup::of(req.uri().path()) != RouteGroup::Model {
        return next.run(req).await;
    }
    let caller = req
        .extensions()
        .get::<Identity>()
        .and_then(|identity| limits.caller(identity));
    let Some(caller) = caller else {
        return next.run(req).await;
    };
    let admission = limits.admit(&caller).await;
    if let Some(refusal) = admission.refusal() {
        gateway.metrics.rate_limited(&caller.tier, refusal.limit());
        let request_id = req.extensions().get::<RequestId>();
        let mut response = refused(Api::of(&req), refusal, &caller.tier, request_id);
        admission.write_headers(response.headers_mut());
        return response;
    }
    if limits.limits_tokens(&caller) {
        req.extensions_mut().insert(TokenCharge {
            limits: Arc::clone(limits),
            caller,
        });
    }
    let mut response = next.run(req).await;
    admission.write_headers(response.headers_mut());
    response
}

/// 429 in the API's shape.
fn refused(api: Api, refusal: Refusal, tier: &str, request_id: Option<&RequestId>) -> Response {
    let code = match refusal {
        Refusal::Unavailable => "rate_limiter_unavailable",
        Refusal::Requests | Refusal::Tokens => "rate_limit_exceeded",
    };
    let kind = ErrorKind {
        lab: refusal.as_str(),
        openai: "rate_limit_error",
        code,
    };
    api.refuse(
        StatusCode::TOO_MANY_REQUESTS,
        kind,
        refusal.message(tier),
        request_id,
    )
}
