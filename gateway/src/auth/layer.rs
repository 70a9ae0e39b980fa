//! The authentication layer (after CORS, before the rate limit): public routes pass
//! untouched; with `AUTH_MODE=none` every other request passes with the anonymous
//! [`Identity`] (no allocation beyond it); otherwise the caller is authenticated, the
//! route's scope checked, and the [`Identity`] put in the request's extensions — or the
//! request answered 401/403 in the API's error shape. Refusals are logged at DEBUG only
//! (a flood of bad tokens must not flood the logs), by reason, never with the credential.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::{Authenticator, Identity, RouteGroup};
use crate::layers::{Api, RequestId};
use crate::metrics::Metrics;

/// The layer's state: who checks, and where refusals are counted.
#[derive(Clone)]
pub struct AuthState {
    /// The configured authenticator.
    pub auth: Arc<Authenticator>,
    /// `gateway_auth_refused_total` lives here.
    pub metrics: Arc<Metrics>,
}

/// Who an authenticated request's answer was for (a JWT's `sub` or a key's owner, never the
/// credential), in the response's extensions for the access log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerName(pub Cow<'static, str>);

/// Authenticates and authorises `req`, or answers the refusal.
pub async fn authenticate(
    State(AuthState { auth, metrics }): State<AuthState>,
    mut req: Request,
    next: Next,
) -> Response {
    let group = RouteGroup::of(req.uri().path());
    if group == RouteGroup::Public {
        return next.run(req).await;
    }
    let client = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    if !auth.enabled() {
        req.extensions_mut().insert(Identity::anonymous(client));
        return next.run(req).await;
    }
    let decided = auth
        .authenticate(req.headers(), auth.now_unix_s())
        .and_then(|identity| Authenticator::authorize(&identity, group).map(|()| identity));
    match decided {
        Ok(mut identity) => {
            identity.client = client;
            let caller = CallerName(identity.subject.clone());
            req.extensions_mut().insert(identity);
            let mut response = next.run(req).await;
            response.extensions_mut().insert(caller);
            response
        }
        Err(refusal) => {
            metrics.auth_refused(refusal.reason());
            tracing::debug!(
                reason = refusal.reason(),
                path = req.uri().path(),
                "authentication refused"
            );
            refusal.into_response_for(Api::of(&req), req.extensions().get::<RequestId>())
        }
    }
}
