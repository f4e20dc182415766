//! Connector packages the server delivers.
//!
//! The server offers, with a poll's answer, the active package of each connector this agent's
//! connection files name. The agent downloads a new one over its own connection
//! (`GET /api/v1/agent/packages/{digest}`), checks that its files have the digest offered and
//! that a trusted publisher signed them (`publishers/`), loads it through the host (which checks
//! the signature again, as it does for every package), and only then serves its connections
//! with it. A package it refuses is reported to the server with why; the connector it would
//! have replaced keeps running.
//!
//! Packages live in `work/packages/<name>/<digest>/`; `work/packages/active.json` says which
//! one serves each connector, so a restart needs no server to find them. A delivered package
//! takes precedence over the runtime folder's.

use crate::daemon::Agent;
use idgard_protocol::{PackageOffer, PackageOffers, REFUSED_MAX, RefusedPackage};
use idgard_signing::{Package, Trust, bundle};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Largest bundle downloaded.
const MAX_BUNDLE_BYTES: usize = 64 << 20;
/// The code of a download that failed (tried again after [`RETRY_DOWNLOAD`]).
const DOWNLOAD_FAILED: &str = "package.download";
/// How long after a failed download the offers are asked for again.
const RETRY_DOWNLOAD: std::time::Duration = std::time::Duration::from_secs(30);

/// A delivered package serving a connector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Active {
    version: String,
    digest: String,
    /// SHA-256 of its signature file, as offered (a package signed again is fetched again).
    #[serde(default)]
    signed: String,
}

#[derive(Default)]
struct State {
    /// The tag of the offers acted on.
    tag: Option<String>,
    active: BTreeMap<String, Active>,
    refused: BTreeMap<String, RefusedPackage>,
}

/// The packages the server delivered, and those refused.
pub(crate) struct Delivered {
    root: PathBuf,
    state: Mutex<State>,
    /// One set of offers is acted on at a time.
    busy: tokio::sync::Mutex<()>,
}

impl Delivered {
    /// What an earlier run installed (`work/packages/active.json`), each package still there;
    /// nothing when no publisher is trusted (any more): what was delivered is not used unchecked.
    pub(crate) fn load(work: &Path, trust: &Trust) -> Self {
        let root = work.join("packages");
        let mut active: BTreeMap<String, Active> = match std::fs::read(root.join("active.json")) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(
                    "{}/active.json is unreadable ({e}); delivered packages are fetched again",
                    root.display()
                );
                BTreeMap::new()
            }),
            Err(_) => BTreeMap::new(),
        };
        active.retain(|name, a| root.join(name).join(&a.digest).is_dir());
        if trust.is_empty() && !active.is_empty() {
            tracing::warn!(
                "packages the server delivered earlier are not used: this agent trusts no \
                 publisher now; their connectors are served by the runtime folder"
            );
            active.clear();
        }
        Self {
            root,
            state: Mutex::new(State {
                active,
                ..State::default()
            }),
            busy: tokio::sync::Mutex::new(()),
        }
    }

    /// The folder of each connector's delivered package.
    pub(crate) fn dirs(&self) -> BTreeMap<String, PathBuf> {
        self.lock()
            .active
            .iter()
            .map(|(name, a)| (name.clone(), self.root.join(name).join(&a.digest)))
            .collect()
    }

    /// The tag of the offers acted on, for the next poll.
    pub(crate) fn tag(&self) -> Option<String> {
        self.lock().tag.clone()
    }

    /// Notes offers tagged `tag` as the ones acted on, at once (so the next poll does not get
    /// them again while they install): whether they are news.
    pub(crate) fn note(&self, tag: &str) -> bool {
        let mut state = self.lock();
        if state.tag.as_deref() == Some(tag) {
            return false;
        }
        state.tag = Some(tag.to_owned());
        true
    }

    /// Packages refused, for the hello.
    pub(crate) fn refused(&self) -> Vec<RefusedPackage> {
        self.lock()
            .refused
            .values()
            .take(REFUSED_MAX)
            .cloned()
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn save(&self) {
        let active = self.lock().active.clone();
        let path = self.root.join("active.json");
        let tmp = self.root.join(".active.json.tmp");
        let written = std::fs::create_dir_all(&self.root)
            .and_then(|()| std::fs::write(&tmp, serde_json::to_vec_pretty(&active)?))
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = written {
            tracing::error!("cannot write {}: {e}", path.display());
        }
    }

    /// Removes package folders no longer serving a connector.
    fn prune(&self) {
        let keep = self.dirs();
        let Ok(names) = std::fs::read_dir(&self.root) else {
            return;
        };
        for name in names.flatten().filter(|e| e.path().is_dir()) {
            let Ok(digests) = std::fs::read_dir(name.path()) else {
                continue;
            };
            for d in digests.flatten() {
                let path = d.path();
                if !keep.values().any(|k| *k == path)
                    && let Err(e) = std::fs::remove_dir_all(&path)
                {
                    tracing::warn!("cannot remove {}: {e}", path.display());
                }
            }
        }
    }
}

