//! Writes a generated HR file: `idgard-demo-data <rows> [seed] > hr.csv`.

fn main() {
    let mut args = std::env::args().skip(1);
    let rows = args.next().and_then(|a| a.parse().ok()).unwrap_or(5000);
    let seed = args.next().and_then(|a| a.parse().ok()).unwrap_or(2026);
    let stdout = std::io::stdout();
    if let Err(e) = idgard_tests::demo::write_hr(stdout.lock(), rows, seed) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
