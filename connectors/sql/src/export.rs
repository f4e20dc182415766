//! Exports: every row of each mapped table (full), or the rows past the watermark of the last
//! export (incremental), with multi-valued attributes from their child tables.

use crate::config::{Child, Config, Entity};
use crate::sql_text::{Builder, ident};
use base64::Engine as _;
use idgard_sdk::sql::{self, Cell, Value};
use idgard_sdk::{Cursor, Error, Exporter};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt::Write as _;

/// The cursor's format: the last watermark seen, as JSON.
pub const CURSOR_FORMAT: &str = "idgard-sql-watermark-1";

/// The highest watermark value seen, as its column gave it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mark {
    /// A sequence.
    Integer(i64),
    /// A timestamp (as the host writes it: text that sorts as it compares).
    Text(String),
}

impl Mark {
    fn of(cell: &Cell<'_>) -> Option<Mark> {
        match cell {
            Cell::Integer(i) => Some(Mark::Integer(*i)),
            Cell::Text(t) => Some(Mark::Text((*t).to_owned())),
            _ => None,
        }
    }

    fn value(&self) -> Value {
        match self {
            Mark::Integer(i) => Value::Integer(*i),
            Mark::Text(t) => Value::Text(t.clone()),
        }
    }

    fn is_after(&self, other: &Mark) -> bool {
        match (self, other) {
            (Mark::Integer(a), Mark::Integer(b)) => a > b,
            (Mark::Text(a), Mark::Text(b)) => a > b,
            _ => true,
        }
    }
}

/// A cell as the text of an attribute value (bytes as base64); `None` for NULL.
pub fn cell_text<'a>(cell: &Cell<'a>, scratch: &'a mut String) -> Option<&'a str> {
    scratch.clear();
    match cell {
        Cell::Null => return None,
        Cell::Text(t) => return Some(t),
        Cell::Integer(i) => write!(scratch, "{i}").expect("to a string"),
        Cell::Float(f) => write!(scratch, "{f}").expect("to a string"),
        Cell::Boolean(b) => scratch.push_str(if *b { "true" } else { "false" }),
        Cell::Bytes(b) => base64::engine::general_purpose::STANDARD.encode_string(b, scratch),
    }
    Some(scratch.as_str())
}

/// Exports every entity type; answers the cursor of the next incremental export.
pub fn export(
    config: &Config,
    since: Option<&Cursor>,
    out: &mut Exporter,
) -> Result<Option<Cursor>, Error> {
    let since = match since {
        None => None,
        Some(c) if c.format == CURSOR_FORMAT => Some(
            serde_json::from_slice::<Mark>(&c.data)
                .map_err(|e| Error::invalid_cursor(format!("the cursor cannot be read: {e}")))?,
        ),
        Some(c) => {
            return Err(Error::invalid_cursor(format!(
                "a cursor of format `{}` is not this connector's",
                c.format
            )));
        }
    };
    if since.is_some() && config.accounts.watermark.is_none() {
        return Err(Error::invalid_cursor(
            "the connection names no `watermark` column: only full exports are possible",
        ));
    }
    let mut mark = None;
    for entity in config.entities() {
        let entity_since = since.as_ref().filter(|_| entity.watermark.is_some());
        let seen = entity_rows(config, entity, entity_since, out)?;
        if entity.watermark.is_some() {
            mark = seen.or_else(|| since.clone());
        }
    }
    Ok(mark.map(|m| Cursor {
        format: CURSOR_FORMAT.into(),
        data: serde_json::to_vec(&m).expect("a mark serialises"),
    }))
}

