//! PostgreSQL: how the host reads its column types and binds the types its parameters take.

use super::dialect::{Dialect, unreadable};
use super::values::{self as v, put};
use crate::bindings::sql::Value;
use idgard_model::rows::RowsBuffer;
use sqlx::postgres::{PgArguments, PgQueryResult, PgRow, PgTypeInfo, Postgres};
use sqlx::{Arguments, Row, TypeInfo};

/// How one column is read.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Read {
    Bool,
    I16,
    I32,
    I64,
    F32,
    F64,
    Numeric,
    Text,
    Uuid,
    Bytes,
    Date,
    Time,
    Timestamp,
    TimestampTz,
}

impl Dialect for Postgres {
    type Read = Read;

    fn reader(column: &str, ty: &PgTypeInfo) -> Result<Read, String> {
        Ok(match ty.name() {
            "BOOL" => Read::Bool,
            "INT2" => Read::I16,
            "INT4" => Read::I32,
            "INT8" => Read::I64,
            "FLOAT4" => Read::F32,
            "FLOAT8" => Read::F64,
            "NUMERIC" => Read::Numeric,
            "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "UNKNOWN" => Read::Text,
            "UUID" => Read::Uuid,
            "BYTEA" => Read::Bytes,
            "DATE" => Read::Date,
            "TIME" => Read::Time,
            "TIMESTAMP" => Read::Timestamp,
            "TIMESTAMPTZ" => Read::TimestampTz,
            other => return Err(unreadable(column, other, "::text")),
        })
    }

    fn encode(row: &PgRow, readers: &[Read], out: &mut RowsBuffer) -> Result<(), sqlx::Error> {
        for (i, r) in readers.iter().enumerate() {
            match r {
                Read::Bool => put(out, row.try_get(i)?, RowsBuffer::boolean),
                Read::I16 => put(out, row.try_get::<Option<i16>, _>(i)?, |o, x| {
                    o.integer(x.into())
                }),
                Read::I32 => put(out, row.try_get::<Option<i32>, _>(i)?, |o, x| {
                    o.integer(x.into())
                }),
                Read::I64 => put(out, row.try_get(i)?, RowsBuffer::integer),
                Read::F32 => put(out, row.try_get::<Option<f32>, _>(i)?, |o, x| {
                    o.float(x.into())
                }),
                Read::F64 => put(out, row.try_get(i)?, RowsBuffer::float),
                Read::Numeric => put(
                    out,
                    row.try_get::<Option<rust_decimal::Decimal>, _>(i)?,
                    |o, x| o.text(&x.to_string()),
                ),
                Read::Text => put(out, row.try_get::<Option<&str>, _>(i)?, |o, x| o.text(x)),
                Read::Uuid => put(out, row.try_get::<Option<uuid::Uuid>, _>(i)?, |o, x| {
                    o.text(
                        x.hyphenated()
                            .encode_lower(&mut uuid::Uuid::encode_buffer()),
                    )
                }),
                Read::Bytes => put(out, row.try_get::<Option<&[u8]>, _>(i)?, |o, x| o.bytes(x)),
                Read::Date => put(out, row.try_get(i)?, v::date),
                Read::Time => put(out, row.try_get(i)?, v::time),
                Read::Timestamp => put(out, row.try_get(i)?, v::timestamp),
                Read::TimestampTz => put(out, row.try_get(i)?, v::timestamp_tz),
            }
        }
        out.end_row();
        Ok(())
    }

    fn bind(params: Vec<Value>, types: &[PgTypeInfo]) -> Result<PgArguments, String> {
        let mut args = PgArguments::default();
        for (i, (value, ty)) in params.into_iter().zip(types).enumerate() {
            let n = i + 1;
            let added = match ty.name() {
                "BOOL" => args.add(v::boolean(n, value)?),
                "INT2" => args.add(v::integer_as::<i16>(n, value, "a smallint")?),
                "INT4" => args.add(v::integer_as::<i32>(n, value, "an integer")?),
                "INT8" => args.add(v::integer(n, value)?),
                "FLOAT4" => args.add(v::float(n, value)?.map(|f| f as f32)),
                "FLOAT8" => args.add(v::float(n, value)?),
                "NUMERIC" => args.add(v::parsed(n, value, "a decimal", |s| {
                    s.parse::<rust_decimal::Decimal>().ok()
                })?),
                "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "UNKNOWN" => args.add(v::text(n, value)?),
                "UUID" => args.add(v::parsed(n, value, "a UUID", |s| {
                    uuid::Uuid::parse_str(s).ok()
                })?),
                "BYTEA" => args.add(v::bytes(n, value)?),
                "DATE" => args.add(v::parsed(n, value, "a date", v::parse_date)?),
                "TIME" => args.add(v::parsed(n, value, "a time", v::parse_time)?),
                "TIMESTAMP" => args.add(v::parsed(n, value, "a timestamp", v::parse_timestamp)?),
                "TIMESTAMPTZ" => {
                    args.add(v::parsed(n, value, "a timestamp", v::parse_timestamp_tz)?)
                }
                other => {
                    return Err(format!(
                        "parameter {n} has type {other}, which the host does not bind: cast it \
                         in the statement (`${n}::text`)"
                    ));
                }
            };
            added.map_err(|e| format!("parameter {n}: {e}"))?;
        }
        Ok(args)
    }

    fn affected(result: &PgQueryResult) -> u64 {
        result.rows_affected()
    }
}
