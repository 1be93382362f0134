//! The live path's consumer: Kafka records folded into summaries without a Python object per record.
//!
//! The live path (`ingest.live`) reads its partitions ahead of the InfluxDB path and needs only the
//! summaries. Here librdkafka's messages are decoded and folded where they arrive, with the GIL
//! released for the whole poll: Python sees one call per poll (the offset ranges folded), and the
//! worker's other threads never wait on this one for the interpreter.
//!
//! The consumer does the Kafka side only: it folds into a `Processor`'s summaries and meter state,
//! which the live path resumes, snapshots and takes summaries from as before. Invalid records are
//! only counted: the InfluxDB path reads the same records and dead-letters them.

use crate::record::{judge, Clock, Verdict};
use crate::{BatchRanges, Processor};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::ffi::CString;
use std::time::{Duration, Instant};

/// An assign-only Kafka consumer that folds what it reads into a `Processor`'s summaries.
#[pyclass(module = "ingest._hotpath")]
pub struct LiveConsumer {
    consumer: Option<BaseConsumer>,
    topic: String,
}

/// What one `LiveConsumer.poll` folded.
#[pyclass(module = "ingest._hotpath", get_all)]
pub struct Polled {
    /// `(partition, first_offset, last_offset)` read by this poll, one per partition.
    ranges: Vec<(i32, i64, i64)>,
    /// Records read (valid or not).
    records: usize,
    /// Records that are not valid readings (the InfluxDB path dead-letters them).
    invalid: usize,
    /// Kafka error events seen (not fatal: librdkafka retries them).
    errors: Vec<String>,
    /// The newest event second (epoch seconds) among the valid readings read, if any.
    newest_second: Option<i64>,
}

fn kafka_error(context: &str, error: KafkaError) -> PyErr {
    PyRuntimeError::new_err(format!("{context}: {error}"))
}

impl LiveConsumer {
    fn consumer(&self) -> PyResult<&BaseConsumer> {
        self.consumer.as_ref().ok_or_else(|| PyRuntimeError::new_err("the live consumer is closed"))
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
impl LiveConsumer {
    /// `config` is librdkafka configuration (strings); `topic` the one topic it reads.
    #[new]
    fn new(config: HashMap<String, String>, topic: String) -> PyResult<Self> {
        let mut client = ClientConfig::new();
        for (key, value) in &config {
            client.set(key, value);
        }
        let consumer: BaseConsumer =
            client.create().map_err(|e| PyValueError::new_err(format!("Kafka consumer configuration: {e}")))?;
        Ok(LiveConsumer { consumer: Some(consumer), topic })
    }

    /// Start reading these `(partition, offset)` positions (librdkafka's logical offsets, such as
    /// -2 for the beginning, are accepted); other partitions keep their positions.
    fn assign(&self, py: Python<'_>, positions: Vec<(i32, i64)>) -> PyResult<()> {
        let list = self.partition_list(positions.into_iter().map(|(p, o)| (p, Offset::from_raw(o))))?;
        let consumer = self.consumer()?;
        py.allow_threads(|| consumer.incremental_assign(&list)).map_err(|e| kafka_error("assign", e))
    }

    /// Stop reading these partitions (their meter state stays until `resume` replaces it).
    fn unassign(&self, py: Python<'_>, partitions: Vec<i32>) -> PyResult<()> {
        let list = self.partition_list(partitions.into_iter().map(|p| (p, Offset::Invalid)))?;
        let consumer = self.consumer()?;
        py.allow_threads(|| consumer.incremental_unassign(&list)).map_err(|e| kafka_error("unassign", e))
    }

    /// Read for at most `timeout` seconds or `max_records` records, folding each valid reading
    /// into `processor` (as its `process` would, without line protocol); with `newer_than`, return
    /// early too, right after folding a reading of a later event second (a second has just
    /// closed). A fatal Kafka error raises.
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
        let mut processor = processor.try_borrow_mut()?;
        let unit = processor.unit;
        let late_window_ms = processor.late_window_ms;
        let clock = Clock::now(processor.max_clock_skew_ms);
        let states = &mut processor.partitions;
        let polled = py.allow_threads(move || {
            let deadline = Instant::now() + Duration::from_secs_f64(timeout.max(0.0));
            let mut polled = Polled { ranges: Vec::new(), records: 0, invalid: 0, errors: Vec::new(), newest_second: None };
            let mut ranges = BatchRanges::new();
            while polled.records < max_records {
                let wait = deadline.saturating_duration_since(Instant::now());
                let message = match consumer.poll(wait) {
                    // librdkafka can return early on a non-message event: read on until the deadline.
                    None if Instant::now() < deadline => continue,
                    None => break,
                    Some(Err(error)) => {
                        if let Some((code, reason)) = consumer.client().fatal_error() {
                            return Err(format!("fatal Kafka error {code:?}: {reason}"));
                        }
                        polled.errors.push(error.to_string());
                        if wait.is_zero() {
                            break;
                        }
                        continue;
                    }
                    Some(Ok(message)) => message,
                };
                let (partition, offset) = (message.partition(), message.offset());
                polled.records += 1;
                let state = ranges.add(states, partition, offset, offset);
                let verdict = judge(message.payload(), unit, &clock);
                if !matches!(verdict, Verdict::Valid(_)) {
                    polled.invalid += 1;
                }
                if let Some(second) = Processor::fold_verdict(state, &verdict, offset, &clock, late_window_ms, true) {
                    polled.newest_second = Some(polled.newest_second.map_or(second, |s| s.max(second)));
                    if newer_than.is_some_and(|s| second > s) {
                        break;
                    }
                }
            }
            polled.ranges = ranges.finish(states, true);
            Ok(polled)
        });
        polled.map_err(PyRuntimeError::new_err)
    }

    /// The partition's high watermark as last fetched (no request); None when not known yet.
    fn high_watermark(&self, partition: i32) -> PyResult<Option<i64>> {
        let consumer = self.consumer()?;
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

    /// Leave every partition and destroy the client (the consumer cannot be used afterwards).
    fn close(&mut self, py: Python<'_>) {
        if let Some(consumer) = self.consumer.take() {
            py.allow_threads(move || {
                let _ = consumer.unassign();
                drop(consumer);
            });
        }
    }
}
