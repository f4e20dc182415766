//! The CSV connector: exports an HR-style CSV file (full, or incremental against the previous
//! snapshot) and maintains an accounts CSV file from provisioning orders, so that a whole idgard
//! pipeline can run with no external system.

mod accounts;
mod export;
mod keys;
mod snapshot;

use idgard_sdk::{
    AttributeSchema, AttributeType, Connector, ConnectorInfo, Cursor, EntitySchema, Error,
    ExportRequest, Exporter, Operation, Order, OrderResult, Settings,
};
use serde::Deserialize;

/// The connector's settings (see `connector.toml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The file to export, in the `source` folder.
    pub file: Option<String>,
    /// The key column.
    pub key: String,
    /// The field delimiter.
    pub delimiter: String,
    /// Entity type of exported entries.
    pub entity_type: String,
    /// Stop at the first bad row.
    pub strict: bool,
    /// The accounts file, in the `accounts` folder.
    pub accounts_file: String,
    /// Key column of the accounts file.
    pub accounts_key: String,
    /// Separator of values in a multi-valued cell.
    pub multi_value_separator: String,
}

impl Config {
    fn load(settings: &Settings) -> Result<Self, Error> {
        let c: Config = settings.parse()?;
        c.delimiter_byte()?;
        if c.multi_value_separator.is_empty() {
            return Err(Error::configuration(
                "multi_value_separator must not be empty",
            ));
        }
        Ok(c)
    }

    fn delimiter_byte(&self) -> Result<u8, Error> {
        match self.delimiter.as_str() {
            "\\t" | "\t" => Ok(b'\t'),
            d if d.len() == 1 && d.is_ascii() && d != "\"" && d != "\n" && d != "\r" => {
                Ok(d.as_bytes()[0])
            }
            d => Err(Error::configuration(format!(
                "delimiter `{d}` must be one ASCII character other than a quote or a line break"
            ))),
        }
    }
}

/// The CSV connector.
pub struct Csv;

impl Connector for Csv {
    fn describe() -> ConnectorInfo {
        idgard_sdk::info("csv", env!("CARGO_PKG_VERSION"), &["person", "account"]).with_operations(
            &[
                Operation::TestConnection,
                Operation::Schema,
                Operation::ExportFull,
                Operation::ExportIncremental,
                Operation::Fulfill,
            ],
        )
    }

    fn test_connection(settings: &Settings) -> Result<(), Error> {
        let config = Config::load(settings)?;
        let source = export::Source::open(&config)?;
        source.key_index()?;
        Ok(())
    }

    fn schema(settings: &Settings) -> Result<Vec<EntitySchema>, Error> {
        let config = Config::load(settings)?;
        let source = export::Source::open(&config)?;
        let key = source.key_index()?;
        let attributes = source
            .headers()
            .iter()
            .enumerate()
            .map(|(i, name)| AttributeSchema {
                name: name.clone(),
                type_: AttributeType::Text,
                multi_valued: false,
                key: i == key,
                required: i == key,
                references: None,
            })
            .collect();
        Ok(vec![EntitySchema {
            name: config.entity_type,
            attributes,
        }])
    }

    fn export(
        settings: &Settings,
        request: &ExportRequest,
        out: &mut Exporter,
    ) -> Result<Option<Cursor>, Error> {
        let config = Config::load(settings)?;
        export::run(&config, &request.mode, out).map(Some)
    }

    fn fulfill(settings: &Settings, orders: Vec<Order>) -> Result<Vec<OrderResult>, Error> {
        let config = Config::load(settings)?;
        accounts::fulfill(&config, orders)
    }
}

idgard_sdk::export!(Csv);
