//! Count records as Arrow columns of fixed-width codes, the shape DuckDB's appender takes a
//! whole batch in.
//!
//! The column order and types here are the table definitions of `count_records`,
//! `count_items` and `count_hourly` in the parent module; a
//! mismatch is an appender error, caught by the store's tests.

use std::sync::Arc;

use duckdb::arrow::array::{ArrayRef, Float64Array, Int32Array, Int64Array, StringArray, UInt8Array};
use duckdb::arrow::datatypes::{DataType, Field, Schema};
use duckdb::arrow::record_batch::RecordBatch;
use passage_wire::{CountRecord, Direction, Metric, NoiseMechanism};

use super::{metric_code, BatchCodes, DIR_IN, DIR_OUT, NO_OTHER};
use crate::AnalyticsError;

fn batch(fields: Vec<(&'static str, DataType)>, columns: Vec<ArrayRef>) -> Result<RecordBatch, AnalyticsError> {
    let schema =
        Schema::new(fields.into_iter().map(|(name, data_type)| Field::new(name, data_type, false)).collect::<Vec<_>>());
    RecordBatch::try_new(Arc::new(schema), columns).map_err(|error| AnalyticsError::Batch { reason: error.to_string() })
}

fn secs(record: &CountRecord) -> i32 {
    // The wire bounds an interval to a day; the clamp only guards the cast.
    i32::try_from(record.secs).unwrap_or(i32::MAX)
}

/// The stored code of a noise mechanism (migration 3 writes the same numbers).
pub(super) fn mechanism_code(mechanism: NoiseMechanism) -> u8 {
    match mechanism {
        NoiseMechanism::DiscreteLaplace => 1,
        NoiseMechanism::DiscreteGaussian => 2,
        NoiseMechanism::BinaryTree => 3,
        NoiseMechanism::SqrtFactorization => 4,
    }
}

fn direction_code(dir: Direction) -> i32 {
    match dir {
        Direction::In => DIR_IN,
        Direction::Out => DIR_OUT,
    }
}

/// `(metric, subject, other)` codes of a metric.
fn metric_codes(metric: &Metric, codes: &mut BatchCodes<'_>) -> (u8, i32, i32) {
    match metric {
        Metric::Crossings { line, dir } => (metric_code::CROSSINGS, codes.code(line.as_str()), direction_code(*dir)),
        Metric::Total { line, dir } => (metric_code::TOTAL, codes.code(line.as_str()), direction_code(*dir)),
        Metric::Occupancy { zone } => (metric_code::OCCUPANCY, codes.code(zone.as_str()), NO_OTHER),
        Metric::Transition { from, to } => {
            (metric_code::TRANSITION, codes.code(from.as_str()), codes.code(to.as_str()))
        }
        Metric::Dwell { zone, bucket } => (metric_code::DWELL, codes.code(zone.as_str()), dwell_secs(*bucket)),
        Metric::Entries { zone } => (metric_code::ENTRIES, codes.code(zone.as_str()), NO_OTHER),
        Metric::Exits { zone } => (metric_code::EXITS, codes.code(zone.as_str()), NO_OTHER),
    }
}

/// The lower bound in seconds of a dwell bucket, stored as the item's `other`.
pub(super) fn dwell_secs(bucket: u8) -> i32 {
    match bucket {
        0 => 0,
        1 => 60,
        2 => 300,
        3 => 900,
        4 => 1800,
        _ => 3600,
    }
}

/// Key of one hourly rollup cell: venue, metric, subject, other, hour.
type HourKey = (i32, u8, i32, i32, i64);

/// A batch of new records with every identifier replaced by its code.
pub(super) struct Coded<'a> {
    records: &'a [&'a CountRecord],
    venue: Vec<i32>,
    camera: Vec<i32>,
    /// Per record, `(metric, subject, other)` of each item.
    items: Vec<Vec<(u8, i32, i32)>>,
}

impl<'a> Coded<'a> {
    pub(super) fn new(records: &'a [&'a CountRecord], codes: &mut BatchCodes<'_>) -> Coded<'a> {
        let mut coded = Coded {
            records,
            venue: Vec::with_capacity(records.len()),
            camera: Vec::with_capacity(records.len()),
            items: Vec::with_capacity(records.len()),
        };
        for record in records {
            coded.venue.push(codes.code(record.venue.as_str()));
            coded.camera.push(codes.code(record.camera.as_str()));
            coded.items.push(record.items.iter().map(|item| metric_codes(&item.metric, codes)).collect());
        }
        coded
    }

    /// Whether any record `keep` marks has items.
    pub(super) fn has_items(&self, keep: &[bool]) -> bool {
        self.items.iter().zip(keep).any(|(items, keep)| *keep && !items.is_empty())
    }

