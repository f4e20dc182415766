//! Database errors in the contract's terms: a kind the connector can act on, the database's own
//! code, and a message that never holds a credential.

use crate::bindings::{sql, wit};

/// An error of the host itself (before or around the database).
pub(crate) fn host(kind: wit::ErrorKind, message: impl Into<String>) -> sql::SqlError {
    sql::SqlError {
        kind,
        code: None,
        statement: None,
        message: message.into(),
    }
}

/// The kind a SQLSTATE means (PostgreSQL and MariaDB/MySQL share the classes).
pub(crate) fn kind_of_state(state: &str) -> wit::ErrorKind {
    use wit::ErrorKind as K;
    match state {
        // Invalid authorisation, insufficient privilege, read-only transaction.
        "28000" | "28P01" | "42501" | "25006" => K::Denied,
        // Serialisation failure, deadlock: try again.
        "40001" | "40P01" => K::Unavailable,
        // Database does not exist.
        "3D000" => K::Configuration,
        _ => match state.get(..2) {
            // Connection exceptions, operator intervention (shutdown), insufficient resources.
            Some("08" | "57" | "53") => K::Unavailable,
            // Syntax errors and undefined objects: the SQL the connection declares is wrong.
            Some("42") => K::Configuration,
            // Data exceptions and integrity constraints: the values do not fit.
            Some("22" | "23") => K::InvalidData,
            _ => K::Internal,
        },
    }
}

/// A sqlx error in the contract's terms.
pub(crate) fn from_sqlx(e: sqlx::Error) -> sql::SqlError {
    use wit::ErrorKind as K;
    match e {
        sqlx::Error::Database(d) => {
            let code = d.code().map(|c| c.into_owned());
            sql::SqlError {
                kind: code.as_deref().map_or(K::Internal, kind_of_state),
                code,
                statement: None,
                message: d.message().to_owned(),
            }
        }
        sqlx::Error::Io(e) => host(K::Unavailable, format!("cannot reach the database: {e}")),
        sqlx::Error::Tls(e) => host(K::Unavailable, format!("TLS with the database failed: {e}")),
        sqlx::Error::PoolTimedOut => host(
            K::Unavailable,
            "no connection to the database opened in time",
        ),
        sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => {
            host(K::Unavailable, "the connection to the database was closed")
        }
        sqlx::Error::Protocol(m) => host(K::Unavailable, format!("database protocol: {m}")),
        sqlx::Error::Configuration(e) => host(K::Configuration, e.to_string()),
        sqlx::Error::ColumnDecode { index, source } => host(
            K::InvalidData,
            format!("column {index} cannot be read: {source}"),
        ),
        other => host(K::Internal, other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_map_to_kinds() {
        use wit::ErrorKind as K;
        assert_eq!(kind_of_state("28P01"), K::Denied);
        assert_eq!(kind_of_state("28000"), K::Denied);
        assert_eq!(kind_of_state("25006"), K::Denied);
        assert_eq!(kind_of_state("08006"), K::Unavailable);
        assert_eq!(kind_of_state("57P01"), K::Unavailable);
        assert_eq!(kind_of_state("40P01"), K::Unavailable);
        assert_eq!(kind_of_state("42P01"), K::Configuration);
        assert_eq!(kind_of_state("42000"), K::Configuration);
        assert_eq!(kind_of_state("23505"), K::InvalidData);
        assert_eq!(kind_of_state("23000"), K::InvalidData);
        assert_eq!(kind_of_state("XX000"), K::Internal);
    }
}
