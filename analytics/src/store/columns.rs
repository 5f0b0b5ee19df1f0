//! Count records as Arrow columns of fixed-width codes, the shape DuckDB's appender takes a
//! whole batch in: a [`PreparedBatch`].
//!
//! Preparing a batch needs no database: identifiers are coded with a [`CodeBook`] snapshot,
//! and a name the book does not know yet gets a provisional code that the commit replaces.
//! So the next batch can be prepared on one core while the current one commits on the other.
//!
//! The column order and types here are the table definitions of `count_records`,
//! `count_items` and `count_hourly` in the parent module; a mismatch is an appender error,
//! caught by the store's tests.

use std::sync::{Arc, PoisonError, RwLock};

use duckdb::arrow::array::{Array, ArrayRef, Float64Array, Int32Array, Int64Array, StringArray, UInt8Array};
use duckdb::arrow::datatypes::{DataType, Field, Schema};
use duckdb::arrow::record_batch::RecordBatch;
use passage_wire::{CountRecord, Direction, Metric, NoiseMechanism};

use super::{metric_code, QuarantineEntry, DIR_IN, DIR_OUT, NO_OTHER};
use crate::AnalyticsError;

/// The codes of the identifiers stored so far (`names` table), shared by the connections of
/// one database. Extended only after a commit, so a rolled-back batch leaves no code behind.
#[derive(Debug, Clone, Default)]
pub struct CodeBook(Arc<RwLock<foldhash::HashMap<String, i32>>>);

impl CodeBook {
    pub(super) fn get(&self, name: &str) -> Option<i32> {
        self.0.read().unwrap_or_else(PoisonError::into_inner).get(name).copied()
    }

    pub(super) fn replace(&self, codes: foldhash::HashMap<String, i32>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = codes;
    }

    pub(super) fn extend(&self, codes: impl IntoIterator<Item = (String, i32)>) {
        self.0.write().unwrap_or_else(PoisonError::into_inner).extend(codes);
    }
}

/// Quarantine reason of a record stored already (a redelivery).
pub(super) const DUPLICATE: &str = "duplicate";

/// First provisional code: far below every real code (positive), "none" (-1), directions and
/// dwell bounds (non-negative), so a provisional code is never mistaken for one of them.
pub(super) const PROVISIONAL: i32 = i32::MIN;

/// Codes names against a book snapshot; unknown names get provisional codes.
struct Coder<'a> {
    book: &'a foldhash::HashMap<String, i32>,
    unknown: foldhash::HashMap<String, i32>,
}

impl Coder<'_> {
    fn code(&mut self, name: &str) -> i32 {
        if let Some(code) = self.book.get(name) {
            return *code;
        }
        if let Some(code) = self.unknown.get(name) {
            return *code;
        }
        let code = PROVISIONAL + self.unknown.len() as i32;
        self.unknown.insert(name.to_owned(), code);
        code
    }
}

/// A batch of count records ready to append: the records that are new to the batch itself
/// (the first of several with the same id and start), as Arrow columns.
#[derive(Debug)]
pub struct PreparedBatch {
    /// Records given.
    pub(super) given: usize,
    /// Earliest and latest interval start (`None` for an empty batch).
    pub(super) window: Option<(i64, i64)>,
    /// `count_records` columns; `seq` holds the record's position until the commit.
    pub(super) records: RecordBatch,
    /// `count_items` columns; `seq` holds the record's position until the commit.
    pub(super) items: RecordBatch,
    /// `count_hourly` columns: the batch's own sums per rollup cell.
    pub(super) hourly: RecordBatch,
    /// Names the book did not know, in provisional-code order.
    pub(super) unknown: Vec<String>,
    /// Payload size of each record in `records` (empty when the records did not arrive as
    /// messages), for the quarantine entry of one found to be stored already.
    pub(super) sizes: Vec<usize>,
    /// Quarantine entries of the records repeated inside the batch itself.
    pub(super) repeats: Vec<QuarantineEntry>,
}

impl PreparedBatch {
    /// Records in the batch once the repeats inside it are dropped.
    pub(super) fn rows(&self) -> usize {
        self.records.num_rows()
    }

