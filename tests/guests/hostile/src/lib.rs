//! A connector that attacks the host on demand: it stalls, exhausts disk space and descriptors,
//! plants links, floods logs and results, and sends entries and messages built to confuse
//! whoever reads them. Each `mode` is one attack; the host's tests check that each is stopped or
//! defused. Where an outcome can be observed it comes back as one entry `result` with `ok` or
//! `error`.

use idgard_sdk::wire::BatchBuffer;
use idgard_sdk::{
    Connector, ConnectorInfo, Cursor, EntryOp, Error, ExportRequest, Exporter, Operation, Order,
    OrderResult, Settings,
};
use serde::Deserialize;
use std::fs::File;
use std::io::{Read, Write};
use std::time::Duration;

#[derive(Deserialize)]
struct Config {
    mode: String,
    path: Option<String>,
    target: Option<String>,
    count: Option<i64>,
    size: Option<i64>,
}

impl Config {
    fn count(&self, default: u64) -> u64 {
        self.count.map_or(default, |c| c.max(0) as u64)
    }
    fn size(&self, default: u64) -> u64 {
        self.size.map_or(default, |s| s.max(0) as u64)
    }
    fn path(&self) -> &str {
        self.path.as_deref().unwrap_or_default()
    }
    fn target(&self) -> &str {
        self.target.as_deref().unwrap_or_default()
    }
}

/// What an attack observed: `ok` or `error` in the `result` entry.
type Outcome = Result<String, String>;

/// Text that tries to clear the screen, retitle the terminal and forge a log line.
const ESCAPES: &str = "\x1b[2J\x1b]0;pwned\x07forged\nexported 5000 entries";

fn report(out: &mut Exporter, result: Outcome) {
    match result {
        Ok(v) => out.upsert("result", "result").attr("ok", &v),
        Err(e) => out.upsert("result", "result").attr("error", &e),
    };
}

/// An entry written after an attack, to show that the host let the run go on.
fn after(out: &mut Exporter) {
    out.upsert("result", "after").attr("ok", "still running");
}

pub struct Hostile;

impl Connector for Hostile {
    fn describe() -> ConnectorInfo {
        idgard_sdk::info("hostile", "0.1.0", &["result"]).with_operations(&[
            Operation::TestConnection,
            Operation::ExportFull,
            Operation::ExportIncremental,
            Operation::Fulfill,
        ])
    }

    fn test_connection(_settings: &Settings) -> Result<(), Error> {
        Ok(())
    }

    fn export(
        settings: &Settings,
        _request: &ExportRequest,
        out: &mut Exporter,
    ) -> Result<Option<Cursor>, Error> {
        let c: Config = settings.parse()?;
        match c.mode.as_str() {
            "sleep" => report(out, sleep(c.count(3600))),
            "poll-timer" => report(out, poll_timer(c.count(3600))),
            "read-endpoint" => report(out, read_endpoint(c.target())),
            "log-empty" => log_empty(out, c.count(5_000_000)),
            "log-escape" => return Err(log_escape(out)),
            "disk-big" => report(out, disk_big(c.path(), c.size(3072))),
            "disk-files" => report(out, disk_files(c.path(), c.count(200_000))),
            "disk-sparse" => report(out, disk_sparse(c.path())),
            "hold-files" => report(out, hold_files(c.path(), c.count(100_000))),
            "plant-link" => report(out, plant_link()),
            "symlink" => report(out, make_link(c.target(), c.path())),
            "huge-cursor" => return Ok(Some(huge_cursor(out, c.size(120_000_000)))),
            "ok" => {
                for i in 0..c.count(1) {
                    out.upsert("result", &format!("k{i}"))
                        .attr("n", &i.to_string());
                }
            }
            mode => match hostile_batch(mode, c.size(15 << 20) as usize) {
                Some(batch) => {
                    raw_emit(batch.as_bytes());
                    after(out);
                }
                None => return Err(Error::configuration(format!("unknown mode {mode}"))),
            },
        }
        Ok(None)
    }

    fn fulfill(settings: &Settings, orders: Vec<Order>) -> Result<Vec<OrderResult>, Error> {
        let c: Config = settings.parse()?;
        match c.mode.as_str() {
            "results-flood" => Ok(results_flood(&orders, c.count(800_000))),
            "error-huge" => Err(Error::internal("e".repeat((c.size(60) as usize) << 20))),
            _ => Ok(orders.iter().map(|o| OrderResult::done(&o.id)).collect()),
        }
    }
}

/// Sleeps through the standard library (a WASI poll underneath).
fn sleep(seconds: u64) -> Outcome {
    std::thread::sleep(Duration::from_secs(seconds));
    Ok("woke".into())
}

/// Blocks on a raw WASI monotonic-clock pollable.
#[cfg(target_arch = "wasm32")]
fn poll_timer(seconds: u64) -> Outcome {
    let nanos = seconds.saturating_mul(1_000_000_000);
    wasip2::clocks::monotonic_clock::subscribe_duration(nanos).block();
    Ok("woke".into())
}

#[cfg(not(target_arch = "wasm32"))]
fn poll_timer(seconds: u64) -> Outcome {
    sleep(seconds)
}

/// Connects and reads until the peer closes or the read fails; the test server never answers.
fn read_endpoint(target: &str) -> Outcome {
    let mut stream = std::net::TcpStream::connect(target).map_err(|e| format!("connect: {e}"))?;
    let mut buf = [0u8; 4096];
    let mut total = 0usize;
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Ok(format!("eof after {total} bytes")),
            Ok(n) => total += n,
            Err(e) => return Err(format!("read after {total} bytes: {e}")),
        }
    }
}

