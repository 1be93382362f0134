//! The worker's one Kafka reader: each record is read and decoded once, where librdkafka hands it
//! over, with the GIL released for the whole poll.
//!
//! Per record, one decode serves both of the worker's paths:
//!
//! * the live path: the reading is folded into a `Processor`'s summaries and meter state (when
//!   its `aggregations` is on);
//! * the InfluxDB path: when the record's partition is handed off (`hand_off`) and the record is
//!   at or after the hand-off offset, it becomes a line of line protocol, or, invalid, an
//!   `Invalid` with its original value, key and headers for the dead-letter topic.
//!
//! Python sees one call per poll and no object per record: the lines come back as one body.
//! A reader may also be bounded (`bound`): records at or past a partition's bound are left unread
//! and the partition is paused; the InfluxDB path reads a gap with such a reader when it fell
//! behind the live path (see `ingest.catchup`).

use crate::batch::{self, Batches, Record, Upcoming};
use crate::lineproto;
use crate::meters;
use crate::summary::PartitionState;
use crate::record::{judge, Clock, Verdict};
use crate::{BatchRanges, Processor};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};
use rustc_hash::FxHashMap;
use std::collections::HashMap;
use std::sync::Mutex;
use std::ffi::CString;
use std::time::{Duration, Instant};

/// An assign-only Kafka consumer that folds what it reads and builds the InfluxDB path's lines.
#[pyclass(module = "ingest._hotpath")]
pub struct Reader {
    /// The consumer's queues, read in batches. Declared before `consumer`: fields are dropped in
    /// order, and the queues (and any records kept) must be released before their client.
    batches: Mutex<Option<Batches>>,
    consumer: Option<BaseConsumer>,
    topic: String,
    /// Partition -> first offset whose records become lines (absent: none do). Locked by `poll`
    /// for its whole read; only the reading thread changes it, so nothing waits on the lock.
    hand_off: Mutex<FxHashMap<i32, i64>>,
    /// Partition -> offset (exclusive) where reading stops; the partition is then paused.
    bounds: Mutex<FxHashMap<i32, i64>>,
    /// The last poll's hand-off, kept for its buffers: a poll writes its lines into memory that is
    /// already paged in (a fresh buffer per poll cost page faults and copies as it grew).
    spare: Mutex<HandOff>,
}

/// What one `Reader.poll` read.
#[pyclass(module = "ingest._hotpath", get_all)]
pub struct Polled {
    /// `(partition, first_offset, last_offset)` read by this poll, one per partition.
    ranges: Vec<(i32, i64, i64)>,
    /// Records read (valid or not).
    records: usize,
    /// Records that are not valid readings.
    invalid: usize,
    /// Kafka errors and warnings seen (not fatal: librdkafka retries them).
    errors: Vec<String>,
    /// librdkafka's notices and informational lines.
    notices: Vec<String>,
    /// The newest event second (epoch seconds) among the valid readings read, if any.
    newest_second: Option<i64>,
    /// What was handed off to the InfluxDB path, if any record was.
    lines: Option<Py<Lines>>,
    /// Partitions that reached their bound in this poll.
    reached: Vec<i32>,
}

/// The InfluxDB path's share of one poll: every handed-off record is a line or an `Invalid`.
#[pyclass(module = "ingest._hotpath", get_all)]
pub struct Lines {
    /// Line-protocol body of the valid records, one `\n`-terminated line each.
    body: Py<PyBytes>,
    /// Number of lines in `body`.
    valid: usize,
    /// The handed-off records that are not valid readings, in read order.
    invalid: Vec<Py<Invalid>>,
    /// `(partition, first_offset, last_offset, records)` handed off, one per partition.
    ranges: Vec<(i32, i64, i64, usize)>,
    /// `(partition: i32, offset: i64)` of each line, little-endian, 12 bytes a line: where a
    /// point InfluxDB refuses is read again from, to dead-letter its original record.
    positions: Py<PyBytes>,
}

/// A record that is not a valid reading, as it was in Kafka.
#[pyclass(module = "ingest._hotpath", get_all)]
pub struct Invalid {
    partition: i32,
    offset: i64,
    reason: String,
    value: Option<Py<PyBytes>>,
    key: Option<Py<PyBytes>>,
    headers: Vec<(String, Option<Py<PyBytes>>)>,
}

/// An `Invalid` before the GIL is taken back.
struct OwnedInvalid {
    partition: i32,
    offset: i64,
    reason: String,
    value: Option<Vec<u8>>,
    key: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
}

