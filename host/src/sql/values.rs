//! What a connector binds, read as the type the database expects, and what the database answers,
//! written into the rows format. Shared by the drivers.

use crate::bindings::sql::Value;
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, SecondsFormat, Utc};
use idgard_model::rows::RowsBuffer;

/// Writes an optional value, NULL when absent.
pub(crate) fn put<T>(out: &mut RowsBuffer, v: Option<T>, f: impl FnOnce(&mut RowsBuffer, T)) {
    match v {
        Some(v) => f(out, v),
        None => out.null(),
    }
}

/// Dates and times cross as text, RFC 3339 where there is a zone.
pub(crate) fn date(out: &mut RowsBuffer, v: NaiveDate) {
    out.text(&v.format("%Y-%m-%d").to_string());
}

pub(crate) fn time(out: &mut RowsBuffer, v: NaiveTime) {
    out.text(&v.format("%H:%M:%S%.f").to_string());
}

pub(crate) fn timestamp(out: &mut RowsBuffer, v: NaiveDateTime) {
    out.text(&v.format("%Y-%m-%dT%H:%M:%S%.f").to_string());
}

pub(crate) fn timestamp_tz(out: &mut RowsBuffer, v: DateTime<Utc>) {
    out.text(&v.to_rfc3339_opts(SecondsFormat::AutoSi, true));
}

/// Why a value cannot be bound to a parameter.
pub(crate) fn mismatch(n: usize, expected: &str, v: &Value) -> String {
    let given = match v {
        Value::Null => "null",
        Value::Text(_) => "text",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Bytes(_) => "bytes",
    };
    format!("parameter {n} takes {expected}, and {given} cannot be read as one")
}

/// A value read as text (numbers and booleans written out); `None` for NULL.
pub(crate) fn text(n: usize, v: Value) -> Result<Option<String>, String> {
    Ok(Some(match v {
        Value::Null => return Ok(None),
        Value::Text(s) => s,
        Value::Integer(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Boolean(b) => b.to_string(),
        v @ Value::Bytes(_) => return Err(mismatch(n, "text", &v)),
    }))
}

/// A value read as a whole number.
pub(crate) fn integer(n: usize, v: Value) -> Result<Option<i64>, String> {
    match v {
        Value::Null => Ok(None),
        Value::Integer(i) => Ok(Some(i)),
        Value::Text(ref s) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| mismatch(n, "a whole number", &v)),
        Value::Boolean(b) => Ok(Some(i64::from(b))),
        v => Err(mismatch(n, "a whole number", &v)),
    }
}

/// A value read as a whole number that fits `T`.
pub(crate) fn integer_as<T: TryFrom<i64>>(
    n: usize,
    v: Value,
    name: &str,
) -> Result<Option<T>, String> {
    integer(n, v)?
        .map(|i| T::try_from(i).map_err(|_| format!("parameter {n}: {i} does not fit {name}")))
        .transpose()
}

/// A value read as a floating-point number.
pub(crate) fn float(n: usize, v: Value) -> Result<Option<f64>, String> {
    match v {
        Value::Null => Ok(None),
        Value::Float(f) => Ok(Some(f)),
        Value::Integer(i) => Ok(Some(i as f64)),
        Value::Text(ref s) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| mismatch(n, "a number", &v)),
        v => Err(mismatch(n, "a number", &v)),
    }
}

/// A value read as true or false (`true`/`false`, `t`/`f`, `1`/`0`, `yes`/`no` as text).
pub(crate) fn boolean(n: usize, v: Value) -> Result<Option<bool>, String> {
    match v {
        Value::Null => Ok(None),
        Value::Boolean(b) => Ok(Some(b)),
        Value::Integer(0) => Ok(Some(false)),
        Value::Integer(1) => Ok(Some(true)),
        Value::Text(ref s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "t" | "1" | "yes" | "y" | "on" => Ok(Some(true)),
            "false" | "f" | "0" | "no" | "n" | "off" => Ok(Some(false)),
            _ => Err(mismatch(n, "a boolean", &v)),
        },
        v => Err(mismatch(n, "a boolean", &v)),
    }
}

