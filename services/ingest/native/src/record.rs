//! Decoding and validation of one Kafka value against the input contract.

use chrono::DateTime;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::borrow::Cow;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// Unit of epoch-number timestamps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TimestampUnit {
    S,
    Ms,
    Us,
    Ns,
}

impl TimestampUnit {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "s" => Some(Self::S),
            "ms" => Some(Self::Ms),
            "us" => Some(Self::Us),
            "ns" => Some(Self::Ns),
            _ => None,
        }
    }

    fn to_ms(self, value: f64) -> f64 {
        match self {
            Self::S => value * 1e3,
            Self::Ms => value,
            Self::Us => value / 1e3,
            Self::Ns => value / 1e6,
        }
    }
}

/// A JSON value as seen by one field: scalars keep their value, containers only their kind.
enum Scalar<'a> {
    Str(Cow<'a, str>),
    Num(f64),
    Bool,
    Null,
    Array,
    Object,
}

impl Scalar<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Scalar::Str(_) => "a string",
            Scalar::Num(_) => "a number",
            Scalar::Bool => "a boolean",
            Scalar::Null => "null",
            Scalar::Array => "an array",
            Scalar::Object => "an object",
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Scalar<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;
        impl<'de> Visitor<'de> for ScalarVisitor {
            type Value = Scalar<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Owned(v)))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Scalar::Num(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Scalar::Num(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Scalar::Num(v as f64))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Scalar::Bool)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Scalar::Null)
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Scalar::Null)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Scalar::Array)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar::Object)
            }
        }
        deserializer.deserialize_any(ScalarVisitor)
    }
}

/// The record as sent; every field optional so that a missing one gets a precise reason.
#[derive(Deserialize)]
struct RawRecord<'a> {
    #[serde(borrow, default)]
    meter_id: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    timestamp: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    consumption_kwh: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    region: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    status: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    building_type: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    latitude: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    longitude: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    peak_load: Option<Scalar<'a>>,
}

/// A validated reading. Strings borrow from the Kafka value when they had no JSON escapes.
pub struct Reading<'a> {
    pub meter_id: Cow<'a, str>,
    pub time_ms: i64,
    pub consumption_kwh: f64,
    pub region: Cow<'a, str>,
    pub status: Cow<'a, str>,
    pub building_type: Option<Cow<'a, str>>,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    pub peak_load: Option<f64>,
}

// InfluxDB 1.x accepts timestamps in [1677-09-21, 2262-04-11] (int64 nanoseconds).
const MIN_TIME_MS: f64 = -9_223_372_036_854.0;
const MAX_TIME_MS: f64 = 9_223_372_036_854.0;

fn tag_value<'a>(name: &str, value: Option<Scalar<'a>>, required: bool) -> Result<Option<Cow<'a, str>>, String> {
    match value {
        None | Some(Scalar::Null) if required => Err(format!("{name} is missing")),
        None | Some(Scalar::Null) => Ok(None),
        Some(Scalar::Str(text)) => {
            if text.is_empty() {
                if required {
                    Err(format!("{name} is empty"))
                } else {
                    Ok(None)
                }
            } else if text.contains(['\n', '\r']) {
                Err(format!("{name} contains a line break"))
            } else if text.ends_with('\\') {
                Err(format!("{name} ends with a backslash, which InfluxDB line protocol cannot store"))
            } else {
                Ok(Some(text))
            }
        }
        Some(other) => Err(format!("{name} must be a string, got {}", other.kind())),
    }
}

fn number(name: &str, value: Option<Scalar<'_>>) -> Result<Option<f64>, String> {
    match value {
        None | Some(Scalar::Null) => Ok(None),
        Some(Scalar::Num(v)) if v.is_finite() => Ok(Some(v)),
        Some(Scalar::Num(_)) => Err(format!("{name} is out of range")),
        Some(other) => Err(format!("{name} must be a number, got {}", other.kind())),
    }
}

fn timestamp_ms(value: Option<Scalar<'_>>, unit: TimestampUnit) -> Result<i64, String> {
    let ms = match value {
        None | Some(Scalar::Null) => return Err("timestamp is missing".into()),
        Some(Scalar::Num(v)) => unit.to_ms(v),
        Some(Scalar::Str(text)) => match fast_rfc3339_ms(text.as_bytes()) {
            Some(ms) => ms as f64,
            None => match DateTime::parse_from_rfc3339(&text) {
                Ok(time) => time.timestamp_millis() as f64,
                Err(error) => return Err(format!("timestamp {text:?} is not RFC 3339 ({error})")),
            },
        },
        Some(other) => return Err(format!("timestamp must be an RFC 3339 string or an epoch number, got {}", other.kind())),
    };
    if !(MIN_TIME_MS..=MAX_TIME_MS).contains(&ms) {
        return Err("timestamp is outside the range InfluxDB stores (1677..2262)".into());
    }
    Ok(ms.floor() as i64)
}

