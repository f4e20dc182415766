//! Write connectors for idgard.
//!
//! A connector is a WebAssembly component that reads and writes one kind of managed system (an HR
//! file, a directory, a database, an application). You implement [`Connector`] on a type, register
//! it with [`export!`], and build with `cargo build --target wasm32-wasip2 --release`. The same code
//! compiles natively so that [`testing::Harness`] can unit-test it with fixture files and a fake
//! host, without idgard.
//!
//! ```ignore
//! use idgard_sdk::{Connector, ConnectorInfo, Error, ExportRequest, Exporter, Cursor, Settings};
//!
//! struct Hello;
//!
//! impl Connector for Hello {
//!     fn describe() -> ConnectorInfo { idgard_sdk::info("hello", env!("CARGO_PKG_VERSION"), &["person"]) }
//!     fn export(_: &Settings, _: &ExportRequest, out: &mut Exporter) -> Result<Option<Cursor>, Error> {
//!         out.upsert("person", "1").attr("name", "Ada");
//!         Ok(None)
//!     }
//! }
//!
//! idgard_sdk::export!(Hello);
//! ```
//!
//! What a connector can reach is what its manifest (`connector.toml`) asks for **and** the
//! connection grants; see the SDK's README for the sandbox.

#![warn(missing_docs)]

pub mod fs;
#[cfg(feature = "http")]
pub mod http;
pub mod log;
#[cfg(feature = "net")]
pub mod net;
pub mod sql;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;
pub use idgard_model::wire;

mod adapter;
mod exporter;
mod settings;

pub use exporter::{EntryWriter, Exporter};
pub use settings::Settings;
pub use wire::{Entry, EntryOp};

pub use bindings::idgard::connector::host::Level;
pub use bindings::idgard::connector::types::{
    AttributeChange, AttributeSchema, AttributeType, AttributeValues, ChangeOp, ConnectorInfo,
    Cursor, EntitySchema, Error, ErrorKind, ExportMode, ExportRequest, ExportSummary, Operation,
    Order, OrderKind, OrderOutcome, OrderResult,
};

/// The contract version this SDK implements; the host reads it from the component before
/// instantiating and refuses a version it does not speak.
pub const CONTRACT_VERSION: &str = "0.3.0";

/// This SDK's version. Its major and minor are those of the contract it implements
/// ([`CONTRACT_VERSION`]); a patch release changes the SDK only, never the contract.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[doc(hidden)]
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "idgard-connector",
        path: "../wit/0.3.0",
        pub_export_macro: true,
        export_macro_name: "__export_idgard_connector",
        default_bindings_module: "::idgard_sdk::bindings",
        additional_derives: [PartialEq],
    });
}

/// What every connector implements. Only [`Connector::describe`] is required; every other
/// operation answers "unsupported" until you implement it (and list it in `connector.toml`).
///
/// Methods are associated functions: a connector keeps no state between calls, because every run
/// happens in a fresh sandbox. State that must survive (an incremental snapshot, say) goes into the
/// folders the run is granted, or into the returned [`Cursor`].
pub trait Connector {
    /// Name, version, operations and entity types; the host checks them against the manifest.
    fn describe() -> ConnectorInfo;

    /// Checks that the managed system can be reached with these settings.
    fn test_connection(settings: &Settings) -> Result<(), Error> {
        let _ = settings;
        Err(Error::unsupported("test-connection"))
    }

    /// The entity types and attributes the managed system holds.
    fn schema(settings: &Settings) -> Result<Vec<EntitySchema>, Error> {
        let _ = settings;
        Err(Error::unsupported("schema"))
    }

    /// Writes every entry (full) or every change since a cursor (incremental) into `out`, and
    /// returns where the next incremental export starts, if the connector supports one.
    fn export(
        settings: &Settings,
        request: &ExportRequest,
        out: &mut Exporter,
    ) -> Result<Option<Cursor>, Error> {
        let _ = (settings, request, out);
        Err(Error::unsupported("export"))
    }

    /// Carries out a batch of orders; returns one result per order.
    fn fulfill(settings: &Settings, orders: Vec<Order>) -> Result<Vec<OrderResult>, Error> {
        let _ = (settings, orders);
        Err(Error::unsupported("fulfill"))
    }
}

/// Builds a [`ConnectorInfo`]; operations are filled in by [`ConnectorInfo::with_operations`].
pub fn info(name: &str, version: &str, entity_types: &[&str]) -> ConnectorInfo {
    ConnectorInfo {
        name: name.to_owned(),
        version: version.to_owned(),
        operations: vec![Operation::Describe],
        entity_types: entity_types.iter().map(|s| (*s).to_owned()).collect(),
    }
}

