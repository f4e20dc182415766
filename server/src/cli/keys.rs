//! `idgard-server keys`: the key ring sealing what the server stores.

use anyhow::{Context, Result};
use clap::Subcommand;
use idgard_server::config::Config;
use idgard_vault::Keyring;

/// What `keys` can do.
#[derive(Subcommand)]
pub enum KeysCommand {
    /// Lists the keys of the ring, the current one marked.
    List,
    /// Adds a key that seals from now on (running replicas take it within seconds); what
    /// older keys sealed stays readable while their files stay.
    Rotate,
}

/// Runs a `keys` command.
pub fn run(config: &Config, command: KeysCommand) -> Result<()> {
    let (dir, _) = config.keyring();
    let ring = Keyring::open(&dir).with_context(|| format!("the key ring {}", dir.display()))?;
    match command {
        KeysCommand::List => {
            for k in ring.list() {
                say!(
                    "key {} ({} bits){}  {}",
                    k.id,
                    k.bits,
                    if k.current { ", current" } else { "" },
                    k.path.display()
                );
            }
        }
        KeysCommand::Rotate => {
            let id = ring.rotate()?;
            say!(
                "key {id} added in {}: new data is sealed with it; keep the older keys while data they sealed remains (every replica reads this folder)",
                dir.display()
            );
        }
    }
    Ok(())
}
