//! The ingest hot path: one call per consumed Kafka batch.
//!
//! Each record is decoded and validated once, in native code, straight from its Kafka value bytes.
//! Valid records are appended to an InfluxDB line-protocol body; invalid ones come back with a
//! reason for the dead-letter topic. When aggregations are on, the same pass folds every record
//! into per-partition summaries (per-second and per-(second, region) partials, meter status
//! updates) whose JSON is the `Summary` contract of `smartgrid_common.contracts`.
//!
//! Python keeps the I/O (Kafka, InfluxDB, Redis); this module knows no network.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};
use rustc_hash::FxHashMap;

mod batch;
mod lineproto;
mod meters;
mod reader;
mod record;
mod summary;

use record::{judge, parse_record, parse_record_general, Clock, TimestampUnit, Verdict};
use summary::PartitionState;

/// The offset range of each partition read in one batch, opening each partition's summary batch
/// as it first appears; `finish` extends (or, without aggregations, skips) those batches. Shared by
/// `Processor.process` and `LiveConsumer.poll`, so both fold batches the same way.
struct BatchRanges {
    ranges: Vec<(i32, i64, i64)>,
    /// Index in `ranges` of the partition seen last (records come in runs of one partition).
    current: usize,
}

impl BatchRanges {
    fn new() -> Self {
        BatchRanges { ranges: Vec::new(), current: 0 }
    }

    /// Record that `first..=last` of `partition` is in the batch; that partition's state.
    fn add<'s>(&mut self, states: &'s mut FxHashMap<i32, PartitionState>, partition: i32, first: i64, last: i64) -> &'s mut PartitionState {
        if self.ranges.get(self.current).map(|r| r.0) != Some(partition) {
            match self.ranges.iter().position(|r| r.0 == partition) {
                Some(index) => self.current = index,
                None => {
                    self.ranges.push((partition, first, last));
                    self.current = self.ranges.len() - 1;
                }
            }
        }
        let range = &mut self.ranges[self.current];
        range.1 = range.1.min(first);
        range.2 = range.2.max(last);
        let state = states.entry(partition).or_default();
        state.begin_batch_if_needed(first);
        state
    }

    fn finish(self, states: &mut FxHashMap<i32, PartitionState>, aggregations: bool) -> Vec<(i32, i64, i64)> {
        for &(partition, _first, last) in &self.ranges {
            let state = states.get_mut(&partition).expect("state exists");
            if aggregations {
                state.extend_batch(last);
            } else {
                state.skip_batch();
            }
        }
        self.ranges
    }
}

/// Converts batches of Kafka values into line protocol, rejects and summaries.
#[pyclass(module = "ingest._hotpath")]
struct Processor {
    topic: String,
    unit: TimestampUnit,
    aggregations: bool,
    lines: bool,
    offline_after_ms: i64,
    /// Event time may run at most this far ahead of the wall clock (SMARTGRID_MAX_CLOCK_SKEW).
    max_clock_skew_ms: i64,
    /// A reading this far behind its partition's watermark is kept out of the live partials.
    late_window_ms: i64,
    partitions: FxHashMap<i32, PartitionState>,
}

impl Processor {
    /// Fold one judged record into its partition's state; `rejected` gets the reason of a refused
    /// one. Returns the event second of a reading that counted in the partials. The one place
    /// `process` and `LiveConsumer.poll` decide what a record does to the live state.
    fn fold_verdict(
        state: &mut PartitionState,
        verdict: &Verdict,
        offset: i64,
        clock: &Clock,
        late_window_ms: i64,
        aggregations: bool,
    ) -> Option<i64> {
        if !aggregations {
            return None;
        }
        match verdict {
            Verdict::Valid(reading) => state.fold(reading, offset, late_window_ms).then(|| reading.time_ms.div_euclid(1000)),
            Verdict::Ahead(reading, _) => {
                state.flag_clock_skew(reading, offset, clock.now_ms);
                None
            }
            Verdict::Invalid(_) => None,
        }
    }
}

