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
    /// The value, and the number's own text when it is a plain decimal (no exponent).
    Num(f64, Option<&'a str>),
    Bool,
    Null,
    Array,
    Object,
}

impl Scalar<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Scalar::Str(_) => "a string",
            Scalar::Num(..) => "a number",
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
                Ok(Scalar::Num(v, None))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Scalar::Num(v as f64, None))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Scalar::Num(v as f64, None))
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
#[derive(Deserialize, Default)]
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

/// A number field of a reading: its value, and its text as sent when that is a plain decimal
/// (`-?digits[.digits]`), which line protocol takes as it is (InfluxDB parses it to this value).
#[derive(Clone, Copy)]
pub struct Float<'a> {
    pub value: f64,
    pub text: Option<&'a str>,
}

/// A validated reading. Strings borrow from the Kafka value when they had no JSON escapes.
pub struct Reading<'a> {
    pub meter_id: Cow<'a, str>,
    pub time_ms: i64,
    pub consumption_kwh: Float<'a>,
    pub region: Cow<'a, str>,
    pub status: Cow<'a, str>,
    pub building_type: Option<Cow<'a, str>>,
    pub latitude: Option<Float<'a>>,
    pub longitude: Option<Float<'a>>,
    pub peak_load: Option<Float<'a>>,
}

// InfluxDB 1.x accepts timestamps in [1677-09-21, 2262-04-11] (int64 nanoseconds).
const MIN_TIME_MS: f64 = -9_223_372_036_854.0;
const MAX_TIME_MS: f64 = 9_223_372_036_854.0;

fn tag_value<'a>(name: &str, value: Option<Scalar<'a>>, required: bool) -> Result<Option<Cow<'a, str>>, String> {
    match value {
        None | Some(Scalar::Null) if required => Err(format!("{name} is missing")),
        None | Some(Scalar::Null) => Ok(None),
        Some(Scalar::Str(text)) => {
            // A borrowed string was read as it is in the record: JSON without escapes holds no
            // line break and no backslash; only one that had escapes (owned) can.
            let had_escapes = matches!(text, Cow::Owned(_));
            if text.is_empty() {
                if required {
                    Err(format!("{name} is empty"))
                } else {
                    Ok(None)
                }
            } else if had_escapes && text.bytes().any(|b| b == b'\n' || b == b'\r') {
                Err(format!("{name} contains a line break"))
            } else if had_escapes && text.ends_with('\\') {
                Err(format!("{name} ends with a backslash, which InfluxDB line protocol cannot store"))
            } else {
                Ok(Some(text))
            }
        }
        Some(other) => Err(format!("{name} must be a string, got {}", other.kind())),
    }
}

fn number<'a>(name: &str, value: Option<Scalar<'a>>) -> Result<Option<Float<'a>>, String> {
    match value {
        None | Some(Scalar::Null) => Ok(None),
        Some(Scalar::Num(value, text)) if value.is_finite() => Ok(Some(Float { value, text })),
        Some(Scalar::Num(..)) => Err(format!("{name} is out of range")),
        Some(other) => Err(format!("{name} must be a number, got {}", other.kind())),
    }
}