    /// Prepares `records`, received at `received_at`, coding identifiers with `book`.
    /// `sizes` holds the payload size of each record as it arrived (or is empty): duplicates
    /// are quarantined with it.
    pub fn new(
        records: &[CountRecord],
        sizes: &[usize],
        book: &CodeBook,
        received_at: i64,
    ) -> Result<PreparedBatch, AnalyticsError> {
        let records_given = records.len();
        let size = |i: usize| sizes.get(i).copied().unwrap_or(0);
        let mut seen: foldhash::HashSet<(&str, i64)> =
            foldhash::HashSet::with_capacity_and_hasher(records.len(), foldhash::fast::RandomState::default());
        let mut unique: Vec<&CountRecord> = Vec::with_capacity(records.len());
        let mut unique_sizes = Vec::with_capacity(if sizes.is_empty() { 0 } else { records.len() });
        let mut repeats = Vec::new();
        for (i, record) in records.iter().enumerate() {
            if seen.insert((record.id.as_str(), record.start)) {
                unique.push(record);
                if !sizes.is_empty() {
                    unique_sizes.push(size(i));
                }
            } else {
                repeats.push(QuarantineEntry {
                    topic: passage_wire::topics::counts(&record.venue, &record.camera),
                    reason: DUPLICATE.to_owned(),
                    payload_len: size(i),
                });
            }
        }
        drop(seen);
        let window = unique.iter().map(|r| r.start).min().zip(unique.iter().map(|r| r.start).max());

        let snapshot = book.0.read().unwrap_or_else(PoisonError::into_inner);
        let mut coder = Coder { book: &snapshot, unknown: foldhash::HashMap::default() };
        let n = unique.len();
        let (mut venue, mut camera) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let items_len: usize = unique.iter().map(|r| r.items.len()).sum();
        let mut items = ItemColumns::with_capacity(items_len);
        for (i, record) in unique.iter().enumerate() {
            let v = coder.code(record.venue.as_str());
            venue.push(v);
            camera.push(coder.code(record.camera.as_str()));
            for item in &record.items {
                let (metric, subject, other) = metric_codes(&item.metric, &mut coder);
                items.push(i as i64, v, record.start, secs(record), metric, subject, other, item.value, item.std);
            }
        }
        let mut unknown: Vec<(String, i32)> = coder.unknown.into_iter().collect();
        drop(snapshot);
        unknown.sort_unstable_by_key(|(_, code)| *code);

        let record_columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values(0..n as i64)),
            Arc::new(unique.iter().map(|r| Some(r.id.as_str())).collect::<StringArray>()),
            Arc::new(Int32Array::from(venue)),
            Arc::new(Int32Array::from(camera)),
            Arc::new(unique.iter().map(|r| r.start).collect::<Int64Array>()),
            Arc::new(unique.iter().map(|r| secs(r)).collect::<Int32Array>()),
            Arc::new(unique.iter().map(|r| mechanism_code(r.mechanism)).collect::<UInt8Array>()),
            Arc::new(unique.iter().map(|r| r.epsilon).collect::<Float64Array>()),
            Arc::new(Int64Array::from(vec![received_at; n])),
        ];
        let records = batch(RECORD_FIELDS, record_columns)?;
        let items = items.finish()?;
        let hourly = hourly(&items)?;
        Ok(PreparedBatch {
            given: records_given,
            window,
            records,
            items,
            hourly,
            unknown: unknown.into_iter().map(|(name, _)| name).collect(),
            sizes: unique_sizes,
            repeats,
        })
    }
}

/// Builds a record batch of non-null columns.
fn batch(fields: &[(&str, DataType)], columns: Vec<ArrayRef>) -> Result<RecordBatch, AnalyticsError> {
    let schema = Schema::new(
        fields.iter().map(|(name, data_type)| Field::new(*name, data_type.clone(), false)).collect::<Vec<_>>(),
    );
    RecordBatch::try_new(Arc::new(schema), columns).map_err(batch_error)
}

fn batch_error(error: duckdb::arrow::error::ArrowError) -> AnalyticsError {
    AnalyticsError::Batch { reason: error.to_string() }
}

const RECORD_FIELDS: &[(&str, DataType)] = &[
    ("seq", DataType::Int64),
    ("id", DataType::Utf8),
    ("venue", DataType::Int32),
    ("camera", DataType::Int32),
    ("start", DataType::Int64),
    ("secs", DataType::Int32),
    ("mechanism", DataType::UInt8),
    ("epsilon", DataType::Float64),
    ("received_at", DataType::Int64),
];

const ITEM_FIELDS: &[(&str, DataType)] = &[
    ("seq", DataType::Int64),
    ("venue", DataType::Int32),
    ("start", DataType::Int64),
    ("secs", DataType::Int32),
    ("metric", DataType::UInt8),
    ("subject", DataType::Int32),
    ("other", DataType::Int32),
    ("value", DataType::Int64),
    ("std", DataType::Float64),
];

const HOURLY_FIELDS: &[(&str, DataType)] = &[
    ("venue", DataType::Int32),
    ("metric", DataType::UInt8),
    ("subject", DataType::Int32),
    ("other", DataType::Int32),
    ("hour", DataType::Int64),
    ("value", DataType::Int64),
    ("var", DataType::Float64),
    ("n", DataType::Int64),
];

