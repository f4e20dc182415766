//! The SQL connector: accounts (and groups) kept in tables of a PostgreSQL, MariaDB or MySQL
//! database that the connection grants. The connector writes SQL and binds values; the host
//! opens the database, holds its password, and enforces what the grant allows.
//!
//! - Export: every row of the accounts table (or a declared query), multi-valued attributes
//!   from child tables, groups with their members from a membership table; incremental past a
//!   watermark column, deletions from a tombstone column (without one, a full export finds them).
//! - Fulfil: creates as multi-row INSERTs, updates of the columns an order changes, deletes,
//!   enable and disable through a boolean column, passwords through a declared statement.

pub mod config;
mod export;
mod fulfil;
pub mod sql_text;

pub use config::{ACCOUNT, Config, GROUP};
pub use export::CURSOR_FORMAT;
use idgard_sdk::sql::{self};
use idgard_sdk::{
    AttributeSchema, AttributeType, Connector, ConnectorInfo, Cursor, EntitySchema, Error,
    ExportMode, ExportRequest, Exporter, Operation, Order, OrderResult, Settings,
};

/// The SQL connector.
pub struct Sql;

/// The columns of an entity's rows, read from a query that returns none.
fn columns(config: &Config, entity: &config::Entity) -> Result<Vec<String>, Error> {
    let d = config.dialect;
    let sql = match (&entity.query, &entity.table) {
        (Some(q), _) => format!("SELECT * FROM ({q}) src WHERE 1 = 0"),
        (None, Some(t)) => format!("SELECT * FROM {} WHERE 1 = 0", sql_text::ident(d, t)?),
        (None, None) => unreachable!("an entity has a table or a query"),
    };
    let q = sql::query(&config.database, &sql, &[])?;
    Ok(q.columns().to_vec())
}

impl Connector for Sql {
    fn describe() -> ConnectorInfo {
        idgard_sdk::info("sql", env!("CARGO_PKG_VERSION"), &[ACCOUNT, GROUP]).with_operations(&[
            Operation::TestConnection,
            Operation::Schema,
            Operation::ExportFull,
            Operation::ExportIncremental,
            Operation::Fulfill,
        ])
    }

    fn test_connection(settings: &Settings) -> Result<(), Error> {
        let config = Config::load(settings)?;
        for entity in config.entities() {
            let found = columns(&config, entity)?;
            if !found.contains(&entity.key) {
                return Err(Error::configuration(format!(
                    "the {} rows have no key column `{}` (they have: {})",
                    entity.entity_type,
                    entity.key,
                    found.join(", ")
                )));
            }
        }
        Ok(())
    }

    fn schema(settings: &Settings) -> Result<Vec<EntitySchema>, Error> {
        let config = Config::load(settings)?;
        config
            .entities()
            .map(|entity| {
                let mut attributes: Vec<AttributeSchema> = columns(&config, entity)?
                    .into_iter()
                    .filter(|c| {
                        entity.columns.is_empty() || entity.columns.contains(c) || *c == entity.key
                    })
                    .filter(|c| Some(c) != entity.tombstone.as_ref())
                    .map(|c| AttributeSchema {
                        key: c == entity.key,
                        required: c == entity.key,
                        name: c,
                        type_: AttributeType::Text,
                        multi_valued: false,
                        references: None,
                    })
                    .collect();
                attributes.extend(entity.children.iter().map(|c| AttributeSchema {
                    name: c.attribute.clone(),
                    type_: if entity.entity_type == GROUP {
                        AttributeType::Reference
                    } else {
                        AttributeType::Text
                    },
                    multi_valued: true,
                    key: false,
                    required: false,
                    references: (entity.entity_type == GROUP).then(|| ACCOUNT.to_owned()),
                }));
                Ok(EntitySchema {
                    name: entity.entity_type.to_owned(),
                    attributes,
                })
            })
            .collect()
    }

    fn export(
        settings: &Settings,
        request: &ExportRequest,
        out: &mut Exporter,
    ) -> Result<Option<Cursor>, Error> {
        let config = Config::load(settings)?;
        match &request.mode {
            ExportMode::Full => export::export(&config, None, out),
            ExportMode::Incremental(cursor) => export::export(&config, Some(cursor), out),
        }
    }

    fn fulfill(settings: &Settings, orders: Vec<Order>) -> Result<Vec<OrderResult>, Error> {
        Ok(fulfil::fulfil(&Config::load(settings)?, orders))
    }
}

idgard_sdk::export!(Sql);
