//! Model routes (`[routes.<model>]`): their targets checked, API keys read once, and the
//! breaker sections a target sets for its own breaker (an endpoint's breaker, or the
//! instance breakers of a pool).

use std::collections::BTreeMap;

use serde::Deserialize;

use resilience_core::policy::continuation::PrefillMode;

use super::breaker::BreakerSection;
use super::validate::{Env, Problems};
use crate::pool::EndpointSpec;
use crate::upstream::{ApiKey, Protocol};

/// The route every unrouted model name takes.
pub const DEFAULT_ROUTE: &str = "default";

/// `[routes.<model>]`: the targets of one public model name, tried in order.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RouteSection {
    /// The first answers; the others are the secondary tier, in order.
    pub targets: Vec<TargetSection>,
    /// The route a request goes to when a target says its prompt exceeds the context
    /// (`context_length_exceeded`).
    #[serde(default)]
    pub context_fallback: Option<String>,
}

/// One target: `{ pool = "primary" }`, or an OpenAI-compatible endpoint
/// `{ url = "http://127.0.0.1:11434/v1", model = "llama3.1:8b", api_key_env = "KEY" }`;
/// either may add `breaker = { … }` for its own breaker.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TargetSection {
    /// The discovered instances of this tier (`primary`, `secondary`…).
    pub pool: Option<String>,
    /// An endpoint's base URL (up to `/v1`).
    pub url: Option<String>,
    /// The endpoint's model name.
    pub model: Option<String>,
    /// The environment variable holding the endpoint's API key.
    pub api_key_env: Option<String>,
    /// The endpoint's id in metrics and `x-served-by` (default `model@url`).
    pub name: Option<String>,
    /// The endpoint's breaker, or the instance breakers of the pool, over
    /// `[instance_breaker]` (and `[pools.<tier>.instance_breaker]`).
    pub breaker: Option<BreakerSection>,
    /// Whether the target continues an assistant prefill (`true`, `false` or `"auto"`):
    /// how a broken stream's rest is asked of it. Default `true` for a pool, `false` for an
    /// endpoint.
    pub prefill: Option<PrefillSetting>,
}

/// `prefill = true | false | "auto"` as written.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum PrefillSetting {
    /// `true` or `false`.
    Flag(bool),
    /// `"auto"` (any other word is a problem).
    Word(String),
}

impl PrefillSetting {
    /// The mode, or why the value is not one.
    fn mode(&self) -> Result<PrefillMode, String> {
        match self {
            Self::Flag(true) => Ok(PrefillMode::On),
            Self::Flag(false) => Ok(PrefillMode::Off),
            Self::Word(word) if word == "auto" => Ok(PrefillMode::Auto),
            Self::Word(word) => Err(format!(
                "`prefill` must be true, false or \"auto\", not \"{word}\""
            )),
        }
    }
}

/// The prefill mode of each target that set one; the others take the default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrefillModes {
    /// Tier → mode.
    pub pools: BTreeMap<String, PrefillMode>,
    /// Endpoint model → mode.
    pub endpoints: BTreeMap<EndpointKey, PrefillMode>,
}

impl PrefillModes {
    /// The mode of `tier`'s pool: as set, else on (the project's llm-service continues a
    /// prefill).
    pub fn for_pool(&self, tier: &str) -> PrefillMode {
        self.pools.get(tier).copied().unwrap_or(PrefillMode::On)
    }

    /// The mode of `endpoint`: as set, else off (some providers take a trailing assistant
    /// message but answer afresh, which would repeat text).
    pub fn for_endpoint(&self, endpoint: &EndpointSpec) -> PrefillMode {
        self.endpoints
            .get(&endpoint_key(endpoint))
            .copied()
            .unwrap_or(PrefillMode::Off)
    }
}

/// A checked target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Discovered instances of a tier.
    Pool(String),
    /// An OpenAI-compatible endpoint.
    Endpoint(EndpointSpec),
}

/// A checked route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    /// The public model name.
    pub name: String,
    /// In order.
    pub targets: Vec<Target>,
    /// Where `context_length_exceeded` goes.
    pub context_fallback: Option<String>,
}

/// One endpoint model: its base URL and upstream model (one breaker, name and key each).
pub type EndpointKey = (String, String);

/// A setting a target made for its pool or endpoint, with the key path it was set at.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetSetting<T> {
    /// `routes.<model>.targets[i].breaker`, `….prefill`.
    pub field: String,
    /// Its value.
    pub section: T,
}

/// A breaker section a target set.
pub type TargetBreaker = TargetSetting<BreakerSection>;

/// The routes, and the breaker sections their targets set.
#[derive(Debug, Clone, Default)]
pub struct CheckedRoutes {
    /// Every route, `default` included.
    pub routes: Vec<RouteSpec>,
    /// Tier → the section its pool targets set.
    pub pools: BTreeMap<String, TargetBreaker>,
    /// Endpoint model → the section its targets set.
    pub endpoints: BTreeMap<EndpointKey, TargetBreaker>,
    /// Tier → the prefill mode its pool targets set.
    pub pool_prefill: BTreeMap<String, TargetSetting<PrefillMode>>,
    /// Endpoint model → the prefill mode its targets set.
    pub endpoint_prefill: BTreeMap<EndpointKey, TargetSetting<PrefillMode>>,
}