impl ConnectorInfo {
    /// Adds the operations the connector supports (describe is always there).
    pub fn with_operations(mut self, operations: &[Operation]) -> Self {
        for op in operations {
            if !self.operations.contains(op) {
                self.operations.push(*op);
            }
        }
        self
    }
}

impl Error {
    /// An error of the given kind.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
        }
    }
    /// The connection's settings are wrong or incomplete.
    pub fn configuration(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Configuration, message)
    }
    /// The managed system cannot be reached now.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }
    /// Access was refused.
    pub fn denied(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Denied, message)
    }
    /// The managed system holds data the connector cannot read.
    pub fn invalid_data(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidData, message)
    }
    /// The cursor cannot be used; a full export is needed.
    pub fn invalid_cursor(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidCursor, message)
    }
    /// The operation is not supported.
    pub fn unsupported(operation: &str) -> Self {
        Self::new(
            ErrorKind::Unsupported,
            format!("this connector does not support {operation}"),
        )
    }
    /// A bug or an unexpected state.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
}

impl OrderResult {
    /// The order was carried out.
    pub fn done(id: &str) -> Self {
        OrderResult {
            id: id.to_owned(),
            outcome: OrderOutcome::Done,
        }
    }
    /// The order cannot be carried out; the message says why.
    pub fn failed(id: &str, message: impl Into<String>) -> Self {
        OrderResult {
            id: id.to_owned(),
            outcome: OrderOutcome::Failed(message.into()),
        }
    }
    /// The order created an entry that the managed system keyed itself (a directory's
    /// entryUUID): `key` is the key the connector's exports will report for it.
    pub fn created(id: &str, key: impl Into<String>) -> Self {
        OrderResult {
            id: id.to_owned(),
            outcome: OrderOutcome::Created(key.into()),
        }
    }
    /// The order could not be carried out now; the host will offer it again later.
    pub fn retry_later(id: &str, message: impl Into<String>) -> Self {
        OrderResult {
            id: id.to_owned(),
            outcome: OrderOutcome::RetryLater(message.into()),
        }
    }
}

/// A secret of the connection by name (a password, a token), or `None` if the connection does
/// not define it. Secrets never appear in logs unless you write them there: don't.
pub fn secret(name: &str) -> Option<String> {
    host::secret(name)
}

/// Reports progress of a long operation; the host shows it to whoever runs the connector.
pub fn progress(done: u64, total: Option<u64>, message: &str) {
    host::progress(done, total, message)
}

/// The host functions: the real imports inside a component, the fake host in native tests.
mod host {
    #[cfg(target_arch = "wasm32")]
    pub use crate::bindings::idgard::connector::host::{emit, log, progress, secret};
    #[cfg(all(target_arch = "wasm32", feature = "net"))]
    pub use crate::bindings::idgard::connector::network::{
        granted as endpoints, resolve as endpoint,
    };

    #[cfg(not(target_arch = "wasm32"))]
    pub use crate::testing::fake::{emit, log, progress, secret};
    #[cfg(all(not(target_arch = "wasm32"), feature = "net"))]
    pub use crate::testing::fake::{endpoint, endpoints};
}

#[doc(hidden)]
pub mod __private {
    pub use crate::adapter::Adapter;
    /// The contract version, embedded into every connector by [`crate::export!`].
    pub const CONTRACT: [u8; 5] = *b"0.3.0";
    const _: () = assert!(CONTRACT.len() == crate::CONTRACT_VERSION.len());
}

/// Registers a type implementing [`Connector`] as the component's exports, and embeds the
/// contract version into the component (custom section `idgard:contract`).
#[macro_export]
macro_rules! export {
    ($connector:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            #[unsafe(link_section = "idgard:contract")]
            #[used]
            static IDGARD_CONTRACT: [u8; 5] = $crate::__private::CONTRACT;

            type IdgardAdapter = $crate::__private::Adapter<$connector>;
            $crate::bindings::__export_idgard_connector!(IdgardAdapter with_types_in $crate::bindings);
        };
    };
}

#[cfg(test)]
mod version_tests {
    /// The version policy: the SDK's major.minor are the contract's.
    #[test]
    fn the_sdk_version_follows_the_contract() {
        let major_minor = |v: &str| v.split('.').take(2).collect::<Vec<_>>().join(".");
        assert_eq!(
            major_minor(super::VERSION),
            major_minor(super::CONTRACT_VERSION),
            "bump idgard-sdk (and idgard-model) to the contract's version"
        );
    }
}
