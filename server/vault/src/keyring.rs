//! The key ring: RSA key pairs in a folder, `key-<N>.pem` (PKCS#8), the highest `N` current.
//!
//! New data is sealed under a data key wrapped (RSA-OAEP, SHA-256) by the current key; data
//! sealed under an older key opens as long as its key file stays. A rotation adds the next key;
//! every process using the folder starts sealing with it within [`RELOAD_EVERY`], without a
//! restart. Unwrapping a data key (the private-key operation) goes through AWS-LC, in constant
//! time, and each wrapped key is unwrapped once per process ([`OPENED_MAX`] kept).

use crate::{Error, Result};
use aws_lc_rs::aead::{AES_256_GCM, LessSafeKey, UnboundKey};
use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::rsa::{
    KeySize, OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey, OaepPublicEncryptingKey,
    PrivateDecryptingKey,
};
use rustls_pki_types::PrivatePkcs8KeyDer;
use rustls_pki_types::pem::PemObject;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

/// How often the folder is looked at for a newer key.
pub const RELOAD_EVERY: Duration = Duration::from_secs(2);
/// Unwrapped data keys kept in memory.
const OPENED_MAX: usize = 4096;
/// Seals under one process data key before a fresh one is made (random 96-bit nonces stay far
/// from their collision bound).
const SEALS_PER_DATA_KEY: u64 = 1 << 24;
/// Size of the key pairs the ring makes.
const NEW_KEY_SIZE: KeySize = KeySize::Rsa3072;

/// A data key: what seals, and how it travels (wrapped by a key of the ring).
pub(crate) struct DataKey {
    pub(crate) key_id: u32,
    pub(crate) wrapped: Vec<u8>,
    pub(crate) aead: LessSafeKey,
}

struct KeyPair {
    private: OaepPrivateDecryptingKey,
    public: OaepPublicEncryptingKey,
}

struct Loaded {
    keys: BTreeMap<u32, KeyPair>,
    /// Modification time of the folder when it was read.
    stamp: Option<SystemTime>,
}

/// What one key of the ring is, for `keys list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// Its number.
    pub id: u32,
    /// Its size, bits.
    pub bits: usize,
    /// Whether new data is sealed under it.
    pub current: bool,
    /// Its file.
    pub path: PathBuf,
}

/// The key pairs of one folder, and the data keys sealed and opened under them.
pub struct Keyring {
    dir: PathBuf,
    rng: SystemRandom,
    loaded: RwLock<Loaded>,
    checked: Mutex<Instant>,
    /// The process's data key for values, and how many seals it made.
    sealing: Mutex<Option<(Arc<DataKey>, u64)>>,
    /// Unwrapped data keys, by their wrapped bytes.
    opened: Mutex<HashMap<Vec<u8>, Arc<LessSafeKey>>>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keyring({})", self.dir.display())
    }
}

impl Keyring {
    /// Opens the key ring in `dir`; an empty or missing folder is an error.
    pub fn open(dir: &Path) -> Result<Self> {
        let loaded = read_dir(dir)?;
        if loaded.keys.is_empty() {
            return Err(Error::NoKeys(dir.to_owned()));
        }
        Ok(Self {
            dir: dir.to_owned(),
            rng: SystemRandom::new(),
            loaded: RwLock::new(loaded),
            checked: Mutex::new(Instant::now()),
            sealing: Mutex::new(None),
            opened: Mutex::new(HashMap::new()),
        })
    }

