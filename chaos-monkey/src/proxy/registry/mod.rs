//! The proxies by name, their toxics, and the lifecycle that keeps each one's listener in
//! line with what clients asked for.
//!
//! A proxy is in one [`Phase`]: idle, running, or stopping (its listener and connections
//! closing). Every change sets what is wanted (`enabled`, `listen`, `upstream`) under the
//! lock, then [`Registry::settle`] moves the phase towards it: a running proxy that should
//! not run, or should run elsewhere, is stopped and waited for *outside* the lock; an idle
//! one that should run is bound under the lock (binding does not wait). A re-enabled proxy
//! binds the address it had, so clients find it on the same port.
//!
//! The toxics of a proxy sit in a `watch` channel: open connections see every change.
//! [`body`] reads the API's request bodies (a proxy to create, a change to one).

mod body;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde::Serialize;
use serde_json::Value;
use tokio::sync::watch;

use self::body::listen_addr;
pub use self::body::{NewProxy, ProxyChange};
use super::error::ProxyError;
use super::listener::{Runner, Stopped};
use super::toxic::{Toxic, ToxicList, ToxicView};

/// Every proxy of the process.
#[derive(Default)]
pub struct Registry {
    proxies: Mutex<BTreeMap<String, Entry>>,
    revisions: AtomicU64,
}

/// A proxy as the API prints it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProxyView {
    pub name: String,
    pub listen: String,
    pub upstream: String,
    pub enabled: bool,
    pub toxics: Vec<ToxicView>,
}

struct Entry {
    /// The address asked for, and once bound the address bound (with its real port).
    listen: String,
    upstream: String,
    enabled: bool,
    toxics: watch::Sender<ToxicList>,
    phase: Phase,
}

enum Phase {
    Idle,
    Running(Runner),
    Stopping(Stopped),
}

/// What [`Entry::step`] asks of the caller.
enum Step {
    Settled,
    Start,
    Wait(Stopped),
}

impl Registry {
    /// No proxies.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every proxy, by name.
    pub fn list(&self) -> BTreeMap<String, ProxyView> {
        self.lock()
            .iter()
            .map(|(name, entry)| (name.clone(), entry.view(name)))
            .collect()
    }

    /// One proxy.
    pub fn get(&self, name: &str) -> Result<ProxyView, ProxyError> {
        let proxies = self.lock();
        let entry = proxies.get(name).ok_or(ProxyError::ProxyNotFound)?;
        Ok(entry.view(name))
    }

    /// Creates a proxy, listening at once when enabled. Fails when the name is taken or
    /// the address cannot be bound. Call inside a Tokio runtime.
    pub fn create(&self, new: NewProxy) -> Result<ProxyView, ProxyError> {
        let mut proxies = self.lock();
        if proxies.contains_key(&new.name) {
            return Err(ProxyError::ProxyExists);
        }
        let (toxics, _) = watch::channel(ToxicList::default());
        let mut entry = Entry {
            listen: new.listen,
            upstream: new.upstream,
            enabled: new.enabled,
            toxics,
            phase: Phase::Idle,
        };
        if entry.enabled {
            entry.start(&new.name)?;
        }
        let view = entry.view(&new.name);
        tracing::info!(proxy = %new.name, listen = %view.listen, upstream = %view.upstream,
            enabled = view.enabled, "proxy created");
        proxies.insert(new.name, entry);
        Ok(view)
    }

    /// Changes a proxy; returns once its listener is in line (a disabled proxy's listener
    /// and connections are closed).
    pub async fn update(&self, name: &str, change: ProxyChange) -> Result<ProxyView, ProxyError> {
        {
            let mut proxies = self.lock();
            let entry = proxies.get_mut(name).ok_or(ProxyError::ProxyNotFound)?;
            if let Some(listen) = change.listen {
                entry.listen = listen;
            }
            if let Some(upstream) = change.upstream {
                entry.upstream = upstream;
            }
            if let Some(enabled) = change.enabled {
                entry.enabled = enabled;
            }
        }
        self.settle(name).await?;
        let view = self.get(name)?;
        tracing::info!(proxy = %name, listen = %view.listen, upstream = %view.upstream,
            enabled = view.enabled, "proxy updated");
        Ok(view)
    }

