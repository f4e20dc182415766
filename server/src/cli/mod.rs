//! The administration commands of `idgard-server`, one file per area; `main.rs` parses and
//! dispatches.

/// Prints a line on standard output. A reader that has gone (`idgard-server orders | head -1`)
/// ends the command quietly, as other command-line tools do, instead of a panic.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout().lock(), $($arg)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
            eprintln!("error: cannot write to standard output: {e}");
            std::process::exit(2);
        }
    }};
}

pub mod agents;
pub mod database;
pub mod keys;
pub mod rules;