    /// Opens the key ring in `dir`, making its first key when it has none. Returns whether a
    /// key was made.
    pub fn open_or_create(dir: &Path) -> Result<(Self, bool)> {
        let loaded = read_dir(dir)?;
        let created = loaded.keys.is_empty();
        if created {
            add_key(dir, 1)?;
        }
        Ok((Self::open(dir)?, created))
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Adds the next key and makes it current (here at once, in other processes within
    /// [`RELOAD_EVERY`]). Returns its number.
    pub fn rotate(&self) -> Result<u32> {
        self.reload()?;
        let next = self.current_id() + 1;
        add_key(&self.dir, next)?;
        self.reload()?;
        *self.sealing.lock().expect("sealing") = None;
        Ok(next)
    }

    /// The keys, oldest first.
    pub fn list(&self) -> Vec<KeyInfo> {
        let loaded = self.loaded.read().expect("keys");
        let current = loaded.keys.keys().next_back().copied();
        loaded
            .keys
            .iter()
            .map(|(id, k)| KeyInfo {
                id: *id,
                bits: k.public.key_size_bits(),
                current: Some(*id) == current,
                path: key_path(&self.dir, *id),
            })
            .collect()
    }

    /// The number of the key new data is sealed under.
    pub fn current(&self) -> u32 {
        self.reload_if_due();
        self.current_id()
    }

    fn current_id(&self) -> u32 {
        let loaded = self.loaded.read().expect("keys");
        loaded.keys.keys().next_back().copied().unwrap_or(0)
    }

    /// Reads the folder again if it changed.
    fn reload(&self) -> Result<()> {
        *self.checked.lock().expect("checked") = Instant::now();
        let stamp = folder_stamp(&self.dir);
        if stamp.is_some() && stamp == self.loaded.read().expect("keys").stamp {
            return Ok(());
        }
        let fresh = read_dir(&self.dir)?;
        if fresh.keys.is_empty() {
            return Err(Error::NoKeys(self.dir.clone()));
        }
        *self.loaded.write().expect("keys") = fresh;
        Ok(())
    }

    /// Reloads when the last look is older than [`RELOAD_EVERY`].
    fn reload_if_due(&self) {
        let due = self.checked.lock().expect("checked").elapsed() >= RELOAD_EVERY;
        if due && let Err(e) = self.reload() {
            tracing::warn!(
                "cannot read the key ring again: {e}; going on with the keys read before"
            );
        }
    }

    /// A fresh data key under the current key.
    pub(crate) fn new_data_key(&self) -> Result<DataKey> {
        self.reload_if_due();
        let mut raw = [0u8; 32];
        self.rng.fill(&mut raw).map_err(|_| Error::Random)?;
        let loaded = self.loaded.read().expect("keys");
        let (id, pair) = loaded
            .keys
            .iter()
            .next_back()
            .ok_or_else(|| Error::NoKeys(self.dir.clone()))?;
        let mut wrapped = vec![0u8; pair.public.ciphertext_size()];
        let len = pair
            .public
            .encrypt(&OAEP_SHA256_MGF1SHA256, &raw, &mut wrapped, None)
            .map_err(|_| Error::Crypto("cannot wrap a data key"))?
            .len();
        wrapped.truncate(len);
        Ok(DataKey {
            key_id: *id,
            wrapped,
            aead: aead_key(&raw)?,
        })
    }

    /// The process's data key for values (made again after a rotation, and every
    /// [`SEALS_PER_DATA_KEY`] seals).
    pub(crate) fn sealing_key(&self) -> Result<Arc<DataKey>> {
        self.reload_if_due();
        let current = self.current_id();
        let mut sealing = self.sealing.lock().expect("sealing");
        match &mut *sealing {
            Some((key, count)) if key.key_id == current && *count < SEALS_PER_DATA_KEY => {
                *count += 1;
                Ok(key.clone())
            }
            _ => {
                let key = Arc::new(self.new_data_key()?);
                *sealing = Some((key.clone(), 1));
                Ok(key)
            }
        }
    }

    /// The data key `wrapped` under key `key_id`, unwrapped (once per process).
    pub(crate) fn unwrap(&self, key_id: u32, wrapped: &[u8]) -> Result<Arc<LessSafeKey>> {
        if let Some(k) = self.opened.lock().expect("opened").get(wrapped) {
            return Ok(k.clone());
        }
        if !self.loaded.read().expect("keys").keys.contains_key(&key_id) {
            self.reload()?;
        }
        let loaded = self.loaded.read().expect("keys");
        let pair = loaded.keys.get(&key_id).ok_or_else(|| Error::UnknownKey {
            id: key_id,
            dir: self.dir.clone(),
        })?;
        let mut raw = vec![0u8; pair.private.min_output_size()];
        let raw = pair
            .private
            .decrypt(&OAEP_SHA256_MGF1SHA256, wrapped, &mut raw, None)
            .map_err(|_| Error::Damaged(format!("its data key does not open with key {key_id}")))?;
        let key = Arc::new(aead_key(raw)?);
        let mut opened = self.opened.lock().expect("opened");
        if opened.len() >= OPENED_MAX {
            opened.clear();
        }
        opened.insert(wrapped.to_vec(), key.clone());
        Ok(key)
    }
}

pub(crate) fn aead_key(raw: &[u8]) -> Result<LessSafeKey> {
    let key = UnboundKey::new(&AES_256_GCM, raw)
        .map_err(|_| Error::Damaged("a data key is not 32 bytes".into()))?;
    Ok(LessSafeKey::new(key))
}

fn key_path(dir: &Path, id: u32) -> PathBuf {
    dir.join(format!("key-{id}.pem"))
}

fn folder_stamp(dir: &Path) -> Option<SystemTime> {
    std::fs::metadata(dir).and_then(|m| m.modified()).ok()
}

/// Every `key-<N>.pem` of the folder (a missing folder holds none).
fn read_dir(dir: &Path) -> Result<Loaded> {
    let stamp = folder_stamp(dir);
    let mut keys = BTreeMap::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Loaded { keys, stamp }),
        Err(e) => return Err(Error::io(dir, e)),
    };
    for entry in entries {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        let Some(id) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("key-")?.strip_suffix(".pem"))
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        keys.insert(id, read_key(&path)?);
    }
    Ok(Loaded { keys, stamp })
}

