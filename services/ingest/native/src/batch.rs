//! librdkafka's batch hand-over: the records a reader polls are taken from the consumer queue
//! many at a time (`rd_kafka_consume_batch_queue`), not one event per record as rust-rdkafka's
//! `poll` does it. A batch takes the queue's records under one call: one clock read and one
//! application-position update per partition instead of one per record, no event object.
//!
//! librdkafka's own log lines (its errors included: a broker that went away, a failed fetch) are
//! queued too (`log.queue`), not printed: `Batches::logs` returns them for the service's log.

use rdkafka::bindings as rd;
use rdkafka::consumer::{BaseConsumer, Consumer};
use std::ffi::{c_char, c_int, CStr};
use std::ptr;
use std::time::Duration;

/// Records taken from librdkafka per call.
const CHUNK: usize = 512;

/// The librdkafka configuration a reader needs for `Batches` (its log lines queued, not printed).
pub const CONFIG: [(&str, &str); 1] = [("log.queue", "true")];

/// One record as librdkafka hands it over; valid until the batch that holds it is released.
pub struct Record<'a>(&'a rd::rd_kafka_message_t);

/// The records taken after the one being handed over (not handed over yet): a caller may look
/// ahead at them (to prefetch what they need), not keep them.
pub struct Upcoming<'a>(&'a [*mut rd::rd_kafka_message_t]);

impl<'a> Upcoming<'a> {
    /// The record `distance` places after the one being handed over (0: the next), if taken.
    pub fn get(&self, distance: usize) -> Option<Record<'a>> {
        // SAFETY: a message taken and not destroyed yet (it is destroyed once handed over).
        self.0.get(distance).map(|&message| Record(unsafe { &*message }))
    }
}

fn slice<'a>(data: *const std::ffi::c_void, len: usize) -> Option<&'a [u8]> {
    // SAFETY: librdkafka's pointer and length of a payload or key it owns while the record lives.
    (!data.is_null()).then(|| unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) })
}

fn text(text: *const c_char) -> String {
    if text.is_null() {
        return String::new();
    }
    // SAFETY: a NUL-terminated string from librdkafka, read before it is freed.
    unsafe { CStr::from_ptr(text) }.to_string_lossy().into_owned()
}

impl Record<'_> {
    pub fn partition(&self) -> i32 {
        self.0.partition
    }

    pub fn offset(&self) -> i64 {
        self.0.offset
    }

    pub fn payload(&self) -> Option<&[u8]> {
        slice(self.0.payload, self.0.len)
    }

    pub fn key(&self) -> Option<&[u8]> {
        slice(self.0.key, self.0.key_len)
    }

    /// The record's headers, in order (a header may have no value).
    pub fn headers(&self) -> Vec<(String, Option<Vec<u8>>)> {
        let mut headers = ptr::null_mut();
        // SAFETY: a live message; the headers stay owned by it.
        if unsafe { rd::rd_kafka_message_headers(self.0, &mut headers) } != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            return Vec::new();
        }
        let mut all = Vec::new();
        for index in 0.. {
            let (mut name, mut value, mut size) = (ptr::null(), ptr::null(), 0usize);
            // SAFETY: headers of a live message and three valid out-pointers.
            let err = unsafe { rd::rd_kafka_header_get_all(headers, index, &mut name, &mut value, &mut size) };
            if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                break;
            }
            all.push((text(name), slice(value, size).map(<[u8]>::to_vec)));
        }
        all
    }

    /// The error this record stands for, if it is one (a consumer error, not a record).
    fn error(&self) -> Option<String> {
        (self.0.err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR).then(|| {
            // SAFETY: a live message.
            let detail = text(unsafe { rd::rd_kafka_message_errstr(self.0) });
            // SAFETY: librdkafka's static description of an error code.
            let name = text(unsafe { rd::rd_kafka_err2str(self.0.err) });
            if detail.is_empty() || detail == name { name } else { format!("{name}: {detail}") }
        })
    }
}

/// A consumer's queue, read in batches, and its queue of log lines.
pub struct Batches {
    queue: *mut rd::rd_kafka_queue_t,
    logs: *mut rd::rd_kafka_queue_t,
    /// The last batch taken from librdkafka; those from `next` on are not handed over yet (a
    /// caller stopped early), and come first in the next `take`.
    taken: Vec<*mut rd::rd_kafka_message_t>,
    next: usize,
}

// SAFETY: librdkafka's queues and messages may be used from any thread; the batch is only touched
// under `&mut self`.
unsafe impl Send for Batches {}
unsafe impl Sync for Batches {}

