//! Choosing an instance for a call.
//!
//! [`LoadBalancer::pick`] chooses among the [`Endpoint`]s that the caller's `accept` closure
//! lets through (healthy, breaker not open…), by round robin or by power-of-two-choices on
//! least outstanding requests (the default: two eligible endpoints drawn at random, the less
//! busy one wins — near-optimal spread without a global scan or lock). The pick returns an
//! [`InFlight`] guard that counts the call as outstanding on its endpoint until dropped.
//!
//! Picking takes no lock and does not allocate: it counts the eligible endpoints, then walks
//! to the drawn ones, so `accept` is called more than once per endpoint in one pick and
//! should be cheap (an atomic load or two). Round robin turns over the eligible endpoints
//! only, so an ejected endpoint's turns are shared by all the others, not given to its
//! neighbour.

#[cfg(test)]
mod tests;

use std::fmt;
use std::ops::Deref;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rand::RngExt;

use crate::Error;

/// How [`LoadBalancer`] chooses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Each eligible endpoint in turn.
    RoundRobin,
    /// The less busy of two eligible endpoints drawn at random (default).
    #[default]
    PowerOfTwoChoices,
}

impl FromStr for Strategy {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "round_robin" | "rr" => Ok(Self::RoundRobin),
            "power_of_two_choices" | "p2c" | "least_outstanding" => Ok(Self::PowerOfTwoChoices),
            other => Err(Error::invalid_config(
                "load_balancer.strategy",
                format!("unknown strategy `{other}` (round_robin | power_of_two_choices)"),
            )),
        }
    }
}

/// Something to send calls to, with its count of outstanding calls.
pub struct Endpoint<T> {
    value: T,
    in_flight: AtomicUsize,
}

impl<T> Endpoint<T> {
    /// An endpoint with no outstanding calls.
    pub fn new(value: T) -> Arc<Self> {
        Arc::new(Self {
            value,
            in_flight: AtomicUsize::new(0),
        })
    }

    /// What the endpoint stands for.
    pub fn value(&self) -> &T {
        &self.value
    }

    /// Calls picked and not yet finished.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
}

impl<T: fmt::Debug> fmt::Debug for Endpoint<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("value", &self.value)
            .field("in_flight", &self.in_flight())
            .finish()
    }
}

/// One outstanding call on an endpoint; dropping it ends the call.
#[must_use = "dropping the guard ends the call's accounting at once"]
pub struct InFlight<T> {
    endpoint: Arc<Endpoint<T>>,
}

impl<T> InFlight<T> {
    fn start(endpoint: &Arc<Endpoint<T>>) -> Self {
        endpoint.in_flight.fetch_add(1, Ordering::Relaxed);
        Self {
            endpoint: Arc::clone(endpoint),
        }
    }

    /// The endpoint this call went to.
    pub fn endpoint(&self) -> &Arc<Endpoint<T>> {
        &self.endpoint
    }
}

impl<T> Deref for InFlight<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.endpoint.value
    }
}

impl<T> Drop for InFlight<T> {
    fn drop(&mut self) {
        self.endpoint.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl<T: fmt::Debug> fmt::Debug for InFlight<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("InFlight").field(&self.endpoint).finish()
    }
}

/// Chooses endpoints by a [`Strategy`]; one per pool, shared by all requests.
#[derive(Debug, Default)]
pub struct LoadBalancer {
    strategy: Strategy,
    next: AtomicUsize,
}

impl LoadBalancer {
    /// A balancer using `strategy`.
    pub fn new(strategy: Strategy) -> Self {
        Self {
            strategy,
            next: AtomicUsize::new(0),
        }
    }

    /// The strategy in use.
    pub fn strategy(&self) -> Strategy {
        self.strategy
    }

    /// Picks one of the `endpoints` that `accept` lets through, or `None` if none does.
    pub fn pick<T>(
        &self,
        endpoints: &[Arc<Endpoint<T>>],
        accept: impl Fn(&T) -> bool,
    ) -> Option<InFlight<T>> {
        let chosen = match self.strategy {
            Strategy::RoundRobin => self.round_robin(endpoints, &accept),
            Strategy::PowerOfTwoChoices => Self::power_of_two(endpoints, &accept),
        }?;
        Some(InFlight::start(chosen))
    }

    fn round_robin<'a, T>(
        &self,
        endpoints: &'a [Arc<Endpoint<T>>],
        accept: &impl Fn(&T) -> bool,
    ) -> Option<&'a Arc<Endpoint<T>>> {
        let eligible = endpoints.iter().filter(|e| accept(&e.value)).count();
        if eligible == 0 {
            return None;
        }
        let turn = self.next.fetch_add(1, Ordering::Relaxed) % eligible;
        let mut accepted = endpoints.iter().filter(|e| accept(&e.value));
        // `accept` may change its mind between the passes; then take any still accepted.
        accepted.clone().nth(turn).or_else(|| accepted.next())
    }

    fn power_of_two<'a, T>(
        endpoints: &'a [Arc<Endpoint<T>>],
        accept: &impl Fn(&T) -> bool,
    ) -> Option<&'a Arc<Endpoint<T>>> {
        let eligible = endpoints.iter().filter(|e| accept(&e.value)).count();
        let nth = |n: usize| endpoints.iter().filter(|e| accept(&e.value)).nth(n);
        match eligible {
            0 => None,
            // `accept` may change its mind between the passes (a breaker opening meanwhile);
            // then fall back to any endpoint still accepted.
            1 => nth(0),
            n => {
                let mut rng = rand::rng();
                let a = rng.random_range(0..n);
                let mut b = rng.random_range(0..n - 1);
                if b >= a {
                    b += 1;
                }
                match (nth(a), nth(b)) {
                    (Some(x), Some(y)) => Some(if y.in_flight() < x.in_flight() { y } else { x }),
                    (x, y) => x.or(y).or_else(|| nth(0)),
                }
            }
        }
    }
}
