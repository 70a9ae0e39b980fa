//! Model routes: each public model name has an ordered list of targets (a pool of discovered
//! instances, or an OpenAI-compatible endpoint) as the live tiers of its own fallback chain;
//! `default` serves every name without a route of its own.
//!
//! [`Routes::serve`] runs a request through its route, and once more through the route's
//! `context_fallback` when a target said the prompt exceeds its context.
//! [`Routes::model_label`] names the model of a served request in the metrics with a
//! route's name, never with a client's own string.

use std::collections::BTreeMap;
use std::sync::Arc;

use resilience_core::fallback::{FallbackChain, FallbackError, Served};
use resilience_core::policy::follow_context_fallback;

use crate::answer::Answer;
use crate::config::DEFAULT_ROUTE;
use crate::metrics::OTHER_MODEL;
use crate::pool::GatewayRequest;

/// One public model name and its chain.
pub struct Route {
    /// The public model name.
    pub name: String,
    /// Its targets (primary, then secondary in order), cache, template.
    pub chain: FallbackChain<GatewayRequest, Answer>,
    /// The route tried when a target answers `context_length_exceeded`.
    pub context_fallback: Option<String>,
}

/// The `model` label of a served request: the name of the route that served it (a
/// configured model, or `default`), or [`OTHER_MODEL`] for a model no route is named after.
/// Cloning it clones an `Arc`, not a string.
#[derive(Clone)]
pub enum ModelLabel {
    /// A configured route's name.
    Route(Arc<Route>),
    /// A model the configuration does not know.
    Other,
}

impl ModelLabel {
    /// The label value.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Route(route) => &route.name,
            Self::Other => OTHER_MODEL,
        }
    }
}

impl std::fmt::Debug for ModelLabel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq for ModelLabel {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for ModelLabel {}

/// Every route, `default` always among them.
pub struct Routes {
    by_name: BTreeMap<String, Arc<Route>>,
    default: Arc<Route>,
}

impl Routes {
    /// The routes; fails when none is named `default` (configuration always adds it).
    pub fn new(routes: Vec<Route>) -> anyhow::Result<Self> {
        let by_name: BTreeMap<String, Arc<Route>> = routes
            .into_iter()
            .map(|r| (r.name.clone(), Arc::new(r)))
            .collect();
        let default = by_name
            .get(DEFAULT_ROUTE)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("no `{DEFAULT_ROUTE}` route"))?;
        Ok(Self { by_name, default })
    }

    /// The route of `model`: its own, else `default`.
    pub fn for_model(&self, model: Option<&str>) -> &Arc<Route> {
        model
            .and_then(|m| self.by_name.get(m))
            .unwrap_or(&self.default)
    }