/// What `Processor.process` returns for one batch.
#[pyclass(module = "ingest._hotpath", get_all)]
struct BatchResult {
    /// Line-protocol body of the valid records, one line each, `\n`-terminated.
    body: Py<PyBytes>,
    /// Number of valid records (the lines in `body` when lines are built).
    valid: usize,
    /// `(index in the batch, reason)` of every invalid record, in batch order.
    rejected: Vec<(usize, String)>,
    /// `(partition, first_offset, last_offset)` covered by this batch, one per partition.
    ranges: Vec<(i32, i64, i64)>,
}

#[pymethods]
impl Processor {
    /// `timestamp_unit` is the unit of epoch-number timestamps: "s", "ms", "us" or "ns".
    /// `lines=False` validates and summarises without building line protocol (the live path,
    /// which reads ahead of the InfluxDB path, needs only the summaries).
    /// `max_clock_skew_ms`: a reading stamped further ahead of the wall clock is refused;
    /// `late_window_ms`: a reading further behind its partition's watermark counts in no live bucket.
    #[new]
    #[pyo3(signature = (topic, timestamp_unit="ms", aggregations=true, offline_after_ms=300_000, lines=true, max_clock_skew_ms=300_000, late_window_ms=300_000))]
    fn new(
        topic: String,
        timestamp_unit: &str,
        aggregations: bool,
        offline_after_ms: i64,
        lines: bool,
        max_clock_skew_ms: i64,
        late_window_ms: i64,
    ) -> PyResult<Self> {
        let unit = TimestampUnit::parse(timestamp_unit)
            .ok_or_else(|| PyValueError::new_err(format!("timestamp unit {timestamp_unit:?}: use s, ms, us or ns")))?;
        if offline_after_ms <= 0 {
            return Err(PyValueError::new_err("offline_after_ms must be > 0"));
        }
        if max_clock_skew_ms < 0 || late_window_ms <= 0 {
            return Err(PyValueError::new_err("max_clock_skew_ms must be >= 0 and late_window_ms > 0"));
        }
        Ok(Processor {
            topic,
            unit,
            aggregations,
            lines,
            offline_after_ms,
            max_clock_skew_ms,
            late_window_ms,
            partitions: FxHashMap::default(),
        })
    }

    /// Tell the processor where a partition resumes: records up to `published_upto` were already
    /// summarised and published before a restart, so they only rebuild meter state; the next
    /// summary starts at `published_upto + 1`, which keeps the partition's summaries chained.
    #[pyo3(signature = (partition, published_upto=None, snapshot=None))]
    fn resume(&mut self, partition: i32, published_upto: Option<i64>, snapshot: Option<&[u8]>) -> PyResult<()> {
        let mut state = match snapshot {
            Some(bytes) => PartitionState::restore(bytes).map_err(|e| PyValueError::new_err(format!("bad snapshot: {e}")))?,
            None => PartitionState::default(),
        };
        state.published_upto = published_upto;
        self.partitions.insert(partition, state);
        Ok(())
    }

