//! Orders carried out on the mapped tables. Creates of one entity type are written as one
//! INSERT of many rows (one round trip for a whole batch); when that INSERT fails, each create is
//! tried alone so that every order gets its own outcome. Other orders run one by one, each in its
//! own transaction (its table row and its child rows change together or not at all).

use crate::config::{Config, Entity};
use crate::sql_text::{Builder, named};
use idgard_sdk::sql::{self, Dialect, SqlError, Statement, Value};
use idgard_sdk::{ChangeOp, Error, ErrorKind, Order, OrderKind, OrderResult};
use std::collections::BTreeMap;

/// Most parameters in one statement: PostgreSQL and MariaDB take 65,535, SQL Server 2,100.
fn max_params(dialect: Dialect) -> usize {
    match dialect {
        Dialect::Mssql => 2_000,
        Dialect::Postgres | Dialect::Mysql => 30_000,
    }
}

/// Carries out every order, in order; one result per order. A run of creates of one entity type
/// goes out together.
pub fn fulfil(config: &Config, orders: Vec<Order>) -> Vec<OrderResult> {
    let mut results = Vec::with_capacity(orders.len());
    let mut creates: Vec<Order> = Vec::new();
    for order in orders {
        let joins = matches!(order.kind, OrderKind::Create(_))
            && creates
                .first()
                .is_none_or(|c| c.entity_type == order.entity_type);
        if !joins {
            results.extend(flush(config, &mut creates));
        }
        if matches!(order.kind, OrderKind::Create(_)) {
            creates.push(order);
        } else {
            results.push(one(config, &order));
        }
    }
    results.extend(flush(config, &mut creates));
    results
}

/// Creates the pending run of creates (all of one entity type).
fn flush(config: &Config, creates: &mut Vec<Order>) -> Vec<OrderResult> {
    let Some(first) = creates.first() else {
        return vec![];
    };
    let out = match config.entity(&first.entity_type) {
        Some(entity) => create_all(config, entity, creates),
        None => creates.iter().map(unknown_type).collect(),
    };
    creates.clear();
    out
}

fn unknown_type(order: &Order) -> OrderResult {
    OrderResult::failed(
        &order.id,
        format!("the connection maps no `{}` table", order.entity_type),
    )
}

/// The outcome of statements run for one order.
/// `row`: the statement that must touch the entry's own row (none touched: no such entry).
fn outcome(order: &Order, done: Result<Vec<u64>, SqlError>, row: Option<usize>) -> OrderResult {
    match done {
        Ok(counts) if row.is_some_and(|r| counts.get(r) == Some(&0)) => OrderResult::failed(
            &order.id,
            format!("no {} with key `{}`", order.entity_type, order.key),
        ),
        Ok(_) => OrderResult::done(&order.id),
        Err(e) => failure(order, e),
    }
}

fn failure(order: &Order, e: SqlError) -> OrderResult {
    if e.is_duplicate() {
        return OrderResult::failed(
            &order.id,
            format!(
                "a {} with key `{}` already exists",
                order.entity_type, order.key
            ),
        );
    }
    let retry = e.kind == ErrorKind::Unavailable;
    let message = Error::from(e).message;
    if retry {
        OrderResult::retry_later(&order.id, message)
    } else {
        OrderResult::failed(&order.id, message)
    }
}

/// Creates in batches of `batch_rows`, one INSERT each (and one per child table).
fn create_all(config: &Config, entity: &Entity, orders: &[Order]) -> Vec<OrderResult> {
    let mut results = Vec::with_capacity(orders.len());
    for chunk in orders.chunks(config.batch_rows) {
        let together = create_statements(config, entity, chunk)
            .and_then(|s| sql::execute(&config.database, &s, true).map_err(Error::from));
        match together {
            Ok(_) => results.extend(chunk.iter().map(|o| OrderResult::done(&o.id))),
            Err(_) if chunk.len() > 1 => {
                for o in chunk {
                    results.extend(create_all(config, entity, std::slice::from_ref(o)));
                }
            }
            Err(_) => {
                let o = &chunk[0];
                let alone = create_statements(config, entity, chunk);
                results.push(match alone {
                    Err(e) => OrderResult::failed(&o.id, e.message),
                    Ok(s) => outcome(o, sql::execute(&config.database, &s, true), None),
                });
            }
        }
    }
    results
}

/// The column values of a create (key first), and the values of each child attribute.
type Row<'a> = (Vec<(&'a str, Value)>, Vec<(&'a str, &'a [String])>);

