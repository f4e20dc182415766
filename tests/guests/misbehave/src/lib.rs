//! A connector that does, on demand, what no connector should get away with. Each `mode` is one
//! attack or fault; the host's tests check that each is stopped and reported. Results of file and
//! network attempts come back as one entry `result` with `ok` or `error`.

use idgard_sdk::{
    Connector, ConnectorInfo, Cursor, Error, ExportRequest, Exporter, Operation, Order,
    OrderResult, Settings,
};
use serde::Deserialize;

#[derive(Deserialize)]
struct Config {
    mode: String,
    path: Option<String>,
    target: Option<String>,
    content: Option<String>,
    count: Option<i64>,
}

fn report(out: &mut Exporter, result: Result<String, String>) {
    match result {
        Ok(v) => out.upsert("result", "result").attr("ok", &v),
        Err(e) => out.upsert("result", "result").attr("error", &e),
    };
}

pub struct Misbehave;

impl Connector for Misbehave {
    fn describe() -> ConnectorInfo {
        idgard_sdk::info("misbehave", "0.1.0", &["result"]).with_operations(&[
            Operation::TestConnection,
            Operation::ExportFull,
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
        let path = c.path.clone().unwrap_or_default();
        let count = c.count.unwrap_or(1) as u64;
        match c.mode.as_str() {
            "ok" => {
                for i in 0..count {
                    out.upsert("result", &format!("k{i}"))
                        .attr("n", &i.to_string());
                }
            }
            // A slow system: `count` entries, 10 ms apart, each sent at once (the agent's tests
            // stop or cancel runs in the middle of this).
            "slow" => {
                idgard_sdk::log::info(&format!("slow system: {count} entries to go"));
                for i in 0..count {
                    if i % 100 == 0 {
                        idgard_sdk::log::info(&format!("slow system: entry {i}"));
                    }
                    std::thread::sleep(std::time::Duration::from_millis(10));
                    out.upsert("result", &format!("k{i}"))
                        .attr("n", &i.to_string());
                    out.flush();
                }
            }
            "loop" => {
                let mut x = 0u64;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "memory-bomb" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "huge-output" => {
                let big = "x".repeat(4096);
                let mut i = 0u64;
                loop {
                    out.upsert("result", &i.to_string()).attr("v", &big);
                    i += 1;
                }
            }
            "huge-batch" => {
                let mut b = idgard_sdk::wire::BatchBuffer::default();
                let at = b.begin_entry(idgard_sdk::EntryOp::Upsert, "result", "big");
                b.attribute1("v", &"x".repeat(40 << 20));
                b.end_entry(at, 1);
                raw_emit(b.as_bytes());
            }
            "garbage" => raw_emit(&[1, 255, 255, 255, 255, 0, 0]),
            "log-flood" => {
                let line = "flood ".repeat(200);
                for _ in 0..count {
                    idgard_sdk::log::info(&line);
                }
                out.upsert("result", "after-flood")
                    .attr("ok", "still running");
            }
            "panic" => panic!("the connector gave up on purpose"),
            "error" => {
                return Err(Error::unavailable(
                    "the managed system is down (on purpose)",
                ));
            }
            "read" => report(
                out,
                std::fs::read_to_string(&path).map_err(|e| e.to_string()),
            ),
            "list" => report(
                out,
                std::fs::read_dir(&path)
                    .map(|d| {
                        d.flatten()
                            .map(|e| e.file_name().to_string_lossy().into_owned())
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .map_err(|e| e.to_string()),
            ),
            "write" => report(
                out,
                std::fs::write(&path, c.content.unwrap_or_default())
                    .map(|()| "written".into())
                    .map_err(|e| e.to_string()),
            ),
            "symlink" => {
                // Make a link `path` in the writable `data` folder pointing at `target`, then read
                // through it.
                match make_link(c.target.as_deref().unwrap_or_default(), &path) {
                    Err(e) => report(out, Err(format!("symlink refused: {e}"))),
                    Ok(()) => report(
                        out,
                        std::fs::read_to_string(format!("/grants/data/{path}"))
                            .map_err(|e| e.to_string()),
                    ),
                }
            }
            "env" => {
                let vars: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
                let args: Vec<String> = std::env::args().collect();
                out.upsert("result", "env")
                    .attr("vars", &vars.len().to_string())
                    .attr("args", &args.len().to_string());
            }
            "connect" => report(
                out,
                std::net::TcpStream::connect(c.target.unwrap_or_default().as_str())
                    .map(|_| "connected".into())
                    .map_err(|e| e.to_string()),
            ),
            "secret" => report(
                out,
                idgard_sdk::secret(&path).ok_or_else(|| "no such secret".into()),
            ),
            other => return Err(Error::configuration(format!("unknown mode {other}"))),
        }
        Ok(None)
    }

    fn fulfill(settings: &Settings, orders: Vec<Order>) -> Result<Vec<OrderResult>, Error> {
        let c: Config = settings.parse()?;
        Ok(match c.mode.as_str() {
            // Answers only the first order, twice, plus one for an order nobody sent.
            "partial" => {
                let first = &orders[0].id;
                vec![
                    OrderResult::done(first),
                    OrderResult::failed(first, "again"),
                    OrderResult::done("stranger"),
                ]
            }
            _ => orders.iter().map(|o| OrderResult::done(&o.id)).collect(),
        })
    }
}

#[cfg(target_arch = "wasm32")]
fn raw_emit(bytes: &[u8]) {
    idgard_sdk::bindings::idgard::connector::host::emit(bytes)
}

#[cfg(target_arch = "wasm32")]
fn make_link(target: &str, name: &str) -> Result<(), String> {
    let dirs = wasip2::filesystem::preopens::get_directories();
    let (dir, _) = dirs
        .iter()
        .find(|(_, p)| p == "/grants/data")
        .ok_or("no data folder")?;
    dir.symlink_at(target, name).map_err(|e| format!("{e:?}"))
}

#[cfg(not(target_arch = "wasm32"))]
fn make_link(_target: &str, _name: &str) -> Result<(), String> {
    Err("native".into())
}

#[cfg(not(target_arch = "wasm32"))]
fn raw_emit(_bytes: &[u8]) {}

idgard_sdk::export!(Misbehave);
