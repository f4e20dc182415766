//! The SCIM connector: the users and groups of a SCIM 2.0 service (RFC 7643/7644), through the
//! agent's HTTP client. The connection's HTTP grant holds the service's credentials; the
//! connector never sees them.
//!
//! - Discovery: `ServiceProviderConfig` says whether filters, ETags and PATCH are supported and
//!   the largest page.
//! - Export: users (core and enterprise attributes, flattened) then groups (members as user
//!   keys), paged with `startIndex`/`count`; incremental by `meta.lastModified` when the service
//!   filters.
//! - Fulfil: creates side by side, updates as PATCH (`add`/`remove`/`replace`, members and
//!   `active` included) with `If-Match` when ETags are offered, deletes; 429 and 503 answers are
//!   waited out as `Retry-After` asks, then retried later.

mod client;
pub mod config;
mod export;
mod fulfil;
pub mod map;

pub use config::Config;
pub use export::CURSOR_FORMAT;
use idgard_sdk::{
    AttributeSchema, AttributeType, Connector, ConnectorInfo, Cursor, EntitySchema, Error,
    ExportMode, ExportRequest, Exporter, Operation, Order, OrderResult, Settings,
};

/// The entity type of users.
pub const ACCOUNT: &str = "account";
/// The entity type of groups.
pub const GROUP: &str = "group";

/// The SCIM connector.
pub struct ScimConnector;

fn attribute(name: &str, type_: AttributeType, key: bool) -> AttributeSchema {
    AttributeSchema {
        name: name.into(),
        type_,
        multi_valued: false,
        key,
        required: key,
        references: None,
    }
}

impl Connector for ScimConnector {
    fn describe() -> ConnectorInfo {
        idgard_sdk::info("scim", env!("CARGO_PKG_VERSION"), &[ACCOUNT, GROUP]).with_operations(&[
            Operation::TestConnection,
            Operation::Schema,
            Operation::ExportFull,
            Operation::ExportIncremental,
            Operation::Fulfill,
        ])
    }

    fn test_connection(settings: &Settings) -> Result<(), Error> {
        let config = Config::load(settings)?;
        let scim = client::Scim::connect(&config)?;
        // One user, to check the credentials (ServiceProviderConfig may be open to all).
        scim.send(scim.get("/Users?count=1"))?
            .success()
            .map(|_| ())
            .map_err(|e| Error::new(e.kind, format!("listing users: {}", e.message)))
    }

    fn schema(settings: &Settings) -> Result<Vec<EntitySchema>, Error> {
        let config = Config::load(settings)?;
        let mut account = vec![
            attribute("userName", AttributeType::Text, true),
            attribute("id", AttributeType::Text, false),
        ];
        account.extend(map::user_attribute_names().map(|n| {
            let t = if n == "active" {
                AttributeType::Boolean
            } else {
                AttributeType::Text
            };
            attribute(n, t, false)
        }));
        let mut out = vec![EntitySchema {
            name: ACCOUNT.into(),
            attributes: account,
        }];
        if config.groups {
            let mut member = attribute("member", AttributeType::Reference, false);
            member.multi_valued = true;
            member.references = Some(ACCOUNT.into());
            out.push(EntitySchema {
                name: GROUP.into(),
                attributes: vec![
                    attribute("displayName", AttributeType::Text, true),
                    attribute("id", AttributeType::Text, false),
                    attribute("externalId", AttributeType::Text, false),
                    member,
                ],
            });
        }
        Ok(out)
    }

    fn export(
        settings: &Settings,
        request: &ExportRequest,
        out: &mut Exporter,
    ) -> Result<Option<Cursor>, Error> {
        let config = Config::load(settings)?;
        let scim = client::Scim::connect(&config)?;
        match &request.mode {
            ExportMode::Full => export::export(&scim, &config, None, out),
            ExportMode::Incremental(cursor) => export::export(&scim, &config, Some(cursor), out),
        }
    }

    fn fulfill(settings: &Settings, orders: Vec<Order>) -> Result<Vec<OrderResult>, Error> {
        let config = Config::load(settings)?;
        let scim = client::Scim::connect(&config)?;
        Ok(fulfil::fulfil(&scim, &config, orders))
    }
}

idgard_sdk::export!(ScimConnector);
