//! The connections an agent serves, each with its loaded connector, reloaded when their files
//! change.

use crate::config::AgentConfig;
use crate::daemon::Agent;
use crate::overlap;
use anyhow::{Context, Result, bail};
use idgard_host::{Connection, Loaded, Runtime};
use idgard_protocol::{ConnectionReport, REASON_MAX, REFUSED_MAX, RefusedConnection};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;

/// The connections this agent serves now, each with its loaded connector.
#[derive(Default)]
pub(crate) struct Registry {
    pub(crate) connections: BTreeMap<String, (Arc<Connection>, Arc<Loaded>)>,
    /// Package folder → (its newest modification time, the loaded connector).
    pub(crate) packages: HashMap<PathBuf, (SystemTime, Arc<Loaded>)>,
    /// Connection files refused at the last reload, with why (reported to the server).
    pub(crate) refused: Vec<RefusedConnection>,
    /// The connectors the connection files name, loaded or not (the server offers packages
    /// for them).
    pub(crate) wants: BTreeSet<String>,
}

impl Registry {
    pub(crate) fn reports(&self) -> Vec<ConnectionReport> {
        self.connections
            .iter()
            .map(|(name, (c, l))| ConnectionReport {
                name: name.clone(),
                connector: l.manifest.name.clone(),
                version: l.info.version.clone(),
                operations: l.manifest.operations.clone(),
                contract: l.manifest.contract.clone(),
                asks: l.manifest.capabilities.summary(),
                grants: c.grants.summary(),
                package: Some(l.package_digest.clone()),
                publisher: l.publisher.clone(),
            })
            .collect()
    }
}

pub(crate) fn newest_mtime(dir: &Path) -> SystemTime {
    let mut newest = SystemTime::UNIX_EPOCH;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if let Ok(m) = e.metadata().and_then(|m| m.modified()) {
                newest = newest.max(m);
            }
        }
    }
    newest
}

/// Loads every connection file; a broken one is logged and its previous version kept. A
/// connector is taken from `delivered` (packages the server delivered, by connector name) when
/// it is there, else from the runtime folder.
pub(crate) fn reload(
    runtime: &Runtime,
    config: &AgentConfig,
    old: &Registry,
    delivered: &BTreeMap<String, PathBuf>,
) -> Registry {
    let mut next = Registry::default();
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&config.connections) {
        Ok(entries) => entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect(),
        Err(e) => {
            tracing::error!(
                "cannot read the connections folder {}: {e}",
                config.connections.display()
            );
            return Registry {
                connections: old.connections.clone(),
                packages: old.packages.clone(),
                refused: old.refused.clone(),
                wants: old.wants.clone(),
            };
        }
    };
    files.sort();
    // A package that failed to load fails once per reload, not once per connection using it.
    let mut broken: HashMap<PathBuf, String> = HashMap::new();
    let agent_folders = [
        ("work", config.work.as_path()),
        ("runtime", config.runtime.as_path()),
        ("connections", config.connections.as_path()),
        ("keys", config.keys.as_path()),
        ("secrets", config.secrets.as_path()),
        ("publishers", config.publishers.as_path()),
    ];
    for file in files {
        let stem = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let loaded = (|| -> Result<(Arc<Connection>, Arc<Loaded>)> {
            let connection = Connection::load(&file)?;
            let connector = connection.connector.clone().with_context(|| {
                "say which connector serves it: `connector = \"<name>\"` (a folder of the runtime)"
            })?;
            if next.wants.len() < REFUSED_MAX && connector_name(&connector) {
                next.wants.insert(connector.clone());
            }
            overlap::check(
                &connection,
                next.connections.values().map(|(c, _)| c.as_ref()),
                &agent_folders,
            )
            .map_err(|e| anyhow::anyhow!("grants: {e}"))?;
            let dir = delivered
                .get(&connector)
                .cloned()
                .unwrap_or_else(|| config.runtime.join(&connector));
            let mtime = newest_mtime(&dir);
            let loaded = match old.packages.get(&dir).or(next.packages.get(&dir)) {
                Some((t, l)) if *t == mtime => l.clone(),
                _ => {
                    if let Some(e) = broken.get(&dir) {
                        bail!("{e}");
                    }
                    let l = runtime.load(&dir).map_err(|e| {
                        let e = format!("connector package {}: {e}", dir.display());
                        broken.insert(dir.clone(), e.clone());
                        anyhow::anyhow!(e)
                    })?;
                    tracing::info!(connector = %l.manifest.name, version = %l.info.version, "connector loaded");
                    Arc::new(l)
                }
            };
            next.packages.insert(dir, (mtime, loaded.clone()));
            // Settings that do not fit the connector are refused now, not at the first task.
            loaded
                .manifest
                .resolve_settings(&connection.settings)
                .map_err(|e| anyhow::anyhow!("settings: {e}"))?;
            Ok((Arc::new(connection), loaded))
        })();
        match loaded {
            Ok((c, l)) => {
                next.connections.insert(c.name.clone(), (c, l));
            }
            Err(e) => {
                tracing::error!(file = %file.display(), "connection refused: {e:#}");
                if next.refused.len() < REFUSED_MAX {
                    let mut reason = format!("{e:#}");
                    if reason.len() > REASON_MAX {
                        let mut end = REASON_MAX;
                        while !reason.is_char_boundary(end) {
                            end -= 1;
                        }
                        reason.truncate(end);
                    }
                    next.refused.push(RefusedConnection {
                        file: file
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default(),
                        reason,
                    });
                }
                if let Some((name, prev)) =
                    old.connections.iter().find(|(_, (c, _))| c.name == stem)
                {
                    tracing::warn!(connection = %name, "keeping its previous version");
                    next.connections.insert(name.clone(), prev.clone());
                }
            }
        }
    }
    next
}