fn create_row<'a>(entity: &'a Entity, order: &'a Order) -> Result<Row<'a>, Error> {
    let OrderKind::Create(attributes) = &order.kind else {
        unreachable!("only creates")
    };
    let mut columns = vec![(entity.key.as_str(), Value::from(order.key.as_str()))];
    let mut children = Vec::new();
    for a in attributes {
        if let Some(c) = entity.children.iter().find(|c| c.attribute == a.name) {
            children.push((c.attribute.as_str(), a.values.as_slice()));
        } else if a.name == entity.key {
            continue;
        } else if entity.columns.is_empty() || entity.columns.contains(&a.name) {
            if a.values.len() > 1 {
                return Err(Error::invalid_data(format!(
                    "`{}` has {} values and its column holds one",
                    a.name,
                    a.values.len()
                )));
            }
            let value = a.values.first().map(String::as_str);
            let value = if entity.enabled.as_ref() == Some(&a.name) {
                enabled(value)?
            } else {
                Value::from(value)
            };
            columns.push((a.name.as_str(), value));
        } else {
            return Err(Error::invalid_data(format!(
                "`{}` is not among the columns the connection maps ({})",
                a.name,
                entity.columns.join(", ")
            )));
        }
    }
    if let Some(e) = &entity.enabled
        && !columns.iter().any(|(c, _)| c == e)
    {
        columns.push((e.as_str(), Value::Boolean(true)));
    }
    Ok((columns, children))
}

/// One INSERT per distinct column list for the rows, then one per child table.
fn create_statements(
    config: &Config,
    entity: &Entity,
    orders: &[Order],
) -> Result<Vec<Statement>, Error> {
    let table = entity.table.as_deref().ok_or_else(|| {
        Error::configuration("the accounts come from a query: name `accounts_table` to write them")
    })?;
    let rows = orders
        .iter()
        .map(|o| create_row(entity, o))
        .collect::<Result<Vec<_>, _>>()?;
    let mut by_columns: BTreeMap<Vec<&str>, Vec<Vec<Value>>> = BTreeMap::new();
    for (columns, _) in &rows {
        let names = columns.iter().map(|(c, _)| *c).collect();
        let values = columns.iter().map(|(_, v)| v.clone()).collect();
        by_columns.entry(names).or_default().push(values);
    }
    let mut out = Vec::new();
    for (names, values) in &by_columns {
        for chunk in values.chunks((max_params(config.dialect) / names.len()).max(1)) {
            out.push(insert(config, table, names, chunk)?);
        }
    }
    for child in &entity.children {
        let values: Vec<Vec<Value>> = orders
            .iter()
            .zip(&rows)
            .flat_map(|(o, (_, children))| {
                children
                    .iter()
                    .filter(|(a, _)| *a == child.attribute)
                    .flat_map(|(_, vs)| {
                        vs.iter()
                            .map(|v| vec![Value::from(o.key.as_str()), Value::from(v.as_str())])
                    })
            })
            .collect();
        for chunk in values.chunks(max_params(config.dialect) / 2) {
            out.push(insert(
                config,
                &child.table,
                &[&child.key, &child.value],
                chunk,
            )?);
        }
    }
    Ok(out)
}

/// `INSERT INTO table (columns) VALUES (...), (...)`.
fn insert(
    config: &Config,
    table: &str,
    columns: &[&str],
    rows: &[Vec<Value>],
) -> Result<Statement, Error> {
    let mut b = Builder::new(config.dialect);
    b.push("INSERT INTO ").ident(table)?.push(" (");
    for (i, c) in columns.iter().enumerate() {
        if i > 0 {
            b.push(", ");
        }
        b.ident(c)?;
    }
    b.push(") VALUES ");
    for (r, row) in rows.iter().enumerate() {
        b.push(if r == 0 { "(" } else { ", (" });
        for (i, v) in row.iter().enumerate() {
            if i > 0 {
                b.push(", ");
            }
            b.bind(v.clone());
        }
        b.push(")");
    }
    Ok(b.build())
}

/// The enabled column's value: a boolean, bound as one (MariaDB takes no `true` as text).
fn enabled(value: Option<&str>) -> Result<Value, Error> {
    match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        None => Ok(Value::Null),
        Some("true" | "1" | "yes" | "t") => Ok(Value::Boolean(true)),
        Some("false" | "0" | "no" | "f") => Ok(Value::Boolean(false)),
        Some(other) => Err(Error::invalid_data(format!(
            "`{other}` is not a boolean for the enabled column"
        ))),
    }
}

/// One order other than a create, in its own transaction.
fn one(config: &Config, order: &Order) -> OrderResult {
    let Some(entity) = config.entity(&order.entity_type) else {
        return unknown_type(order);
    };
    let (statements, row) = match statements(config, entity, order) {
        Ok(s) => s,
        Err(e) => return OrderResult::failed(&order.id, e.message),
    };
    outcome(
        order,
        sql::execute(&config.database, &statements, true),
        row,
    )
}