/// Columns of `records` and `items` that hold name codes (provisional ones are replaced).
pub(super) const RECORD_CODE_COLUMNS: &[usize] = &[2, 3];
pub(super) const ITEM_CODE_COLUMNS: &[usize] = &[1, 5, 6];
pub(super) const HOURLY_CODE_COLUMNS: &[usize] = &[0, 2, 3];

/// `count_items` columns under construction.
struct ItemColumns {
    seq: Vec<i64>,
    venue: Vec<i32>,
    start: Vec<i64>,
    secs: Vec<i32>,
    metric: Vec<u8>,
    subject: Vec<i32>,
    other: Vec<i32>,
    value: Vec<i64>,
    std: Vec<f64>,
}

impl ItemColumns {
    fn with_capacity(n: usize) -> ItemColumns {
        ItemColumns {
            seq: Vec::with_capacity(n),
            venue: Vec::with_capacity(n),
            start: Vec::with_capacity(n),
            secs: Vec::with_capacity(n),
            metric: Vec::with_capacity(n),
            subject: Vec::with_capacity(n),
            other: Vec::with_capacity(n),
            value: Vec::with_capacity(n),
            std: Vec::with_capacity(n),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        seq: i64,
        venue: i32,
        start: i64,
        secs: i32,
        metric: u8,
        subject: i32,
        other: i32,
        value: i64,
        std: f64,
    ) {
        self.seq.push(seq);
        self.venue.push(venue);
        self.start.push(start);
        self.secs.push(secs);
        self.metric.push(metric);
        self.subject.push(subject);
        self.other.push(other);
        self.value.push(value);
        self.std.push(std);
    }

    fn finish(self) -> Result<RecordBatch, AnalyticsError> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(self.seq)),
            Arc::new(Int32Array::from(self.venue)),
            Arc::new(Int64Array::from(self.start)),
            Arc::new(Int32Array::from(self.secs)),
            Arc::new(UInt8Array::from(self.metric)),
            Arc::new(Int32Array::from(self.subject)),
            Arc::new(Int32Array::from(self.other)),
            Arc::new(Int64Array::from(self.value)),
            Arc::new(Float64Array::from(self.std)),
        ];
        batch(ITEM_FIELDS, columns)
    }
}

fn column<T: 'static>(batch: &RecordBatch, index: usize) -> Result<&T, AnalyticsError> {
    batch
        .column(index)
        .as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| AnalyticsError::Batch { reason: format!("column {index} has an unexpected type") })
}

/// Key of one hourly rollup cell: venue, metric, subject, other, hour.
type HourKey = (i32, u8, i32, i32, i64);

/// The items of `items` (`count_items` columns) summed per hourly rollup cell.
pub(super) fn hourly(items: &RecordBatch) -> Result<RecordBatch, AnalyticsError> {
    let venue = column::<Int32Array>(items, 1)?.values();
    let start = column::<Int64Array>(items, 2)?.values();
    let metric = column::<UInt8Array>(items, 4)?.values();
    let subject = column::<Int32Array>(items, 5)?.values();
    let other = column::<Int32Array>(items, 6)?.values();
    let value = column::<Int64Array>(items, 7)?.values();
    let std = column::<Float64Array>(items, 8)?.values();
    let mut cells: foldhash::HashMap<HourKey, (i64, f64, i64)> = foldhash::HashMap::default();
    for i in 0..items.num_rows() {
        // Ingest refuses starts before 1970; the saturation only guards the arithmetic.
        let hour = start[i].div_euclid(3600).saturating_mul(3600);
        let cell = cells.entry((venue[i], metric[i], subject[i], other[i], hour)).or_default();
        cell.0 = cell.0.saturating_add(value[i]);
        cell.1 += std[i] * std[i];
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
    batch(HOURLY_FIELDS, columns)
}

/// `quarantine` columns of `entries`, received at `received_at`.
pub(super) fn quarantine(entries: &[QuarantineEntry], received_at: i64) -> Result<RecordBatch, AnalyticsError> {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(vec![received_at; entries.len()])),
        Arc::new(entries.iter().map(|e| Some(e.topic.as_str())).collect::<StringArray>()),
        Arc::new(entries.iter().map(|e| Some(e.reason.as_str())).collect::<StringArray>()),
        Arc::new(entries.iter().map(|e| i32::try_from(e.payload_len).unwrap_or(i32::MAX)).collect::<Int32Array>()),
    ];
    batch(
        &[
            ("received_at", DataType::Int64),
            ("topic", DataType::Utf8),
            ("reason", DataType::Utf8),
            ("payload_len", DataType::Int32),
        ],
        columns,
    )
}

