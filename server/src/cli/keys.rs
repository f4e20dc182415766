//! `idgard-server keys`: the key ring sealing what the server stores.

use anyhow::{Context, Result};
use clap::Subcommand;
use idgard_server::config::Config;
use idgard_server::db::{DatabaseKey, cipher};
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
            // The database's key is sealed again at once, so that it never waits on an old key.
            if let Some(db) = idgard_server::db::sqlite_file(&config.database_url())
                && DatabaseKey::load(&ring, &db)?.is_some()
            {
                say!(
                    "the database key {} is now sealed under key {id}",
                    cipher::key_file(&db).display()
                );
            }
        }
    }
    if let Some(db) = idgard_server::db::sqlite_file(&config.database_url()) {
        let file = cipher::key_file(&db);
        if let Ok(sealed) = std::fs::read(&file) {
            let under = idgard_vault::key_of(&sealed)
                .map_or("no known key".to_owned(), |k| format!("key {k}"));
            say!(
                "the database key {} is sealed under {under}",
                file.display()
            );
        }
    }
    Ok(())
}
