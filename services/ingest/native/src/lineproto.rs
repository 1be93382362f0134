//! InfluxDB 1.x line protocol for `energy_consumption` points.

use crate::record::{bytes_equal, Float, Reading};

const MEASUREMENT: &[u8] = b"energy_consumption";

/// Append a tag value, escaping what InfluxDB 1.x line protocol treats as syntax: `,` `=` and
/// space end a tag unless a backslash precedes them. Backslashes themselves are literal in 1.x
/// (it never unescapes `\\`), so they are written as they are; a value ending in a backslash
/// cannot be written at all and is rejected during validation.
fn push_tag_value(out: &mut Vec<u8>, value: &str) {
    let bytes = value.as_bytes();
    if !needs_escapes(bytes) {
        out.extend_from_slice(bytes);
        return;
    }
    for &b in bytes {
        if matches!(b, b',' | b'=' | b' ') {
            out.push(b'\\');
        }
        out.push(b);
    }
}

/// Whether `bytes` holds a `,`, `=` or space; eight bytes at a time (most tag values hold none).
fn needs_escapes(bytes: &[u8]) -> bool {
    let flags = |word: u64| bytes_equal(word, b',') | bytes_equal(word, b'=') | bytes_equal(word, b' ');
    let mut chunks = bytes.chunks_exact(8);
    if chunks.by_ref().any(|chunk| flags(u64::from_le_bytes(chunk.try_into().expect("8 bytes"))) != 0) {
        return true;
    }
    chunks.remainder().iter().any(|b| matches!(b, b',' | b'=' | b' '))
}

/// Floats are always written as floats (never `i`): the number's own text when it was a plain
/// decimal (InfluxDB reads it to the same value, correctly rounded), else the shortest
/// representation that reads back exactly.
fn push_float(out: &mut Vec<u8>, value: Float) {
    match value.text {
        Some(text) => out.extend_from_slice(text.as_bytes()),
        None => out.extend_from_slice(ryu::Buffer::new().format_finite(value.value).as_bytes()),
    }
}

/// Append one line (with its `\n`) for a validated reading; the timestamp is in milliseconds.
pub fn write_line(out: &mut Vec<u8>, reading: &Reading) {
    out.extend_from_slice(MEASUREMENT);
    // Tags in key order, as InfluxDB would sort them anyway.
    if let Some(building_type) = &reading.building_type {
        out.extend_from_slice(b",building_type=");
        push_tag_value(out, building_type);
    }
    out.extend_from_slice(b",meter_id=");
    push_tag_value(out, &reading.meter_id);
    out.extend_from_slice(b",region=");
    push_tag_value(out, &reading.region);
    out.extend_from_slice(b",status=");
    push_tag_value(out, &reading.status);
    out.extend_from_slice(b" consumption_kwh=");
    push_float(out, reading.consumption_kwh);
    if let Some(v) = reading.latitude {
        out.extend_from_slice(b",latitude=");
        push_float(out, v);
    }
    if let Some(v) = reading.longitude {
        out.extend_from_slice(b",longitude=");
        push_float(out, v);
    }
    if let Some(v) = reading.peak_load {
        out.extend_from_slice(b",peak_load=");
        push_float(out, v);
    }
    out.push(b' ');
    let mut buffer = itoa::Buffer::new();
    out.extend_from_slice(buffer.format(reading.time_ms).as_bytes());
    out.push(b'\n');
}
