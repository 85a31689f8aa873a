//! Keys hashed once: the keyed limiter picks the shard and probes the shard's map with one SipHash.
//!
//! The map stores each key with its hash and hashes it by passing that hash through, so a lookup hashes the
//! caller's key once (with the limiter's randomly keyed `RandomState`, which keeps its resistance to
//! flooding) instead of once for the shard and again inside the map. A lookup borrows the caller's key as
//! a `dyn KeyLookup`, so it clones nothing.

use std::borrow::Borrow;
use std::hash::{BuildHasherDefault, Hash, Hasher};

/// A key stored with its hash.
#[derive(Debug, Clone)]
pub(crate) struct Prehashed<K> {
    pub(crate) hash: u64,
    pub(crate) key: K,
}

/// A key to look up, borrowed, with its hash.
#[derive(Debug)]
pub(crate) struct Lookup<'a, K> {
    pub(crate) hash: u64,
    pub(crate) key: &'a K,
}

/// What a stored key and a looked-up key have in common: their hash and their key.
pub(crate) trait KeyLookup<K> {
    fn hash(&self) -> u64;
    fn key(&self) -> &K;
}

/// The map's hasher: it passes the hash written by [`Prehashed`] through.
pub(crate) type PassThrough = BuildHasherDefault<PassThroughHasher>;

/// Keeps the `u64` written into it; only hashes of [`Prehashed`] and [`KeyLookup`] are written.
#[derive(Debug, Default)]
pub(crate) struct PassThroughHasher {
    hash: u64,
}

impl Hasher for PassThroughHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }

    #[inline]
    fn write_u64(&mut self, hash: u64) {
        self.hash = hash;
    }

    fn write(&mut self, bytes: &[u8]) {
        // Never called: the two hashed types write one `u64`. Mix bytes in anyway, so that it stays a hash.
        for &byte in bytes {
            self.hash = (self.hash.rotate_left(5) ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

impl<K> KeyLookup<K> for Prehashed<K> {
    #[inline]
    fn hash(&self) -> u64 {
        self.hash
    }

    #[inline]
    fn key(&self) -> &K {
        &self.key
    }
}

impl<K> KeyLookup<K> for Lookup<'_, K> {
    #[inline]
    fn hash(&self) -> u64 {
        self.hash
    }

    #[inline]
    fn key(&self) -> &K {
        self.key
    }
}

impl<K> Hash for Prehashed<K> {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl<K: Eq> PartialEq for Prehashed<K> {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && self.key == other.key
    }
}

impl<K: Eq> Eq for Prehashed<K> {}

impl<K> Hash for dyn KeyLookup<K> + '_ {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(KeyLookup::hash(self));
    }
}

impl<K: Eq> PartialEq for dyn KeyLookup<K> + '_ {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        KeyLookup::hash(self) == KeyLookup::hash(other) && self.key() == other.key()
    }
}

impl<K: Eq> Eq for dyn KeyLookup<K> + '_ {}

/// Lets a map of `Prehashed<K>` be probed with a borrowed `Lookup`: both hash and compare alike.
impl<'a, K: 'a> Borrow<dyn KeyLookup<K> + 'a> for Prehashed<K> {
    #[inline]
    fn borrow(&self) -> &(dyn KeyLookup<K> + 'a) {
        self
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::hash::{BuildHasher, RandomState};

    use super::*;

    #[test]
    fn a_borrowed_lookup_finds_the_stored_key_and_only_it() {
        let hasher = RandomState::new();
        let mut map: HashMap<Prehashed<String>, u32, PassThrough> = HashMap::default();
        for (value, key) in ["a", "b", "c"].into_iter().enumerate() {
            let key = key.to_owned();
            map.insert(
                Prehashed { hash: hasher.hash_one(&key), key },
                u32::try_from(value).unwrap(),
            );
        }
        let key = "b".to_owned();
        let probe = Lookup { hash: hasher.hash_one(&key), key: &key };
        assert_eq!(map.get(&probe as &dyn KeyLookup<String>), Some(&1));
        // Same hash, other key: no match (a collision is told apart by the key).
        let other = "z".to_owned();
        let collision = Lookup { hash: hasher.hash_one(&key), key: &other };
        assert_eq!(map.get(&collision as &dyn KeyLookup<String>), None);
    }
}
