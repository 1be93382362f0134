//! Per-partition summaries and meter state (the `Summary` contract of `smartgrid_common.contracts`).
//!
//! Strings that repeat (meter ids, regions, statuses) are interned once per partition, so folding a
//! reading allocates nothing in the steady state: buckets are keyed by `(second, region id)`.
//!
//! Distinct meters per (second, region) cost no per-reading work downstream: Kafka is keyed by
//! meter id, so every reading of a meter is folded here, and each meter remembers the event seconds
//! it reported in over the late window ([`SeenSeconds`]). A summary carries, per bucket, the count
//! of meters NEW to that bucket; the aggregator adds counts (exactly once, like every partial).

use crate::meters::{Meter, Meters, SeenSeconds};
use crate::record::Reading;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::HashMap;

struct SecondAcc {
    sum: f64,
    count: u64,
    min: f64,
    max: f64,
}

struct RegionAcc {
    sum: f64,
    count: u64,
    max: f64,
    /// Meters whose first reading of this bucket's second is in this batch (see [`SeenSeconds`]).
    new_meters: u64,
    lat_sum: f64,
    lon_sum: f64,
    geo_count: u64,
}

/// Small strings seen again and again (regions, statuses), stored once and named by index.
#[derive(Default)]
struct Labels {
    ids: FxHashMap<String, u32>,
    names: Vec<String>,
    /// The id of [`CLOCK_SKEW`], once named.
    clock_skew: Option<u32>,
}

impl Labels {
    /// `id(name)`, tried first against `likely` (the meter's last): no hashing when it is that.
    fn id_like(&mut self, likely: Option<u32>, name: &str) -> u32 {
        match likely {
            Some(id) if self.names[id as usize] == name => id,
            _ => self.id(name),
        }
    }

    fn clock_skew(&mut self) -> u32 {
        match self.clock_skew {
            Some(id) => id,
            None => {
                let id = self.id(CLOCK_SKEW);
                *self.clock_skew.insert(id)
            }
        }
    }

    fn id(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = self.names.len() as u32;
        self.names.push(name.to_owned());
        self.ids.insert(name.to_owned(), id);
        id
    }

    fn name(&self, id: u32) -> &str {
        &self.names[id as usize]
    }
}

/// The JSON checkpoint of releases before [`Packed`], still restored: names, not indices. `seen`
/// (absent in checkpoints of releases before it) holds each meter's ring as `(upto, words)`.
#[derive(Deserialize)]
struct Snapshot {
    watermark_ms: Option<i64>,
    meters: HashMap<String, (String, String, i64, bool)>,
    #[serde(default)]
    seen: HashMap<String, (i64, Vec<u64>)>,
}

/// The first bytes of a checkpoint in the binary format ([`Packed`]); a checkpoint without them is
/// the JSON [`Snapshot`] of releases before it, which is still restored.
const PACKED_MAGIC: &[u8] = b"SGMS\x01";

/// Meter state as stored in a checkpoint (postcard, after [`PACKED_MAGIC`]): the labels once, then
/// per meter its id, its region and status as indices into them, its last reading's time, whether
/// it is silent, and its ring of seen seconds. 100k meters of the simulator: 3.4 MB and ~10 ms of
/// CPU to write, against 9.9 MB and 13-26 ms as JSON (2026-12-03); what is left is mostly the walk
/// over the meters' strings and rings, one cache miss each.
#[derive(Serialize, Deserialize)]
struct Packed<'a> {
    watermark_ms: Option<i64>,
    #[serde(borrow)]
    labels: Vec<&'a str>,
    #[serde(borrow)]
    meters: Vec<PackedMeter<'a>>,
}

#[derive(Serialize, Deserialize)]
struct PackedMeter<'a> {
    id: &'a str,
    region: u32,
    status: u32,
    last_ms: i64,
    silent: bool,
    upto: Option<i64>,
    bits: Cow<'a, [u64]>,
}

/// State of one partition: meters, event-time watermark, and the accumulators of the open batch.
pub struct PartitionState {
    /// Last offset already published in a summary before a restart (records up to it only
    /// rebuild meter state).
    pub published_upto: Option<i64>,
    /// First offset of the next summary, so that summaries chain.
    next_first: Option<i64>,
    batch_first: Option<i64>,
    batch_last: Option<i64>,
    watermark_ms: Option<i64>,
    scanned_at_ms: Option<i64>,
    labels: Labels,
    offline: u32,
    ok: u32,
    meters: Meters,
    seconds: FxHashMap<i64, SecondAcc>,
    regions: FxHashMap<(i64, u32), RegionAcc>,
    /// Meters touched by the open batch, with their effective status before it (None: new); a
    /// reading that leaves an ok meter ok touches nothing (there is nothing to report of it).
    touched: FxHashMap<u32, Option<u32>>,
}