/// The statements an update, delete, enable, disable or password order runs, and which one
/// touches the entry's own row.
fn statements(
    config: &Config,
    entity: &Entity,
    order: &Order,
) -> Result<(Vec<Statement>, Option<usize>), Error> {
    let d = config.dialect;
    let table = entity.table.as_deref().ok_or_else(|| {
        Error::configuration("the accounts come from a query: name `accounts_table` to write them")
    })?;
    let key = || Value::from(order.key.as_str());
    let by_key = |b: &mut Builder, column: &str| -> Result<(), Error> {
        b.push(" WHERE ").ident(column)?.push(" = ").bind(key());
        Ok(())
    };
    let mut out = Vec::new();
    match &order.kind {
        OrderKind::Create(_) => unreachable!("creates are batched"),
        OrderKind::Delete => {
            for c in &entity.children {
                let mut b = Builder::new(d);
                b.push("DELETE FROM ").ident(&c.table)?;
                by_key(&mut b, &c.key)?;
                out.push(b.build());
            }
            // Child rows first: they may refer to the entry's row.
            let mut b = Builder::new(d);
            b.push("DELETE FROM ").ident(table)?;
            by_key(&mut b, &entity.key)?;
            out.push(b.build());
            let row = out.len() - 1;
            return Ok((out, Some(row)));
        }
        OrderKind::Enable | OrderKind::Disable => {
            let column = entity.enabled.as_deref().ok_or_else(|| {
                Error::configuration("enabling and disabling need `enabled_column`")
            })?;
            let mut b = Builder::new(d);
            b.push("UPDATE ")
                .ident(table)?
                .push(" SET ")
                .ident(column)?
                .push(" = ");
            b.bind(matches!(order.kind, OrderKind::Enable));
            by_key(&mut b, &entity.key)?;
            out.push(b.build());
        }
        OrderKind::SetPassword(password) => {
            let template = config.set_password.as_deref().ok_or_else(|| {
                Error::configuration("setting passwords needs `set_password_statement`")
            })?;
            out.push(named(d, template, |name| match name {
                "key" => Some(key()),
                "password" => Some(Value::from(password.as_str())),
                _ => None,
            })?);
            return Ok((out, None));
        }
        OrderKind::Update(changes) => {
            out = update(config, entity, table, &order.key, changes)?;
        }
    }
    Ok((out, Some(0)))
}

/// An update: one UPDATE of the changed columns (first), then the child values' changes.
fn update(
    config: &Config,
    entity: &Entity,
    table: &str,
    key: &str,
    changes: &[idgard_sdk::AttributeChange],
) -> Result<Vec<Statement>, Error> {
    let mut out = Vec::new();
    let mut set = Builder::new(config.dialect);
    set.push("UPDATE ")
        .ident(table)?
        .push(" SET ")
        .ident(&entity.key)?
        .push(" = ")
        .ident(&entity.key)?;
    for change in changes {
        if let Some(child) = entity.children.iter().find(|c| c.attribute == change.name) {
            out.extend(child_change(config, child, key, change.op, &change.values)?);
            continue;
        }
        if !entity.columns.is_empty() && !entity.columns.contains(&change.name) {
            return Err(Error::invalid_data(format!(
                "`{}` is not among the columns the connection maps",
                change.name
            )));
        }
        let value = match change.op {
            ChangeOp::Remove => None,
            ChangeOp::Add | ChangeOp::Replace if change.values.len() > 1 => {
                return Err(Error::invalid_data(format!(
                    "`{}` gets {} values and its column holds one",
                    change.name,
                    change.values.len()
                )));
            }
            ChangeOp::Add | ChangeOp::Replace => change.values.first().map(String::as_str),
        };
        let value = if entity.enabled.as_ref() == Some(&change.name) {
            enabled(value)?
        } else {
            Value::from(value)
        };
        set.push(", ").ident(&change.name)?.push(" = ").bind(value);
    }
    set.push(" WHERE ")
        .ident(&entity.key)?
        .push(" = ")
        .bind(key);
    out.insert(0, set.build());
    Ok(out)
}

/// Adds, removes or replaces values of a child-table attribute.
fn child_change(
    config: &Config,
    child: &crate::config::Child,
    key: &str,
    op: ChangeOp,
    values: &[String],
) -> Result<Vec<Statement>, Error> {
    let d = config.dialect;
    let mut out = Vec::new();
    let delete = |value: Option<&str>| -> Result<Statement, Error> {
        let mut b = Builder::new(d);
        b.push("DELETE FROM ")
            .ident(&child.table)?
            .push(" WHERE ")
            .ident(&child.key)?
            .push(" = ")
            .bind(key);
        if let Some(v) = value {
            b.push(" AND ").ident(&child.value)?.push(" = ").bind(v);
        }
        Ok(b.build())
    };
    match op {
        ChangeOp::Remove if values.is_empty() => out.push(delete(None)?),
        ChangeOp::Remove => {
            for v in values {
                out.push(delete(Some(v))?);
            }
        }
        ChangeOp::Replace | ChangeOp::Add => {
            if op == ChangeOp::Replace {
                out.push(delete(None)?);
            } else {
                // Adding a value already there is not an error: remove it first.
                for v in values {
                    out.push(delete(Some(v))?);
                }
            }
            let rows: Vec<Vec<Value>> = values
                .iter()
                .map(|v| vec![Value::from(key), Value::from(v.as_str())])
                .collect();
            if !rows.is_empty() {
                out.push(insert(
                    config,
                    &child.table,
                    &[&child.key, &child.value],
                    &rows,
                )?);
            }
        }
    }
    Ok(out)
}