    /// Meter state of a partition as bytes, for a checkpoint taken together with a summary.
    fn snapshot<'py>(&self, py: Python<'py>, partition: i32) -> Option<Bound<'py, PyBytes>> {
        self.partitions.get(&partition).map(|s| PyBytes::new_bound(py, &s.snapshot()))
    }

    /// Close every open partition batch: `(partition, summary JSON)` for each one with something
    /// to publish (records folded since the last call that were not already published). One
    /// summary per partition per write unit, however many consume batches the unit took.
    fn take_summaries<'py>(&mut self, py: Python<'py>) -> Vec<(i32, Bound<'py, PyBytes>)> {
        let mut summaries = Vec::new();
        let mut partitions: Vec<i32> = self.partitions.keys().copied().collect();
        partitions.sort_unstable();
        for partition in partitions {
            let state = self.partitions.get_mut(&partition).expect("listed");
            if let Some(json) = state.finish_open_batch(&self.topic, partition, self.offline_after_ms) {
                summaries.push((partition, PyBytes::new_bound(py, &json)));
            }
        }
        summaries
    }

    /// Decode, validate and convert one batch. `values[i]` came from `partitions[i]` at `offsets[i]`.
    fn process(
        &mut self,
        py: Python<'_>,
        values: &Bound<'_, PyList>,
        partitions: Vec<i32>,
        offsets: Vec<i64>,
    ) -> PyResult<BatchResult> {
        let n = values.len();
        if partitions.len() != n || offsets.len() != n {
            return Err(PyValueError::new_err("values, partitions and offsets must have the same length"));
        }
        // Borrow every value's bytes without copying. `owned` holds a reference to each (immutable)
        // bytes object until the call returns, so the slices stay valid with the GIL released.
        let mut raw: Vec<Option<&[u8]>> = Vec::with_capacity(n);
        let mut owned: Vec<Py<PyAny>> = Vec::with_capacity(n);
        for item in values.iter() {
            if item.is_none() {
                raw.push(None);
            } else {
                let bytes = item.downcast::<PyBytes>()?;
                // SAFETY: see `owned` above.
                raw.push(Some(unsafe { std::slice::from_raw_parts(bytes.as_bytes().as_ptr(), bytes.as_bytes().len()) }));
                owned.push(item.clone().unbind());
            }
        }
        let unit = self.unit;
        let aggregations = self.aggregations;
        let lines = self.lines;
        let late_window_ms = self.late_window_ms;
        let clock = Clock::now(self.max_clock_skew_ms);
        let states = &mut self.partitions;
        // Decoding runs without the GIL: the worker's other threads (the live path, InfluxDB
        // writes, commits) keep going on another core meanwhile.
        let (body, rejected, ranges, valid) = py.allow_threads(move || {
            let mut body: Vec<u8> = Vec::with_capacity(if lines { n * 200 } else { 0 });
            let mut rejected = Vec::new();
            let mut ranges = BatchRanges::new();
            let mut valid = 0usize;
            let mut i = 0;
            while i < n {
                // Kafka hands out records in runs of one partition: look its state up once per run.
                let partition = partitions[i];
                let mut end = i + 1;
                while end < n && partitions[end] == partition {
                    end += 1;
                }
                let (run_first, run_last) = (offsets[i..end].iter().min().copied().unwrap_or(0), offsets[i..end].iter().max().copied().unwrap_or(0));
                let state = ranges.add(states, partition, run_first, run_last);
                for j in i..end {
                    let verdict = judge(raw[j], unit, &clock);
                    Processor::fold_verdict(state, &verdict, offsets[j], &clock, late_window_ms, aggregations);
                    match verdict {
                        Verdict::Valid(reading) => {
                            if lines {
                                lineproto::write_line(&mut body, &reading);
                            }
                            valid += 1;
                        }
                        Verdict::Ahead(_, reason) | Verdict::Invalid(reason) => rejected.push((j, reason)),
                    }
                }
                i = end;
            }
            let ranges = ranges.finish(states, aggregations);
            (body, rejected, ranges, valid)
        });
        drop(owned);
        Ok(BatchResult { body: PyBytes::new_bound(py, &body).unbind(), valid, rejected, ranges })
    }
}

/// Validate and convert a single record; `(line, None)` or `(None, reason)`. For tests and tools;
/// `general` reads it with the general JSON parser only (the fast path for flat records skipped).
#[pyfunction]
#[pyo3(signature = (value, timestamp_unit="ms", general=false))]
fn convert_one(value: &[u8], timestamp_unit: &str, general: bool) -> PyResult<(Option<String>, Option<String>)> {
    let unit = TimestampUnit::parse(timestamp_unit).ok_or_else(|| PyValueError::new_err("bad unit"))?;
    let parsed = if general { parse_record_general(value, unit) } else { parse_record(value, unit) };
    Ok(match parsed {
        Ok(reading) => {
            let mut out = Vec::new();
            lineproto::write_line(&mut out, &reading);
            (Some(String::from_utf8(out).expect("utf-8")), None)
        }
        Err(reason) => (None, Some(reason)),
    })
}

#[pymodule]
fn _hotpath(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Processor>()?;
    m.add_class::<BatchResult>()?;
    m.add_class::<reader::Reader>()?;
    m.add_class::<reader::Polled>()?;
    m.add_class::<reader::Lines>()?;
    m.add_class::<reader::Invalid>()?;
    m.add_function(wrap_pyfunction!(convert_one, m)?)?;
    Ok(())
}
