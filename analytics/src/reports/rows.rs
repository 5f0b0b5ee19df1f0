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

/// `frame` as CSV with a header line.
pub fn frame_to_csv(report: &'static str, frame: &mut DataFrame) -> Result<Vec<u8>, AnalyticsError> {
    let mut out = Vec::new();
    CsvWriter::new(&mut out)
        .include_header(true)
        .finish(frame)
        .map_err(|error| AnalyticsError::Report { report, reason: error.to_string() })?;
    Ok(out)
}
