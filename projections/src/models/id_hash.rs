//! The hasher of the maps keyed by instance id (records, replicas).
//!
//! Every read looks instances up by id (a list page: ~60 lookups), and the default
//! SipHash-1-3 of a 16-byte key costs ~140 instructions; this one ~10: a folded
//! 64×64→128-bit multiply of the two halves with per-map random keys (the construction
//! of `foldhash`/`ahash` for short inputs). The keys are random v4 UUIDs the server
//! generates, not client input, and the per-map seed keeps the layout unpredictable
//! anyway.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

/// Builds [`IdHasher`]s with this map's random seed.
#[derive(Clone, Debug)]
pub(crate) struct IdHashBuilder {
    seed: [u64; 2],
}

impl Default for IdHashBuilder {
    fn default() -> Self {
        // `RandomState` is seeded from the OS once per thread and varies per instance.
        let state = RandomState::new();
        IdHashBuilder {
            seed: [
                state.hash_one(0x9e37_79b9_u64),
                state.hash_one(0x7f4a_7c15_u64),
            ],
        }
    }
}

impl BuildHasher for IdHashBuilder {
    type Hasher = IdHasher;

    fn build_hasher(&self) -> IdHasher {
        IdHasher {
            seed: self.seed,
            acc: self.seed[0],
        }
    }
}

/// See the module documentation. Correct for any key type (it folds whatever bytes it
/// is given, 8 at a time); fast for a `Uuid`, which hashes as a length and 16 bytes.
#[derive(Clone, Debug)]
pub(crate) struct IdHasher {
    seed: [u64; 2],
    acc: u64,
}

fn folded_multiply(a: u64, b: u64) -> u64 {
    let full = u128::from(a) * u128::from(b);
    (full as u64) ^ ((full >> 64) as u64)
}

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(16);
        for chunk in &mut chunks {
            let (lo, hi) = chunk.split_at(8);
            let lo = u64::from_le_bytes(lo.try_into().unwrap_or_default());
            let hi = u64::from_le_bytes(hi.try_into().unwrap_or_default());
            self.acc = folded_multiply(lo ^ self.acc, hi ^ self.seed[1]);
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 16];
            word[..rest.len()].copy_from_slice(rest);
            let lo = u64::from_le_bytes(word[..8].try_into().unwrap_or_default());
            let hi = u64::from_le_bytes(word[8..].try_into().unwrap_or_default());
            // The length keeps "ab" + "" apart from "a" + "b".
            let hi = hi ^ (rest.len() as u64).rotate_left(56);
            self.acc = folded_multiply(lo ^ self.acc, hi ^ self.seed[1]);
        }
    }

    fn write_usize(&mut self, n: usize) {
        self.acc = folded_multiply(n as u64 ^ self.acc, self.seed[1] ^ 0x2d35_8dcc_aa6c_78a5);
    }

    fn finish(&self) -> u64 {
        // One more round so that every output bit depends on every input bit (hashbrown
        // uses the top 7 bits as tags, dashmap the next ones to pick a shard).
        folded_multiply(self.acc, self.seed[0] ^ 0x8bb8_4b93_962e_acc9)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use uuid::Uuid;

    #[test]
    fn spreads_ids_over_shards_and_buckets() {
        let b = IdHashBuilder::default();
        let n = 1 << 16;
        let hashes: Vec<u64> = (0..n).map(|_| b.hash_one(Uuid::new_v4())).collect();
        let distinct: HashSet<u64> = hashes.iter().copied().collect();
        assert_eq!(distinct.len(), n);
        // Sequential ids too (tests use `Uuid::from_u128(1..)`).
        let seq: HashSet<u64> = (0..n as u128)
            .map(|i| b.hash_one(Uuid::from_u128(i)) >> 57)
            .collect();
        assert_eq!(seq.len(), 128, "every 7-bit tag is used");
        for shift in [0, 7, 50, 57] {
            let mut buckets = [0usize; 64];
            for h in &hashes {
                buckets[((h >> shift) & 63) as usize] += 1;
            }
            let (lo, hi) = (n / 64 * 8 / 10, n / 64 * 12 / 10);
            assert!(
                buckets.iter().all(|&c| (lo..hi).contains(&c)),
                "bits {shift}..: {buckets:?}"
            );
        }
    }

    #[test]
    fn equal_keys_hash_equally_and_seeds_differ() {
        let (a, b) = (IdHashBuilder::default(), IdHashBuilder::default());
        let id = Uuid::new_v4();
        assert_eq!(a.hash_one(id), a.hash_one(id));
        assert_ne!(a.hash_one(id), b.hash_one(id));
        assert_ne!(a.hash_one("ab"), a.hash_one("ba"));
    }
}