impl Default for PartitionState {
    fn default() -> Self {
        let mut labels = Labels::default();
        let offline = labels.id("offline");
        let ok = labels.id("ok");
        PartitionState {
            published_upto: None,
            next_first: None,
            batch_first: None,
            batch_last: None,
            watermark_ms: None,
            scanned_at_ms: None,
            labels,
            offline,
            ok,
            meters: Meters::default(),
            seconds: FxHashMap::default(),
            regions: FxHashMap::default(),
            touched: FxHashMap::default(),
        }
    }
}

/// Effective status of a meter whose last reading had a wrong clock (see `PartitionState::fold`).
pub const CLOCK_SKEW: &str = "clock_skew";

fn floor_second(ms: i64) -> i64 {
    ms.div_euclid(1000)
}

impl PartitionState {
    /// Restore meter state from a snapshot taken by [`PartitionState::snapshot`], or from the JSON
    /// checkpoint of an earlier release.
    pub fn restore(bytes: &[u8]) -> Result<Self, String> {
        match bytes.strip_prefix(PACKED_MAGIC) {
            Some(packed) => Self::restore_packed(packed),
            None => Self::restore_json(bytes).map_err(|e| e.to_string()),
        }
    }

    fn restore_packed(bytes: &[u8]) -> Result<Self, String> {
        let packed: Packed = postcard::from_bytes(bytes).map_err(|e| e.to_string())?;
        let mut state = PartitionState { watermark_ms: packed.watermark_ms, ..Default::default() };
        let ids: Vec<u32> = packed.labels.iter().map(|name| state.labels.id(name)).collect();
        let label = |index: u32| ids.get(index as usize).copied().ok_or_else(|| format!("label {index} of {}", ids.len()));
        for m in packed.meters {
            let seen = SeenSeconds::of(m.upto, &m.bits);
            let (region, status) = (label(m.region)?, label(m.status)?);
            state.meters.add(Meter { id: m.id.into(), region, status, last_ms: m.last_ms, silent: m.silent, seen });
        }
        Ok(state)
    }