/// Millions of empty log lines: each costs the host a call, none carries text.
fn log_empty(out: &mut Exporter, count: u64) {
    for _ in 0..count {
        idgard_sdk::log::info("");
    }
    after(out);
}

/// Terminal escapes and forged lines in a log line, a progress message, an entry and an error.
fn log_escape(out: &mut Exporter) -> Error {
    idgard_sdk::log::info(ESCAPES);
    idgard_sdk::progress(1, None, ESCAPES);
    // Values may hold control characters (a line break in an address); whoever shows them
    // must escape them. Keys may not (the host refuses them): see `control-key`.
    out.upsert("result", "escape").attr("v", "\x1b[2Jcell");
    // The export fails, so the adapter will not flush what is pending: send it now.
    out.flush();
    Error::internal("failed \x1b]0;title\x07 on purpose\rfake: export succeeded")
}

/// Writes `mib` MiB into the file `path`, 1 MiB at a time.
fn disk_big(path: &str, mib: u64) -> Outcome {
    let mut file = File::create(path).map_err(|e| format!("create: {e}"))?;
    let chunk = vec![0x5au8; 1 << 20];
    for written in 0..mib {
        file.write_all(&chunk)
            .map_err(|e| format!("{e} (after {written} MiB)"))?;
    }
    Ok("written".into())
}

/// Creates `count` empty files `f{i}` in the folder `path`.
fn disk_files(path: &str, count: u64) -> Outcome {
    for i in 0..count {
        File::create(format!("{path}/f{i}")).map_err(|e| format!("{e} (at file {i})"))?;
    }
    Ok(count.to_string())
}

/// Creates the file `path` and makes it 4 TiB long (sparse).
fn disk_sparse(path: &str) -> Outcome {
    let file = File::create(path).map_err(|e| format!("create: {e}"))?;
    file.set_len(4 << 40).map_err(|e| format!("set_len: {e}"))?;
    Ok("sparse".into())
}

/// Opens `count` files in the folder `path` and never closes them: the descriptors are leaked
/// on purpose, so only the end of the instance releases them.
fn hold_files(path: &str, count: u64) -> Outcome {
    let mut open = Vec::new();
    let mut outcome = Ok(count.to_string());
    for i in 0..count {
        match File::create(format!("{path}/h{i}")) {
            Ok(f) => open.push(f),
            Err(e) => {
                outcome = Err(format!("{e} ({} open)", open.len()));
                break;
            }
        }
    }
    std::mem::forget(open);
    outcome
}

/// Swaps a folder the host may be about to use for a link that climbs out of the grant.
fn plant_link() -> Outcome {
    std::fs::rename("/grants/data/nested", "/grants/data/moved")
        .map_err(|e| format!("rename: {e}"))?;
    make_link("../../elsewhere", "nested").map_err(|e| format!("symlink: {e}"))?;
    Ok("planted".into())
}

/// Emits one entry and returns a cursor of `size` bytes.
fn huge_cursor(out: &mut Exporter, size: u64) -> Cursor {
    out.upsert("result", "result").attr("ok", "cursor");
    Cursor {
        format: "hostile".into(),
        data: vec![b'c'; size as usize],
    }
}

/// One hand-built batch holding a single entry the host must refuse, for the batch modes.
fn hostile_batch(mode: &str, huge_key: usize) -> Option<BatchBuffer> {
    let huge;
    let (entity_type, key, attributes): (&str, &str, &[(&str, &str)]) = match mode {
        "dup-attr" => ("result", "dup", &[("a", "1"), ("a", "2")]),
        "nul-key" => ("result", "a\0b", &[("v", "x")]),
        "nul-value" => ("result", "nul", &[("v", "a\0b")]),
        "control-key" => ("result", "line1\nline2\x1b[2J", &[("v", "x")]),
        "undeclared-type" => ("group", "g", &[("v", "x")]),
        "traversal-type" => ("../../etc", "passwd", &[("v", "x")]),
        "huge-key" => {
            huge = "k".repeat(huge_key);
            ("result", huge.as_str(), &[("v", "x")])
        }
        _ => return None,
    };
    let mut batch = BatchBuffer::with_capacity(key.len() + 64);
    let at = batch.begin_entry(EntryOp::Upsert, entity_type, key);
    for (name, value) in attributes {
        batch.attribute1(name, value);
    }
    batch.end_entry(at, attributes.len() as u32);
    Some(batch)
}

/// Answers orders nobody sent, and every real order twice (done, then failed).
fn results_flood(orders: &[Order], strangers: u64) -> Vec<OrderResult> {
    let mut results: Vec<OrderResult> = (0..strangers)
        .map(|i| OrderResult::done(&format!("stranger-{i}")))
        .collect();
    for o in orders {
        results.push(OrderResult::done(&o.id));
        results.push(OrderResult::failed(&o.id, "again"));
    }
    results
}

#[cfg(target_arch = "wasm32")]
fn raw_emit(bytes: &[u8]) {
    idgard_sdk::bindings::idgard::connector::host::emit(bytes)
}

#[cfg(not(target_arch = "wasm32"))]
fn raw_emit(_bytes: &[u8]) {}

/// Makes the link `name` -> `target` in the writable `data` folder with raw WASI.
#[cfg(target_arch = "wasm32")]
fn make_link(target: &str, name: &str) -> Outcome {
    let dirs = wasip2::filesystem::preopens::get_directories();
    let (dir, _) = dirs
        .iter()
        .find(|(_, p)| p == "/grants/data")
        .ok_or("no data folder")?;
    dir.symlink_at(target, name).map_err(|e| format!("{e:?}"))?;
    Ok("linked".into())
}

#[cfg(not(target_arch = "wasm32"))]
fn make_link(_target: &str, _name: &str) -> Outcome {
    Err("native".into())
}

idgard_sdk::export!(Hostile);
