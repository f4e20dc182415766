//! The LDAP connector: reads and writes the accounts and groups of a directory (OpenLDAP and its
//! kin, or Active Directory) over the one endpoint its connection grants, with TLS as the grant
//! says. Entries are keyed by the directory's own identifier (entryUUID, objectGUID) and carry
//! their DN as the attribute `dn`; a group's members cross as the keys of their accounts.

mod client;
mod dirsync;
pub mod dn;
mod entry;
mod export;
mod fulfil;
mod incremental;
mod lookup;
mod ranges;
mod schema;
mod settings;
pub mod values;

use idgard_sdk::{
    Connector, ConnectorInfo, Cursor, EntitySchema, Error, ExportMode, ExportRequest, Exporter,
    Operation, Order, OrderResult, Settings,
};
pub use settings::{ACCOUNT, Config, Dialect, GROUP};

/// The LDAP connector.
pub struct Ldap;

impl Connector for Ldap {
    fn describe() -> ConnectorInfo {
        idgard_sdk::info("ldap", env!("CARGO_PKG_VERSION"), &[ACCOUNT, GROUP]).with_operations(&[
            Operation::TestConnection,
            Operation::Schema,
            Operation::ExportFull,
            Operation::ExportIncremental,
            Operation::Fulfill,
        ])
    }

    fn test_connection(settings: &Settings) -> Result<(), Error> {
        let config = Config::load(settings)?;
        let mut session = client::Session::open(&config)?;
        for (entity_type, entity) in config.entities() {
            let mut seen = false;
            let request = client::entry_at(&entity.base, vec!["1.1".into()]);
            session.search(&request, None, |_| {
                seen = true;
                Ok(())
            })?;
            if !seen {
                return Err(Error::configuration(format!(
                    "the {entity_type} base `{}` does not exist or cannot be read",
                    entity.base
                )));
            }
        }
        Ok(())
    }

    fn schema(settings: &Settings) -> Result<Vec<EntitySchema>, Error> {
        schema::read(&Config::load(settings)?)
    }

    fn export(
        settings: &Settings,
        request: &ExportRequest,
        out: &mut Exporter,
    ) -> Result<Option<Cursor>, Error> {
        let config = Config::load(settings)?;
        match &request.mode {
            ExportMode::Full => export::full(&config, out),
            ExportMode::Incremental(cursor) => incremental::since(&config, cursor, out),
        }
    }

    fn fulfill(settings: &Settings, orders: Vec<Order>) -> Result<Vec<OrderResult>, Error> {
        fulfil::fulfil(&Config::load(settings)?, orders)
    }
}

idgard_sdk::export!(Ldap);