fn timestamp_ms(value: Option<Scalar<'_>>, unit: TimestampUnit) -> Result<i64, String> {
    let ms = match value {
        None | Some(Scalar::Null) => return Err("timestamp is missing".into()),
        Some(Scalar::Num(v, _)) => unit.to_ms(v),
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

/// JSON's whitespace (not `is_ascii_whitespace`, which also takes form feed).
fn skip_ws(b: &[u8], mut i: usize) -> usize {
    // Most records have no whitespace: anything above a space ends it in one comparison.
    while let Some(&c) = b.get(i) {
        if c > b' ' || !matches!(c, b' ' | b'\t' | b'\n' | b'\r') {
            break;
        }
        i += 1;
    }
    i
}

/// A one in each byte of a word.
const ONES: u64 = 0x0101_0101_0101_0101;
/// The high bit of each byte of a word.
const HIGH: u64 = 0x8080_8080_8080_8080;

/// The bytes of `word` equal to `byte`, flagged by their high bit, eight at a time: the lowest
/// flag is exact, flags above a true one may be false (the subtraction borrows), so only "is
/// there one" and "where is the first" are answered.
pub fn bytes_equal(word: u64, byte: u8) -> u64 {
    let x = word ^ (ONES * u64::from(byte));
    x.wrapping_sub(ONES) & !x & HIGH
}

/// The string whose opening quote is at `start - 1`, and the index after its closing quote; None
/// (the general parser decides) for escapes, control characters, invalid UTF-8 or no end.
fn plain_string(b: &[u8], start: usize) -> Option<(&str, usize)> {
    // Eight bytes at a time: the lowest byte flagged below is a quote, a backslash or a control
    // character (flags above the lowest true one can be false, so only the lowest is used).
    let mut i = start;
    let mut ascii = true;
    while i + 8 <= b.len() {
        let word = u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        let flagged = bytes_equal(word, b'"') | bytes_equal(word, b'\\') | ((word.wrapping_sub(ONES * 0x20) & !word) & HIGH);
        ascii &= word & HIGH == 0;
        if flagged != 0 {
            i += (flagged.trailing_zeros() / 8) as usize;
            break;
        }
        i += 8;
    }
    loop {
        match *b.get(i)? {
            b'"' => break,
            b'\\' | 0..=0x1f => return None,
            byte => {
                ascii &= byte < 0x80;
                i += 1;
            }
        }
    }
    let bytes = &b[start..i];
    let text = if ascii {
        // SAFETY: ASCII is UTF-8.
        unsafe { std::str::from_utf8_unchecked(bytes) }
    } else {
        std::str::from_utf8(bytes).ok()?
    };
    Some((text, i + 1))
}

/// The JSON number starting at `i` (grammar checked here, value by Clinger's fast path or the
/// standard library's correctly rounded parser), and the index after it; None for anything else
/// or out of range.
fn plain_number(b: &[u8], start: usize) -> Option<(Scalar<'_>, usize)> {
    // The digits as an integer, read in the same pass that checks the grammar; exact while there
    // are at most 19 of them (a u64 holds any 19 digits), which `significant` counts.
    let (mut mantissa, mut significant) = (0u64, 0usize);
    let mut digits = |mut i: usize, exact: bool| {
        let from = i;
        while let Some(digit) = b.get(i).map(|c| c.wrapping_sub(b'0')).filter(|&d| d <= 9) {
            if exact {
                mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(digit));
                significant += 1;
            }
            i += 1;
        }
        (i > from).then_some(i)
    };
    let mut i = start;
    let negative = b.get(i) == Some(&b'-');
    if negative {
        i += 1;
    }
    i = match b.get(i)? {
        b'0' => i + 1, // a leading zero stands alone (JSON): the mantissa is 0 so far
        b'1'..=b'9' => digits(i, true)?,
        _ => return None,
    };
    let mut fraction_digits = 0;
    if b.get(i) == Some(&b'.') {
        let end = digits(i + 1, true)?;
        fraction_digits = end - i - 1;
        i = end;
    }
    let plain = !matches!(b.get(i), Some(b'e' | b'E'));
    if !plain {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        i = digits(i, false)?;
    }
    // SAFETY: the bytes checked above are ASCII.
    let text = unsafe { std::str::from_utf8_unchecked(&b[start..i]) };
    let exact = (significant <= 19).then_some(mantissa);
    let value = match exact.filter(|&m| plain && m <= 1 << 53).zip(POW10.get(fraction_digits)) {
        // Clinger's fast path: the integer is exactly a double, and so is the power of ten (at
        // most 1e22), so one division rounds correctly.
        Some((m, power)) => if negative { -(m as f64 / power) } else { m as f64 / power },
        None => text.parse().ok()?,
    };
    value.is_finite().then_some((Scalar::Num(value, plain.then_some(text)), i))
}

/// The powers of ten that are exactly doubles.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19,
    1e20, 1e21, 1e22,
];

/// The contract's fields, in the order of `RawRecord`'s (a field's bit in `scan_flat` is its index).
const FIELDS: [&str; 9] =
    ["meter_id", "timestamp", "consumption_kwh", "region", "status", "building_type", "latitude", "longitude", "peak_load"];

/// The contract field whose key, quotes included, starts at `b[i]` (a `"`), spelled plainly, and
/// the index after its closing quote: the common case, compared in place (each key a constant, so
/// the comparison is a few loads, not a call). None: any other key, or one spelled with escapes
/// (`plain_string` then reads it).
fn field_at(b: &[u8], i: usize) -> Option<(usize, usize)> {
    let rest = b.get(i + 1..)?;
    let key = |field: usize, quoted: &[u8]| rest.starts_with(quoted).then_some((field, i + 1 + quoted.len()));
    match rest.first()? {
        b'm' => key(0, b"meter_id\""),
        b't' => key(1, b"timestamp\""),
        b'c' => key(2, b"consumption_kwh\""),
        b'r' => key(3, b"region\""),
        b's' => key(4, b"status\""),
        b'b' => key(5, b"building_type\""),
        b'l' => key(6, b"latitude\"").or_else(|| key(7, b"longitude\"")),
        b'p' => key(8, b"peak_load\""),
        _ => None,
    }
}

