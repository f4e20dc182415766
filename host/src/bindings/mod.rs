//! Generated bindings of the contract, and conversions to and from the host's model types.
//!
//! The host speaks the newest contract (0.3.0) inside; [`v2`] links connectors built against the
//! frozen 0.2.0 (the same types, without `sql`), and [`v1`] converts for those built against the
//! frozen 0.1.0.

pub(crate) mod v1;
pub(crate) mod v2;

use crate::model;

wasmtime::component::bindgen!({
    path: "../wit/0.3.0",
    world: "idgard-connector",
    imports: {
        "idgard:connector/sql": async | trappable,
        default: trappable,
    },
    exports: { default: async },
    with: {
        "idgard:connector/sql.rows": crate::sql::Rows,
    },
});

pub(crate) use idgard::connector::host as imports;
pub(crate) use idgard::connector::network as net;
pub(crate) use idgard::connector::sql;
pub(crate) use idgard::connector::types as wit;

/// A connector pre-instantiated against the contract it was built for.
pub(crate) enum Pre<T: 'static> {
    /// Contract 0.1.x.
    V1(v1::IdgardConnectorPre<T>),
    /// Contract 0.2.x.
    V2(wasmtime::component::InstancePre<T>),
    /// Contract 0.3.x.
    V3(IdgardConnectorPre<T>),
}

impl From<imports::Level> for model::Level {
    fn from(l: imports::Level) -> Self {
        match l {
            imports::Level::Trace => model::Level::Trace,
            imports::Level::Debug => model::Level::Debug,
            imports::Level::Info => model::Level::Info,
            imports::Level::Warn => model::Level::Warn,
            imports::Level::Error => model::Level::Error,
        }
    }
}

impl From<wit::ErrorKind> for model::ErrorKind {
    fn from(k: wit::ErrorKind) -> Self {
        match k {
            wit::ErrorKind::Configuration => model::ErrorKind::Configuration,
            wit::ErrorKind::Unavailable => model::ErrorKind::Unavailable,
            wit::ErrorKind::Denied => model::ErrorKind::Denied,
            wit::ErrorKind::InvalidData => model::ErrorKind::InvalidData,
            wit::ErrorKind::InvalidCursor => model::ErrorKind::InvalidCursor,
            wit::ErrorKind::Unsupported => model::ErrorKind::Unsupported,
            wit::ErrorKind::Internal => model::ErrorKind::Internal,
        }
    }
}

pub(crate) fn operation_name(op: wit::Operation) -> &'static str {
    match op {
        wit::Operation::Describe => "describe",
        wit::Operation::TestConnection => "test-connection",
        wit::Operation::Schema => "schema",
        wit::Operation::ExportFull => "export-full",
        wit::Operation::ExportIncremental => "export-incremental",
        wit::Operation::Fulfill => "fulfill",
    }
}

impl From<wit::ConnectorInfo> for model::ConnectorInfo {
    fn from(i: wit::ConnectorInfo) -> Self {
        model::ConnectorInfo {
            name: i.name,
            version: i.version,
            operations: i
                .operations
                .into_iter()
                .map(|o| operation_name(o).to_owned())
                .collect(),
            entity_types: i.entity_types,
        }
    }
}

impl From<wit::EntitySchema> for model::EntitySchema {
    fn from(s: wit::EntitySchema) -> Self {
        model::EntitySchema {
            name: s.name,
            attributes: s
                .attributes
                .into_iter()
                .map(|a| model::AttributeSchema {
                    name: a.name,
                    kind: match a.type_ {
                        wit::AttributeType::Text => "text",
                        wit::AttributeType::Integer => "integer",
                        wit::AttributeType::Boolean => "boolean",
                        wit::AttributeType::Binary => "binary",
                        wit::AttributeType::Datetime => "datetime",
                        wit::AttributeType::Reference => "reference",
                    }
                    .to_owned(),
                    multi_valued: a.multi_valued,
                    key: a.key,
                    required: a.required,
                    references: a.references,
                })
                .collect(),
        }
    }
}

impl From<wit::Cursor> for model::Cursor {
    fn from(c: wit::Cursor) -> Self {
        model::Cursor {
            format: c.format,
            data: c.data,
        }
    }
}

impl From<model::Cursor> for wit::Cursor {
    fn from(c: model::Cursor) -> Self {
        wit::Cursor {
            format: c.format,
            data: c.data,
        }
    }
}

impl From<model::Order> for wit::Order {
    fn from(o: model::Order) -> Self {
        let kind = match o.kind {
            model::OrderKind::Create { attributes } => wit::OrderKind::Create(
                attributes
                    .into_iter()
                    .map(|(name, values)| wit::AttributeValues { name, values })
                    .collect(),
            ),
            model::OrderKind::Update { changes } => wit::OrderKind::Update(
                changes
                    .into_iter()
                    .map(|c| wit::AttributeChange {
                        name: c.name,
                        op: match c.op {
                            model::ChangeOp::Add => wit::ChangeOp::Add,
                            model::ChangeOp::Remove => wit::ChangeOp::Remove,
                            model::ChangeOp::Replace => wit::ChangeOp::Replace,
                        },
                        values: c.values,
                    })
                    .collect(),
            ),
            model::OrderKind::Delete => wit::OrderKind::Delete,
            model::OrderKind::Enable => wit::OrderKind::Enable,
            model::OrderKind::Disable => wit::OrderKind::Disable,
            model::OrderKind::SetPassword { password } => wit::OrderKind::SetPassword(password),
        };
        wit::Order {
            id: o.id,
            entity_type: o.entity_type,
            key: o.key,
            kind,
        }
    }
}

impl From<wit::OrderOutcome> for model::OrderOutcome {
    fn from(o: wit::OrderOutcome) -> Self {
        match o {
            wit::OrderOutcome::Done => model::OrderOutcome::Done,
            wit::OrderOutcome::Created(k) => model::OrderOutcome::Created(k),
            wit::OrderOutcome::Failed(m) => model::OrderOutcome::Failed(m),
            wit::OrderOutcome::RetryLater(m) => model::OrderOutcome::RetryLater(m),
        }
    }
}