/// The publishers this agent trusts, from its `publishers` folder.
pub(crate) fn trust(config: &crate::AgentConfig) -> anyhow::Result<Arc<Trust>> {
    use anyhow::Context;
    let trust = Trust::load(&config.publishers).with_context(|| {
        format!(
            "the trusted publishers in {} cannot be read",
            config.publishers.display()
        )
    })?;
    if trust.is_empty() {
        tracing::info!(
            "no trusted publisher in {}: connector packages of the runtime folder load without \
             a signature, and no package from the server loads",
            config.publishers.display()
        );
    } else {
        let names: Vec<String> = trust
            .publishers()
            .map(|(n, a)| format!("{n} ({a})"))
            .collect();
        tracing::info!(publishers = %names.join(", "), "only packages these publishers signed load");
    }
    Ok(Arc::new(trust))
}

impl Agent {
    /// Acts on the server's offers: installs what is new, forgets connectors no longer
    /// offered (their runtime folder serves them again), reloads, reports.
    /// Offers arrive through [`Delivered::note`], which says when they are news.
    pub(crate) async fn take_offers(self: Arc<Self>, offers: PackageOffers) {
        let _busy = self.packages.busy.lock().await;
        let mut changed = false;
        let mut retry = false;
        for offer in &offers.offers {
            let current = self.packages.lock().active.get(&offer.name).cloned();
            if current
                .as_ref()
                .is_some_and(|a| a.digest == offer.digest && a.signed == offer.signed)
            {
                // Installed already; an earlier refusal of another offer is over.
                changed |= self.packages.lock().refused.remove(&offer.name).is_some();
                continue;
            }
            match self.install(offer).await {
                Ok(publisher) => {
                    tracing::info!(
                        connector = %offer.name, version = %offer.version, digest = %offer.digest,
                        %publisher, replaces = ?current.map(|a| a.version),
                        "package from the server installed"
                    );
                    let mut state = self.packages.lock();
                    state.active.insert(
                        offer.name.clone(),
                        Active {
                            version: offer.version.clone(),
                            digest: offer.digest.clone(),
                            signed: offer.signed.clone(),
                        },
                    );
                    state.refused.remove(&offer.name);
                    changed = true;
                }
                Err((code, reason)) => {
                    retry |= code == DOWNLOAD_FAILED;
                    tracing::error!(
                        connector = %offer.name, version = %offer.version, digest = %offer.digest,
                        code, "package from the server refused: {reason}"
                    );
                    self.packages.lock().refused.insert(
                        offer.name.clone(),
                        RefusedPackage {
                            name: offer.name.clone(),
                            version: offer.version.clone(),
                            digest: offer.digest.clone(),
                            code: code.into(),
                            reason,
                        },
                    );
                    changed = true;
                }
            }
        }
        {
            let mut state = self.packages.lock();
            let before = state.active.len() + state.refused.len();
            state
                .active
                .retain(|name, _| offers.offers.iter().any(|o| o.name == *name));
            state
                .refused
                .retain(|name, _| offers.offers.iter().any(|o| o.name == *name));
            changed |= before != state.active.len() + state.refused.len();
        }
        if retry {
            // A download that failed is tried again: the next poll after a pause gets the
            // offers again (a poll answered at once with them would loop).
            let agent = self.clone();
            let tag = offers.tag.clone();
            tokio::spawn(async move {
                tokio::time::sleep(RETRY_DOWNLOAD).await;
                let mut state = agent.packages.lock();
                if state.tag.as_deref() == Some(tag.as_str()) {
                    state.tag = None;
                }
            });
        }
        if changed {
            self.packages.save();
            self.packages.prune();
            crate::registry::refresh(&self).await;
            // The refusals travel with the hello, whether or not the connections changed.
            self.say_hello(false).await;
        }
    }

    /// Downloads, checks and test-loads one offered package: who signed it, or a code and why
    /// not.
    async fn install(&self, offer: &PackageOffer) -> Result<String, (&'static str, String)> {
        if self.trust.is_empty() {
            return Err((
                "package.no_trusted_publisher",
                format!(
                    "this agent trusts no publisher ({} holds no key), so it loads no package \
                     from the server; add the publisher's public key there and restart the agent",
                    self.config.publishers.display()
                ),
            ));
        }
        let bytes = self
            .client
            .get_bytes(
                &format!("/api/v1/agent/packages/{}", offer.digest),
                MAX_BUNDLE_BYTES,
            )
            .await
            .map_err(|e| (DOWNLOAD_FAILED, format!("download failed: {e}")))?;
        let package = bundle::read(&bytes).map_err(|e| (e.code(), e.to_string()))?;
        check_offer(&self.trust, offer, &package)?;
        let dir = self.packages.root.join(&offer.name).join(&offer.digest);
        write_package(&package, &dir)
            .map_err(|e| ("package.io", format!("cannot write {}: {e}", dir.display())))?;
        let runtime = self.runtime.clone();
        let load_dir = dir.clone();
        let loaded = tokio::task::spawn_blocking(move || runtime.load(&load_dir)).await;
        let refuse = |why: String| {
            let _ = std::fs::remove_dir_all(&dir);
            Err(("package.unloadable", why))
        };
        let loaded = match loaded {
            Ok(Ok(l)) => l,
            Ok(Err(e)) => return refuse(format!("{e}")),
            Err(e) => return refuse(format!("{e}")),
        };
        // The connections it would serve must fit it, or they would be left without one.
        let unfit = {
            let registry = self.registry.read().expect("registry");
            registry
                .connections
                .values()
                .filter(|(c, _)| c.connector.as_deref() == Some(offer.name.as_str()))
                .find_map(|(c, _)| {
                    let e = loaded.manifest.resolve_settings(&c.settings).err()?;
                    Some(format!("connection `{}`: settings: {e}", c.name))
                })
        };
        match unfit {
            Some(why) => refuse(why),
            None => Ok(loaded.publisher.unwrap_or_default()),
        }
    }
}

