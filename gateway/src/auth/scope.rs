//! What a caller may do ([`Scope`], [`Scopes`]) and what a route asks for ([`RouteGroup`]):
//! the model routes need `llm:generate`, the admin routes and the status page `admin`, the
//! probes, metrics and the OpenAPI document nothing.

use std::fmt;
use std::str::FromStr;

/// One permission a credential carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// `llm:generate`: the model routes (`/generate`, `/v1/*`).
    Generate,
    /// `admin`: `/admin/*` and the status page.
    Admin,
}

/// A scope name that is not one of [`Scope`]'s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown scope `{0}` (known: llm:generate, admin)")]
pub struct UnknownScope(pub String);

impl Scope {
    /// Every scope.
    pub const ALL: [Scope; 2] = [Scope::Generate, Scope::Admin];

    /// The scope's name in credentials (`llm:generate`, `admin`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Generate => "llm:generate",
            Self::Admin => "admin",
        }
    }

    /// The scope's bit in [`Scopes`].
    const fn bit(self) -> u8 {
        match self {
            Self::Generate => 1,
            Self::Admin => 2,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = UnknownScope;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| UnknownScope(s.to_owned()))
    }
}

/// A set of scopes (a bit set: copying it costs nothing).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Scopes(u8);

impl Scopes {
    /// No scope at all.
    pub const EMPTY: Scopes = Scopes(0);
    /// Every scope (the anonymous caller's when authentication is off).
    pub const ALL: Scopes = Scopes(Scope::Generate.bit() | Scope::Admin.bit());

    /// Only `scope`.
    pub const fn only(scope: Scope) -> Self {
        Self(scope.bit())
    }

    /// This set and `scope`.
    #[must_use]
    pub const fn with(self, scope: Scope) -> Self {
        Self(self.0 | scope.bit())
    }

    /// Whether `scope` is in the set.
    pub const fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The scopes in the set, in [`Scope::ALL`]'s order.
    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |s| self.contains(*s))
    }

    /// The known scopes of a JWT `scope` claim (space-separated, as in OAuth); unknown
    /// names are ignored (an issuer may grant scopes for other services).
    pub fn from_claim(claim: &str) -> Self {
        claim
            .split_ascii_whitespace()
            .filter_map(|name| name.parse::<Scope>().ok())
            .fold(Self::EMPTY, Self::with)
    }

    /// `names` as scopes, or the first unknown name (configuration is strict: a typo
    /// must not silently drop a permission).
    pub fn parse_all<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Self, UnknownScope> {
        names
            .into_iter()
            .try_fold(Self::EMPTY, |set, name| Ok(set.with(name.trim().parse()?)))
    }
}

impl fmt::Display for Scopes {
    /// Space-separated, like a JWT `scope` claim.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, scope) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(scope.as_str())?;
        }
        Ok(())
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// Which credentials a path needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteGroup {
    /// `/live`, `/ready`, `/health`, `/metrics`, `/openapi.json` and every path not below:
    /// no credentials (orchestrators and Prometheus call them without any).
    Public,
    /// `/generate` and `/v1/*`: scope `llm:generate`.
    Model,
    /// `/admin/*`, `/status` and `/status/*`: scope `admin`.
    Admin,
}

impl RouteGroup {
    /// The group of `path` (the request's path, without the query).
    pub fn of(path: &str) -> Self {
        if path == "/generate" || path.starts_with("/v1/") {
            Self::Model
        } else if below(path, "/admin") || below(path, "/status") {
            Self::Admin
        } else {
            Self::Public
        }
    }

    /// The scope the group needs; `None` for public routes.
    pub const fn required_scope(self) -> Option<Scope> {
        match self {
            Self::Public => None,
            Self::Model => Some(Scope::Generate),
            Self::Admin => Some(Scope::Admin),
        }
    }
}

/// Whether `path` is `root` or below it.
fn below(path: &str, root: &str) -> bool {
    path.strip_prefix(root)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}