impl CheckedRoutes {
    /// The prefill modes the targets set.
    pub fn prefill_modes(&self) -> PrefillModes {
        PrefillModes {
            pools: self
                .pool_prefill
                .iter()
                .map(|(tier, set)| (tier.clone(), set.section))
                .collect(),
            endpoints: self
                .endpoint_prefill
                .iter()
                .map(|(key, set)| (key.clone(), set.section))
                .collect(),
        }
    }
}

/// The key of an endpoint.
pub fn endpoint_key(endpoint: &EndpointSpec) -> EndpointKey {
    let model = match &endpoint.protocol {
        Protocol::OpenAi { model, .. } => model.clone(),
        Protocol::Lab => String::new(),
    };
    (endpoint.url.clone(), model)
}

/// The routes of `sections`, checked, `default` included (the primary then the secondary
/// pool when the file does not say); API keys read through `env`.
pub fn check(
    sections: &BTreeMap<String, RouteSection>,
    env: Env<'_>,
    problems: &mut Problems,
) -> CheckedRoutes {
    let sections = with_default(sections);
    let mut checker = Checker {
        env,
        problems,
        checked: CheckedRoutes::default(),
        endpoints_seen: BTreeMap::new(),
    };
    for (name, section) in &sections {
        let route = checker.route(name, section, &sections);
        checker.checked.routes.push(route);
    }
    checker.checked
}

/// `sections`, with the `default` route when they have none: the primary then the
/// secondary pool.
fn with_default(sections: &BTreeMap<String, RouteSection>) -> BTreeMap<String, RouteSection> {
    let mut sections = sections.clone();
    sections
        .entry(DEFAULT_ROUTE.to_owned())
        .or_insert_with(|| RouteSection {
            targets: ["primary", "secondary"]
                .map(|tier| TargetSection {
                    pool: Some(tier.to_owned()),
                    ..TargetSection::default()
                })
                .to_vec(),
            context_fallback: None,
        });
    sections
}

/// The routes checked so far, and what their targets must agree on.
struct Checker<'a, 'p> {
    /// Where API keys are read.
    env: Env<'a>,
    /// Where problems are noted.
    problems: &'p mut Problems,
    /// The routes so far, and their targets' breaker sections.
    checked: CheckedRoutes,
    /// The first spec of each endpoint model.
    endpoints_seen: BTreeMap<EndpointKey, EndpointSpec>,
}

impl Checker<'_, '_> {
    /// The route `name`, its valid targets kept in order; `sections` are every route.
    fn route(
        &mut self,
        name: &str,
        section: &RouteSection,
        sections: &BTreeMap<String, RouteSection>,
    ) -> RouteSpec {
        let field = |what: &str| format!("routes.{name}{what}");
        if section.targets.is_empty() {
            self.problems
                .push(field(".targets"), "needs at least one target");
        }
        let mut targets = Vec::new();
        for (i, target_section) in section.targets.iter().enumerate() {
            let at = field(&format!(".targets[{i}]"));
            if let Some(target) = self.target(&at, &field(".targets"), target_section, &targets) {
                targets.push(target);
            }
        }
        if let Some(other) = &section.context_fallback
            && (other == name || !sections.contains_key(other))
        {
            self.problems.push(
                field(".context_fallback"),
                format!("`{other}` is not another route"),
            );
        }
        RouteSpec {
            name: name.to_owned(),
            targets,
            context_fallback: section.context_fallback.clone(),
        }
    }

    /// The target at `at` (in the list `targets_field`), unless it is invalid or already
    /// among `earlier`; its endpoint and breaker section checked against the other routes'.
    fn target(
        &mut self,
        at: &str,
        targets_field: &str,
        section: &TargetSection,
        earlier: &[Target],
    ) -> Option<Target> {
        let target = match check_target(section, self.env) {
            Ok(target) if earlier.contains(&target) => {
                self.problems.push(at, "appears twice in the route");
                return None;
            }
            Ok(target) => target,
            Err(why) => {
                self.problems.push(at, why);
                return None;
            }
        };
        if let Target::Endpoint(endpoint) = &target {
            self.endpoint_once(endpoint, targets_field);
        }
        if let Some(breaker) = &section.breaker {
            self.breaker_once(&target, at, breaker);
        }
        if let Some(prefill) = &section.prefill {
            match prefill.mode() {
                Ok(mode) => self.prefill_once(&target, at, mode),
                Err(why) => self.problems.push(format!("{at}.prefill"), why),
            }
        }
        Some(target)
    }

    /// Notes under `targets_field` an endpoint model configured before with another name
    /// or key.
    fn endpoint_once(&mut self, endpoint: &EndpointSpec, targets_field: &str) {
        let key = endpoint_key(endpoint);
        match self.endpoints_seen.get(&key) {
            Some(earlier) if earlier != endpoint => self.problems.push(
                targets_field,
                format!(
                    "{} at {} is configured twice with a different name or key; \
                     one endpoint model has one breaker, name and key",
                    key.1, key.0
                ),
            ),
            Some(_) => {}
            None => {
                self.endpoints_seen.insert(key, endpoint.clone());
            }
        }
    }