impl OwnedInvalid {
    fn of(record: &Record, reason: String) -> Self {
        OwnedInvalid {
            partition: record.partition(),
            offset: record.offset(),
            reason,
            value: record.payload().map(<[u8]>::to_vec),
            key: record.key().map(<[u8]>::to_vec),
            headers: record.headers(),
        }
    }

    fn into_py(self, py: Python<'_>) -> PyResult<Py<Invalid>> {
        let bytes = |b: Option<Vec<u8>>| b.map(|b| PyBytes::new_bound(py, &b).unbind());
        Py::new(
            py,
            Invalid {
                partition: self.partition,
                offset: self.offset,
                reason: self.reason,
                value: bytes(self.value),
                key: bytes(self.key),
                headers: self.headers.into_iter().map(|(k, v)| (k, bytes(v))).collect(),
            },
        )
    }
}

/// The hand-off of one poll while it is built (no GIL).
#[derive(Default)]
struct HandOff {
    body: Vec<u8>,
    valid: usize,
    invalid: Vec<OwnedInvalid>,
    ranges: Vec<(i32, i64, i64, usize)>,
    positions: Vec<u8>,
}

impl HandOff {
    fn count(&mut self, partition: i32, offset: i64) {
        match self.ranges.iter_mut().rev().find(|r| r.0 == partition) {
            Some(range) => {
                range.2 = offset;
                range.3 += 1;
            }
            None => self.ranges.push((partition, offset, offset, 1)),
        }
    }

    /// Emptied, its buffers kept.
    fn clear(&mut self) {
        self.body.clear();
        self.valid = 0;
        self.invalid.clear();
        self.ranges.clear();
        self.positions.clear();
    }

    /// The Python `Lines` of this hand-off (copied out; the buffers stay for the next poll).
    fn to_py(&mut self, py: Python<'_>) -> PyResult<Option<Py<Lines>>> {
        if self.ranges.is_empty() {
            return Ok(None);
        }
        let invalid = self.invalid.drain(..).map(|i| i.into_py(py)).collect::<PyResult<Vec<_>>>()?;
        let lines = Lines {
            body: PyBytes::new_bound(py, &self.body).unbind(),
            valid: self.valid,
            invalid,
            ranges: std::mem::take(&mut self.ranges),
            positions: PyBytes::new_bound(py, &self.positions).unbind(),
        };
        Ok(Some(Py::new(py, lines)?))
    }
}

/// Start fetching into the CPU's caches the meter state that the next records fold (Kafka keys
/// records by meter id): the table slot of the one after next, and the record of the next, whose
/// slot was fetched while the one before was folded. A record keyed otherwise fetches nothing useful.
fn prefetch_upcoming(states: &FxHashMap<i32, PartitionState>, upcoming: &Upcoming) {
    let keyed = |distance| {
        let record = upcoming.get(distance)?;
        Some((meters::hash(record.key()?), states.get(&record.partition())?))
    };
    if let Some((hash, state)) = keyed(1) {
        state.prefetch_slot(hash);
    }
    if let Some((hash, state)) = keyed(0) {
        state.prefetch_meter(hash);
    }
}

fn kafka_error(context: &str, error: KafkaError) -> PyErr {
    PyRuntimeError::new_err(format!("{context}: {error}"))
}

impl Reader {
    fn consumer(&self) -> PyResult<&BaseConsumer> {
        self.consumer.as_ref().ok_or_else(|| PyRuntimeError::new_err("the reader is closed"))
    }

    /// Records of these partitions taken from librdkafka but not read yet are dropped: the
    /// partition is read from a new position (or not at all).
    fn discard(&self, partitions: &[i32]) {
        if let Some(batches) = self.batches.lock().expect("not poisoned").as_mut() {
            batches.discard(partitions);
        }
    }

    fn partition_list(&self, positions: impl IntoIterator<Item = (i32, Offset)>) -> PyResult<TopicPartitionList> {
        let mut list = TopicPartitionList::new();
        for (partition, offset) in positions {
            list.add_partition_offset(&self.topic, partition, offset).map_err(|e| kafka_error("bad position", e))?;
        }
        Ok(list)
    }
}