    /// Every route by name.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Route>> {
        self.by_name.values()
    }

    /// The `model` label of a request for `requested` that `served` answered (the route
    /// [`Self::serve`] returned): `served`'s name, unless the client named a model no route
    /// has and `default` served it, which is [`ModelLabel::Other`]. So the label's values are
    /// the routes' names and `other`, whatever clients send.
    pub fn model_label(&self, served: &Arc<Route>, requested: Option<&str>) -> ModelLabel {
        match requested {
            Some(model) if served.name == DEFAULT_ROUTE && !self.by_name.contains_key(model) => {
                ModelLabel::Other
            }
            _ => ModelLabel::Route(Arc::clone(served)),
        }
    }

    /// Runs `req` through the route of its model; when a target refused the prompt as too
    /// long for its context and the route names a `context_fallback`, through that route
    /// (once: a fallback's own fallback is not followed). Returns the route that served.
    pub async fn serve(
        &self,
        req: &GatewayRequest,
    ) -> (Arc<Route>, Result<Served<Answer>, FallbackError>) {
        let route = Arc::clone(self.for_model(req.payload.model()));
        self.run(route, req, false).await
    }

    /// Runs `req` — the rest of a stream that broke — through the live targets of `route`
    /// (the route that served the stream) in order, never its cache or template, and like
    /// [`Self::serve`] once more through its `context_fallback` when a target said the
    /// prompt (with the prefill) exceeds its context.
    pub async fn continue_on(
        &self,
        route: &Arc<Route>,
        req: &GatewayRequest,
    ) -> (Arc<Route>, Result<Served<Answer>, FallbackError>) {
        self.run(Arc::clone(route), req, true).await
    }

    /// `req` through `route`'s chain (its live tiers only when `live_only`), and through its
    /// `context_fallback` when the policy says so.
    async fn run(
        &self,
        route: Arc<Route>,
        req: &GatewayRequest,
        live_only: bool,
    ) -> (Arc<Route>, Result<Served<Answer>, FallbackError>) {
        let execute = |route: &Arc<Route>| {
            let route = Arc::clone(route);
            async move {
                if live_only {
                    route.chain.execute_live(req).await
                } else {
                    route.chain.execute(req).await
                }
            }
        };
        let result = execute(&route).await;
        let larger_exists = route
            .context_fallback
            .as_deref()
            .is_some_and(|name| self.by_name.contains_key(name));
        if let Err(error) = &result
            && follow_context_fallback(error, larger_exists, false)
            && let Some(larger) = route
                .context_fallback
                .as_deref()
                .and_then(|name| self.by_name.get(name))
        {
            tracing::info!(request_id = %req.request_id, from = %route.name, to = %larger.name,
                "context length exceeded; trying the larger-context route");
            let larger = Arc::clone(larger);
            let result = match (execute(&larger).await, result) {
                // Nothing answered there either: the first route's refusal stays among the
                // causes, so the client still learns of it when no later attempt was made.
                (
                    Err(FallbackError::AllTiersFailed(mut all)),
                    Err(FallbackError::Rejected(refusal)),
                ) => {
                    all.failures.insert(0, refusal);
                    Err(FallbackError::AllTiersFailed(all))
                }
                (larger_result, _) => larger_result,
            };
            return (larger, result);
        }
        (route, result)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use llm_api::generate::GenerateRequest;
    use resilience_core::fallback::{
        BoxFuture, FallbackProvider, ProviderError, Tier, TierFailure, TierKind,
    };
    use resilience_core::policy::{AttemptFailure, FailureClass};

    use super::*;
    use crate::upstream::Payload;

    /// A target that always fails with the same error.
    struct Failing(ProviderError);

    impl FallbackProvider<GatewayRequest, Answer> for Failing {
        fn name(&self) -> &str {
            "target"
        }

        fn call<'a>(
            &'a self,
            _: &'a GatewayRequest,
        ) -> BoxFuture<'a, Result<Answer, ProviderError>> {
            let error = self.0.clone();
            Box::pin(async move { Err(error) })
        }
    }

    fn route(name: &str, error: ProviderError, fallback: Option<&str>) -> Route {
        let tier = Tier::new(TierKind::Primary).with_provider(Failing(error));
        Route {
            name: name.to_owned(),
            chain: FallbackChain::new([tier]).unwrap(),
            context_fallback: fallback.map(str::to_owned),
        }
    }

    fn too_long() -> ProviderError {
        ProviderError::Client(Box::new(AttemptFailure {
            status: Some(400),
            code: Some("context_length_exceeded".to_owned()),
            ..AttemptFailure::new("small-1", FailureClass::ContextTooLong, "too long")
        }))
    }

    fn request() -> GatewayRequest {
        let mut generate = GenerateRequest::new("a very long prompt");
        generate.model = Some("small".to_owned());
        GatewayRequest::new(Payload::Generate(generate), "r", Duration::from_secs(5))
    }

    #[tokio::test]
    async fn a_context_refusal_goes_to_the_larger_route_and_stays_among_the_causes() {
        let routes = Routes::new(vec![
            route("default", ProviderError::NoneAvailable, None),
            route("small", too_long(), Some("large")),
            route("large", ProviderError::NoneAvailable, None),
        ])
        .unwrap();
        let (served_by, result) = routes.serve(&request()).await;
        assert_eq!(served_by.name, "large");
        let Err(error @ FallbackError::AllTiersFailed(_)) = result else {
            panic!("nothing answered: {result:?}");
        };
        let last = error.last_attempt().expect("the refusal is kept");
        assert_eq!(last.class, FailureClass::ContextTooLong);
        assert_eq!(last.target, "small-1");
    }

    #[tokio::test]
    async fn another_refusal_or_no_fallback_route_stays_on_the_first_route() {
        let refused = ProviderError::Client(Box::new(AttemptFailure::new(
            "small-1",
            FailureClass::Refused,
            "bad max_tokens",
        )));
        let routes = Routes::new(vec![
            route("default", ProviderError::NoneAvailable, None),
            route("small", refused, Some("large")),
            route("large", ProviderError::NoneAvailable, None),
        ])
        .unwrap();
        let (served_by, result) = routes.serve(&request()).await;
        assert_eq!(served_by.name, "small");
        assert!(matches!(
            result,
            Err(FallbackError::Rejected(TierFailure { .. }))
        ));
    }

    /// A cache tier that always answers.
    struct Cached;

    impl FallbackProvider<GatewayRequest, Answer> for Cached {
        fn name(&self) -> &str {
            "cache"
        }

        fn call<'a>(
            &'a self,
            _: &'a GatewayRequest,
        ) -> BoxFuture<'a, Result<Answer, ProviderError>> {
            Box::pin(async move {
                Ok(Answer::Whole(crate::answer::WholeAnswer::text(
                    "cached".to_owned(),
                    "m".to_owned(),
                    1,
                    "cache".to_owned(),
                )))
            })
        }
    }

    #[tokio::test]
    async fn a_continuation_asks_the_live_targets_only_and_follows_the_context_fallback() {
        let mut with_cache = route("default", ProviderError::NoneAvailable, None);
        with_cache.chain = FallbackChain::new([
            Tier::new(TierKind::Primary).with_provider(Failing(ProviderError::NoneAvailable)),
            Tier::new(TierKind::Cache).with_provider(Cached),
        ])
        .unwrap();
        let routes = Routes::new(vec![
            with_cache,
            route("small", too_long(), Some("large")),
            route("large", ProviderError::NoneAvailable, None),
        ])
        .unwrap();
        let req = request();
        let default = Arc::clone(routes.for_model(Some("default")));
        assert!(
            routes
                .run(Arc::clone(&default), &req, false)
                .await
                .1
                .is_ok(),
            "the cache answers a request"
        );
        let (_, continued) = routes.continue_on(&default, &req).await;
        assert!(
            matches!(continued, Err(FallbackError::AllTiersFailed(_))),
            "never the rest of an answer: {continued:?}"
        );
        let small = Arc::clone(routes.for_model(Some("small")));
        let (served_by, _) = routes.continue_on(&small, &req).await;
        assert_eq!(
            served_by.name, "large",
            "a prefill too long goes to the larger route"
        );
    }

    #[tokio::test]
    async fn the_model_label_is_a_route_name_or_other_never_the_clients_string() {
        let routes = Routes::new(vec![
            route("default", ProviderError::NoneAvailable, None),
            route("small", too_long(), Some("large")),
            route("large", ProviderError::NoneAvailable, None),
        ])
        .unwrap();
        let label = |requested: Option<&str>| {
            let served = routes.for_model(requested);
            routes.model_label(served, requested).as_str().to_owned()
        };
        assert_eq!(label(Some("small")), "small");
        assert_eq!(label(Some("default")), "default");
        assert_eq!(label(None), "default", "no model named: the lab's default");
        assert_eq!(label(Some("gpt-made-up-by-a-client")), "other");
        assert_eq!(label(Some("")), "other");
        // The route that answered after a context fallback names the request.
        let (served, _) = routes.serve(&request()).await;
        assert_eq!(routes.model_label(&served, Some("small")).as_str(), "large");
    }
}