/// Reloads connections and connectors when their files change, then tells the server.
pub(crate) fn watch(agent: Arc<Agent>) -> Result<()> {
    use notify::{RecursiveMode, Watcher};
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| !e.kind.is_access()) {
            let _ = tx.send(());
        }
    })?;
    for dir in [&agent.config.connections, &agent.config.runtime] {
        std::fs::create_dir_all(dir)?;
        watcher
            .watch(dir, RecursiveMode::Recursive)
            .with_context(|| format!("cannot watch {}", dir.display()))?;
    }
    tokio::spawn(async move {
        let _watcher = watcher;
        while rx.recv().await.is_some() {
            // Let a copy finish: wait for a quiet half second.
            loop {
                match tokio::time::timeout(Duration::from_millis(500), rx.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            refresh(&agent).await;
        }
    });
    Ok(())
}

/// Loads the connection files and connectors again; tells the server when what it serves
/// changed.
pub(crate) async fn refresh(agent: &Arc<Agent>) {
    // One reload at a time: a file change and a package installed together must not let the
    // reload that read the older state be written last.
    static RELOADING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _one = RELOADING.lock().await;
    let before = {
        let r = agent.registry.read().expect("registry");
        (r.reports(), r.refused.clone(), r.wants.clone())
    };
    let next = {
        let agent = agent.clone();
        tokio::task::spawn_blocking(move || {
            let delivered = agent.packages.dirs();
            let old = agent.registry.read().expect("registry");
            reload(&agent.runtime, &agent.config, &old, &delivered)
        })
        .await
    };
    let Ok(next) = next else { return };
    let after = (next.reports(), next.refused.clone(), next.wants.clone());
    *agent.registry.write().expect("registry") = next;
    if before != after {
        tracing::info!(
            connections = after.0.len(),
            refused = after.1.len(),
            "connections reloaded"
        );
        agent.say_hello(false).await;
    }
}

/// A name the server takes for a connector (lower-case letters, digits, `-`, `_`; at most 64).
fn connector_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}