    /// Keeps the `breaker` section the target at `at` sets for its pool or endpoint.
    fn breaker_once(&mut self, target: &Target, at: &str, breaker: &BreakerSection) {
        let set = TargetSetting {
            field: format!("{at}.breaker"),
            section: breaker.clone(),
        };
        let kept = (&mut self.checked.pools, &mut self.checked.endpoints);
        let why = [
            "one pool has one set of instance breakers",
            "one endpoint model has one breaker",
        ];
        keep_for(target, set, kept, why, self.problems);
    }

    /// Keeps the prefill mode the target at `at` sets for its pool or endpoint.
    fn prefill_once(&mut self, target: &Target, at: &str, mode: PrefillMode) {
        let set = TargetSetting {
            field: format!("{at}.prefill"),
            section: mode,
        };
        let kept = (
            &mut self.checked.pool_prefill,
            &mut self.checked.endpoint_prefill,
        );
        let why = [
            "one pool has one prefill mode",
            "one endpoint model has one prefill mode",
        ];
        keep_for(target, set, kept, why, self.problems);
    }
}

/// Per target, one map of pool settings by tier and one of endpoint settings.
type Kept<'a, T> = (
    &'a mut BTreeMap<String, TargetSetting<T>>,
    &'a mut BTreeMap<EndpointKey, TargetSetting<T>>,
);

/// Keeps `set` for `target`'s pool or endpoint in `kept` (see [`keep_one`]); `why` says
/// why two differing ones are a problem, for a pool and for an endpoint.
fn keep_for<T: PartialEq>(
    target: &Target,
    set: TargetSetting<T>,
    (pools, endpoints): Kept<'_, T>,
    [pool_why, endpoint_why]: [&str; 2],
    problems: &mut Problems,
) {
    match target {
        Target::Pool(tier) => keep_one(pools, tier.clone(), set, pool_why, problems),
        Target::Endpoint(endpoint) => {
            keep_one(
                endpoints,
                endpoint_key(endpoint),
                set,
                endpoint_why,
                problems,
            );
        }
    }
}

/// Keeps `set` as the section of `key`, or notes that it differs from the one kept.
fn keep_one<K: Ord, T: PartialEq>(
    kept: &mut BTreeMap<K, TargetSetting<T>>,
    key: K,
    set: TargetSetting<T>,
    why: &str,
    problems: &mut Problems,
) {
    match kept.get(&key) {
        Some(earlier) if earlier.section != set.section => {
            problems.push(set.field, format!("differs from {}: {why}", earlier.field))
        }
        Some(_) => {}
        None => {
            kept.insert(key, set);
        }
    }
}

/// A target section as a [`Target`], or why it is not one.
fn check_target(target: &TargetSection, env: Env<'_>) -> Result<Target, String> {
    match (&target.pool, &target.url) {
        (Some(pool), None) => {
            if target.model.is_some() || target.api_key_env.is_some() || target.name.is_some() {
                return Err("a pool target takes only `pool` (and `breaker`, `prefill`)".to_owned());
            }
            if pool.trim().is_empty() {
                return Err("`pool` must name a tier".to_owned());
            }
            Ok(Target::Pool(pool.clone()))
        }
        (None, Some(url)) => {
            let parsed = reqwest::Url::parse(url).map_err(|e| format!("`url`: {e}"))?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
                return Err("`url` must be an http(s) URL with a host".to_owned());
            }
            let Some(model) = target.model.clone().filter(|m| !m.trim().is_empty()) else {
                return Err("an endpoint needs `model`, the name the endpoint knows".to_owned());
            };
            if !parsed.username().is_empty() || parsed.password().is_some() {
                return Err("`url` must not hold credentials: use `api_key_env`".to_owned());
            }
            let api_key = match &target.api_key_env {
                None => None,
                Some(var) => match env(var) {
                    Some(key) if !key.is_empty() => {
                        if reqwest::header::HeaderValue::from_str(&format!("Bearer {key}")).is_err()
                        {
                            return Err(format!(
                                "`api_key_env`: ${var} holds characters a header cannot carry"
                            ));
                        }
                        Some(ApiKey::new(key))
                    }
                    _ => return Err(format!("`api_key_env`: ${var} is not set")),
                },
            };
            let url = url.trim_end_matches('/').to_owned();
            // The default id names the host and path only: never a query that may hold a key.
            let shown = format!(
                "{}://{}{}",
                parsed.scheme(),
                parsed.host_str().unwrap_or_default(),
                parsed.port().map(|p| format!(":{p}")).unwrap_or_default()
            ) + parsed.path().trim_end_matches('/');
            Ok(Target::Endpoint(EndpointSpec {
                id: target
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("{model}@{shown}")),
                url,
                protocol: Protocol::OpenAi { model, api_key },
            }))
        }
        _ => Err("give either `pool` or `url` (with `model`)".to_owned()),
    }
}
