//! The experiments: what each injects and how it is rolled back.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context;
use llm_api::fault::{FaultKind, FaultSpec};
use llm_api::gateway::GatewayHealth;
use serde::Serialize;
use serde_json::{Value, json};
use stack_control::{Controller, REDIS};

use super::RunArgs;
use llm_api::token::ChaosToken;

/// One experiment of `chaos-monkey list`.
#[derive(Debug)]
pub struct Experiment {
    /// Its name on the command line.
    pub name: &'static str,
    /// What it does.
    pub description: &'static str,
    kind: Kind,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    /// A fault through the llm-service fault API.
    Fault(fn() -> FaultKind),
    /// SIGKILL, then a start.
    Kill,
    /// SIGSTOP, then SIGCONT.
    Pause,
    /// The stack's Redis stopped, then started.
    RedisOutage,
    /// A latency toxic on the fault proxy in front of the target.
    NetworkLatency,
    /// The fault proxy in front of the target disabled.
    Partition,
}

fn latency() -> FaultKind {
    FaultKind::Latency {
        ms: None,
        min_ms: Some(1000),
        max_ms: Some(3000),
    }
}

fn errors() -> FaultKind {
    FaultKind::Error {
        status: 503,
        code: None,
        message: Some("injected by a chaos-monkey experiment".to_owned()),
        retry_after_s: None,
    }
}

fn hang() -> FaultKind {
    FaultKind::Hang
}

fn reset() -> FaultKind {
    FaultKind::Reset
}

fn cpu() -> FaultKind {
    FaultKind::CpuBurn { threads: 2 }
}

fn memory() -> FaultKind {
    FaultKind::Memory { mb: 256 }
}

/// Every experiment.
pub const EXPERIMENTS: &[Experiment] = &[
    Experiment {
        name: "latency",
        description: "every answer of the target takes 1-3 s longer (fault API)",
        kind: Kind::Fault(latency),
    },
    Experiment {
        name: "errors",
        description: "the target answers 503 to every request (fault API)",
        kind: Kind::Fault(errors),
    },
    Experiment {
        name: "hang",
        description: "the target accepts requests and never answers (fault API)",
        kind: Kind::Fault(hang),
    },
    Experiment {
        name: "reset",
        description: "the target resets connections before any header (fault API)",
        kind: Kind::Fault(reset),
    },
    Experiment {
        name: "cpu",
        description: "the target burns 2 CPU threads (fault API)",
        kind: Kind::Fault(cpu),
    },
    Experiment {
        name: "memory",
        description: "the target holds 256 MiB (fault API)",
        kind: Kind::Fault(memory),
    },
    Experiment {
        name: "kill",
        description: "the target process is killed (SIGKILL), then started again (controller)",
        kind: Kind::Kill,
    },
    Experiment {
        name: "pause",
        description: "the target process is frozen (SIGSTOP), then thawed (controller)",
        kind: Kind::Pause,
    },
    Experiment {
        name: "redis-outage",
        description: "the stack's own Redis is stopped, then started (target: redis)",
        kind: Kind::RedisOutage,
    },
    Experiment {
        name: "network-latency",
        description: "1 s of latency on the fault proxy named by the target (--proxy-api)",
        kind: Kind::NetworkLatency,
    },
    Experiment {
        name: "partition",
        description: "the target made unreachable: the fault proxy named by it disabled",
        kind: Kind::Partition,
    },
];

/// What an experiment acts on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Target {
    /// The compose name (or the proxy's name), when known.
    pub name: Option<String>,
    /// The base URL, when known.
    pub url: Option<String>,
}

impl Target {
    /// `spec` (a name or a base URL) with the other half found through the controller's
    /// status or the gateway's `/health` `service_discovery.services[]`.
    pub async fn resolve(
        spec: &str,
        controller: Option<&dyn Controller>,
        http: &reqwest::Client,
        gateway: &str,
    ) -> anyhow::Result<Self> {
        let statuses = match controller {
            Some(controller) => controller.status().await.unwrap_or_default(),
            None => Vec::new(),
        };
        let same = |a: &str, b: &str| a.trim_end_matches('/') == b.trim_end_matches('/');
        if spec.contains("://") {
            let name = statuses
                .iter()
                .find(|s| s.url.as_deref().is_some_and(|u| same(u, spec)))
                .map(|s| s.name.clone());
            return Ok(Self {
                name,
                url: Some(spec.trim_end_matches('/').to_owned()),
            });
        }
        let mut url = statuses
            .iter()
            .find(|s| s.name == spec)
            .and_then(|s| s.url.clone())
            .filter(|u| u.starts_with("http"));
        if url.is_none()
            && let Ok(response) = http.get(format!("{gateway}/health")).send().await
            && let Ok(health) = response.json::<GatewayHealth>().await
        {
            url = health
                .service_discovery
                .services
                .into_iter()
                .find(|s| s.id == spec)
                .map(|s| s.url);
        }
        Ok(Self {
            name: Some(spec.to_owned()),
            url,
        })
    }
}