/// The rows of one entity type; answers the highest watermark seen.
fn entity_rows(
    config: &Config,
    entity: &Entity,
    since: Option<&Mark>,
    out: &mut Exporter,
) -> Result<Option<Mark>, Error> {
    let children: Vec<(&Child, HashMap<String, Vec<String>>)> = entity
        .children
        .iter()
        .map(|c| Ok((c, child_values(config, c)?)))
        .collect::<Result<_, Error>>()?;
    let statement = select(config, entity, since)?;
    let mut rows = sql::query(&config.database, &statement.sql, &statement.params)?;
    let at = |name: &str| {
        rows.column(name).ok_or_else(|| {
            Error::configuration(format!(
                "the {} rows have no column `{name}` (they have: {})",
                entity.entity_type,
                rows.columns().join(", ")
            ))
        })
    };
    let key = at(&entity.key)?;
    let watermark = entity.watermark.as_deref().map(at).transpose()?;
    let tombstone = entity.tombstone.as_deref().map(at).transpose()?;
    let attributes: Vec<(String, usize)> = if entity.columns.is_empty() {
        rows.columns()
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != key && Some(*i) != tombstone)
            .map(|(i, c)| (c.clone(), i))
            .collect()
    } else {
        entity
            .columns
            .iter()
            .map(|c| Ok((c.clone(), at(c)?)))
            .collect::<Result<_, Error>>()?
    };
    let mut mark: Option<Mark> = None;
    let (mut kbuf, mut vbuf) = (String::new(), String::new());
    let ty = entity.entity_type;
    rows.for_each(|row| {
        if let Some(w) = watermark.and_then(|w| Mark::of(&row[w]))
            && mark.as_ref().is_none_or(|m| w.is_after(m))
        {
            mark = Some(w);
        }
        let Some(k) = cell_text(&row[key], &mut kbuf) else {
            out.reject(&format!(
                "a {ty} row without a key (`{}` is NULL)",
                entity.key
            ));
            return Ok(());
        };
        if tombstone.is_some_and(|t| matches!(row[t], Cell::Boolean(true) | Cell::Integer(1))) {
            if since.is_some() {
                out.delete(ty, k);
            }
            return Ok(());
        }
        let mut w = out.upsert(ty, k);
        for (name, i) in &attributes {
            if let Some(v) = cell_text(&row[*i], &mut vbuf) {
                w.attr(name, v);
            }
        }
        for (child, values) in &children {
            if let Some(vs) = values.get(k) {
                w.values(&child.attribute, vs.iter().map(String::as_str));
            }
        }
        Ok(())
    })?;
    Ok(mark)
}

/// `SELECT * FROM table` (or the declared query), past the watermark when incremental.
fn select(config: &Config, entity: &Entity, since: Option<&Mark>) -> Result<sql::Statement, Error> {
    let mut b = Builder::new(config.dialect);
    match (&entity.query, &entity.table) {
        (Some(q), _) if since.is_none() => {
            b.push(q);
        }
        (Some(q), _) => {
            b.push("SELECT * FROM (").push(q).push(") src");
        }
        (None, Some(t)) => {
            b.push("SELECT * FROM ").ident(t)?;
        }
        (None, None) => unreachable!("an entity has a table or a query"),
    }
    if let (Some(mark), Some(w)) = (since, &entity.watermark) {
        b.push(" WHERE ").ident(w)?.push(" >= ").bind(mark.value());
        b.push(" ORDER BY ").ident(w)?;
    }
    Ok(b.build())
}

/// Every value of a child table, by owner key.
fn child_values(config: &Config, child: &Child) -> Result<HashMap<String, Vec<String>>, Error> {
    let sql = format!(
        "SELECT {}, {} FROM {}",
        ident(config.dialect, &child.key)?,
        ident(config.dialect, &child.value)?,
        ident(config.dialect, &child.table)?
    );
    let mut rows = sql::query(&config.database, &sql, &[])?;
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    let (mut kbuf, mut vbuf) = (String::new(), String::new());
    rows.for_each(|row| {
        if let (Some(k), Some(v)) = (cell_text(&row[0], &mut kbuf), cell_text(&row[1], &mut vbuf)) {
            out.entry(k.to_owned()).or_default().push(v.to_owned());
        }
        Ok(())
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_become_attribute_text() {
        let mut s = String::new();
        assert_eq!(cell_text(&Cell::Integer(-3), &mut s), Some("-3"));
        assert_eq!(cell_text(&Cell::Boolean(true), &mut s), Some("true"));
        assert_eq!(cell_text(&Cell::Bytes(&[0xff, 0]), &mut s), Some("/wA="));
        assert_eq!(cell_text(&Cell::Text("Zoë"), &mut s), Some("Zoë"));
        assert_eq!(cell_text(&Cell::Null, &mut s), None);
    }

    #[test]
    fn marks_compare_within_their_kind() {
        assert!(Mark::Integer(10).is_after(&Mark::Integer(9)));
        assert!(
            !Mark::Text("2026-01-01T00:00:00Z".into()).is_after(&Mark::Text("2026-02-01".into()))
        );
        let m: Mark =
            serde_json::from_slice(&serde_json::to_vec(&Mark::Integer(7)).unwrap()).unwrap();
        assert_eq!(m, Mark::Integer(7));
    }
}
