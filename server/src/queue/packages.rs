//! Connector packages: administrators publish signed bundles, the server offers each agent the
//! active version of every connector its connection files name, and agents download them over
//! their own connection. The server checks a bundle's form and that its signature file names
//! the bundle's digest; whether the publisher is trusted is each agent's decision, with keys of
//! its own (the server cannot make an agent run code nobody it trusts signed).

use super::Queue;
use crate::error::{Error, Result};
use idgard_protocol::{PackageOffer, PackageOffers, PackageView, Published};
use idgard_signing::{Package, Signature, bundle};
use sha2::{Digest, Sha256};
use sqlx::Row;
use sqlx::any::AnyRow;

/// Largest bundle the server takes.
pub const MAX_BUNDLE_BYTES: usize = 64 << 20;
/// Package downloads served at once (each holds its bundle in memory).
pub const DOWNLOADS_AT_ONCE: usize = 4;

const VIEW_COLUMNS: &str = "p.name, p.version, p.digest, p.size, p.publisher, p.algorithm, \
     p.published_ms, p.published_by, CAST(CASE WHEN a.digest IS NULL THEN 0 ELSE 1 END AS BIGINT)";

impl Queue {
    /// Stores a bundle published by `by`. It becomes the active version of its connector when
    /// there is none yet or when it is newer (semantic versions); an older one is only stored,
    /// and offered once activated explicitly.
    pub async fn publish_package(&self, bytes: &[u8], by: &str) -> Result<Published> {
        let package = bundle::read(bytes).map_err(|e| Error::invalid(e.to_string()))?;
        let sig = Signature::parse(package.signature.as_deref().ok_or_else(|| {
            Error::invalid(format!(
                "package {} {} is not signed: sign it first (idgard-agent connector sign); \
                 agents load only packages their trusted publishers signed",
                package.meta.name, package.meta.version
            ))
        })?)
        .map_err(|e| Error::invalid(e.to_string()))?;
        let digest = package.digest_hex();
        if sig.digest != digest {
            return Err(Error::invalid(format!(
                "the signature covers digest {}, but the package's files have digest {digest}: \
                 sign the package again",
                sig.digest
            )));
        }
        let version = parse_version(&package)?;
        let signed = hex::encode(Sha256::digest(
            package.signature.as_deref().unwrap_or_default(),
        ));
        let mut tx = self.begin().await?;
        let existing: Option<(String, String)> = sqlx::query(
            "SELECT digest, signed FROM connector_packages WHERE name = $1 AND version = $2",
        )
        .bind(&package.meta.name)
        .bind(&package.meta.version)
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| Ok::<_, sqlx::Error>((r.try_get(0)?, r.try_get(1)?)))
        .transpose()?;
        match existing {
            Some((d, s)) if d == digest => {
                let outcome = if s == signed {
                    "unchanged"
                } else {
                    // The same files signed again (a new key, another publisher): the new
                    // signature replaces the old, and agents fetch the package again.
                    sqlx::query(
                        "UPDATE connector_packages SET bundle = $1, size = $2, publisher = $3, \
                         algorithm = $4, signed = $5, published_ms = $6, published_by = $7 \
                         WHERE digest = $8",
                    )
                    .bind(bytes.to_vec())
                    .bind(bytes.len() as i64)
                    .bind(&sig.publisher)
                    .bind(sig.algorithm.to_string())
                    .bind(&signed)
                    .bind(self.now())
                    .bind(by)
                    .bind(&digest)
                    .execute(&mut *tx)
                    .await?;
                    "re-signed"
                };
                tx.commit().await?;
                if outcome == "re-signed" {
                    self.db.wakers.wake_all();
                    tracing::info!(connector = %package.meta.name, version = %package.meta.version,
                        publisher = %sig.publisher, by, "package signed again");
                }
                return Ok(Published {
                    package: self.package_view(&digest).await?,
                    outcome: outcome.into(),
                });
            }
            Some((d, _)) => {
                return Err(Error::conflict(format!(
                    "{} {} is already published with digest {d}: a published version never \
                     changes; publish this one under a new version",
                    package.meta.name, package.meta.version
                )));
            }
            None => {}
        }
        sqlx::query(
            "INSERT INTO connector_packages (digest, name, version, bundle, size, publisher, \
             algorithm, published_ms, published_by, signed) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&digest)
        .bind(&package.meta.name)
        .bind(&package.meta.version)
        .bind(bytes.to_vec())
        .bind(bytes.len() as i64)
        .bind(&sig.publisher)
        .bind(sig.algorithm.to_string())
        .bind(self.now())
        .bind(by)
        .bind(&signed)
        .execute(&mut *tx)
        .await?;
        let active: Option<String> = sqlx::query(
            "SELECT p.version FROM connector_active a JOIN connector_packages p \
             ON p.digest = a.digest WHERE a.name = $1",
        )
        .bind(&package.meta.name)
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| r.try_get(0))
        .transpose()?;
        // An active version that is not a semantic version (none can be stored) yields.
        let newer = match active.as_deref().map(semver::Version::parse) {
            Some(Ok(active)) => version > active,
            Some(Err(_)) | None => true,
        };
        if newer {
            self.set_active(&mut tx, &package.meta.name, &digest, by)
                .await?;
        }
        tx.commit().await?;
        if newer {
            self.db.wakers.wake_all();
        }
        tracing::info!(
            connector = %package.meta.name, version = %package.meta.version, %digest,
            publisher = %sig.publisher, by, active = newer, "package published"
        );
        Ok(Published {
            package: self.package_view(&digest).await?,
            outcome: if newer { "active" } else { "stored" }.into(),
        })
    }

    /// Offers `version` of connector `name` from now on: an upgrade, or an explicit rollback.
    pub async fn activate_package(
        &self,
        name: &str,
        version: &str,
        by: &str,
    ) -> Result<PackageView> {
        let mut tx = self.begin().await?;
        let digest: String =
            sqlx::query("SELECT digest FROM connector_packages WHERE name = $1 AND version = $2")
                .bind(name)
                .bind(version)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| {
                    Error::not_found(format!("no package {name} {version} was published"))
                })?
                .try_get(0)?;
        self.set_active(&mut tx, name, &digest, by).await?;
        tx.commit().await?;
        self.db.wakers.wake_all();
        tracing::info!(connector = %name, version, %digest, by, "package activated");
        self.package_view(&digest).await
    }

    async fn set_active(
        &self,
        tx: &mut super::Tx,
        name: &str,
        digest: &str,
        by: &str,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO connector_active (name, digest, set_ms, set_by) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name) DO UPDATE SET digest = excluded.digest, set_ms = excluded.set_ms, \
             set_by = excluded.set_by",
        )
        .bind(name)
        .bind(digest)
        .bind(self.now())
        .bind(by)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Every stored package, by name and newest first.
    pub async fn packages(&self) -> Result<Vec<PackageView>> {
        let rows = sqlx::query(&format!(
            "SELECT {VIEW_COLUMNS} FROM connector_packages p \
             LEFT JOIN connector_active a ON a.digest = p.digest \
             ORDER BY p.name, p.published_ms DESC"
        ))
        .fetch_all(&self.db.read)
        .await?;
        rows.iter().map(view).collect()
    }

    async fn package_view(&self, digest: &str) -> Result<PackageView> {
        let row = sqlx::query(&format!(
            "SELECT {VIEW_COLUMNS} FROM connector_packages p \
             LEFT JOIN connector_active a ON a.digest = p.digest WHERE p.digest = $1"
        ))
        .bind(digest)
        .fetch_optional(&self.db.read)
        .await?
        .ok_or_else(|| Error::not_found(format!("no package with digest {digest}")))?;
        view(&row)
    }

    /// The active packages of the connectors `agent`'s connection files name, and their tag.
    pub async fn package_offers(&self, agent: i64) -> Result<PackageOffers> {
        let wants: String = sqlx::query("SELECT wants FROM agents WHERE id = $1")
            .bind(agent)
            .fetch_optional(&self.db.read)
            .await?
            .map(|r| r.try_get(0))
            .transpose()?
            .unwrap_or_default();
        let wants: Vec<String> = serde_json::from_str(&wants).unwrap_or_default();
        let rows = sqlx::query(
            "SELECT p.name, p.version, p.digest, p.size, p.signed FROM connector_active a \
             JOIN connector_packages p ON p.digest = a.digest ORDER BY p.name",
        )
        .fetch_all(&self.db.read)
        .await?;
        let mut offers = Vec::new();
        for row in rows {
            let name: String = row.try_get(0)?;
            if wants.contains(&name) {
                offers.push(PackageOffer {
                    name,
                    version: row.try_get(1)?,
                    digest: row.try_get(2)?,
                    size: row.try_get::<i64, _>(3)?.max(0) as u64,
                    signed: row.try_get(4)?,
                });
            }
        }
        Ok(PackageOffers {
            tag: tag(&offers),
            offers,
        })
    }

    /// The bundle of a package offered to `agent` now (nothing else is served to agents). At
    /// most [`DOWNLOADS_AT_ONCE`] bundles are held in memory for downloads at once; more wait.
    pub async fn package_bundle(&self, agent: i64, digest: &str) -> Result<Vec<u8>> {
        static DOWNLOADS: tokio::sync::Semaphore =
            tokio::sync::Semaphore::const_new(DOWNLOADS_AT_ONCE);
        let _slot = DOWNLOADS.acquire().await.map_err(|_| {
            Error::new(
                idgard_protocol::ErrorCode::Unavailable,
                "the server is stopping",
            )
        })?;
        let offered = self.package_offers(agent).await?;
        if !offered.offers.iter().any(|o| o.digest == digest) {
            return Err(Error::not_found(format!(
                "no package with digest {digest} is offered to this agent"
            )));
        }
        Ok(
            sqlx::query("SELECT bundle FROM connector_packages WHERE digest = $1")
                .bind(digest)
                .fetch_one(&self.db.read)
                .await?
                .try_get(0)?,
        )
    }
}