/// One experiment bound to its target, ready to inject and roll back.
pub struct Action<'a> {
    kind: Kind,
    target: Target,
    controller: Option<&'a dyn Controller>,
    http: reqwest::Client,
    duration: f64,
    proxy_api: String,
    /// The fault API's token, if the llm-services require one.
    token: Option<ChaosToken>,
    /// The id of the fault injected, for its removal.
    fault_id: Mutex<Option<String>>,
    /// Whether a fault was posted (its id may have been lost on the way back).
    posted: std::sync::atomic::AtomicBool,
}

/// The latency toxic's name on the fault proxy.
const TOXIC: &str = "chaos_monkey_latency";

impl<'a> Action<'a> {
    /// `experiment` on `target`; fails when the target lacks what the experiment needs.
    pub fn new(
        experiment: &Experiment,
        target: &Target,
        args: &RunArgs,
        controller: Option<&'a dyn Controller>,
        http: &reqwest::Client,
    ) -> anyhow::Result<Self> {
        let kind = experiment.kind;
        match kind {
            Kind::Fault(_) => anyhow::ensure!(
                target.url.is_some(),
                "`{}` needs the target's base URL: give one, or a name the stack or the gateway knows",
                experiment.name
            ),
            Kind::Kill | Kind::Pause => anyhow::ensure!(
                controller.is_some() && target.name.is_some(),
                "`{}` stops a process: it needs a stack to control (lab's run directory, or \
                 --controller compose) and a service it knows",
                experiment.name
            ),
            Kind::RedisOutage => anyhow::ensure!(
                controller.is_some() && target.name.as_deref() == Some(REDIS),
                "`redis-outage` stops only the stack's own Redis: --target redis, with a stack \
                 to control (never a Redis the stack did not start)"
            ),
            Kind::NetworkLatency | Kind::Partition => anyhow::ensure!(
                target.name.is_some(),
                "`{}` needs the name of the proxy in front of the target",
                experiment.name
            ),
        }
        Ok(Self {
            kind,
            target: target.clone(),
            controller,
            http: http.clone(),
            duration: args.duration,
            proxy_api: args.proxy_api.trim_end_matches('/').to_owned(),
            token: args.chaos_token.clone(),
            fault_id: Mutex::new(None),
            posted: std::sync::atomic::AtomicBool::new(false),
        })
    }

    fn name(&self) -> &str {
        self.target.name.as_deref().unwrap_or("?")
    }

    fn url(&self) -> &str {
        self.target.url.as_deref().unwrap_or("?")
    }