/// The camera and venue codes (columns 2 and 3) of `records` rows, by row.
pub(super) fn venue_camera(records: &RecordBatch, row: usize) -> Result<(i32, i32), AnalyticsError> {
    let venue = column::<Int32Array>(records, 2)?;
    let camera = column::<Int32Array>(records, 3)?;
    Ok((venue.value(row), camera.value(row)))
}

/// `batch` with the Int32 code columns `indices` mapped through `map` (provisional codes
/// replaced by the codes the commit gave their names).
pub(super) fn remap(
    batch: &RecordBatch,
    indices: &[usize],
    map: &dyn Fn(i32) -> i32,
) -> Result<RecordBatch, AnalyticsError> {
    let mut columns = batch.columns().to_vec();
    for &index in indices {
        let codes = column::<Int32Array>(batch, index)?;
        columns[index] = Arc::new(codes.values().iter().map(|code| map(*code)).collect::<Int32Array>());
    }
    RecordBatch::try_new(batch.schema(), columns).map_err(batch_error)
}

/// `batch` (records or items) with its position column 0 turned into sequence numbers
/// starting at `first_seq`.
pub(super) fn with_seq(batch: &RecordBatch, first_seq: i64) -> Result<RecordBatch, AnalyticsError> {
    let positions = column::<Int64Array>(batch, 0)?;
    let mut columns = batch.columns().to_vec();
    columns[0] = Arc::new(positions.values().iter().map(|p| first_seq + p).collect::<Int64Array>());
    RecordBatch::try_new(batch.schema(), columns).map_err(batch_error)
}

/// The rows of `batch` whose sequence number (column 0) is not in `drop`.
pub(super) fn without(batch: &RecordBatch, drop: &foldhash::HashSet<i64>) -> Result<RecordBatch, AnalyticsError> {
    let seq = column::<Int64Array>(batch, 0)?;
    let keep: duckdb::arrow::array::BooleanArray = seq.values().iter().map(|s| Some(!drop.contains(s))).collect();
    duckdb::arrow::compute::filter_record_batch(batch, &keep).map_err(batch_error)
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
fn metric_codes(metric: &Metric, codes: &mut Coder<'_>) -> (u8, i32, i32) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::{crossing, record};
    use passage_wire::CountItem;

    #[test]
    fn unknown_names_get_provisional_codes_and_repeats_in_a_batch_are_dropped() {
        let book = CodeBook::default();
        book.extend([("arena".to_owned(), 1)]);
        let r1 = record("a", "arena", "cam-1", 0, vec![crossing("gate", Direction::In, 3, 1.0)]);
        let mut r2 = record("b", "arena", "cam-1", 60, vec![crossing("gate", Direction::Out, 4, 1.0)]);
        r2.items.push(CountItem {
            metric: Metric::Transition {
                from: passage_wire::Id::new("z1").expect("id"),
                to: passage_wire::Id::new("z2").expect("id"),
            },
            value: 1,
            std: 1.0,
        });
        let batch = PreparedBatch::new(&[r1.clone(), r2, r1], &[10, 20, 30], &book, 7).expect("prepare");
        assert_eq!((batch.given, batch.rows(), batch.window), (3, 2, Some((0, 60))));
        assert_eq!(batch.sizes, vec![10, 20]);
        assert_eq!(batch.repeats.len(), 1);
        assert_eq!(
            (batch.repeats[0].topic.as_str(), batch.repeats[0].reason.as_str(), batch.repeats[0].payload_len),
            ("passage/v1/arena/counts/cam-1", DUPLICATE, 30)
        );
        assert_eq!(batch.unknown, vec!["cam-1", "gate", "z1", "z2"]);
        let camera = column::<Int32Array>(&batch.records, 3).expect("camera");
        assert_eq!(camera.values().to_vec(), vec![PROVISIONAL, PROVISIONAL]);
        let other = column::<Int32Array>(&batch.items, 6).expect("other");
        assert_eq!(other.values().to_vec(), vec![DIR_IN, DIR_OUT, PROVISIONAL + 3]);
        // Two crossings cells and one transition cell in the rollup.
        assert_eq!(batch.hourly.num_rows(), 3);
        let mapped = remap(&batch.items, ITEM_CODE_COLUMNS, &|code| {
            if code < 0 && code != NO_OTHER {
                code - PROVISIONAL + 10
            } else {
                code
            }
        })
        .expect("remap");
        let other = column::<Int32Array>(&mapped, 6).expect("other");
        assert_eq!(other.values().to_vec(), vec![DIR_IN, DIR_OUT, 13]);
        let numbered = with_seq(&batch.items, 100).expect("seq");
        assert_eq!(column::<Int64Array>(&numbered, 0).expect("seq").values().to_vec(), vec![100, 101, 101]);
        let kept = without(&numbered, &[101].into_iter().collect()).expect("filter");
        assert_eq!(kept.num_rows(), 1);
    }
}
