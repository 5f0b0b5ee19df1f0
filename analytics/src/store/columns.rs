//! Count records as Arrow columns, the shape DuckDB's appender takes a whole batch in.
//!
//! The column order and types here are the table definitions of `stage_records` and
//! `count_items` in the parent module; a mismatch is an appender error, caught by the store's
//! tests.

use std::sync::Arc;

use duckdb::arrow::array::{ArrayRef, Float64Array, Int32Array, Int64Array, StringArray};
use duckdb::arrow::datatypes::{DataType, Field, Schema};
use duckdb::arrow::record_batch::RecordBatch;
use passage_wire::CountRecord;

use super::{mechanism_name, metric_columns};
use crate::AnalyticsError;

fn batch(fields: Vec<(&'static str, DataType, bool)>, columns: Vec<ArrayRef>) -> Result<RecordBatch, AnalyticsError> {
    let schema = Schema::new(
        fields.into_iter().map(|(name, data_type, nullable)| Field::new(name, data_type, nullable)).collect::<Vec<_>>(),
    );
    RecordBatch::try_new(Arc::new(schema), columns).map_err(|error| AnalyticsError::Batch { reason: error.to_string() })
}

fn secs(record: &CountRecord) -> i32 {
    // The wire bounds an interval to a day; the clamp only guards the cast.
    i32::try_from(record.secs).unwrap_or(i32::MAX)
}

/// The `stage_records` columns of `records`, received at `received_at`.
pub(super) fn records(records: &[&CountRecord], received_at: i64) -> Result<RecordBatch, AnalyticsError> {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(records.iter().map(|r| Some(r.id.as_str())).collect::<StringArray>()),
        Arc::new(records.iter().map(|r| Some(r.venue.as_str())).collect::<StringArray>()),
        Arc::new(records.iter().map(|r| Some(r.camera.as_str())).collect::<StringArray>()),
        Arc::new(records.iter().map(|r| r.start).collect::<Int64Array>()),
        Arc::new(records.iter().map(|r| secs(r)).collect::<Int32Array>()),
        Arc::new(records.iter().map(|r| Some(mechanism_name(r.mechanism))).collect::<StringArray>()),
        Arc::new(records.iter().map(|r| r.epsilon).collect::<Float64Array>()),
        Arc::new(Int64Array::from(vec![received_at; records.len()])),
    ];
    batch(
        vec![
            ("id", DataType::Utf8, false),
            ("venue", DataType::Utf8, false),
            ("camera", DataType::Utf8, false),
            ("start", DataType::Int64, false),
            ("secs", DataType::Int32, false),
            ("mechanism", DataType::Utf8, false),
            ("epsilon", DataType::Float64, false),
            ("received_at", DataType::Int64, false),
        ],
        columns,
    )
}

/// The `count_items` columns of every item of `records`, one row per item.
pub(super) fn items(records: &[&CountRecord]) -> Result<RecordBatch, AnalyticsError> {
    let rows = || records.iter().flat_map(|record| record.items.iter().map(move |item| (*record, item)));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(rows().map(|(r, _)| Some(r.id.as_str())).collect::<StringArray>()),
        Arc::new(rows().map(|(r, _)| Some(r.venue.as_str())).collect::<StringArray>()),
        Arc::new(rows().map(|(r, _)| Some(r.camera.as_str())).collect::<StringArray>()),
        Arc::new(rows().map(|(r, _)| r.start).collect::<Int64Array>()),
        Arc::new(rows().map(|(r, _)| secs(r)).collect::<Int32Array>()),
        Arc::new(rows().map(|(_, item)| Some(metric_columns(&item.metric).0)).collect::<StringArray>()),
        Arc::new(rows().map(|(_, item)| Some(metric_columns(&item.metric).1)).collect::<StringArray>()),
        Arc::new(rows().map(|(_, item)| metric_columns(&item.metric).2).collect::<StringArray>()),
        Arc::new(rows().map(|(_, item)| item.value).collect::<Int64Array>()),
        Arc::new(rows().map(|(_, item)| item.std).collect::<Float64Array>()),
    ];
    batch(
        vec![
            ("record_id", DataType::Utf8, false),
            ("venue", DataType::Utf8, false),
            ("camera", DataType::Utf8, false),
            ("start", DataType::Int64, false),
            ("secs", DataType::Int32, false),
            ("metric", DataType::Utf8, false),
            ("line_or_zone", DataType::Utf8, false),
            ("dir_or_to", DataType::Utf8, true),
            ("value", DataType::Int64, false),
            ("std", DataType::Float64, false),
        ],
        columns,
    )
}