impl Batches {
    /// The queues of `consumer`, which was made with `CONFIG` and a `group.id` (its records and
    /// events are served on the consumer queue).
    pub fn of(consumer: &BaseConsumer) -> Result<Self, String> {
        let client = consumer.client().native_ptr();
        // SAFETY: a live client handle; both queues are released in `Drop`, before the client.
        let queue = unsafe { rd::rd_kafka_queue_get_consumer(client) };
        if queue.is_null() {
            return Err("the Kafka consumer has no consumer queue (no group.id?)".into());
        }
        let logs = unsafe { rd::rd_kafka_queue_new(client) };
        unsafe { rd::rd_kafka_set_log_queue(client, logs) };
        Ok(Batches { queue, logs, taken: Vec::with_capacity(CHUNK), next: 0 })
    }

    /// Hand over up to `max` records to `each`, which returns whether to go on: first those left
    /// from the last batch, else those already queued, else the first to come within `wait`. A
    /// consumer error goes to `errors`. Returns how many records were handed over.
    pub fn take(&mut self, max: usize, wait: Duration, errors: &mut Vec<String>, mut each: impl FnMut(&Record, Upcoming) -> bool) -> usize {
        if self.next == self.taken.len() {
            self.fill(max.min(CHUNK), wait);
        }
        let mut records = 0;
        while self.next < self.taken.len() && records < max {
            let message = self.taken[self.next];
            self.next += 1;
            // SAFETY: a message librdkafka handed over, destroyed right after its use.
            let record = Record(unsafe { &*message });
            let go_on = match record.error() {
                Some(error) => {
                    errors.push(error);
                    true
                }
                None => {
                    records += 1;
                    each(&record, Upcoming(&self.taken[self.next..]))
                }
            };
            unsafe { rd::rd_kafka_message_destroy(message) };
            if !go_on {
                break;
            }
        }
        records
    }

    fn fill(&mut self, max: usize, wait: Duration) {
        self.taken.clear();
        self.taken.resize(max, ptr::null_mut());
        self.next = 0;
        // SAFETY: a live queue and room for `max` message pointers.
        let mut n = unsafe { rd::rd_kafka_consume_batch_queue(self.queue, 0, self.taken.as_mut_ptr(), max) };
        if n == 0 && !wait.is_zero() {
            let ms = c_int::try_from(wait.as_millis().max(1)).unwrap_or(c_int::MAX);
            // One record is enough to return: what comes with it is taken by the next call.
            n = unsafe { rd::rd_kafka_consume_batch_queue(self.queue, ms, self.taken.as_mut_ptr(), 1) };
        }
        self.taken.truncate(usize::try_from(n).unwrap_or(0));
    }

    /// Drop what is left of the last batch for these partitions (they are assigned again, or
    /// no longer read: their next records come from the new position).
    pub fn discard(&mut self, partitions: &[i32]) {
        let mut kept = self.next;
        for index in self.next..self.taken.len() {
            let message = self.taken[index];
            // SAFETY: a message not handed over yet.
            if partitions.contains(&unsafe { &*message }.partition) {
                unsafe { rd::rd_kafka_message_destroy(message) };
            } else {
                self.taken[kept] = message;
                kept += 1;
            }
        }
        self.taken.truncate(kept);
    }

    /// librdkafka's log lines since the last call, as `(level, "FACILITY: message")` (syslog
    /// levels: 3 is an error, 4 a warning, 5 a notice).
    pub fn logs(&self) -> Vec<(i32, String)> {
        let mut lines = Vec::new();
        loop {
            // SAFETY: a live queue; the event is destroyed after it is read.
            let event = unsafe { rd::rd_kafka_queue_poll(self.logs, 0) };
            if event.is_null() {
                return lines;
            }
            let (mut facility, mut message, mut level) = (ptr::null(), ptr::null(), 0 as c_int);
            if unsafe { rd::rd_kafka_event_log(event, &mut facility, &mut message, &mut level) } == 0 {
                lines.push((level, format!("{}: {}", text(facility), text(message))));
            }
            unsafe { rd::rd_kafka_event_destroy(event) };
        }
    }
}

impl Drop for Batches {
    fn drop(&mut self) {
        for &message in &self.taken[self.next..] {
            // SAFETY: messages not handed over, released before their client.
            unsafe { rd::rd_kafka_message_destroy(message) };
        }
        // SAFETY: both handles came from `of` and are released once.
        unsafe {
            rd::rd_kafka_queue_destroy(self.queue);
            rd::rd_kafka_queue_destroy(self.logs);
        }
    }
}
