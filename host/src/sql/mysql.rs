//! MariaDB and MySQL: how the host reads their column types. Parameters are bound as the
//! connector gave them: the server converts them to the column's type itself.

use super::dialect::{Dialect, unreadable};
use super::values::{self as v, put};
use crate::bindings::sql::Value;
use idgard_model::rows::RowsBuffer;
use sqlx::mysql::{MySql, MySqlArguments, MySqlQueryResult, MySqlRow, MySqlTypeInfo};
use sqlx::{Arguments, Row, TypeInfo};

/// How one column is read.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Read {
    Bool,
    Signed,
    Unsigned,
    F32,
    F64,
    Decimal,
    Text,
    Bytes,
    Date,
    Timestamp,
    TimestampTz,
}

impl Dialect for MySql {
    type Read = Read;

    fn reader(column: &str, ty: &MySqlTypeInfo) -> Result<Read, String> {
        Ok(match ty.name() {
            "BOOLEAN" => Read::Bool,
            "TINYINT" | "SMALLINT" | "INT" | "MEDIUMINT" | "BIGINT" => Read::Signed,
            "TINYINT UNSIGNED" | "SMALLINT UNSIGNED" | "INT UNSIGNED" | "MEDIUMINT UNSIGNED"
            | "BIGINT UNSIGNED" => Read::Unsigned,
            "FLOAT" => Read::F32,
            "DOUBLE" => Read::F64,
            "DECIMAL" => Read::Decimal,
            "CHAR" | "VARCHAR" | "TEXT" | "TINYTEXT" | "MEDIUMTEXT" | "LONGTEXT" | "ENUM"
            | "SET" | "JSON" | "NULL" => Read::Text,
            "BINARY" | "VARBINARY" | "BLOB" | "TINYBLOB" | "MEDIUMBLOB" | "LONGBLOB" => Read::Bytes,
            "DATE" => Read::Date,
            "DATETIME" => Read::Timestamp,
            "TIMESTAMP" => Read::TimestampTz,
            other => return Err(unreadable(column, other, " AS CHAR")),
        })
    }

    fn encode(row: &MySqlRow, readers: &[Read], out: &mut RowsBuffer) -> Result<(), sqlx::Error> {
        for (i, r) in readers.iter().enumerate() {
            match r {
                Read::Bool => put(out, row.try_get(i)?, RowsBuffer::boolean),
                Read::Signed => put(out, row.try_get(i)?, RowsBuffer::integer),
                Read::Unsigned => {
                    put(
                        out,
                        row.try_get::<Option<u64>, _>(i)?,
                        |o, x| match i64::try_from(x) {
                            Ok(x) => o.integer(x),
                            Err(_) => o.text(&x.to_string()),
                        },
                    )
                }
                Read::F32 => put(out, row.try_get::<Option<f32>, _>(i)?, |o, x| {
                    o.float(x.into())
                }),
                Read::F64 => put(out, row.try_get(i)?, RowsBuffer::float),
                Read::Decimal => put(
                    out,
                    row.try_get::<Option<rust_decimal::Decimal>, _>(i)?,
                    |o, x| o.text(&x.to_string()),
                ),
                Read::Text => put(out, row.try_get_unchecked::<Option<&str>, _>(i)?, |o, x| {
                    o.text(x)
                }),
                Read::Bytes => put(out, row.try_get::<Option<&[u8]>, _>(i)?, |o, x| o.bytes(x)),
                Read::Date => put(out, row.try_get(i)?, v::date),
                Read::Timestamp => put(out, row.try_get(i)?, v::timestamp),
                Read::TimestampTz => put(out, row.try_get(i)?, v::timestamp_tz),
            }
        }
        out.end_row();
        Ok(())
    }

    fn bind(params: Vec<Value>, _types: &[MySqlTypeInfo]) -> Result<MySqlArguments, String> {
        let mut args = MySqlArguments::default();
        for (i, value) in params.into_iter().enumerate() {
            let added = match value {
                Value::Null => args.add(None::<String>),
                Value::Text(s) => args.add(s),
                Value::Integer(x) => args.add(x),
                Value::Float(x) => args.add(x),
                Value::Boolean(x) => args.add(x),
                Value::Bytes(x) => args.add(x),
            };
            added.map_err(|e| format!("parameter {}: {e}", i + 1))?;
        }
        Ok(args)
    }

    fn affected(result: &MySqlQueryResult) -> u64 {
        result.rows_affected()
    }
}