#[pymethods]
impl Reader {
    /// `config` is librdkafka configuration (strings); `topic` the one topic it reads.
    #[new]
    fn new(config: HashMap<String, String>, topic: String) -> PyResult<Self> {
        let mut client = ClientConfig::new();
        for (key, value) in config.iter().map(|(k, v)| (k.as_str(), v.as_str())).chain(batch::CONFIG) {
            client.set(key, value);
        }
        let consumer: BaseConsumer =
            client.create().map_err(|e| PyValueError::new_err(format!("Kafka consumer configuration: {e}")))?;
        let batches = Batches::of(&consumer).map_err(PyValueError::new_err)?;
        Ok(Reader {
            batches: Mutex::new(Some(batches)),
            consumer: Some(consumer),
            topic,
            hand_off: Mutex::default(),
            bounds: Mutex::default(),
            spare: Mutex::default(),
        })
    }

    /// Start reading these `(partition, offset)` positions (librdkafka's logical offsets, such as
    /// -2 for the beginning, are accepted); other partitions keep their positions.
    fn assign(&self, py: Python<'_>, positions: Vec<(i32, i64)>) -> PyResult<()> {
        let partitions: Vec<i32> = positions.iter().map(|&(p, _)| p).collect();
        let list = self.partition_list(positions.into_iter().map(|(p, o)| (p, Offset::from_raw(o))))?;
        let consumer = self.consumer()?;
        self.discard(&partitions);
        py.allow_threads(|| consumer.incremental_assign(&list)).map_err(|e| kafka_error("assign", e))
    }

    /// Stop reading these partitions (their meter state stays until `resume` replaces it, their
    /// hand-off until `stop_hand_off`: a partition re-assigned further back is not handed off twice).
    fn unassign(&self, py: Python<'_>, partitions: Vec<i32>) -> PyResult<()> {
        self.discard(&partitions);
        let list = self.partition_list(partitions.into_iter().map(|p| (p, Offset::Invalid)))?;
        let consumer = self.consumer()?;
        py.allow_threads(|| consumer.incremental_unassign(&list)).map_err(|e| kafka_error("unassign", e))
    }

    /// From now on, records of `partition` at or after `offset` become lines (-1: every record);
    /// each record once: the offset moves past every record handed off.
    fn hand_off(&self, partition: i32, offset: i64) {
        self.hand_off.lock().expect("not poisoned").insert(partition, offset);
    }

    /// Records of these partitions no longer become lines.
    fn stop_hand_off(&self, partitions: Vec<i32>) {
        let mut hand_off = self.hand_off.lock().expect("not poisoned");
        for partition in partitions {
            hand_off.remove(&partition);
        }
    }

    /// Read `partition` only up to `offset` (exclusive); past it the partition is paused.
    fn bound(&self, partition: i32, offset: i64) {
        self.bounds.lock().expect("not poisoned").insert(partition, offset);
    }