    /// Deletes a proxy; returns once its listener and connections are closed.
    pub async fn delete(&self, name: &str) -> Result<(), ProxyError> {
        let entry = self.lock().remove(name).ok_or(ProxyError::ProxyNotFound)?;
        if let Some(stopped) = entry.stop() {
            stopped.await;
        }
        tracing::info!(proxy = %name, "proxy deleted");
        Ok(())
    }

    /// Creates each proxy of `news`, replacing one of the same name whose listen address
    /// or upstream differs and keeping one that matches.
    pub async fn populate(&self, news: Vec<NewProxy>) -> Result<Vec<ProxyView>, ProxyError> {
        let mut views = Vec::with_capacity(news.len());
        for new in news {
            let same = self
                .lock()
                .get(&new.name)
                .map(|e| e.listen == new.listen && e.upstream == new.upstream);
            match same {
                Some(true) => views.push(self.get(&new.name)?),
                Some(false) => {
                    self.delete(&new.name).await?;
                    views.push(self.create(new)?);
                }
                None => views.push(self.create(new)?),
            }
        }
        Ok(views)
    }

    /// Enables every proxy and removes every toxic. Fails with the first proxy that cannot
    /// listen again (the others are still reset).
    pub async fn reset(&self) -> Result<(), ProxyError> {
        let names: Vec<String> = {
            let mut proxies = self.lock();
            for entry in proxies.values_mut() {
                entry.enabled = true;
                entry.toxics.send_if_modified(|list| {
                    let had = !list.is_empty();
                    *list = ToxicList::default();
                    had
                });
            }
            proxies.keys().cloned().collect()
        };
        let mut first_error = None;
        for name in names {
            if let Err(error) = self.settle(&name).await {
                first_error.get_or_insert(error);
            }
        }
        tracing::info!("reset: every proxy enabled, every toxic removed");
        first_error.map_or(Ok(()), Err)
    }

    /// Closes every proxy; returns once all listeners and connections are closed.
    pub async fn shutdown(&self) {
        let entries = std::mem::take(&mut *self.lock());
        for entry in entries.into_values() {
            if let Some(stopped) = entry.stop() {
                stopped.await;
            }
        }
    }

    /// The toxics of a proxy.
    pub fn toxics(&self, proxy: &str) -> Result<Vec<ToxicView>, ProxyError> {
        Ok(self.get(proxy)?.toxics)
    }

    /// One toxic of a proxy.
    pub fn toxic(&self, proxy: &str, toxic: &str) -> Result<ToxicView, ProxyError> {
        self.toxics(proxy)?
            .into_iter()
            .find(|t| t.name == toxic)
            .ok_or(ProxyError::ToxicNotFound)
    }

    /// Adds a toxic from a request body; it acts on open connections too.
    pub fn add_toxic(&self, proxy: &str, body: &Value) -> Result<ToxicView, ProxyError> {
        let proxies = self.lock();
        let entry = proxies.get(proxy).ok_or(ProxyError::ProxyNotFound)?;
        let toxic = Toxic::from_request(body, self.next_revision())?;
        let mut added = Err(ProxyError::ToxicExists);
        entry.toxics.send_if_modified(|list| {
            if list.iter().any(|t| t.name == toxic.name) {
                return false;
            }
            added = Ok(toxic.view());
            Arc::make_mut(list).push(toxic.clone());
            true
        });
        if added.is_ok() {
            tracing::info!(%proxy, toxic = %toxic.name, kind = toxic.kind.type_name(),
                stream = toxic.stream.as_str(), toxicity = toxic.toxicity, "toxic added");
        }
        added
    }

    /// Updates a toxic's attributes and toxicity from a request body.
    pub fn update_toxic(
        &self,
        proxy: &str,
        toxic: &str,
        body: &Value,
    ) -> Result<ToxicView, ProxyError> {
        let proxies = self.lock();
        let entry = proxies.get(proxy).ok_or(ProxyError::ProxyNotFound)?;
        let revision = self.next_revision();
        let mut updated = Err(ProxyError::ToxicNotFound);
        entry.toxics.send_if_modified(|list| {
            let Some(i) = list.iter().position(|t| t.name == toxic) else {
                return false;
            };
            match list[i].updated(body, revision) {
                Ok(new) => {
                    updated = Ok(new.view());
                    Arc::make_mut(list)[i] = new;
                    true
                }
                Err(error) => {
                    updated = Err(error);
                    false
                }
            }
        });
        if updated.is_ok() {
            tracing::info!(%proxy, %toxic, "toxic updated");
        }
        updated
    }

