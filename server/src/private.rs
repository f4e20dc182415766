//! What the server keeps on disk is readable by its own user only: the data folder is 0700 and
//! every file the server creates is 0600 (the process's umask is 077), whatever the folder was
//! made with (`StateDirectory=` makes it 0755). A data folder or database file others could
//! read is fixed at start, with a warning naming it.

use anyhow::{Context, Result};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// The SQLite database's files in the data folder.
const DATABASE_FILES: &[&str] = &[
    "idgard.db",
    "idgard.db-wal",
    "idgard.db-shm",
    "idgard.db.key",
];

/// Makes what the server creates from now on its own, and takes back what others could read
/// in `data_dir` (when it exists).
pub fn protect(data_dir: &Path) -> Result<()> {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    if !data_dir.exists() {
        return Ok(());
    }
    restrict(data_dir, 0o700)?;
    for name in DATABASE_FILES {
        let path = data_dir.join(name);
        if path.exists() {
            restrict(&path, 0o600)?;
        }
    }
    Ok(())
}

/// Sets `mode` on `path` when others than its owner may use it.
fn restrict(path: &Path, mode: u32) -> Result<()> {
    let now = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .permissions()
        .mode()
        & 0o777;
    if now & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("cannot restrict {} to its owner", path.display()))?;
        tracing::warn!(
            "{} was readable by others (mode {now:o}): now {mode:o}",
            path.display()
        );
    }
    Ok(())
}

/// Creates a folder only its owner can enter.
pub fn create_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    Ok(())
}
