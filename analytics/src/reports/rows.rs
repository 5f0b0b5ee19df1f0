//! A report frame as typed rows (for JSON) or as CSV.

use polars::prelude::*;
use serde::de::DeserializeOwned;
use serde_json::{Map, Number, Value};

use crate::AnalyticsError;

fn cell(value: AnyValue<'_>) -> Value {
    match value {
        AnyValue::Null => Value::Null,
        AnyValue::Boolean(b) => Value::Bool(b),
        AnyValue::String(s) => Value::String(s.to_owned()),
        AnyValue::StringOwned(s) => Value::String(s.to_string()),
        AnyValue::Int8(v) => Value::from(v),
        AnyValue::Int16(v) => Value::from(v),
        AnyValue::Int32(v) => Value::from(v),
        AnyValue::Int64(v) => Value::from(v),
        AnyValue::UInt8(v) => Value::from(v),
        AnyValue::UInt16(v) => Value::from(v),
        AnyValue::UInt32(v) => Value::from(v),
        AnyValue::UInt64(v) => Value::from(v),
        AnyValue::Float32(v) => Number::from_f64(f64::from(v)).map_or(Value::Null, Value::Number),
        AnyValue::Float64(v) => Number::from_f64(v).map_or(Value::Null, Value::Number),
        other => Value::String(other.to_string()),
    }
}

/// The rows of `frame` as `T`s: each row becomes a JSON object keyed by column name (NaN and
/// infinities become null) and is deserialised into `T`, so a frame whose columns do not
/// match `T`'s fields is an error, not a silently different answer.
pub fn frame_rows<T: DeserializeOwned>(report: &'static str, frame: &DataFrame) -> Result<Vec<T>, AnalyticsError> {
    let names: Vec<String> = frame.get_column_names().iter().map(|n| n.to_string()).collect();
    let columns = frame.columns();
    let mut rows = Vec::with_capacity(frame.height());
    for i in 0..frame.height() {
        let mut object = Map::with_capacity(names.len());
        for (name, column) in names.iter().zip(columns) {
            let value = column.get(i).map_err(|error| AnalyticsError::Report { report, reason: error.to_string() })?;
            object.insert(name.clone(), cell(value));
        }
        let row = serde_json::from_value(Value::Object(object))
            .map_err(|error| AnalyticsError::Report { report, reason: format!("row {i}: {error}") })?;
        rows.push(row);
    }
    Ok(rows)
}

/// `frame` as CSV (RFC 4180) with a header line: integers as written, floats in Rust's
/// shortest round-trip form (`2.0`, `1.5`, `NaN`), booleans as `true`/`false`, nulls as empty
/// fields, and any field holding a comma, a quote or a line break quoted with its quotes
/// doubled. Written here rather than with Polars' CSV writer: that feature pulls Polars'
/// streaming engine and Parquet reader into the build, for a few lines of formatting.
pub fn frame_to_csv(report: &'static str, frame: &mut DataFrame) -> Result<Vec<u8>, AnalyticsError> {
    use std::fmt::Write as _;
    let mut out = String::new();
    let names = frame.get_column_names();
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_field(&mut out, name.as_str());
    }
    out.push('\n');
    let columns = frame.columns();
    let mut field = String::new();
    for row in 0..frame.height() {
        for (i, column) in columns.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let value =
                column.get(row).map_err(|error| AnalyticsError::Report { report, reason: error.to_string() })?;
            field.clear();
            // Writing to a String cannot fail.
            let _ = match value {
                AnyValue::Null => Ok(()),
                AnyValue::Boolean(b) => write!(field, "{b}"),
                AnyValue::String(s) => write!(field, "{s}"),
                AnyValue::StringOwned(s) => write!(field, "{s}"),
                AnyValue::Int8(v) => write!(field, "{v}"),
                AnyValue::Int16(v) => write!(field, "{v}"),
                AnyValue::Int32(v) => write!(field, "{v}"),
                AnyValue::Int64(v) => write!(field, "{v}"),
                AnyValue::UInt8(v) => write!(field, "{v}"),
                AnyValue::UInt16(v) => write!(field, "{v}"),
                AnyValue::UInt32(v) => write!(field, "{v}"),
                AnyValue::UInt64(v) => write!(field, "{v}"),
                AnyValue::Float32(v) => write!(field, "{v:?}"),
                AnyValue::Float64(v) => write!(field, "{v:?}"),
                other => write!(field, "{other}"),
            };
            push_field(&mut out, &field);
        }
        out.push('\n');
    }
    Ok(out.into_bytes())
}

/// Appends one CSV field, quoted when it holds a separator, a quote or a line break.
fn push_field(out: &mut String, field: &str) {
    if field.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&field.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(field);
    }
}
