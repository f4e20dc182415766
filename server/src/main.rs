//! `idgard-server`. This version of idgard carries the connector platform (contract, host, SDK,
//! connectors and the author's runner); the server (task queue, repository, API, web UI) is the
//! next piece of work. Until then this binary says so plainly rather than pretending to serve.

use std::process::ExitCode;

fn main() -> ExitCode {
    if std::env::args().any(|a| a == "--version" || a == "-V") {
        println!("idgard-server {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    eprintln!(
        "idgard-server {}: the server is not part of this version yet. Connectors run today with \
         `idgard-agent connector run`; see README.md.",
        env!("CARGO_PKG_VERSION")
    );
    ExitCode::from(2)
}