    /// Removes a toxic; open connections stop applying it from their next chunk.
    pub fn delete_toxic(&self, proxy: &str, toxic: &str) -> Result<(), ProxyError> {
        let proxies = self.lock();
        let entry = proxies.get(proxy).ok_or(ProxyError::ProxyNotFound)?;
        let removed = entry.toxics.send_if_modified(|list| {
            let Some(i) = list.iter().position(|t| t.name == toxic) else {
                return false;
            };
            Arc::make_mut(list).remove(i);
            true
        });
        if !removed {
            return Err(ProxyError::ToxicNotFound);
        }
        tracing::info!(%proxy, %toxic, "toxic removed");
        Ok(())
    }

    /// Moves the proxy's phase to what is wanted, waiting for stops outside the lock. A
    /// proxy that cannot listen is left disabled.
    async fn settle(&self, name: &str) -> Result<(), ProxyError> {
        loop {
            let stopped = {
                let mut proxies = self.lock();
                let Some(entry) = proxies.get_mut(name) else {
                    return Ok(());
                };
                match entry.step() {
                    Step::Settled => return Ok(()),
                    Step::Start => {
                        let started = entry.start(name);
                        if started.is_err() {
                            entry.enabled = false;
                        }
                        return started;
                    }
                    Step::Wait(stopped) => stopped,
                }
            };
            stopped.await;
        }
    }

    fn next_revision(&self) -> u64 {
        self.revisions.fetch_add(1, Ordering::Relaxed)
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Entry>> {
        // Nothing panics while holding it; if something did, the map is still whole.
        self.proxies.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Entry {
    fn view(&self, name: &str) -> ProxyView {
        ProxyView {
            name: name.to_owned(),
            listen: self.listen.clone(),
            upstream: self.upstream.clone(),
            enabled: self.enabled,
            toxics: self.toxics.borrow().iter().map(Toxic::view).collect(),
        }
    }

    /// The next transition towards what is wanted.
    fn step(&mut self) -> Step {
        match std::mem::replace(&mut self.phase, Phase::Idle) {
            Phase::Stopping(stopped) if stopped.peek().is_none() => {
                self.phase = Phase::Stopping(stopped.clone());
                Step::Wait(stopped)
            }
            Phase::Stopping(_) | Phase::Idle if self.enabled => Step::Start,
            Phase::Stopping(_) | Phase::Idle => Step::Settled,
            Phase::Running(runner) if self.enabled && self.serves(&runner) => {
                self.listen = runner.listen.to_string();
                self.phase = Phase::Running(runner);
                Step::Settled
            }
            Phase::Running(runner) => {
                tracing::info!(listen = %runner.listen, "closing the listener and its connections");
                let stopped = runner.stop();
                self.phase = Phase::Stopping(stopped.clone());
                Step::Wait(stopped)
            }
        }
    }

    fn serves(&self, runner: &Runner) -> bool {
        listen_addr(&self.listen).ok() == Some(runner.listen) && *runner.upstream == *self.upstream
    }

    /// Binds the listen address and starts serving it.
    fn start(&mut self, name: &str) -> Result<(), ProxyError> {
        let addr = listen_addr(&self.listen)?;
        let listen_error =
            |error: std::io::Error| ProxyError::Listen(format!("listen tcp {addr}: {error}"));
        let listener = std::net::TcpListener::bind(addr).map_err(listen_error)?;
        listener.set_nonblocking(true).map_err(listen_error)?;
        let listener = tokio::net::TcpListener::from_std(listener).map_err(listen_error)?;
        let bound = listener.local_addr().map_err(listen_error)?;
        self.listen = bound.to_string();
        self.phase = Phase::Running(Runner::spawn(
            name,
            listener,
            bound,
            Arc::from(self.upstream.as_str()),
            self.toxics.subscribe(),
        ));
        Ok(())
    }

    /// Stops it; what to wait for, if anything runs.
    fn stop(self) -> Option<Stopped> {
        match self.phase {
            Phase::Idle => None,
            Phase::Running(runner) => Some(runner.stop()),
            Phase::Stopping(stopped) => Some(stopped),
        }
    }
}
