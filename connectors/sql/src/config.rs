//! The connection's settings, read into the tables and columns each entity type maps to.

use idgard_sdk::sql::{self, Dialect};
use idgard_sdk::{Error, Settings};
use serde::Deserialize;

/// Accounts.
pub const ACCOUNT: &str = "account";
/// Groups.
pub const GROUP: &str = "group";

/// The settings as the manifest declares them.
#[derive(Debug, Deserialize)]
struct Raw {
    database: String,
    accounts_table: Option<String>,
    accounts_query: Option<String>,
    key: String,
    #[serde(default)]
    columns: Vec<String>,
    watermark: Option<String>,
    tombstone: Option<String>,
    enabled_column: Option<String>,
    #[serde(default)]
    multi_valued: Vec<String>,
    set_password_statement: Option<String>,
    groups_table: Option<String>,
    groups_key: Option<String>,
    #[serde(default)]
    groups_columns: Vec<String>,
    members: Option<String>,
    batch_rows: u32,
}

/// A multi-valued attribute kept in a child table: one row per value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Child {
    /// The attribute it fills.
    pub attribute: String,
    /// The child table.
    pub table: String,
    /// The column holding the owner's key.
    pub key: String,
    /// The column holding one value.
    pub value: String,
}

/// Where one entity type lives.
#[derive(Debug, Clone)]
pub struct Entity {
    /// `account` or `group`.
    pub entity_type: &'static str,
    /// The table written to (and read from, without `query`).
    pub table: Option<String>,
    /// A declared query read instead of the table.
    pub query: Option<String>,
    /// The key column.
    pub key: String,
    /// The attribute columns (empty: every column the table or query has).
    pub columns: Vec<String>,
    /// A column that only grows with each change: incremental exports read past it.
    pub watermark: Option<String>,
    /// A boolean column marking deleted rows.
    pub tombstone: Option<String>,
    /// A boolean column saying whether the account is enabled.
    pub enabled: Option<String>,
    /// Multi-valued attributes from child tables.
    pub children: Vec<Child>,
}

/// The connection's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The granted database.
    pub database: String,
    /// Its dialect, as the host says.
    pub dialect: Dialect,
    /// Accounts.
    pub accounts: Entity,
    /// Groups, when the connection maps them.
    pub groups: Option<Entity>,
    /// The statement that sets a password, with `:key` and `:password`.
    pub set_password: Option<String>,
    /// Rows per created batch (one INSERT of several rows).
    pub batch_rows: usize,
}

/// Reads `attribute:table(key_column,value_column)`.
pub fn parse_child(spec: &str) -> Result<Child, Error> {
    let bad = || {
        Error::configuration(format!(
            "`{spec}`: write a multi-valued attribute as `attribute:table(key_column,value_column)`"
        ))
    };
    let (attribute, rest) = spec.split_once(':').ok_or_else(bad)?;
    let (table, cols) = rest.trim().split_once('(').ok_or_else(bad)?;
    let cols = cols.strip_suffix(')').ok_or_else(bad)?;
    let (key, value) = cols.split_once(',').ok_or_else(bad)?;
    let child = Child {
        attribute: attribute.trim().to_owned(),
        table: table.trim().to_owned(),
        key: key.trim().to_owned(),
        value: value.trim().to_owned(),
    };
    if [&child.attribute, &child.table, &child.key, &child.value]
        .iter()
        .any(|s| s.is_empty())
    {
        return Err(bad());
    }
    Ok(child)
}

impl Config {
    /// Reads the settings and asks the host for the database's dialect.
    pub fn load(settings: &Settings) -> Result<Self, Error> {
        let raw: Raw = settings.parse()?;
        let database = sql::database(&raw.database)?;
        Self::from_raw(raw, database.dialect)
    }

    fn from_raw(raw: Raw, dialect: Dialect) -> Result<Self, Error> {
        if raw.accounts_table.is_none() && raw.accounts_query.is_none() {
            return Err(Error::configuration(
                "give `accounts_table` (read and written) or `accounts_query` (read only)",
            ));
        }
        let children = raw
            .multi_valued
            .iter()
            .map(|s| parse_child(s))
            .collect::<Result<Vec<_>, _>>()?;
        let accounts = Entity {
            entity_type: ACCOUNT,
            table: raw.accounts_table,
            query: raw.accounts_query,
            key: raw.key,
            columns: raw.columns,
            watermark: raw.watermark,
            tombstone: raw.tombstone,
            enabled: raw.enabled_column,
            children,
        };
        let groups = match raw.groups_table {
            None => None,
            Some(table) => Some(Entity {
                entity_type: GROUP,
                table: Some(table),
                query: None,
                key: raw.groups_key.ok_or_else(|| {
                    Error::configuration("`groups_table` needs `groups_key`, its key column")
                })?,
                columns: raw.groups_columns,
                watermark: None,
                tombstone: None,
                enabled: None,
                children: raw
                    .members
                    .map(|m| parse_child(&format!("member:{m}")))
                    .transpose()?
                    .into_iter()
                    .collect(),
            }),
        };
        let config = Config {
            database: raw.database,
            dialect,
            accounts,
            groups,
            set_password: raw.set_password_statement,
            batch_rows: raw.batch_rows.clamp(1, 10_000) as usize,
        };
        config.check_names()?;
        Ok(config)
    }

    /// Every table and column name must be quotable (no quote character inside).
    fn check_names(&self) -> Result<(), Error> {
        for e in self.entities() {
            let mut names: Vec<&str> = vec![&e.key];
            names.extend(e.table.as_deref());
            names.extend(e.columns.iter().map(String::as_str));
            names.extend(e.watermark.as_deref());
            names.extend(e.tombstone.as_deref());
            names.extend(e.enabled.as_deref());
            for c in &e.children {
                names.extend([c.table.as_str(), &c.key, &c.value]);
            }
            for n in names {
                crate::sql_text::ident(self.dialect, n)?;
            }
        }
        Ok(())
    }

    /// The entity types mapped, accounts first.
    pub fn entities(&self) -> impl Iterator<Item = &Entity> {
        std::iter::once(&self.accounts).chain(self.groups.as_ref())
    }

    /// The entity an order's type names.
    pub fn entity(&self, entity_type: &str) -> Option<&Entity> {
        self.entities().find(|e| e.entity_type == entity_type)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_are_written_compactly() {
        assert_eq!(
            parse_child("alias: people_aliases (person_id, alias)").unwrap(),
            Child {
                attribute: "alias".into(),
                table: "people_aliases".into(),
                key: "person_id".into(),
                value: "alias".into()
            }
        );
        for bad in ["alias", "alias:t", "alias:t(a)", "alias:t(a,b", ":t(a,b)"] {
            assert!(parse_child(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_that_could_break_out_of_quotes_are_refused() {
        let raw: Raw = serde_json::from_value(serde_json::json!({
            "database": "hr", "accounts_table": "people", "key": "id\"; DROP TABLE people; --",
            "batch_rows": 500
        }))
        .unwrap();
        let e = Config::from_raw(raw, Dialect::Postgres).unwrap_err();
        assert!(e.message.contains("DROP TABLE"), "{}", e.message);
    }
}