/// A package's version, which must be a semantic version (versions are compared).
fn parse_version(package: &Package) -> Result<semver::Version> {
    semver::Version::parse(&package.meta.version).map_err(|e| {
        Error::invalid(format!(
            "{}: the version `{}` is not a semantic version (MAJOR.MINOR.PATCH): {e}",
            package.meta.name, package.meta.version
        ))
    })
}

/// Names a set of offers: what an agent holds is compared by this.
fn tag(offers: &[PackageOffer]) -> String {
    let mut h = Sha256::new();
    for o in offers {
        for part in [&o.name, &o.digest, &o.signed] {
            h.update(part.as_bytes());
            h.update([0]);
        }
    }
    hex::encode(&h.finalize()[..12])
}

fn view(row: &AnyRow) -> Result<PackageView> {
    Ok(PackageView {
        name: row.try_get(0)?,
        version: row.try_get(1)?,
        digest: row.try_get(2)?,
        size: row.try_get::<i64, _>(3)?.max(0) as u64,
        publisher: row.try_get(4)?,
        algorithm: row.try_get(5)?,
        published_ms: row.try_get(6)?,
        published_by: row.try_get(7)?,
        active: row.try_get::<i64, _>(8)? == 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(name: &str, digest: &str) -> PackageOffer {
        PackageOffer {
            name: name.into(),
            version: "1.0.0".into(),
            digest: digest.into(),
            size: 1,
            signed: "s".into(),
        }
    }

    #[test]
    fn the_tag_changes_with_any_offer_and_only_then() {
        let a = tag(&[offer("csv", "aa"), offer("ldap", "bb")]);
        assert_eq!(a, tag(&[offer("csv", "aa"), offer("ldap", "bb")]));
        assert_ne!(a, tag(&[offer("csv", "ab"), offer("ldap", "bb")]));
        assert_ne!(a, tag(&[offer("csv", "aa")]));
        assert_ne!(tag(&[offer("c", "sva")]), tag(&[offer("cs", "va")]));
        assert_ne!(tag(&[]), a);
    }
}
