//! Compiled components, cached on disk so that an agent compiles each connector once.
//!
//! Deserializing a compiled artifact runs whatever machine code it holds, so an entry is used
//! only when it is provably ours: each file carries an HMAC-SHA256, keyed with a secret that only
//! this cache's owner can read, over the engine's compatibility hash, the component's digest and
//! the artifact. A tampered entry, an entry copied from another machine, or one made by another
//! engine fails the check and is recompiled, never deserialized.

use crate::error::Error;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

type HmacSha256 = Hmac<Sha256>;

const MAGIC: &[u8; 8] = b"IDGCWSM1";
const TAG_LEN: usize = 32;

/// What happened when a component was looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheUse {
    /// A verified entry was loaded.
    Hit,
    /// No entry existed; the component was compiled and stored.
    Miss,
    /// An entry existed but failed verification; it was replaced.
    Refused,
    /// No cache is configured.
    Disabled,
}

/// A folder of compiled components.
#[derive(Debug)]
pub struct ArtifactCache {
    dir: PathBuf,
    key: [u8; 32],
}

impl ArtifactCache {
    /// Opens (creating) a cache folder. The folder must belong to this user and be writable by
    /// no one else; the key file is created on first use, readable by this user only.
    pub fn open(dir: &Path) -> Result<Self, Error> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let uid = rustix::process::geteuid().as_raw();
        let mut meta = std::fs::symlink_metadata(dir).map_err(|e| Error::io(dir, e))?;
        if meta.is_dir() && meta.uid() == uid && meta.mode() & 0o077 != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| Error::io(dir, e))?;
            meta = std::fs::symlink_metadata(dir).map_err(|e| Error::io(dir, e))?;
        }
        if !meta.is_dir() || meta.uid() != uid || meta.mode() & 0o022 != 0 {
            return Err(Error::Folder {
                path: dir.to_owned(),
                message: "the compiled-connector cache must be a folder owned by the agent's user \
                          and writable by no one else"
                    .into(),
            });
        }
        let key_path = dir.join("cache.key");
        let key = match std::fs::read(&key_path) {
            Ok(k) if k.len() == 32 => {
                let m = std::fs::metadata(&key_path).map_err(|e| Error::io(&key_path, e))?;
                if m.mode() & 0o077 != 0 || m.uid() != uid {
                    return Err(Error::Folder {
                        path: key_path,
                        message: "the cache key must be readable by the agent's user only".into(),
                    });
                }
                k.try_into().expect("32 bytes")
            }
            Ok(_) => {
                return Err(Error::Folder {
                    path: key_path,
                    message: "cache key is not 32 bytes".into(),
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut k = [0u8; 32];
                getrandom::fill(&mut k)
                    .map_err(|e| Error::Engine(format!("no randomness: {e}")))?;
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&key_path)
                    .map_err(|e| Error::io(&key_path, e))?;
                f.write_all(&k).map_err(|e| Error::io(&key_path, e))?;
                k
            }
            Err(e) => return Err(Error::io(&key_path, e)),
        };
        Ok(Self {
            dir: dir.to_owned(),
            key,
        })
    }

    fn tag(&self, compat: &[u8; 32], digest: &[u8; 32], artifact: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("any key length");
        mac.update(compat);
        mac.update(digest);
        mac.update(artifact);
        mac
    }

    /// The compiled form of `wasm`, from the cache when a verified entry exists.
    pub fn load(
        &self,
        engine: &Engine,
        path: &Path,
        wasm: &[u8],
    ) -> Result<(Component, CacheUse), Error> {
        let digest: [u8; 32] = Sha256::digest(wasm).into();
        let compat = compatibility_hash(engine);
        let file = self.dir.join(format!(
            "{}-{}.cwasm",
            hex::encode(digest),
            hex::encode(&compat[..8])
        ));
        let mut refused = false;
        match std::fs::read(&file) {
            Ok(bytes) => match self.verify(&compat, &digest, &bytes) {
                Ok(artifact) => {
                    // SAFETY: the artifact carries a valid HMAC under our private key over this
                    // engine's compatibility hash and this component's digest: we made it.
                    let c = unsafe { Component::deserialize(engine, artifact) };
                    match c {
                        Ok(c) => return Ok((c, CacheUse::Hit)),
                        Err(e) => {
                            tracing::warn!(file = %file.display(), "cached artifact unusable, recompiling: {e}");
                            refused = true;
                        }
                    }
                }
                Err(why) => {
                    tracing::warn!(file = %file.display(), "refusing cached artifact ({why}); recompiling");
                    refused = true;
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&file, e)),
        }
        let component = compile(engine, path, wasm)?;
        let artifact = component
            .serialize()
            .map_err(|e| Error::Engine(e.to_string()))?;
        let tag = self
            .tag(&compat, &digest, &artifact)
            .finalize()
            .into_bytes();
        let tmp = file.with_extension("tmp");
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(MAGIC)?;
            f.write_all(&tag)?;
            f.write_all(&artifact)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &file)
        };
        if let Err(e) = write() {
            // A cache that cannot be written only costs a recompilation next time.
            tracing::warn!(file = %file.display(), "cannot store compiled connector: {e}");
            let _ = std::fs::remove_file(&tmp);
        }
        Ok((
            component,
            if refused {
                CacheUse::Refused
            } else {
                CacheUse::Miss
            },
        ))
    }

    fn verify<'a>(
        &self,
        compat: &[u8; 32],
        digest: &[u8; 32],
        bytes: &'a [u8],
    ) -> Result<&'a [u8], &'static str> {
        if bytes.len() < MAGIC.len() + TAG_LEN || &bytes[..MAGIC.len()] != MAGIC {
            return Err("not an idgard cache entry");
        }
        let (tag, artifact) = bytes[MAGIC.len()..].split_at(TAG_LEN);
        self.tag(compat, digest, artifact)
            .verify_slice(tag)
            .map_err(|_| "signature does not match")?;
        Ok(artifact)
    }
}

/// Compiles a component, with the file named in any error.
pub(crate) fn compile(engine: &Engine, path: &Path, wasm: &[u8]) -> Result<Component, Error> {
    Component::new(engine, wasm)
        .map_err(|e| Error::component(path, format!("cannot compile: {e:#}")))
}

/// The engine's compatibility hash as bytes (a stable hasher fed with it).
fn compatibility_hash(engine: &Engine) -> [u8; 32] {
    use std::hash::{Hash, Hasher};
    struct ShaHasher(Sha256);
    impl Hasher for ShaHasher {
        fn finish(&self) -> u64 {
            unreachable!("only bytes are read")
        }
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
    }
    let mut h = ShaHasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut h);
    h.0.finalize().into()
}
