//! Connections whose folders overlap are refused. A connector with a read-write grant above (or
//! inside) another connection's folder could plant files or symbolic links there and so reach,
//! through the other connection's next run, what it was never granted; a grant over the agent's
//! own folders (work, runtime, connections, keys, secrets) could rewrite the agent's spool,
//! cursors or connectors, or read its keys. Two grants may overlap only when neither is writable, or when both say
//! `shared = true`; the agent's own folders are never grantable.

use idgard_host::Connection;
use idgard_host::grants::Access;
use std::path::{Component, Path, PathBuf};

/// One granted folder, as the check compares them.
struct Claim<'a> {
    folder: &'a str,
    path: PathBuf,
    writable: bool,
    shared: bool,
}

/// The path made absolute and normalised lexically (`a/./b/../c` is `a/c`); the host refuses
/// links in granted paths, so this is the folder the connector gets.
fn normalise(path: &Path) -> PathBuf {
    let absolute = if path.is_absolute() {
        path.to_owned()
    } else {
        std::env::current_dir().unwrap_or_default().join(path)
    };
    let mut out = PathBuf::from("/");
    for c in absolute.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// Whether one path is the other or lies inside it.
fn overlaps(a: &Path, b: &Path) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

fn claims(c: &Connection) -> Vec<Claim<'_>> {
    c.grants
        .folders
        .iter()
        .map(|(name, g)| Claim {
            folder: name,
            path: normalise(&g.path),
            writable: g.access == Access::ReadWrite,
            shared: g.shared,
        })
        .collect()
}

/// Checks a connection's folders against the agent's own folders (name, path) and against the
/// connections already accepted.
pub fn check<'a>(
    connection: &Connection,
    accepted: impl IntoIterator<Item = &'a Connection>,
    agent_folders: &[(&str, &Path)],
) -> Result<(), String> {
    let mine = claims(connection);
    for claim in &mine {
        for (what, path) in agent_folders {
            let path = normalise(path);
            if overlaps(&claim.path, &path) {
                return Err(format!(
                    "folder `{}` ({}) overlaps the agent's {what} folder ({}): grant a folder \
                     outside the agent's own",
                    claim.folder,
                    claim.path.display(),
                    path.display()
                ));
            }
        }
    }
    for other in accepted {
        for theirs in claims(other) {
            for claim in &mine {
                let risky = claim.writable || theirs.writable;
                let allowed = claim.shared && theirs.shared;
                if risky && !allowed && overlaps(&claim.path, &theirs.path) {
                    return Err(format!(
                        "folder `{}` ({}) overlaps folder `{}` of connection `{}` ({}) and one \
                         of them is read-write: a connector could plant files or links in the \
                         other's folder. Give each connection its own folder, or mark both \
                         grants `shared = true` if they must share it",
                        claim.folder,
                        claim.path.display(),
                        theirs.folder,
                        other.name,
                        theirs.path.display()
                    ));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connection(name: &str, grants: &str) -> Connection {
        let text = format!("name = \"{name}\"\n{grants}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text).unwrap();
        Connection::load(&path).unwrap()
    }

    fn grant(name: &str, path: &str, access: &str, extra: &str) -> String {
        format!("[grants.folders.{name}]\npath = \"{path}\"\naccess = \"{access}\"\n{extra}\n")
    }

    #[test]
    fn a_writable_grant_may_not_cover_another_connections_folder() {
        let a = connection("a", &grant("rw", "/srv/rw", "read-write", ""));
        let b = connection(
            "b",
            &grant("secret", "/srv/rw/nested/secret", "read-only", ""),
        );
        let err = check(&b, [&a], &[]).unwrap_err();
        assert!(
            err.contains("overlaps folder `rw` of connection `a`"),
            "{err}"
        );
        // Either order, either side writable.
        let c = connection("c", &grant("x", "/srv", "read-only", ""));
        assert!(check(&c, [&a], &[]).is_err());
    }

    #[test]
    fn read_only_overlaps_separate_folders_and_shared_grants_pass() {
        let a = connection("a", &grant("src", "/srv/hr", "read-only", ""));
        let b = connection("b", &grant("src", "/srv/hr/2026", "read-only", ""));
        assert!(check(&b, [&a], &[]).is_ok());
        let c = connection("c", &grant("out", "/srv/hr-out", "read-write", ""));
        assert!(
            check(&c, [&a, &b], &[]).is_ok(),
            "a common prefix of names is no overlap"
        );
        let d = connection("d", &grant("rw", "/srv/x", "read-write", "shared = true"));
        let e = connection(
            "e",
            &grant("rw", "/srv/x/./y/..", "read-write", "shared = true"),
        );
        assert!(check(&e, [&d], &[]).is_ok());
        let f = connection("f", &grant("rw", "/srv/x", "read-write", ""));
        assert!(check(&f, [&d], &[]).is_err(), "both must say shared");
    }

    #[test]
    fn the_agents_own_folders_are_never_granted() {
        let a = connection(
            "a",
            &grant("all", "/var/lib/idgard", "read-only", "shared = true"),
        );
        let err = check(&a, [], &[("work", Path::new("/var/lib/idgard/work"))]).unwrap_err();
        assert!(err.contains("the agent's work folder"), "{err}");
    }
}
