//! SQL text built from the mapping: quoted identifiers and placeholders only. Values never go
//! into the text: they are bound.

use idgard_sdk::Error;
use idgard_sdk::sql::{self, Dialect, Value};

/// A table or column name, quoted for the dialect; `schema.table` quotes each part.
pub fn ident(dialect: Dialect, name: &str) -> Result<String, Error> {
    name.split('.')
        .map(|part| {
            sql::quote(dialect, part).ok_or_else(|| {
                Error::configuration(format!(
                    "`{name}` cannot be a table or column name: it is empty or holds a quote"
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(|parts| parts.join("."))
}

/// Builds one statement, numbering placeholders as values are bound.
#[derive(Debug)]
pub struct Builder {
    dialect: Dialect,
    /// The SQL written so far.
    pub sql: String,
    /// The values bound so far.
    pub params: Vec<Value>,
}

impl Builder {
    /// An empty statement.
    pub fn new(dialect: Dialect) -> Self {
        Self {
            dialect,
            sql: String::new(),
            params: Vec::new(),
        }
    }

    /// Appends SQL text.
    pub fn push(&mut self, text: &str) -> &mut Self {
        self.sql.push_str(text);
        self
    }

    /// Appends a quoted name.
    pub fn ident(&mut self, name: &str) -> Result<&mut Self, Error> {
        let quoted = ident(self.dialect, name)?;
        self.sql.push_str(&quoted);
        Ok(self)
    }

    /// Appends a placeholder bound to `value`.
    pub fn bind(&mut self, value: impl Into<Value>) -> &mut Self {
        self.params.push(value.into());
        let p = sql::placeholder(self.dialect, self.params.len());
        self.sql.push_str(&p);
        self
    }

    /// The statement.
    pub fn build(self) -> sql::Statement {
        sql::statement(self.sql, self.params)
    }
}

/// A declared statement with `:name` parameters, made positional: each `:name` becomes a
/// placeholder bound to `lookup(name)`. Text inside single quotes is left alone.
pub fn named(
    dialect: Dialect,
    template: &str,
    mut lookup: impl FnMut(&str) -> Option<Value>,
) -> Result<sql::Statement, Error> {
    let mut b = Builder::new(dialect);
    let mut chars = template.char_indices().peekable();
    let mut quoted = false;
    while let Some((i, c)) = chars.next() {
        if c == '\'' {
            quoted = !quoted;
        }
        let starts_name = !quoted
            && c == ':'
            && chars
                .peek()
                .is_some_and(|(_, n)| n.is_ascii_alphabetic() || *n == '_')
            && !template[..i].ends_with(':');
        if !starts_name {
            b.sql.push(c);
            continue;
        }
        let start = i + 1;
        let mut end = start;
        while let Some((j, n)) = chars.peek().copied() {
            if n.is_ascii_alphanumeric() || n == '_' {
                end = j + n.len_utf8();
                chars.next();
            } else {
                break;
            }
        }
        let name = &template[start..end];
        let value = lookup(name).ok_or_else(|| {
            Error::configuration(format!(
                "the statement names `:{name}`, which the order does not give"
            ))
        })?;
        b.bind(value);
    }
    Ok(b.build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_bound_placeholders() {
        let s = named(
            Dialect::Postgres,
            "UPDATE people SET pw = :password WHERE id = :key AND note <> ':key' AND t = x::text",
            |n| Some(Value::from(format!("<{n}>"))),
        )
        .unwrap();
        assert_eq!(
            s.sql,
            "UPDATE people SET pw = $1 WHERE id = $2 AND note <> ':key' AND t = x::text"
        );
        assert_eq!(
            s.params,
            vec![Value::from("<password>"), Value::from("<key>")]
        );
        let s = named(Dialect::Mysql, "DELETE FROM t WHERE id = :key", |_| {
            Some(Value::from("Robert'); DROP TABLE x;--"))
        })
        .unwrap();
        assert_eq!(s.sql, "DELETE FROM t WHERE id = ?");
        assert!(named(Dialect::Mysql, "x = :nope", |_| None).is_err());
    }

    #[test]
    fn identifiers_are_quoted_part_by_part() {
        assert_eq!(
            ident(Dialect::Postgres, "hr.people").unwrap(),
            "\"hr\".\"people\""
        );
        assert_eq!(ident(Dialect::Mysql, "people").unwrap(), "`people`");
        assert!(ident(Dialect::Mysql, "a`b").is_err());
        let mut b = Builder::new(Dialect::Postgres);
        b.push("SELECT * FROM ")
            .ident("t")
            .unwrap()
            .push(" WHERE k = ")
            .bind("O'Brien");
        let s = b.build();
        assert_eq!(s.sql, "SELECT * FROM \"t\" WHERE k = $1");
        assert_eq!(s.params, vec![Value::from("O'Brien")]);
    }
}