fn read_key(path: &Path) -> Result<KeyPair> {
    let bad = |message: &str| Error::Key {
        path: path.to_owned(),
        message: message.to_owned(),
    };
    let pem = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let der = PrivatePkcs8KeyDer::from_pem_slice(&pem)
        .map_err(|_| bad("not a PKCS#8 private key in PEM (BEGIN PRIVATE KEY)"))?;
    let private = PrivateDecryptingKey::from_pkcs8(der.secret_pkcs8_der())
        .map_err(|_| bad("not an RSA private key of 2048 bits or more"))?;
    let public = OaepPublicEncryptingKey::new(private.public_key())
        .map_err(|_| bad("its public key cannot encrypt"))?;
    let private =
        OaepPrivateDecryptingKey::new(private).map_err(|_| bad("the key cannot decrypt"))?;
    Ok(KeyPair { private, public })
}

/// Makes key `id` in `dir` (0600, written whole then renamed; never over an existing one).
fn add_key(dir: &Path, id: u32) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::io(dir, e))?;
    let path = key_path(dir, id);
    if path.exists() {
        return Err(Error::Key {
            path,
            message: "already exists".into(),
        });
    }
    let key = PrivateDecryptingKey::generate(NEW_KEY_SIZE)
        .map_err(|_| Error::Crypto("cannot generate an RSA key"))?;
    let der =
        AsDer::<Pkcs8V1Der>::as_der(&key).map_err(|_| Error::Crypto("cannot encode a key"))?;
    let pem = crate::pem("PRIVATE KEY", der.as_ref());
    let tmp = dir.join(format!(".key-{id}.pem.tmp"));
    crate::write_private(&tmp, pem.as_bytes())?;
    // A link never replaces a key another process made meanwhile.
    std::fs::hard_link(&tmp, &path).map_err(|e| Error::io(&path, e))?;
    let _ = std::fs::remove_file(&tmp);
    tracing::info!(key = id, file = %path.display(), "made a key of the key ring");
    Ok(())
}
