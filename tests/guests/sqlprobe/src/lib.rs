//! A connector that runs whatever SQL its settings give, for the host's tests: the host, not the
//! connector, decides which database and which statements are allowed, and this guest shows what
//! the host answered (rows as entries, counts and errors in the log).

use idgard_sdk::sql::{self, Cell};
use idgard_sdk::{
    Connector, ConnectorInfo, Cursor, Error, ExportRequest, Exporter, Operation, Settings,
};
use serde::Deserialize;

#[derive(Deserialize)]
struct Probe {
    database: String,
    query: Option<String>,
    #[serde(default)]
    statements: Vec<String>,
    secret: Option<String>,
}

pub struct SqlProbe;

impl Connector for SqlProbe {
    fn describe() -> ConnectorInfo {
        idgard_sdk::info("sqlprobe", "0.1.0", &["row"]).with_operations(&[Operation::ExportFull])
    }

    fn export(
        settings: &Settings,
        _request: &ExportRequest,
        out: &mut Exporter,
    ) -> Result<Option<Cursor>, Error> {
        let probe: Probe = settings.parse()?;
        if let Some(name) = &probe.secret {
            let found = if idgard_sdk::secret(name).is_some() {
                "found"
            } else {
                "none"
            };
            idgard_sdk::log::info(&format!("secret: {found}"));
        }
        if let Some(q) = &probe.query {
            let mut rows = sql::query(&probe.database, q, &[])?;
            let names: Vec<String> = (0..rows.columns().len()).map(|i| format!("c{i}")).collect();
            let mut n = 0u64;
            rows.for_each(|row| {
                n += 1;
                let key = format!("row-{n}");
                let mut w = out.upsert("row", &key);
                for (cell, name) in row.iter().zip(&names) {
                    let text = match cell {
                        Cell::Null => continue,
                        Cell::Text(t) => (*t).to_owned(),
                        Cell::Integer(i) => i.to_string(),
                        Cell::Float(f) => f.to_string(),
                        Cell::Boolean(b) => b.to_string(),
                        Cell::Bytes(b) => format!("{} bytes", b.len()),
                    };
                    w.attr(name, &text);
                }
                Ok(())
            })?;
        }
        if !probe.statements.is_empty() {
            let statements: Vec<_> = probe
                .statements
                .iter()
                .map(|s| sql::statement(s.as_str(), vec![]))
                .collect();
            let counts = sql::execute(&probe.database, &statements, true)?;
            idgard_sdk::log::info(&format!("counts: {counts:?}"));
        }
        Ok(None)
    }
}

idgard_sdk::export!(SqlProbe);