/// The package is the one offered, and a trusted publisher signed it.
fn check_offer(
    trust: &Trust,
    offer: &PackageOffer,
    package: &Package,
) -> Result<String, (&'static str, String)> {
    if package.meta.name != offer.name || package.digest_hex() != offer.digest {
        return Err((
            "package.digest_mismatch",
            format!(
                "the server offered {} with digest {} but sent {} {} with digest {}",
                offer.name,
                offer.digest,
                package.meta.name,
                package.meta.version,
                package.digest_hex()
            ),
        ));
    }
    trust
        .verify(package)
        .map(|v| v.publisher)
        .map_err(|e| (e.code(), e.to_string()))
}

/// Writes the package into `dir` through a temporary folder renamed into place.
fn write_package(package: &Package, dir: &Path) -> std::io::Result<()> {
    let parent = dir.parent().expect("a package folder has a parent");
    std::fs::create_dir_all(parent)?;
    let tmp = parent.join(format!(
        ".incoming-{}",
        dir.file_name().unwrap_or_default().to_string_lossy()
    ));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir(&tmp)?;
    package
        .write_dir(&tmp)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let _ = std::fs::remove_dir_all(dir);
    std::fs::rename(&tmp, dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn package(version: &str) -> Package {
        Package::from_parts(
            format!("name = \"csv\"\nversion = \"{version}\"\ncomponent = \"c.wasm\"\n")
                .into_bytes(),
            b"wasm".to_vec(),
            None,
        )
        .unwrap()
    }

    #[test]
    fn a_package_other_than_the_one_offered_is_refused() {
        let p = package("1.0.0");
        let offer = PackageOffer {
            name: "csv".into(),
            version: "1.0.0".into(),
            digest: package("1.0.1").digest_hex(),
            size: 1,
            signed: String::new(),
        };
        let (code, why) = check_offer(&Trust::default(), &offer, &p).unwrap_err();
        assert_eq!(code, "package.digest_mismatch");
        assert!(why.contains("1.0.0"), "{why}");
        // The right one goes on to the signature, which an empty trust refuses.
        let offer = PackageOffer {
            digest: p.digest_hex(),
            ..offer
        };
        assert_eq!(
            check_offer(&Trust::default(), &offer, &p).unwrap_err().0,
            "package.unsigned"
        );
    }

    #[test]
    fn what_was_installed_is_found_again_if_its_folder_is_there() {
        let work = tempfile::tempdir().unwrap();
        let mut trust_dir = work.path().join("publishers");
        std::fs::create_dir(&trust_dir).unwrap();
        let (_, public) = idgard_signing::generate_ed25519().unwrap();
        std::fs::write(trust_dir.join("acme.pem"), public).unwrap();
        let trust = Trust::load(&trust_dir).unwrap();
        let d = Delivered::load(work.path(), &trust);
        assert!(d.dirs().is_empty());
        d.lock().active.insert(
            "csv".into(),
            Active {
                version: "1.0.0".into(),
                digest: "ab".into(),
                signed: "s".into(),
            },
        );
        d.lock().active.insert(
            "gone".into(),
            Active {
                version: "1.0.0".into(),
                digest: "cd".into(),
                signed: "s".into(),
            },
        );
        std::fs::create_dir_all(work.path().join("packages/csv/ab")).unwrap();
        std::fs::create_dir_all(work.path().join("packages/csv/old")).unwrap();
        d.save();
        d.prune();
        assert!(!work.path().join("packages/csv/old").exists());
        let again = Delivered::load(work.path(), &trust);
        assert_eq!(
            again.dirs().into_keys().collect::<Vec<_>>(),
            vec!["csv".to_owned()]
        );
        // Without trusted publishers, nothing delivered is used.
        std::fs::remove_file(trust_dir.join("acme.pem")).unwrap();
        trust_dir = work.path().join("none");
        let unchecked = Delivered::load(work.path(), &Trust::load(&trust_dir).unwrap());
        assert!(unchecked.dirs().is_empty());
    }
}
