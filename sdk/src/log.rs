//! Logging into the run's log. The host caps the volume per run; messages past the cap are
//! counted and dropped, so log what helps someone fix a problem, not every record.

use crate::Level;

/// Writes one message at a level.
pub fn write(level: Level, message: &str) {
    crate::host::log(level, message)
}

/// Writes a debug message.
pub fn debug(message: &str) {
    write(Level::Debug, message)
}

/// Writes an information message.
pub fn info(message: &str) {
    write(Level::Info, message)
}

/// Writes a warning.
pub fn warn(message: &str) {
    write(Level::Warn, message)
}

/// Writes an error.
pub fn error(message: &str) {
    write(Level::Error, message)
}