    fn restore_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        let snapshot: Snapshot = serde_json::from_slice(bytes)?;
        let mut state = PartitionState { watermark_ms: snapshot.watermark_ms, ..Default::default() };
        let mut seen = snapshot.seen;
        for (meter_id, (region, status, last_ms, silent)) in snapshot.meters {
            let region = state.labels.id(&region);
            let status = state.labels.id(&status);
            let ring = seen.remove(&meter_id).map_or_else(SeenSeconds::default, |(upto, bits)| SeenSeconds::of(Some(upto), &bits));
            state.meters.add(Meter { id: meter_id.into(), region, status, last_ms, silent, seen: ring });
        }
        Ok(state)
    }

    /// Meter state and watermark as checkpoint bytes ([`Packed`], borrowed from the state: no
    /// string or ring is copied before it is written).
    pub fn snapshot(&self) -> Vec<u8> {
        let packed = Packed {
            watermark_ms: self.watermark_ms,
            labels: self.labels.names.iter().map(String::as_str).collect(),
            meters: self
                .meters
                .iter()
                .map(|m| PackedMeter {
                    id: m.id.as_str(),
                    region: m.region,
                    status: m.status,
                    last_ms: m.last_ms,
                    silent: m.silent,
                    upto: m.seen.upto,
                    bits: Cow::Borrowed(&m.seen.bits),
                })
                .collect(),
        };
        postcard::to_extend(&packed, PACKED_MAGIC.to_vec()).expect("serializable")
    }

    /// Start fetching the table slot of the meter whose id hashes to `hash` (`meters::hash`).
    pub fn prefetch_slot(&self, hash: u64) {
        self.meters.prefetch_slot(hash);
    }

    /// Start fetching the record of the meter whose id hashes to `hash`, once its slot was fetched.
    pub fn prefetch_meter(&self, hash: u64) {
        self.meters.prefetch_meter(hash);
    }

    fn effective(&self, meter: &Meter) -> u32 {
        if meter.silent {
            self.offline
        } else {
            meter.status
        }
    }

    pub fn begin_batch_if_needed(&mut self, offset: i64) {
        if self.batch_first.is_none() {
            self.batch_first = Some(offset);
            if self.next_first.is_none() {
                self.next_first = self.published_upto.map(|p| p + 1);
            }
        }
    }

    fn suppressed(&self, offset: i64) -> bool {
        self.published_upto.is_some_and(|p| offset <= p)
    }

    /// Fold one valid reading into meter state and, unless already published, the partials.
    /// A reading more than `late_window_ms` behind the partition's watermark (a meter whose clock
    /// runs far behind, or epoch seconds sent where milliseconds were expected) is written to the
    /// raw store but leaves the live partials and the watermark alone: its meter is flagged
    /// [`CLOCK_SKEW`] instead. Returns whether the reading counted in the partials' event time.
    pub fn fold(&mut self, reading: &Reading, offset: i64, late_window_ms: i64) -> bool {
        let time_ms = reading.time_ms;
        if self.watermark_ms.is_some_and(|w| time_ms < w.saturating_sub(late_window_ms)) {
            self.flag_clock_skew(reading, offset, time_ms); // the watermark is set: no fallback needed
            return false;
        }
        let suppressed = self.suppressed(offset);
        self.watermark_ms = Some(self.watermark_ms.map_or(time_ms, |w| w.max(time_ms)));
        // A known meter mostly reports the region and status it did last time.
        let found = self.meters.find(&reading.meter_id);
        let last = found.map(|index| &self.meters[index]);
        let (last_region, last_status) = (last.map(|m| m.region), last.map(|m| m.status));
        let region = self.labels.id_like(last_region, &reading.region);
        let status = self.labels.id_like(last_status, &reading.status);
        let clock_skew = self.labels.clock_skew();
        let (index, known) = match found {
            Some(index) => (index, true),
            None => self.meter_of(reading, region, status, time_ms, suppressed),
        };
        let meter = &self.meters[index];
        // The newest reading (in event time) decides the status; a late one only counts. A meter
        // flagged for its clock is cleared by its next sane reading, late or not.
        if known && (time_ms >= meter.last_ms || meter.status == clock_skew) {
            self.report(index, region, status, time_ms, suppressed);
        }
        // Marked for replayed readings too: they rebuild what the published summaries counted.
        let second = floor_second(time_ms);
        let new_to_second = self.meters[index].seen.mark(second, SeenSeconds::words_for(late_window_ms));
        if suppressed {
            return true;
        }
        let value = reading.consumption_kwh.value;
        let acc = self.seconds.entry(second).or_insert(SecondAcc { sum: 0.0, count: 0, min: f64::INFINITY, max: f64::NEG_INFINITY });
        acc.sum += value;
        acc.count += 1;
        acc.min = acc.min.min(value);
        acc.max = acc.max.max(value);
        let bucket = self.regions.entry((second, region)).or_insert_with(|| RegionAcc {
            sum: 0.0,
            count: 0,
            max: f64::NEG_INFINITY,
            new_meters: 0,
            lat_sum: 0.0,
            lon_sum: 0.0,
            geo_count: 0,
        });
        bucket.sum += value;
        bucket.count += 1;
        bucket.max = bucket.max.max(value);
        bucket.new_meters += u64::from(new_to_second);
        if let (Some(lat), Some(lon)) = (reading.latitude.map(|f| f.value), reading.longitude.map(|f| f.value)) {
            bucket.lat_sum += lat;
            bucket.lon_sum += lon;
            bucket.geo_count += 1;
        }
        true
    }

    /// A reading from a meter whose clock is wrong (too far ahead of the wall clock, or too far
    /// behind the watermark): it moves no event time and counts in no bucket, but the meter is
    /// alive, so it is reported as [`CLOCK_SKEW`] until it sends a sane reading. It was heard at
    /// the partition's watermark (its "now" in event time), or at `fallback_ms` while there is none.
    pub fn flag_clock_skew(&mut self, reading: &Reading, offset: i64, fallback_ms: i64) {
        let suppressed = self.suppressed(offset);
        let region = self.labels.id(&reading.region);
        let status = self.labels.clock_skew();
        let heard_ms = self.watermark_ms.unwrap_or(fallback_ms);
        let (index, known) = self.meter_of(reading, region, status, heard_ms, suppressed);
        if known {
            self.report(index, region, status, heard_ms, suppressed);
        }
    }

    /// The reading's meter: `(index, true)` when the partition knew it, else it is added with this
    /// region, status and time, and reported as new unless the reading was published already.
    fn meter_of(&mut self, reading: &Reading, region: u32, status: u32, at_ms: i64, suppressed: bool) -> (u32, bool) {
        if let Some(index) = self.meters.find(&reading.meter_id) {
            return (index, true);
        }
        let meter = Meter { id: reading.meter_id.as_ref().into(), region, status, last_ms: at_ms, silent: false, seen: SeenSeconds::default() };
        let index = self.meters.add(meter);
        if !suppressed {
            self.touched.entry(index).or_insert(None);
        }
        (index, false)
    }

    /// A known meter reported `status` at `at_ms`: it is heard (no longer silent), its status and
    /// region are these now, and the open batch's summary reports it (from its status before the batch).
    fn report(&mut self, index: u32, region: u32, status: u32, at_ms: i64, suppressed: bool) {
        let before = self.effective(&self.meters[index]);
        // An ok meter reading ok again is not reported (`summary_json`): no entry. Should a later
        // reading of the batch change it, that one records `before` as ok, which it still is.
        if !suppressed && !(before == self.ok && status == self.ok) {
            self.touched.entry(index).or_insert(Some(before));
        }
        let meter = &mut self.meters[index];
        meter.status = status;
        meter.region = region;
        meter.last_ms = meter.last_ms.max(at_ms);
        meter.silent = false;
    }

    /// Mark meters silent for longer than `offline_after_ms` behind the watermark as offline.
    /// Runs when the watermark has moved by a second or more since the last scan.
    fn scan_offline(&mut self, offline_after_ms: i64, record_changes: bool) {
        let Some(watermark) = self.watermark_ms else { return };
        if self.scanned_at_ms.is_some_and(|at| watermark - at < 1000) {
            return;
        }
        self.scanned_at_ms = Some(watermark);
        let threshold = watermark - offline_after_ms;
        for (index, meter) in self.meters.iter_mut().enumerate() {
            if !meter.silent && meter.last_ms < threshold {
                if record_changes {
                    self.touched.entry(index as u32).or_insert(Some(meter.status));
                }
                meter.silent = true;
            }
        }
    }

    fn reset_batch(&mut self) {
        self.batch_first = None;
        self.batch_last = None;
        self.seconds.clear();
        self.regions.clear();
        self.touched.clear();
    }

    /// Close the batch without summaries (aggregations off).
    pub fn skip_batch(&mut self) {
        self.reset_batch();
    }

    /// Record that the open batch now reaches `last_offset` (it stays open for more batches).
    pub fn extend_batch(&mut self, last_offset: i64) {
        self.batch_last = Some(self.batch_last.map_or(last_offset, |l| l.max(last_offset)));
    }

    /// Close the open batch, if any: its summary JSON, or None.
    pub fn finish_open_batch(&mut self, topic: &str, partition: i32, offline_after_ms: i64) -> Option<Vec<u8>> {
        let last_offset = self.batch_last?;
        self.finish_batch(topic, partition, last_offset, offline_after_ms)
    }

    /// Close the batch: the summary JSON, or None when every record was already published.
    fn finish_batch(&mut self, topic: &str, partition: i32, last_offset: i64, offline_after_ms: i64) -> Option<Vec<u8>> {
        let fully_suppressed = self.suppressed(last_offset);
        self.scan_offline(offline_after_ms, !fully_suppressed);
        if fully_suppressed {
            self.reset_batch();
            return None;
        }
        // Chained: an earlier summary of the partition was published (here or before a restart).
        let chained = self.next_first.is_some();
        let first_offset = self.next_first.or(self.batch_first).unwrap_or(last_offset);
        self.next_first = Some(last_offset + 1);
        let json = self.summary_json(topic, partition, first_offset, last_offset, chained);
        self.reset_batch();
        Some(json)
    }

    fn summary_json(&mut self, topic: &str, partition: i32, first_offset: i64, last_offset: i64, chained: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.seconds.len() * 64 + self.regions.len() * 128 + self.touched.len() * 80);
        // "v": the contract version (smartgrid_common.contracts.SUMMARY_VERSION).
        out.extend_from_slice(b"{\"v\":2,\"topic\":");
        push_str(&mut out, topic);
        out.extend_from_slice(b",\"partition\":");
        push_int(&mut out, partition as i64);
        out.extend_from_slice(b",\"first_offset\":");
        push_int(&mut out, first_offset);
        out.extend_from_slice(b",\"last_offset\":");
        push_int(&mut out, last_offset);
        if chained {
            out.extend_from_slice(b",\"chained\":true");
        }
        out.extend_from_slice(b",\"watermark_ms\":");
        push_int(&mut out, self.watermark_ms.unwrap_or(0));
        out.extend_from_slice(b",\"seconds\":[");
        let mut seconds: Vec<_> = self.seconds.iter().collect();
        seconds.sort_unstable_by_key(|(second, _)| **second);
        for (i, (second, acc)) in seconds.into_iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.push(b'[');
            push_int(&mut out, *second);
            out.push(b',');
            push_f64(&mut out, acc.sum);
            out.push(b',');
            push_int(&mut out, acc.count as i64);
            out.push(b',');
            push_f64(&mut out, acc.min);
            out.push(b',');
            push_f64(&mut out, acc.max);
            out.push(b']');
        }
        out.extend_from_slice(b"],\"regions\":[");
        let labels = &self.labels;
        let meters = &self.meters;
        let mut regions: Vec<_> = self.regions.iter_mut().collect();
        regions.sort_unstable_by(|a, b| (labels.name(a.0 .1), a.0 .0).cmp(&(labels.name(b.0 .1), b.0 .0)));
        for (i, ((second, region), acc)) in regions.into_iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.push(b'[');
            push_int(&mut out, *second);
            out.push(b',');
            push_str(&mut out, labels.name(*region));
            out.push(b',');
            push_f64(&mut out, acc.sum);
            out.push(b',');
            push_int(&mut out, acc.count as i64);
            out.push(b',');
            push_f64(&mut out, acc.max);
            out.push(b',');
            push_int(&mut out, acc.new_meters as i64);
            out.push(b',');
            push_f64(&mut out, acc.lat_sum);
            out.push(b',');
            push_f64(&mut out, acc.lon_sum);
            out.push(b',');
            push_int(&mut out, acc.geo_count as i64);
            out.push(b']');
        }
        out.extend_from_slice(b"],\"meters\":[");
        // Report changes, and every fresh reading of a meter that is not ok (its last reading):
        // chosen first, then sorted by name (most touched meters are ok and unchanged).
        let ok = self.ok;
        let mut reported: Vec<(u32, Option<u32>, u32)> = Vec::new();
        for (&index, &before) in &self.touched {
            let meter = &self.meters[index];
            let now = if meter.silent { self.offline } else { meter.status };
            if before != Some(now) || now != ok {
                reported.push((index, before, now));
            }
        }
        reported.sort_unstable_by(|a, b| meters[a.0].id.cmp(&meters[b.0].id));
        let mut first = true;
        for (index, before, now) in reported {
            let meter = &self.meters[index];
            let now_name = labels.name(now);
            if !first {
                out.push(b',');
            }
            first = false;
            out.push(b'[');
            push_str(&mut out, &meter.id);
            out.push(b',');
            push_str(&mut out, labels.name(meter.region));
            out.push(b',');
            match before {
                Some(previous) => push_str(&mut out, labels.name(previous)),
                None => out.extend_from_slice(b"null"),
            }
            out.push(b',');
            push_str(&mut out, now_name);
            out.push(b',');
            let at_ms = if meter.silent { self.watermark_ms.unwrap_or(meter.last_ms) } else { meter.last_ms };
            push_int(&mut out, at_ms);
            out.push(b',');
            push_int(&mut out, meter.last_ms);
            out.push(b']');
        }
        out.extend_from_slice(b"]}");
        out
    }
}

fn push_str(out: &mut Vec<u8>, value: &str) {
    serde_json::to_writer(&mut *out, value).expect("writing to a Vec cannot fail");
}

fn push_int(out: &mut Vec<u8>, value: i64) {
    let mut buffer = itoa::Buffer::new();
    out.extend_from_slice(buffer.format(value).as_bytes());
}

fn push_f64(out: &mut Vec<u8>, value: f64) {
    let mut buffer = ryu::Buffer::new();
    out.extend_from_slice(buffer.format_finite(value).as_bytes());
}
