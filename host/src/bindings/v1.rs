//! Connectors built against the frozen contract 0.1.0: their bindings, their calls, and the
//! conversions between its types and those of the newest contract, in which the host works.
//!
//! 0.2.0 only added to 0.1.0 (the `network` import, `references` in a schema, the `created`
//! outcome), so every 0.1.0 value has a 0.2.0 equivalent and the host's orders, which a 0.1.0
//! connector cannot receive in any other form, convert one to one.

use super::{imports as now_host, wit as now};
use crate::call::{Answer, Call};
use crate::state::RunState;
use wasmtime::Store;

wasmtime::component::bindgen!({
    path: "../wit/0.1.0",
    world: "idgard-connector",
    imports: { default: trappable },
    exports: { default: async },
});

use idgard::connector::host as then_host;
use idgard::connector::types as then;

/// Makes one call into a 0.1.0 connector, in the newest contract's terms.
pub(crate) async fn invoke(
    store: &mut Store<RunState>,
    pre: &IdgardConnectorPre<RunState>,
    call: Call,
) -> wasmtime::Result<Answer> {
    let instance = pre.instantiate_async(&mut *store).await?;
    let g = instance.idgard_connector_connector();
    Ok(match call {
        Call::Describe => Answer::Info(info(g.call_describe(&mut *store).await?)),
        Call::Test(s) => Answer::Tested(
            g.call_test_connection(&mut *store, &s)
                .await?
                .map_err(error),
        ),
        Call::Schema(s) => Answer::Schema(
            g.call_schema(&mut *store, &s)
                .await?
                .map(|s| s.into_iter().map(entity).collect())
                .map_err(error),
        ),
        Call::Export(s, request) => {
            store.data_mut().exporting = true;
            let request = export_request(request);
            Answer::Exported(
                g.call_export(&mut *store, &s, &request)
                    .await?
                    .map(summary)
                    .map_err(error),
            )
        }
        Call::Fulfill(s, orders) => {
            let orders: Vec<then::Order> = orders.into_iter().map(order).collect();
            Answer::Fulfilled(
                g.call_fulfill(&mut *store, &s, &orders)
                    .await?
                    .map(|r| r.into_iter().map(result).collect())
                    .map_err(error),
            )
        }
    })
}

impl then::Host for RunState {}

impl then_host::Host for RunState {
    fn log(&mut self, level: then_host::Level, message: String) -> wasmtime::Result<()> {
        let level = match level {
            then_host::Level::Trace => now_host::Level::Trace,
            then_host::Level::Debug => now_host::Level::Debug,
            then_host::Level::Info => now_host::Level::Info,
            then_host::Level::Warn => now_host::Level::Warn,
            then_host::Level::Error => now_host::Level::Error,
        };
        now_host::Host::log(self, level, message)
    }

    fn progress(&mut self, done: u64, total: Option<u64>, message: String) -> wasmtime::Result<()> {
        now_host::Host::progress(self, done, total, message)
    }

    fn secret(&mut self, name: String) -> wasmtime::Result<Option<String>> {
        now_host::Host::secret(self, name)
    }

    fn emit(&mut self, batch: Vec<u8>) -> wasmtime::Result<()> {
        now_host::Host::emit(self, batch)
    }
}

fn info(i: then::ConnectorInfo) -> now::ConnectorInfo {
    let operation = |o| match o {
        then::Operation::Describe => now::Operation::Describe,
        then::Operation::TestConnection => now::Operation::TestConnection,
        then::Operation::Schema => now::Operation::Schema,
        then::Operation::ExportFull => now::Operation::ExportFull,
        then::Operation::ExportIncremental => now::Operation::ExportIncremental,
        then::Operation::Fulfill => now::Operation::Fulfill,
    };
    now::ConnectorInfo {
        name: i.name,
        version: i.version,
        operations: i.operations.into_iter().map(operation).collect(),
        entity_types: i.entity_types,
    }
}

