//! A hash table whose hashes are computed once per request, by the caller.

use std::fmt;

use hashbrown::HashTable;

use crate::lockout::store::Hashed;

/// A hash table keyed by `K` whose hashes are computed by the caller.
pub(super) struct Table<K, V> {
    table: HashTable<(u64, K, V)>,
}

impl<K: Eq, V> Table<K, V> {
    pub(super) fn new() -> Self {
        Self {
            table: HashTable::new(),
        }
    }

    pub(super) fn with_capacity(capacity: usize) -> Self {
        Self {
            table: HashTable::with_capacity(capacity),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.table.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    pub(super) fn get(&self, k: Hashed<'_, K>) -> Option<&V> {
        self.table
            .find(k.hash, |(_, key, _)| key == k.key)
            .map(|(_, _, v)| v)
    }

    pub(super) fn get_mut(&mut self, k: Hashed<'_, K>) -> Option<&mut V> {
        self.table
            .find_mut(k.hash, |(_, key, _)| key == k.key)
            .map(|(_, _, v)| v)
    }

    /// Inserts a key that is not in the table.
    pub(super) fn insert_new(&mut self, k: Hashed<'_, K>, value: V)
    where
        K: Clone,
    {
        self.table
            .insert_unique(k.hash, (k.hash, k.key.clone(), value), |(hash, _, _)| *hash);
    }

    pub(super) fn get_or_insert_with(
        &mut self,
        k: Hashed<'_, K>,
        value: impl FnOnce() -> V,
    ) -> &mut V
    where
        K: Clone,
    {
        let entry = self
            .table
            .entry(k.hash, |(_, key, _)| key == k.key, |(hash, _, _)| *hash);
        &mut entry
            .or_insert_with(|| (k.hash, k.key.clone(), value()))
            .into_mut()
            .2
    }

    /// Runs `f` on the value of `k`, removing the entry when `f` says so,
    /// in one lookup.
    pub(super) fn update<R>(
        &mut self,
        k: Hashed<'_, K>,
        f: impl FnOnce(&mut V) -> (R, bool),
    ) -> Option<R> {
        let mut entry = self
            .table
            .find_entry(k.hash, |(_, key, _)| key == k.key)
            .ok()?;
        let (result, remove) = f(&mut entry.get_mut().2);
        if remove {
            entry.remove();
        }
        Some(result)
    }

    pub(super) fn remove(&mut self, k: Hashed<'_, K>) -> Option<V> {
        self.table
            .find_entry(k.hash, |(_, key, _)| key == k.key)
            .ok()
            .map(|e| e.remove().0.2)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (Hashed<'_, K>, &V)> {
        self.table
            .iter()
            .map(|(hash, key, v)| (Hashed { key, hash: *hash }, v))
    }
}

impl<K, V> fmt::Debug for Table<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Table")
            .field("len", &self.table.len())
            .finish()
    }
}
