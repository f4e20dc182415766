//! `idgard package ...`: connector packages offered to agents.

use crate::PackageCommand;
use crate::show::{self, Output, Table, time};
use anyhow::{Context as _, Result};
use idgard_client::api::{Api, path};
use idgard_protocol::{ActivatePackage, PackageView, Published};

pub async fn run(api: &Api, c: PackageCommand, out: Output) -> Result<()> {
    match c {
        PackageCommand::List => {
            let list: Vec<PackageView> = api.get(&path(&["packages"], &[])).await?;
            if out == Output::Json {
                show::json(&list);
                return Ok(());
            }
            let mut t = Table::new(&[
                "CONNECTOR",
                "VERSION",
                "OFFERED",
                "PUBLISHER",
                "PUBLISHED",
                "DIGEST",
            ]);
            for p in list {
                t.row(vec![
                    p.name,
                    p.version,
                    if p.active { "yes" } else { "" }.into(),
                    format!("{} ({})", p.publisher, p.algorithm),
                    format!("{} by {}", time(p.published_ms), p.published_by),
                    match out {
                        Output::Wide => p.digest,
                        _ => p.digest.chars().take(16).collect(),
                    },
                ]);
            }
            t.print();
        }
        PackageCommand::Publish { bundle } => {
            let bytes = std::fs::read(&bundle)
                .with_context(|| format!("cannot read {}", bundle.display()))?;
            let p: Published = api.post_bytes(&path(&["packages"], &[]), bytes).await?;
            if out == Output::Json {
                show::json(&p);
                return Ok(());
            }
            let what = match p.outcome.as_str() {
                "active" => "published; offered to agents now",
                "stored" => {
                    "published; an older version than the one offered: `idgard package activate` offers it"
                }
                _ => "was published before: nothing changed",
            };
            show::line(&format!("{} {} {what}", p.package.name, p.package.version));
        }
        PackageCommand::Activate { name, version } => {
            let p: PackageView = api
                .post(
                    &path(&["packages", &name, "active"], &[]),
                    &ActivatePackage { version },
                )
                .await?;
            show::line(&format!(
                "{} {} offered to agents from now on (digest {})",
                p.name, p.version, p.digest
            ));
        }
    }
    Ok(())
}