    /// The `count_records` columns; record `i` gets sequence number `first_seq + i`.
    pub(super) fn records(&self, first_seq: i64, received_at: i64) -> Result<RecordBatch, AnalyticsError> {
        let r = self.records;
        let columns: Vec<ArrayRef> = vec![
            Arc::new((0..r.len()).map(|i| first_seq + i as i64).collect::<Int64Array>()),
            Arc::new(r.iter().map(|r| Some(r.id.as_str())).collect::<StringArray>()),
            Arc::new(Int32Array::from(self.venue.clone())),
            Arc::new(Int32Array::from(self.camera.clone())),
            Arc::new(r.iter().map(|r| r.start).collect::<Int64Array>()),
            Arc::new(r.iter().map(|r| secs(r)).collect::<Int32Array>()),
            Arc::new(r.iter().map(|r| mechanism_code(r.mechanism)).collect::<UInt8Array>()),
            Arc::new(r.iter().map(|r| r.epsilon).collect::<Float64Array>()),
            Arc::new(Int64Array::from(vec![received_at; r.len()])),
        ];
        batch(
            vec![
                ("seq", DataType::Int64),
                ("id", DataType::Utf8),
                ("venue", DataType::Int32),
                ("camera", DataType::Int32),
                ("start", DataType::Int64),
                ("secs", DataType::Int32),
                ("mechanism", DataType::UInt8),
                ("epsilon", DataType::Float64),
                ("received_at", DataType::Int64),
            ],
            columns,
        )
    }

    /// Every item of the records `keep` marks, with its record's position, codes and figures.
    fn rows<'k>(&'k self, keep: &'k [bool]) -> impl Iterator<Item = (usize, (u8, i32, i32), i64, f64)> + 'k {
        self.records.iter().enumerate().filter(|(i, _)| keep[*i]).flat_map(move |(i, record)| {
            record.items.iter().zip(&self.items[i]).map(move |(item, codes)| (i, *codes, item.value, item.std))
        })
    }

    /// The `count_items` columns of the records `keep` marks, one row per item.
    pub(super) fn items(&self, first_seq: i64, keep: &[bool]) -> Result<RecordBatch, AnalyticsError> {
        let n = self.rows(keep).count();
        let (mut seq, mut venue, mut start, mut secs_col) =
            (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
        let (mut metric, mut subject, mut other, mut value, mut std) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for (i, (m, s, o), v, d) in self.rows(keep) {
            let record = self.records[i];
            seq.push(first_seq + i as i64);
            venue.push(self.venue[i]);
            start.push(record.start);
            secs_col.push(secs(record));
            metric.push(m);
            subject.push(s);
            other.push(o);
            value.push(v);
            std.push(d);
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(seq)),
            Arc::new(Int32Array::from(venue)),
            Arc::new(Int64Array::from(start)),
            Arc::new(Int32Array::from(secs_col)),
            Arc::new(UInt8Array::from(metric)),
            Arc::new(Int32Array::from(subject)),
            Arc::new(Int32Array::from(other)),
            Arc::new(Int64Array::from(value)),
            Arc::new(Float64Array::from(std)),
        ];
        batch(
            vec![
                ("seq", DataType::Int64),
                ("venue", DataType::Int32),
                ("start", DataType::Int64),
                ("secs", DataType::Int32),
                ("metric", DataType::UInt8),
                ("subject", DataType::Int32),
                ("other", DataType::Int32),
                ("value", DataType::Int64),
                ("std", DataType::Float64),
            ],
            columns,
        )
    }

    /// The items of the records `keep` marks, summed per hourly rollup cell (`count_hourly`
    /// columns).
    pub(super) fn hourly(&self, keep: &[bool]) -> Result<RecordBatch, AnalyticsError> {
        let mut cells: foldhash::HashMap<HourKey, (i64, f64, i64)> = foldhash::HashMap::default();
        for (i, (m, s, o), v, d) in self.rows(keep) {
            let hour = self.records[i].start.div_euclid(3600) * 3600;
            let cell = cells.entry((self.venue[i], m, s, o, hour)).or_default();
            cell.0 = cell.0.saturating_add(v);
            cell.1 += d * d;
            cell.2 += 1;
        }
        let mut cells: Vec<(HourKey, (i64, f64, i64))> = cells.into_iter().collect();
        cells.sort_unstable_by_key(|(key, _)| *key);
        let columns: Vec<ArrayRef> = vec![
            Arc::new(cells.iter().map(|((v, ..), _)| *v).collect::<Int32Array>()),
            Arc::new(cells.iter().map(|((_, m, ..), _)| *m).collect::<UInt8Array>()),
            Arc::new(cells.iter().map(|((_, _, s, ..), _)| *s).collect::<Int32Array>()),
            Arc::new(cells.iter().map(|((_, _, _, o, _), _)| *o).collect::<Int32Array>()),
            Arc::new(cells.iter().map(|((.., h), _)| *h).collect::<Int64Array>()),
            Arc::new(cells.iter().map(|(_, (value, ..))| *value).collect::<Int64Array>()),
            Arc::new(cells.iter().map(|(_, (_, var, _))| *var).collect::<Float64Array>()),
            Arc::new(cells.iter().map(|(_, (.., n))| *n).collect::<Int64Array>()),
        ];
        batch(
            vec![
                ("venue", DataType::Int32),
                ("metric", DataType::UInt8),
                ("subject", DataType::Int32),
                ("other", DataType::Int32),
                ("hour", DataType::Int64),
                ("value", DataType::Int64),
                ("var", DataType::Float64),
                ("n", DataType::Int64),
            ],
            columns,
        )
    }
}