/// A value read as bytes (text gives its UTF-8 bytes).
pub(crate) fn bytes(n: usize, v: Value) -> Result<Option<Vec<u8>>, String> {
    match v {
        Value::Null => Ok(None),
        Value::Bytes(b) => Ok(Some(b)),
        Value::Text(s) => Ok(Some(s.into_bytes())),
        v => Err(mismatch(n, "bytes", &v)),
    }
}

/// A text value parsed by `parse`, for dates, times, decimals and UUIDs.
pub(crate) fn parsed<T>(
    n: usize,
    v: Value,
    expected: &str,
    parse: impl FnOnce(&str) -> Option<T>,
) -> Result<Option<T>, String> {
    match text(n, v)? {
        None => Ok(None),
        Some(s) => parse(s.trim()).map(Some).ok_or_else(|| {
            format!(
                "parameter {n} takes {expected}: `{}` is not one",
                crate::text::shown(&s, 64)
            )
        }),
    }
}

/// An RFC 3339 date-time or a date-time without zone (taken as UTC).
pub(crate) fn parse_timestamp_tz(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|d| d.with_timezone(&Utc))
        .ok()
        .or_else(|| parse_timestamp(s).map(|n| n.and_utc()))
}

/// A date-time without zone, `T` or a space between date and time.
pub(crate) fn parse_timestamp(s: &str) -> Option<NaiveDateTime> {
    [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
    .or_else(|| parse_date(s).map(|d| d.and_time(NaiveTime::MIN)))
}

pub(crate) fn parse_date(s: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
}

pub(crate) fn parse_time(s: &str) -> Option<NaiveTime> {
    NaiveTime::parse_from_str(s, "%H:%M:%S%.f")
        .or_else(|_| NaiveTime::parse_from_str(s, "%H:%M"))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_read_as_the_parameter_expects() {
        assert_eq!(integer(1, Value::Text(" 42 ".into())), Ok(Some(42)));
        assert_eq!(integer(1, Value::Null), Ok(None));
        assert!(
            integer(2, Value::Text("forty".into()))
                .unwrap_err()
                .contains("parameter 2")
        );
        assert!(integer_as::<i16>(1, Value::Integer(70_000), "smallint").is_err());
        assert_eq!(text(1, Value::Integer(7)), Ok(Some("7".into())));
        assert_eq!(boolean(1, Value::Text("No".into())), Ok(Some(false)));
        assert!(boolean(1, Value::Integer(2)).is_err());
        assert_eq!(float(1, Value::Integer(2)), Ok(Some(2.0)));
        assert_eq!(
            parsed(
                1,
                Value::Text("2026-11-28T10:00:00+01:00".into()),
                "a timestamp",
                parse_timestamp_tz
            )
            .unwrap()
            .unwrap()
            .to_rfc3339(),
            "2026-11-28T09:00:00+00:00"
        );
        assert!(parse_timestamp("2026-11-28 10:00:00").is_some());
        assert!(parse_timestamp("2026-11-28").is_some());
        let e = parsed(3, Value::Text("soon".into()), "a date", parse_date).unwrap_err();
        assert!(e.contains("parameter 3 takes a date"), "{e}");
    }

    #[test]
    fn dates_cross_as_text() {
        let mut b = RowsBuffer::default();
        timestamp_tz(&mut b, parse_timestamp_tz("2026-11-28T10:00:00Z").unwrap());
        date(&mut b, parse_date("2026-02-03").unwrap());
        let batch = b.take();
        let mut r = idgard_model::rows::RowReader::new(&batch, 2);
        assert_eq!(
            r.next().unwrap().unwrap(),
            &[
                idgard_model::rows::Cell::Text("2026-11-28T10:00:00Z"),
                idgard_model::rows::Cell::Text("2026-02-03")
            ]
        );
    }
}