fn digits(bytes: &[u8]) -> Option<i64> {
    let mut value = 0i64;
    for &b in bytes {
        if !b.is_ascii_digit() {
            return None;
        }
        value = value * 10 + (b - b'0') as i64;
    }
    Some(value)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The common shape `YYYY-MM-DDTHH:MM:SS[.fff…](Z|±HH:MM)` without a general parser; anything
/// else (or anything out of range) returns None and goes through chrono, which has the final word.
fn fast_rfc3339_ms(b: &[u8]) -> Option<i64> {
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (digits(&b[0..4])?, digits(&b[5..7])?, digits(&b[8..10])?);
    let (hour, minute, second) = (digits(&b[11..13])?, digits(&b[14..16])?, digits(&b[17..19])?);
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => return None,
    };
    if day < 1 || day > days_in_month || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut index = 19;
    let mut millis = 0i64;
    if b[index] == b'.' {
        index += 1;
        let start = index;
        while index < b.len() && b[index].is_ascii_digit() {
            if index - start < 3 {
                millis = millis * 10 + (b[index] - b'0') as i64;
            }
            index += 1;
        }
        let fraction_digits = index - start;
        if fraction_digits == 0 {
            return None;
        }
        for _ in fraction_digits..3 {
            millis *= 10;
        }
    }
    let offset_minutes = match &b[index..] {
        [b'Z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let hours = digits(&[*h1, *h2])?;
            let minutes = digits(&[*m1, *m2])?;
            if hours > 23 || minutes > 59 {
                return None;
            }
            let total = hours * 60 + minutes;
            if *sign == b'-' { -total } else { total }
        }
        _ => return None,
    };
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    Some(seconds * 1000 + millis)
}

/// Validate one Kafka value against the input contract.
pub fn parse_record(bytes: &[u8], unit: TimestampUnit) -> Result<Reading<'_>, String> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        None => return Err("empty record".into()),
        // serde would read a JSON array positionally into the record's fields: refuse it first.
        Some(b'{') => {}
        Some(_) if serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok() => {
            return Err("record is not a JSON object".into())
        }
        Some(_) => {}
    }
    let raw: RawRecord = serde_json::from_slice(bytes).map_err(|error| {
        if error.is_data() && error.to_string().starts_with("invalid type") {
            "record is not a JSON object".to_string()
        } else {
            format!("invalid JSON: {error}")
        }
    })?;
    let meter_id = tag_value("meter_id", raw.meter_id, true)?.expect("required");
    let time_ms = timestamp_ms(raw.timestamp, unit)?;
    let consumption_kwh = match number("consumption_kwh", raw.consumption_kwh)? {
        None => return Err("consumption_kwh is missing".into()),
        Some(v) if v < 0.0 => return Err(format!("consumption_kwh must be >= 0, got {v}")),
        Some(v) => v,
    };
    let region = tag_value("region", raw.region, true)?.expect("required");
    let status = tag_value("status", raw.status, true)?.expect("required");
    let building_type = tag_value("building_type", raw.building_type, false)?;
    let latitude = number("latitude", raw.latitude)?;
    if let Some(v) = latitude {
        if !(-90.0..=90.0).contains(&v) {
            return Err(format!("latitude must be within [-90, 90], got {v}"));
        }
    }
    let longitude = number("longitude", raw.longitude)?;
    if let Some(v) = longitude {
        if !(-180.0..=180.0).contains(&v) {
            return Err(format!("longitude must be within [-180, 180], got {v}"));
        }
    }
    let peak_load = number("peak_load", raw.peak_load)?;
    Ok(Reading { meter_id, time_ms, consumption_kwh, region, status, building_type, latitude, longitude, peak_load })
}

/// Event time is bounded by the wall clock: a reading stamped more than `max_skew_ms` ahead of the
/// ingest's clock comes from a meter whose clock is wrong (meters' clocks are wrong in the field).
/// Read once per batch, so every record of a batch is judged against the same instant.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    pub now_ms: i64,
    pub max_skew_ms: i64,
}

impl Clock {
    pub fn now(max_skew_ms: i64) -> Self {
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        Clock { now_ms, max_skew_ms }
    }

    /// Why a reading stamped `time_ms` is refused, or None when it is not too far ahead.
    fn ahead(&self, time_ms: i64) -> Option<String> {
        let ahead_ms = time_ms.saturating_sub(self.now_ms);
        if ahead_ms <= self.max_skew_ms {
            return None;
        }
        let stamped = chrono::DateTime::from_timestamp_millis(time_ms)
            .map_or_else(|| format!("{time_ms} ms"), |t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string());
        Some(format!(
            "clock skew: timestamp {stamped} is {}s ahead of the ingest's clock, more than SMARTGRID_MAX_CLOCK_SKEW ({}s): the meter's clock is wrong",
            ahead_ms / 1000,
            self.max_skew_ms / 1000
        ))
    }
}

/// What the contract says of one Kafka value.
pub enum Verdict<'a> {
    Valid(Reading<'a>),
    /// Well formed, but stamped too far ahead of the wall clock: dead-lettered with the reason;
    /// its meter is still known to be alive (with a wrong clock).
    Ahead(Reading<'a>, String),
    Invalid(String),
}

/// Validate a Kafka value (None: a record without a value) and bound its time by `clock`.
pub fn judge<'a>(value: Option<&'a [u8]>, unit: TimestampUnit, clock: &Clock) -> Verdict<'a> {
    let Some(bytes) = value else { return Verdict::Invalid("empty record (no value)".into()) };
    match parse_record(bytes, unit) {
        Ok(reading) => match clock.ahead(reading.time_ms) {
            None => Verdict::Valid(reading),
            Some(reason) => Verdict::Ahead(reading, reason),
        },
        Err(reason) => Verdict::Invalid(reason),
    }
}