fn error(e: then::Error) -> now::Error {
    let kind = match e.kind {
        then::ErrorKind::Configuration => now::ErrorKind::Configuration,
        then::ErrorKind::Unavailable => now::ErrorKind::Unavailable,
        then::ErrorKind::Denied => now::ErrorKind::Denied,
        then::ErrorKind::InvalidData => now::ErrorKind::InvalidData,
        then::ErrorKind::InvalidCursor => now::ErrorKind::InvalidCursor,
        then::ErrorKind::Unsupported => now::ErrorKind::Unsupported,
        then::ErrorKind::Internal => now::ErrorKind::Internal,
    };
    now::Error {
        kind,
        message: e.message,
    }
}

fn entity(s: then::EntitySchema) -> now::EntitySchema {
    let kind = |t| match t {
        then::AttributeType::Text => now::AttributeType::Text,
        then::AttributeType::Integer => now::AttributeType::Integer,
        then::AttributeType::Boolean => now::AttributeType::Boolean,
        then::AttributeType::Binary => now::AttributeType::Binary,
        then::AttributeType::Datetime => now::AttributeType::Datetime,
        then::AttributeType::Reference => now::AttributeType::Reference,
    };
    now::EntitySchema {
        name: s.name,
        attributes: s
            .attributes
            .into_iter()
            .map(|a| now::AttributeSchema {
                name: a.name,
                type_: kind(a.type_),
                multi_valued: a.multi_valued,
                key: a.key,
                required: a.required,
                references: None,
            })
            .collect(),
    }
}

fn cursor(c: now::Cursor) -> then::Cursor {
    then::Cursor {
        format: c.format,
        data: c.data,
    }
}

fn export_request(r: now::ExportRequest) -> then::ExportRequest {
    then::ExportRequest {
        mode: match r.mode {
            now::ExportMode::Full => then::ExportMode::Full,
            now::ExportMode::Incremental(c) => then::ExportMode::Incremental(cursor(c)),
        },
        batch_size: r.batch_size,
    }
}

fn summary(s: then::ExportSummary) -> now::ExportSummary {
    now::ExportSummary {
        cursor: s.cursor.map(|c| now::Cursor {
            format: c.format,
            data: c.data,
        }),
        entries: s.entries,
        rejected: s.rejected,
    }
}

fn order(o: now::Order) -> then::Order {
    let kind = match o.kind {
        now::OrderKind::Create(attrs) => then::OrderKind::Create(
            attrs
                .into_iter()
                .map(|a| then::AttributeValues {
                    name: a.name,
                    values: a.values,
                })
                .collect(),
        ),
        now::OrderKind::Update(changes) => then::OrderKind::Update(
            changes
                .into_iter()
                .map(|c| then::AttributeChange {
                    name: c.name,
                    op: match c.op {
                        now::ChangeOp::Add => then::ChangeOp::Add,
                        now::ChangeOp::Remove => then::ChangeOp::Remove,
                        now::ChangeOp::Replace => then::ChangeOp::Replace,
                    },
                    values: c.values,
                })
                .collect(),
        ),
        now::OrderKind::Delete => then::OrderKind::Delete,
        now::OrderKind::Enable => then::OrderKind::Enable,
        now::OrderKind::Disable => then::OrderKind::Disable,
        now::OrderKind::SetPassword(p) => then::OrderKind::SetPassword(p),
    };
    then::Order {
        id: o.id,
        entity_type: o.entity_type,
        key: o.key,
        kind,
    }
}

fn result(r: then::OrderResult) -> now::OrderResult {
    now::OrderResult {
        id: r.id,
        outcome: match r.outcome {
            then::OrderOutcome::Done => now::OrderOutcome::Done,
            then::OrderOutcome::Failed(m) => now::OrderOutcome::Failed(m),
            then::OrderOutcome::RetryLater(m) => now::OrderOutcome::RetryLater(m),
        },
    }
}
