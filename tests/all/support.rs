//! What every test uses: one runtime, the loaded packages, a capturing observer, connections.

use idgard_host::{
    Cancel, Connection, Error, Level, Loaded, Observer, Outcome, Request, RunFolders, Runtime,
    RuntimeOptions,
};
use idgard_sdk::wire::{Entry, decode};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

pub fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        Runtime::new(RuntimeOptions {
            cache_dir: Some(dir.join("cache")),
            ..Default::default()
        })
        .unwrap()
    })
}

pub fn csv() -> &'static Loaded {
    static L: OnceLock<Loaded> = OnceLock::new();
    L.get_or_init(|| {
        runtime()
            .load(Path::new(idgard_tests::packages::CONNECTOR_CSV))
            .unwrap()
    })
}

pub fn misbehave() -> &'static Loaded {
    static L: OnceLock<Loaded> = OnceLock::new();
    L.get_or_init(|| {
        runtime()
            .load(Path::new(idgard_tests::packages::GUEST_MISBEHAVE))
            .unwrap()
    })
}

pub fn hostile() -> &'static Loaded {
    static L: OnceLock<Loaded> = OnceLock::new();
    L.get_or_init(|| {
        runtime()
            .load(Path::new(idgard_tests::packages::GUEST_HOSTILE))
            .unwrap()
    })
}

/// What a run reported besides its outcome.
#[derive(Clone, Default)]
pub struct Captured {
    pub logs: Arc<Mutex<Vec<(Level, String)>>>,
    pub progress: Arc<Mutex<Vec<String>>>,
    pub entries: Arc<Mutex<Vec<Entry>>>,
}

impl Captured {
    pub fn entries(&self) -> Vec<Entry> {
        self.entries.lock().unwrap().clone()
    }
    pub fn logs(&self) -> Vec<(Level, String)> {
        self.logs.lock().unwrap().clone()
    }
    pub fn logged(&self, text: &str) -> bool {
        self.logs().iter().any(|(_, m)| m.contains(text))
    }
    /// The `result` entry of the misbehaving guest: Ok(value) or Err(error).
    pub fn result(&self) -> Result<String, String> {
        let e = self
            .entries()
            .into_iter()
            .find(|e| e.key == "result")
            .expect("a result entry");
        match (e.get("ok"), e.get("error")) {
            (Some(v), _) => Ok(v.to_owned()),
            (_, Some(e)) => Err(e.to_owned()),
            _ => panic!("result entry without ok or error"),
        }
    }
}

impl Observer for Captured {
    fn log(&mut self, level: Level, message: &str) {
        self.logs.lock().unwrap().push((level, message.to_owned()));
    }
    fn progress(&mut self, _done: u64, _total: Option<u64>, message: &str) {
        self.progress.lock().unwrap().push(message.to_owned());
    }
    fn entries(&mut self, batch: &[u8], _count: u32) -> anyhow::Result<()> {
        let mut all = self.entries.lock().unwrap();
        for e in decode(batch) {
            all.push(e?.to_owned());
        }
        Ok(())
    }
}

/// A scratch folder with a connection file written into it.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn mkdir(&self, rel: &str) -> PathBuf {
        let p = self.path(rel);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    pub fn write(&self, rel: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
        p
    }

    pub fn connection(&self, toml: &str) -> Connection {
        let p = self.write("connection.toml", toml);
        Connection::load(&p).unwrap()
    }

    /// Runs with the scratch's `collect/` and `orders/` folders.
    pub fn run(
        &self,
        loaded: &Loaded,
        conn: &Connection,
        request: Request,
    ) -> (Result<Outcome, Error>, Captured) {
        self.run_cancellable(loaded, conn, request, &Cancel::new())
    }

    /// The same, cancelled when `cancel` is.
    pub fn run_cancellable(
        &self,
        loaded: &Loaded,
        conn: &Connection,
        request: Request,
        cancel: &Cancel,
    ) -> (Result<Outcome, Error>, Captured) {
        let collect = self.mkdir("collect");
        let orders = self.mkdir("orders");
        let captured = Captured::default();
        let folders = RunFolders {
            collect: Some(&collect),
            orders: Some(&orders),
        };
        let out = runtime().run_cancellable(
            loaded,
            conn,
            &folders,
            request,
            Box::new(captured.clone()),
            cancel,
        );
        (out, captured)
    }
}

pub fn full() -> Request {
    Request::Export {
        cursor: None,
        batch_size: 100,
    }
}

/// An incremental export from a cursor a previous export returned.
pub fn since(cursor: Option<idgard_host::model::Cursor>) -> Request {
    Request::Export {
        cursor,
        batch_size: 100,
    }
}

/// An order of a fulfilment.
pub fn order(
    id: &str,
    entity_type: &str,
    key: &str,
    kind: idgard_host::model::OrderKind,
) -> idgard_host::model::Order {
    idgard_host::model::Order {
        id: id.into(),
        entity_type: entity_type.into(),
        key: key.into(),
        kind,
    }
}