    /// Read for at most `timeout` seconds or `max_records` records, folding each valid reading
    /// into `processor` (when its aggregations are on) and building lines of the handed-off
    /// records; with `newer_than`, return early too, right after folding a reading of a later
    /// event second (a second has just closed). A fatal Kafka error raises.
    #[pyo3(signature = (processor, max_records, timeout, newer_than=None))]
    fn poll(
        &self,
        py: Python<'_>,
        processor: &Bound<'_, Processor>,
        max_records: usize,
        timeout: f64,
        newer_than: Option<i64>,
    ) -> PyResult<Polled> {
        let consumer = self.consumer()?;
        let topic = self.topic.as_str();
        let (hand_off, bounds, batches) = (&self.hand_off, &self.bounds, &self.batches);
        let mut out = std::mem::take(&mut *self.spare.lock().expect("not poisoned"));
        out.clear();
        let mut processor = processor.try_borrow_mut()?;
        let (unit, late_window_ms, aggregations) = (processor.unit, processor.late_window_ms, processor.aggregations);
        let clock = Clock::now(processor.max_clock_skew_ms);
        let states = &mut processor.partitions;
        let result = py.allow_threads(move || {
            let mut hand_off = hand_off.lock().expect("not poisoned");
            let bounds = bounds.lock().expect("not poisoned");
            let deadline = Instant::now() + Duration::from_secs_f64(timeout.max(0.0));
            let mut polled = Polled {
                ranges: Vec::new(),
                records: 0,
                invalid: 0,
                errors: Vec::new(),
                notices: Vec::new(),
                newest_second: None,
                lines: None,
                reached: Vec::new(),
            };
            let mut ranges = BatchRanges::new();
            let mut batches = batches.lock().expect("not poisoned");
            let batches = batches.as_mut().ok_or_else(|| "the reader is closed".to_string())?;
            let mut errors = Vec::new();
            let mut closed_second = false;
            while polled.records < max_records && !closed_second {
                // What is already taken or queued is read without waiting; only an empty queue waits.
                let wait = deadline.saturating_duration_since(Instant::now());
                let taken = batches.take(max_records - polled.records, wait, &mut errors, |record, upcoming| {
                    let (partition, offset) = (record.partition(), record.offset());
                    let bound = bounds.get(&partition).copied();
                    // The bound is reached at its last record, or at a record past it (offsets can
                    // skip): the partition is paused there, and what was prefetched past it is left.
                    let reach = |polled: &mut Polled| {
                        if !polled.reached.contains(&partition) {
                            polled.reached.push(partition);
                            let mut list = TopicPartitionList::new();
                            let _ = list.add_partition_offset(topic, partition, Offset::Invalid);
                            let _ = consumer.pause(&list);
                        }
                    };
                    if bound.is_some_and(|b| offset >= b) {
                        reach(&mut polled);
                        return true;
                    }
                    if bound.is_some_and(|b| offset == b - 1) {
                        reach(&mut polled);
                    }
                    polled.records += 1;
                    if aggregations {
                        prefetch_upcoming(states, &upcoming);
                    }
                    let state = ranges.add(states, partition, offset, offset);
                    let verdict = judge(record.payload(), unit, &clock);
                    let handed_off = match hand_off.get_mut(&partition) {
                        Some(from) if offset >= *from => {
                            *from = offset + 1;
                            true
                        }
                        _ => false,
                    };
                    if handed_off {
                        out.count(partition, offset);
                        match &verdict {
                            Verdict::Valid(reading) => {
                                lineproto::write_line(&mut out.body, reading);
                                out.valid += 1;
                                out.positions.extend_from_slice(&partition.to_le_bytes());
                                out.positions.extend_from_slice(&offset.to_le_bytes());
                            }
                            Verdict::Ahead(_, reason) | Verdict::Invalid(reason) => {
                                out.invalid.push(OwnedInvalid::of(record, reason.clone()));
                            }
                        }
                    }
                    if !matches!(verdict, Verdict::Valid(_)) {
                        polled.invalid += 1;
                    }
                    if let Some(second) = Processor::fold_verdict(state, &verdict, offset, &clock, late_window_ms, aggregations) {
                        polled.newest_second = Some(polled.newest_second.map_or(second, |s| s.max(second)));
                        // A second has just closed: return right away (the batch's rest comes next).
                        closed_second = newer_than.is_some_and(|s| second > s);
                    }
                    !closed_second
                });
                if !errors.is_empty() {
                    if let Some((code, reason)) = consumer.client().fatal_error() {
                        return Err(format!("fatal Kafka error {code:?}: {reason}"));
                    }
                }
                if taken == 0 && deadline <= Instant::now() {
                    break;
                }
            }
            for (level, line) in batches.logs() {
                if level <= 4 { errors.push(line) } else { polled.notices.push(line) }
            }
            polled.errors = errors;
            polled.ranges = ranges.finish(states, aggregations);
            Ok((polled, out))
        });
        let (mut polled, mut out) = result.map_err(PyRuntimeError::new_err)?;
        polled.lines = out.to_py(py)?;
        *self.spare.lock().expect("not poisoned") = out;
        Ok(polled)
    }

    /// The partition's high watermark as last fetched (no request); None when not known yet (or
    /// the reader is closed).
    fn high_watermark(&self, partition: i32) -> PyResult<Option<i64>> {
        let Some(consumer) = self.consumer.as_ref() else { return Ok(None) };
        let topic = CString::new(self.topic.as_str()).map_err(|_| PyValueError::new_err("topic name has a NUL"))?;
        let (mut low, mut high) = (-1i64, -1i64);
        // SAFETY: a live client handle, a NUL-terminated topic name and two valid out-pointers.
        let err = unsafe {
            rdkafka::bindings::rd_kafka_get_watermark_offsets(
                consumer.client().native_ptr(), topic.as_ptr(), partition, &mut low, &mut high,
            )
        };
        Ok((err == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0).then_some(high))
    }

    /// Leave every partition and destroy the client (the reader cannot be used afterwards).
    fn close(&mut self, py: Python<'_>) {
        let batches = self.batches.get_mut().expect("not poisoned").take();
        if let Some(consumer) = self.consumer.take() {
            py.allow_threads(move || {
                drop(batches);
                let _ = consumer.unassign();
                drop(consumer);
            });
        }
    }
}
