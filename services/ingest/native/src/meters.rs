//! A partition's meters: what it knows of each, found by meter id.
//!
//! Folding a reading touches its meter's state, and with 100k meters that state is not in the
//! CPU's caches: what one reading costs is mostly the cache lines it touches. So a meter's whole
//! state is one record of two adjacent cache lines (its id inline when short, its ring of seen
//! seconds inline for late windows up to five minutes), and the table that finds it by id holds
//! only its index and a tag: a reading touches one slot of the table and the record, where a map
//! of heap strings to a record with a heap ring touched five places; and the reader fetches both
//! ahead of the fold (`Meters::prefetch_slot`, `Meters::prefetch_meter`).

use compact_str::CompactString;
use rustc_hash::FxBuildHasher;
use smallvec::SmallVec;
use std::hash::BuildHasher;

/// What the partition knows of a meter: the status it last reported, when, whether it has since
/// gone silent for longer than the offline threshold (in event time), and the seconds it reported in.
#[repr(align(64))]
pub struct Meter {
    pub id: CompactString,
    pub last_ms: i64,
    pub silent: bool,
    pub region: u32,
    pub status: u32,
    pub seen: SeenSeconds,
}

// Two cache lines, whatever the platform's string and vector sizes do to it.
const _: () = assert!(std::mem::size_of::<Meter>() == 128);

/// The event seconds a meter reported in, as a ring of bits over the `64 * bits.len()` seconds up
/// to `upto` (the newest second it reported in). The ring is at least the late window long: an
/// older reading counts in no live bucket (`PartitionState::fold`), so every reading that counts is
/// inside the ring and a meter is counted once per (second, region) bucket, whatever the batches,
/// summaries, restarts (the ring is in the checkpoint) or replays.
#[derive(Clone, Default)]
pub struct SeenSeconds {
    pub upto: Option<i64>,
    /// Inline up to five words: a late window up to 318 s (the default is 300 s).
    pub bits: SmallVec<[u64; 5]>,
}

impl SeenSeconds {
    /// Words of a ring that covers `late_window_ms` and the newest second itself.
    pub fn words_for(late_window_ms: i64) -> usize {
        (late_window_ms.div_euclid(1000) as usize + 2).div_ceil(64)
    }

    /// A ring as stored in a checkpoint.
    pub fn of(upto: Option<i64>, bits: &[u64]) -> Self {
        SeenSeconds { upto, bits: SmallVec::from_slice(bits) }
    }

    fn bit(&self, second: i64) -> (usize, u64) {
        let span = (self.bits.len() * 64) as i64;
        let slot = second.rem_euclid(span) as usize;
        (slot / 64, 1u64 << (slot % 64))
    }

    /// Mark `second`; true when the meter had no reading in it yet.
    pub fn mark(&mut self, second: i64, words: usize) -> bool {
        if self.bits.len() != words {
            // First reading, or another late window: start afresh (counts may repeat once).
            self.bits = SmallVec::from_elem(0, words);
            self.upto = None;
        }
        let span = (words * 64) as i64;
        match self.upto {
            Some(upto) if second <= upto - span => return true, // beyond the ring: cannot tell
            Some(upto) if second > upto => {
                if second - upto >= span {
                    self.bits.iter_mut().for_each(|word| *word = 0);
                } else {
                    for old in upto + 1..second {
                        let (word, mask) = self.bit(old);
                        self.bits[word] &= !mask;
                    }
                    let (word, mask) = self.bit(second);
                    self.bits[word] &= !mask;
                }
                self.upto = Some(second);
            }
            Some(_) => {}
            None => self.upto = Some(second),
        }
        let (word, mask) = self.bit(second);
        let new = self.bits[word] & mask == 0;
        self.bits[word] |= mask;
        new
    }
}

/// The meters of a partition, in the order they were first heard of (a meter's index is stable),
/// and a table that finds them by id.
///
/// The table is open addressing with linear probing, at most half full: a slot is 0 (empty) or a
/// meter's index + 1 in its low 32 bits under the high 32 bits of its id's hash. Its own rather
/// than a library's because the reader asks it to prefetch (`prefetch_slot`, `prefetch_meter`):
/// Kafka keys records by meter id, so the records after the one being folded name the meters
/// folded next, and their slot and record are fetched into the cache while this one is folded.
#[derive(Default)]
pub struct Meters {
    slots: Vec<u64>,
    all: Vec<Meter>,
}

/// The hash of a meter id (of its bytes: a Kafka key hashes the same as the id it spells).
pub fn hash(id: &[u8]) -> u64 {
    FxBuildHasher.hash_one(id)
}

fn tag(hash: u64) -> u64 {
    hash >> 32
}

impl Meters {
    fn home(&self, hash: u64) -> usize {
        hash as usize & (self.slots.len() - 1)
    }

    /// The index of the meter with this id, if it is known.
    pub fn find(&self, id: &str) -> Option<u32> {
        if self.slots.is_empty() {
            return None;
        }
        let hash = hash(id.as_bytes());
        let mut position = self.home(hash);
        loop {
            let slot = self.slots[position];
            if slot == 0 {
                return None;
            }
            let index = slot as u32 - 1;
            if slot >> 32 == tag(hash) && self.all[index as usize].id == id {
                return Some(index);
            }
            position = (position + 1) & (self.slots.len() - 1);
        }
    }

    /// Add a meter whose id is not known yet; its index.
    pub fn add(&mut self, meter: Meter) -> u32 {
        let index = self.all.len() as u32;
        self.all.push(meter);
        if self.all.len() * 2 > self.slots.len() {
            self.slots = vec![0; (self.slots.len() * 2).max(64)];
            for index in 0..self.all.len() as u32 {
                self.put(index);
            }
        } else {
            self.put(index);
        }
        index
    }

    fn put(&mut self, index: u32) {
        let hash = hash(self.all[index as usize].id.as_bytes());
        let mut position = self.home(hash);
        while self.slots[position] != 0 {
            position = (position + 1) & (self.slots.len() - 1);
        }
        self.slots[position] = tag(hash) << 32 | u64::from(index + 1);
    }

    /// Start fetching the table slot where a meter with this id hash would be found.
    pub fn prefetch_slot(&self, hash: u64) {
        if !self.slots.is_empty() {
            prefetch(&self.slots[self.home(hash)]);
        }
    }

    /// Start fetching the record of the meter with this id hash, when its slot (fetched by
    /// `prefetch_slot` a little earlier) names one.
    pub fn prefetch_meter(&self, hash: u64) {
        if self.slots.is_empty() {
            return;
        }
        let slot = self.slots[self.home(hash)];
        if slot != 0 && slot >> 32 == tag(hash) {
            let meter: *const Meter = &self.all[(slot as u32 - 1) as usize];
            prefetch(meter);
            prefetch(meter.wrapping_byte_add(64)); // its second line
        }
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Meter> {
        self.all.iter()
    }

    pub fn iter_mut(&mut self) -> std::slice::IterMut<'_, Meter> {
        self.all.iter_mut()
    }
}

/// A hint to the CPU to bring this address into its caches (nothing is read or faulted).
fn prefetch<T>(address: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch(address.cast::<i8>(), std::arch::x86_64::_MM_HINT_T0)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = address;
}

impl std::ops::Index<u32> for Meters {
    type Output = Meter;
    fn index(&self, index: u32) -> &Meter {
        &self.all[index as usize]
    }
}

impl std::ops::IndexMut<u32> for Meters {
    fn index_mut(&mut self, index: u32) -> &mut Meter {
        &mut self.all[index as usize]
    }
}
