//! A partition's meters: what it knows of each, found by meter id.
//!
//! Folding a reading touches its meter's state, and with 100k meters that state is not in the
//! CPU's caches: what one reading costs is mostly the cache lines it touches. So a meter's whole
//! state is one record of two adjacent cache lines (its id inline when short, its ring of seen
//! seconds inline for late windows up to five minutes), and the table that finds it by id holds
//! only its index: a reading touches the table's control bytes, one index and the record, where
//! a map of heap strings to a record with a heap ring touched five places.

use compact_str::CompactString;
use hashbrown::HashTable;
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

/// The meters of a partition, in the order they were first heard of (a meter's index is stable).
#[derive(Default)]
pub struct Meters {
    /// Indices into `all`, hashed by meter id.
    index: HashTable<u32>,
    all: Vec<Meter>,
}

fn hash(id: &str) -> u64 {
    FxBuildHasher.hash_one(id)
}

impl Meters {
    /// The index of the meter with this id, if it is known.
    pub fn find(&self, id: &str) -> Option<u32> {
        let all = &self.all;
        self.index.find(hash(id), |&i| all[i as usize].id == id).copied()
    }

    /// Add a meter whose id is not known yet; its index.
    pub fn add(&mut self, meter: Meter) -> u32 {
        let index = self.all.len() as u32;
        let id_hash = hash(&meter.id);
        self.all.push(meter);
        let all = &self.all;
        self.index.insert_unique(id_hash, index, |&i| hash(&all[i as usize].id));
        index
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Meter> {
        self.all.iter()
    }

    pub fn iter_mut(&mut self) -> std::slice::IterMut<'_, Meter> {
        self.all.iter_mut()
    }
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
