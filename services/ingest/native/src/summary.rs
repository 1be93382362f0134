//! Per-partition summaries and meter state (the `Summary` contract of `smartgrid_common.contracts`).

use crate::record::Reading;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};

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
    meters: HashSet<String>,
    lat_sum: f64,
    lon_sum: f64,
    geo_count: u64,
}

/// What the partition knows of a meter: the status it last reported, when, and whether it has
/// since gone silent for longer than the offline threshold (in event time).
#[derive(Serialize, Deserialize, Clone)]
struct Meter {
    region: String,
    status: String,
    last_ms: i64,
    silent: bool,
}

impl Meter {
    fn effective(&self) -> &str {
        if self.silent {
            "offline"
        } else {
            &self.status
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Snapshot {
    watermark_ms: Option<i64>,
    meters: HashMap<String, Meter>,
}

/// State of one partition: meters, event-time watermark, and the accumulators of the open batch.
#[derive(Default)]
pub struct PartitionState {
    /// Last offset already published in a summary before a restart (records up to it only
    /// rebuild meter state).
    pub published_upto: Option<i64>,
    /// First offset of the next summary, so that summaries chain.
    next_first: Option<i64>,
    batch_first: Option<i64>,
    watermark_ms: Option<i64>,
    scanned_at_ms: Option<i64>,
    meters: HashMap<String, Meter>,
    seconds: HashMap<i64, SecondAcc>,
    regions: HashMap<String, HashMap<i64, RegionAcc>>,
    /// Meters touched by the open batch, with their effective status before it (None: new).
    touched: HashMap<String, Option<String>>,
}

fn floor_second(ms: i64) -> i64 {
    ms.div_euclid(1000)
}

impl PartitionState {
    /// Restore meter state from a snapshot taken by [`PartitionState::snapshot`].
    pub fn restore(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        let snapshot: Snapshot = serde_json::from_slice(bytes)?;
        Ok(PartitionState { watermark_ms: snapshot.watermark_ms, meters: snapshot.meters, ..Default::default() })
    }

    /// Meter state and watermark as JSON bytes.
    pub fn snapshot(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct SnapshotRef<'a> {
            watermark_ms: Option<i64>,
            meters: &'a HashMap<String, Meter>,
        }
        serde_json::to_vec(&SnapshotRef { watermark_ms: self.watermark_ms, meters: &self.meters }).expect("serializable")
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
    pub fn fold(&mut self, reading: &Reading, offset: i64) {
        let suppressed = self.suppressed(offset);
        let time_ms = reading.time_ms;
        self.watermark_ms = Some(self.watermark_ms.map_or(time_ms, |w| w.max(time_ms)));
        match self.meters.get_mut(reading.meter_id.as_ref()) {
            None => {
                self.meters.insert(
                    reading.meter_id.to_string(),
                    Meter { region: reading.region.to_string(), status: reading.status.to_string(), last_ms: time_ms, silent: false },
                );
                if !suppressed {
                    self.touched.entry(reading.meter_id.to_string()).or_insert(None);
                }
            }
            Some(meter) => {
                // The newest reading (in event time) decides the status; a late one only counts.
                if time_ms >= meter.last_ms {
                    if !suppressed && !self.touched.contains_key(reading.meter_id.as_ref()) {
                        self.touched.insert(reading.meter_id.to_string(), Some(meter.effective().to_string()));
                    }
                    if meter.status != reading.status {
                        meter.status = reading.status.to_string();
                    }
                    if meter.region != reading.region {
                        meter.region = reading.region.to_string();
                    }
                    meter.last_ms = time_ms;
                    meter.silent = false;
                }
            }
        }
        if suppressed {
            return;
        }
        let value = reading.consumption_kwh;
        let second = floor_second(time_ms);
        let acc = self.seconds.entry(second).or_insert(SecondAcc { sum: 0.0, count: 0, min: f64::INFINITY, max: f64::NEG_INFINITY });
        acc.sum += value;
        acc.count += 1;
        acc.min = acc.min.min(value);
        acc.max = acc.max.max(value);
        let by_second = match self.regions.get_mut(reading.region.as_ref()) {
            Some(map) => map,
            None => self.regions.entry(reading.region.to_string()).or_default(),
        };
        let region = by_second.entry(second).or_insert_with(|| RegionAcc {
            sum: 0.0,
            count: 0,
            max: f64::NEG_INFINITY,
            meters: HashSet::new(),
            lat_sum: 0.0,
            lon_sum: 0.0,
            geo_count: 0,
        });
        region.sum += value;
        region.count += 1;
        region.max = region.max.max(value);
        if !region.meters.contains(reading.meter_id.as_ref()) {
            region.meters.insert(reading.meter_id.to_string());
        }
        if let (Some(lat), Some(lon)) = (reading.latitude, reading.longitude) {
            region.lat_sum += lat;
            region.lon_sum += lon;
            region.geo_count += 1;
        }
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
        for (meter_id, meter) in self.meters.iter_mut() {
            if !meter.silent && meter.last_ms < threshold {
                if record_changes && !self.touched.contains_key(meter_id) {
                    self.touched.insert(meter_id.clone(), Some(meter.effective().to_string()));
                }
                meter.silent = true;
            }
        }
    }

    fn reset_batch(&mut self) {
        self.batch_first = None;
        self.seconds.clear();
        self.regions.clear();
        self.touched.clear();
    }

    /// Close the batch without summaries (aggregations off).
    pub fn skip_batch(&mut self, _last_offset: i64) {
        self.reset_batch();
    }

    /// Close the batch: the summary JSON, or None when every record was already published.
    pub fn finish_batch(&mut self, topic: &str, partition: i32, last_offset: i64, offline_after_ms: i64) -> Option<Vec<u8>> {
        let fully_suppressed = self.suppressed(last_offset);
        self.scan_offline(offline_after_ms, !fully_suppressed);
        if fully_suppressed {
            self.reset_batch();
            return None;
        }
        let first_offset = self.next_first.or(self.batch_first).unwrap_or(last_offset);
        self.next_first = Some(last_offset + 1);
        let json = self.summary_json(topic, partition, first_offset, last_offset);
        self.reset_batch();
        Some(json)
    }

    fn summary_json(&self, topic: &str, partition: i32, first_offset: i64, last_offset: i64) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.seconds.len() * 64 + self.touched.len() * 80);
        out.extend_from_slice(b"{\"topic\":");
        push_str(&mut out, topic);
        out.extend_from_slice(format!(
            ",\"partition\":{partition},\"first_offset\":{first_offset},\"last_offset\":{last_offset},\"watermark_ms\":{}",
            self.watermark_ms.unwrap_or(0)
        ).as_bytes());
        out.extend_from_slice(b",\"seconds\":[");
        let mut seconds: Vec<_> = self.seconds.iter().collect();
        seconds.sort_by_key(|(second, _)| **second);
        for (i, (second, acc)) in seconds.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(format!("[{second},").as_bytes());
            push_f64(&mut out, acc.sum);
            out.extend_from_slice(format!(",{},", acc.count).as_bytes());
            push_f64(&mut out, acc.min);
            out.push(b',');
            push_f64(&mut out, acc.max);
            out.push(b']');
        }
        out.extend_from_slice(b"],\"regions\":[");
        let mut first = true;
        let mut regions: Vec<_> = self.regions.iter().collect();
        regions.sort_by(|a, b| a.0.cmp(b.0));
        for (name, by_second) in regions {
            let mut rows: Vec<_> = by_second.iter().collect();
            rows.sort_by_key(|(second, _)| **second);
            for (second, acc) in rows {
                if !first {
                    out.push(b',');
                }
                first = false;
                out.extend_from_slice(format!("[{second},").as_bytes());
                push_str(&mut out, name);
                out.push(b',');
                push_f64(&mut out, acc.sum);
                out.extend_from_slice(format!(",{},", acc.count).as_bytes());
                push_f64(&mut out, acc.max);
                out.extend_from_slice(b",[");
                let mut meters: Vec<&String> = acc.meters.iter().collect();
                meters.sort();
                for (j, meter) in meters.iter().enumerate() {
                    if j > 0 {
                        out.push(b',');
                    }
                    push_str(&mut out, meter);
                }
                out.extend_from_slice(b"],");
                push_f64(&mut out, acc.lat_sum);
                out.push(b',');
                push_f64(&mut out, acc.lon_sum);
                out.extend_from_slice(format!(",{}]", acc.geo_count).as_bytes());
            }
        }
        out.extend_from_slice(b"],\"meters\":[");
        let mut touched: Vec<_> = self.touched.iter().collect();
        touched.sort_by(|a, b| a.0.cmp(b.0));
        let mut first = true;
        for (meter_id, before) in touched {
            let meter = &self.meters[meter_id];
            let now = meter.effective();
            // Report changes, and every fresh reading of a meter that is not ok (its last reading).
            if before.as_deref() == Some(now) && now == "ok" {
                continue;
            }
            if !first {
                out.push(b',');
            }
            first = false;
            out.push(b'[');
            push_str(&mut out, meter_id);
            out.push(b',');
            push_str(&mut out, &meter.region);
            out.push(b',');
            match before {
                Some(previous) => push_str(&mut out, previous),
                None => out.extend_from_slice(b"null"),
            }
            out.push(b',');
            push_str(&mut out, now);
            let at_ms = if meter.silent { self.watermark_ms.unwrap_or(meter.last_ms) } else { meter.last_ms };
            out.extend_from_slice(format!(",{at_ms},{}]", meter.last_ms).as_bytes());
        }
        out.extend_from_slice(b"]}");
        out
    }
}

fn push_str(out: &mut Vec<u8>, value: &str) {
    serde_json::to_writer(&mut *out, value).expect("writing to a Vec cannot fail");
}

fn push_f64(out: &mut Vec<u8>, value: f64) {
    let mut buffer = ryu::Buffer::new();
    out.extend_from_slice(buffer.format_finite(value).as_bytes());
}
