//! A bounded per-connection statement cache that evicts the least recently used statement.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio_postgres::Statement;

use crate::core::lock;

/// The prepared statements of one connection, at most `capacity`, least recently used evicted first.
///
/// deadpool-postgres' cache has no bound; a service that builds SQL dynamically would grow it forever.
///
/// # Examples
///
/// ```
/// let cache = aqueduct_pool::postgres::StatementCache::new(10);
/// assert_eq!((cache.len(), cache.capacity()), (0, 10));
/// assert!(cache.get("SELECT 1").is_none());
/// ```
#[derive(Debug)]
pub struct StatementCache {
    capacity: usize,
    entries: Mutex<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    by_sql: HashMap<String, (Statement, u64)>,
    clock: u64,
}

impl StatementCache {
    /// An empty cache holding at most `capacity` statements (0 caches nothing).
    pub fn new(capacity: usize) -> Self {
        Self { capacity, entries: Mutex::new(Entries::default()) }
    }

    /// The most statements it holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// How many statements it holds.
    pub fn len(&self) -> usize {
        lock(&self.entries).by_sql.len()
    }

    /// Whether it holds no statement.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The cached statement for `sql`, marked as just used.
    pub fn get(&self, sql: &str) -> Option<Statement> {
        let mut entries = lock(&self.entries);
        entries.clock += 1;
        let now = entries.clock;
        entries.by_sql.get_mut(sql).map(|(statement, used)| {
            *used = now;
            statement.clone()
        })
    }

    /// Caches `statement` for `sql`, evicting the least recently used one when full.
    pub fn insert(&self, sql: &str, statement: Statement) {
        if self.capacity == 0 {
            return;
        }
        let mut entries = lock(&self.entries);
        entries.clock += 1;
        let now = entries.clock;
        if entries.by_sql.len() >= self.capacity && !entries.by_sql.contains_key(sql) {
            let oldest = entries
                .by_sql
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(key, _)| key.clone());
            if let Some(oldest) = oldest {
                entries.by_sql.remove(&oldest);
            }
        }
        entries.by_sql.insert(sql.to_owned(), (statement, now));
    }

    /// Forgets every statement.
    pub fn clear(&self) {
        lock(&self.entries).by_sql.clear();
    }
}
