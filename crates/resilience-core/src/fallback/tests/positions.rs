//! The chain's decision after a provider failure, at every tier position, for every failure
//! a provider can report (each outcome class the policy knows, in each error it can travel
//! in): a refusal of the request stops the chain where it happened; anything else moves on
//! to the next tier, and after the last one every tier failed.

use super::support::{Scripted, req, tier};
use crate::fallback::TierKind::{Cache, Primary, Secondary, Template};
use crate::fallback::{FallbackChain, FallbackError, ProviderError, TierKind};
use crate::policy::FailureClass;
use crate::policy::tests::support::every_error;

const TIERS: [TierKind; 4] = [Primary, Secondary, Cache, Template];

#[tokio::test(start_paused = true)]
async fn a_refusal_stops_the_chain_where_it_happened_and_anything_else_moves_on() {
    for class in FailureClass::ALL {
        for error in every_error(class) {
            for (position, kind) in TIERS.iter().enumerate() {
                let providers: Vec<_> = TIERS
                    .iter()
                    .enumerate()
                    .map(|(i, k)| match i.cmp(&position) {
                        std::cmp::Ordering::Less => {
                            Scripted::failing(k.as_str(), ProviderError::NoneAvailable)
                        }
                        std::cmp::Ordering::Equal => Scripted::failing(k.as_str(), error.clone()),
                        std::cmp::Ordering::Greater => Scripted::answering(k.as_str(), "later"),
                    })
                    .collect();
                let chain =
                    FallbackChain::new(TIERS.iter().zip(&providers).map(|(k, p)| tier(*k, &[p])))
                        .unwrap();
                let result = chain.execute(&req("hello")).await;
                let case = format!("{error:?} at {kind}");
                let later_calls: usize = providers[position + 1..].iter().map(|p| p.calls()).sum();
                match (&error, result) {
                    (ProviderError::Client(_), Err(FallbackError::Rejected(failure))) => {
                        assert_eq!(failure.tier, *kind, "{case}");
                        assert_eq!(later_calls, 0, "{case}: no later tier is asked");
                    }
                    (ProviderError::Client(_), other) => panic!("{case}: {other:?}"),
                    (_, Ok(served)) => {
                        assert_eq!(served.tier, TIERS[position + 1], "{case}");
                        assert_eq!(served.failures.last().map(|f| &f.error), Some(&error));
                    }
                    (_, Err(FallbackError::AllTiersFailed(all))) => {
                        assert_eq!(*kind, Template, "{case}: only after the last tier");
                        assert_eq!(all.failures.len(), 4, "{case}");
                        assert_eq!(all.failures.last().map(|f| &f.error), Some(&error));
                    }
                    (_, other) => panic!("{case}: {other:?}"),
                }
            }
        }
    }
}