    fn controller(&self) -> anyhow::Result<&'a dyn Controller> {
        self.controller
            .ok_or_else(|| anyhow::anyhow!("no stack to control"))
    }

    /// What the injection does, for the journal.
    pub fn describe(&self) -> String {
        match self.kind {
            Kind::Fault(make) => format!("fault {:?} on {}", make(), self.url()),
            Kind::Kill => format!("SIGKILL to {}", self.name()),
            Kind::Pause => format!("SIGSTOP to {}", self.name()),
            Kind::RedisOutage => "the stack's Redis stopped".to_owned(),
            Kind::NetworkLatency => format!("latency toxic (1000 ms) on proxy {}", self.name()),
            Kind::Partition => format!("proxy {} disabled: the target is unreachable", self.name()),
        }
    }

    /// What the rollback does, for the journal.
    pub fn describe_rollback(&self) -> String {
        match self.kind {
            Kind::Fault(_) => format!("fault removed from {}", self.url()),
            Kind::Kill => format!("{} started again", self.name()),
            Kind::Pause => format!("SIGCONT to {}", self.name()),
            Kind::RedisOutage => "the stack's Redis started again".to_owned(),
            Kind::NetworkLatency => format!("latency toxic removed from proxy {}", self.name()),
            Kind::Partition => format!("proxy {} enabled again", self.name()),
        }
    }

    /// Puts the fault in place.
    pub async fn inject(&self) -> anyhow::Result<()> {
        match self.kind {
            Kind::Fault(make) => {
                // The fault outlives the experiment by a margin only: if the monkey dies
                // before its rollback, the llm-service drops the fault by itself.
                let spec = FaultSpec::new(make()).for_seconds(self.duration + 30.0);
                self.posted
                    .store(true, std::sync::atomic::Ordering::Release);
                let request = self.http.post(format!("{}/chaos/faults", self.url()));
                let response = crate::token::authorize(self.token.as_ref(), request)
                    .json(&spec)
                    .send()
                    .await
                    .context("the target's fault API did not answer")?;
                let status = response.status();
                anyhow::ensure!(status.is_success(), "the fault API answered {status}");
                let body: Value = response.json().await.context("no fault id")?;
                let id = match &body["id"] {
                    Value::String(id) => id.clone(),
                    Value::Number(id) => id.to_string(),
                    _ => anyhow::bail!("the fault API answered without a fault id: {body}"),
                };
                *self.fault_id.lock().unwrap_or_else(PoisonError::into_inner) = Some(id);
                Ok(())
            }
            Kind::Kill => {
                self.require_running().await?;
                Ok(self.controller()?.kill(self.name()).await?)
            }
            Kind::Pause => {
                self.require_running().await?;
                Ok(self.controller()?.pause(self.name()).await?)
            }
            Kind::RedisOutage => {
                self.require_running().await?;
                Ok(self.controller()?.stop(REDIS).await?)
            }
            Kind::NetworkLatency => {
                let toxic = json!({
                    "name": TOXIC,
                    "type": "latency",
                    "stream": "downstream",
                    "toxicity": 1.0,
                    "attributes": {"latency": 1000, "jitter": 0},
                });
                let url = format!("{}/proxies/{}/toxics", self.proxy_api, self.name());
                self.expect_success(self.http.post(url).json(&toxic)).await
            }
            Kind::Partition => {
                let url = format!("{}/proxies/{}", self.proxy_api, self.name());
                self.expect_success(self.http.post(url).json(&json!({"enabled": false})))
                    .await
            }
        }
    }

    /// Takes the fault away; safe to call when the injection failed half-way.
    pub async fn rollback(&self) -> anyhow::Result<()> {
        match self.kind {
            Kind::Fault(_) => {
                let id = self
                    .fault_id
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take();
                let url = match id {
                    Some(id) => format!("{}/chaos/faults/{id}", self.url()),
                    // Posted, but its id never came back: remove every fault of the target.
                    None if self.posted.load(std::sync::atomic::Ordering::Acquire) => {
                        format!("{}/chaos/faults", self.url())
                    }
                    None => return Ok(()),
                };
                let request = self.http.delete(&url);
                let response = crate::token::authorize(self.token.as_ref(), request)
                    .send()
                    .await
                    .context("the target's fault API did not answer")?;
                let status = response.status();
                // 404 on its id: it expired by itself meanwhile.
                anyhow::ensure!(
                    status.is_success() || status == reqwest::StatusCode::NOT_FOUND,
                    "the fault API answered {status}"
                );
                Ok(())
            }
            Kind::Kill => Ok(self.controller()?.start(self.name()).await?),
            Kind::Pause => Ok(self.controller()?.resume(self.name()).await?),
            Kind::RedisOutage => Ok(self.controller()?.start(REDIS).await?),
            Kind::NetworkLatency => {
                let url = format!("{}/proxies/{}/toxics/{TOXIC}", self.proxy_api, self.name());
                let response = self.http.delete(url).send().await?;
                let status = response.status();
                anyhow::ensure!(
                    status.is_success() || status == reqwest::StatusCode::NOT_FOUND,
                    "the proxy API answered {status}"
                );
                Ok(())
            }
            Kind::Partition => {
                let url = format!("{}/proxies/{}", self.proxy_api, self.name());
                self.expect_success(self.http.post(url).json(&json!({"enabled": true})))
                    .await
            }
        }
    }

    /// Fails unless the controller reports the target running: killing or stopping a
    /// service that is already down would "inject" nothing, and the rollback would start a
    /// service someone stopped on purpose.
    async fn require_running(&self) -> anyhow::Result<()> {
        let status = self.controller()?.status().await?;
        let running = status.iter().any(|s| {
            s.name == self.name()
                && matches!(
                    s.state,
                    stack_control::RunState::Healthy | stack_control::RunState::Running
                )
        });
        anyhow::ensure!(running, "{} is not running: nothing to break", self.name());
        Ok(())
    }

    async fn expect_success(&self, request: reqwest::RequestBuilder) -> anyhow::Result<()> {
        let response = request
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .context("the fault proxy's API did not answer")?;
        let status = response.status();
        anyhow::ensure!(
            status.is_success(),
            "the fault proxy's API answered {status}: {}",
            response.text().await.unwrap_or_default()
        );
        Ok(())
    }
}