/// The common shape of a record, a flat object of strings and numbers without escapes, read
/// without serde; None for anything else (nested values, escapes, duplicate fields, bad JSON),
/// which the general parser then reads, and whose verdict and reason it gives. Fills `raw` in
/// place (a record is some 300 bytes: returning it by value cost a copy per reading).
fn scan_flat<'a>(b: &'a [u8], raw: &mut RawRecord<'a>) -> Option<()> {
    let mut seen = 0u16;
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_ws(b, i + 1);
    if b.get(i) == Some(&b'}') {
        return (skip_ws(b, i + 1) == b.len()).then_some(());
    }
    loop {
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let (field, next) = match field_at(b, i) {
            Some((field, next)) => (Some(field), next),
            None => {
                let (key, next) = plain_string(b, i + 1)?;
                (FIELDS.iter().position(|name| *name == key), next)
            }
        };
        i = skip_ws(b, next);
        if b.get(i) != Some(&b':') {
            return None;
        }
        i = skip_ws(b, i + 1);
        let (value, next) = match *b.get(i)? {
            b'"' => {
                let (text, next) = plain_string(b, i + 1)?;
                (Scalar::Str(Cow::Borrowed(text)), next)
            }
            b'-' | b'0'..=b'9' => plain_number(b, i)?,
            b't' if b[i..].starts_with(b"true") => (Scalar::Bool, i + 4),
            b'f' if b[i..].starts_with(b"false") => (Scalar::Bool, i + 5),
            b'n' if b[i..].starts_with(b"null") => (Scalar::Null, i + 4),
            _ => return None,
        };
        let slot = match field {
            Some(0) => &mut raw.meter_id,
            Some(1) => &mut raw.timestamp,
            Some(2) => &mut raw.consumption_kwh,
            Some(3) => &mut raw.region,
            Some(4) => &mut raw.status,
            Some(5) => &mut raw.building_type,
            Some(6) => &mut raw.latitude,
            Some(7) => &mut raw.longitude,
            Some(8) => &mut raw.peak_load,
            _ => &mut None,
        };
        let bit = field.map_or(0u16, |f| 1 << f);
        if seen & bit != 0 {
            return None; // a duplicate field: the general parser names it
        }
        seen |= bit;
        if bit != 0 {
            *slot = Some(value);
        }
        i = skip_ws(b, next);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b'}') => return (skip_ws(b, i + 1) == b.len()).then_some(()),
            _ => return None,
        }
    }
}

/// Validate one Kafka value against the input contract.
#[inline(always)] // into `judge`: the reading is not copied out of it
pub fn parse_record(bytes: &[u8], unit: TimestampUnit) -> Result<Reading<'_>, String> {
    let mut raw = RawRecord::default();
    if scan_flat(bytes, &mut raw).is_none() {
        raw = parse_general(bytes)?;
    }
    validate(raw, unit)
}

/// The record read by serde_json, for every shape `scan_flat` leaves (and in tests, every shape).
fn parse_general(bytes: &[u8]) -> Result<RawRecord<'_>, String> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        None => return Err("empty record".into()),
        // serde would read a JSON array positionally into the record's fields: refuse it first.
        Some(b'{') => {}
        Some(_) if serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok() => {
            return Err("record is not a JSON object".into())
        }
        Some(_) => {}
    }
    serde_json::from_slice(bytes).map_err(|error| {
        if error.is_data() && error.to_string().starts_with("invalid type") {
            "record is not a JSON object".to_string()
        } else {
            format!("invalid JSON: {error}")
        }
    })
}

/// Validate one Kafka value with the general parser only (tests compare it with `parse_record`).
pub fn parse_record_general(bytes: &[u8], unit: TimestampUnit) -> Result<Reading<'_>, String> {
    validate(parse_general(bytes)?, unit)
}

#[inline(always)] // into `parse_record`: the record is not copied into it
fn validate(raw: RawRecord<'_>, unit: TimestampUnit) -> Result<Reading<'_>, String> {
    let meter_id = tag_value("meter_id", raw.meter_id, true)?.expect("required");
    let time_ms = timestamp_ms(raw.timestamp, unit)?;
    let consumption_kwh = match number("consumption_kwh", raw.consumption_kwh)? {
        None => return Err("consumption_kwh is missing".into()),
        Some(v) if v.value < 0.0 => return Err(format!("consumption_kwh must be >= 0, got {}", v.value)),
        Some(v) => v,
    };
    let region = tag_value("region", raw.region, true)?.expect("required");
    let status = tag_value("status", raw.status, true)?.expect("required");
    let building_type = tag_value("building_type", raw.building_type, false)?;
    let latitude = number("latitude", raw.latitude)?;
    if let Some(Float { value: v, .. }) = latitude {
        if !(-90.0..=90.0).contains(&v) {
            return Err(format!("latitude must be within [-90, 90], got {v}"));
        }
    }
    let longitude = number("longitude", raw.longitude)?;
    if let Some(Float { value: v, .. }) = longitude {
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
