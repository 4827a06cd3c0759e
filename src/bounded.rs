//! A set that remembers at most `capacity` keys, forgetting the oldest first.
//!
//! The supervisor keeps a few histories (dispatched, recently finished and closed executions)
//! for the whole life of the process; each must stay bounded however long the worker runs.

use std::collections::{HashSet, VecDeque};
use std::hash::Hash;

#[derive(Debug)]
pub struct BoundedSet<K> {
    capacity: usize,
    order: VecDeque<K>,
    members: HashSet<K>,
}

impl<K: Clone + Eq + Hash> BoundedSet<K> {
    pub fn new(capacity: usize) -> Self {
        BoundedSet {
            capacity: capacity.max(1),
            order: VecDeque::new(),
            members: HashSet::new(),
        }
    }

    /// Adds `key` (refreshing nothing if present); evicts the oldest key when full.
    pub fn insert(&mut self, key: K) {
        if self.members.contains(&key) {
            return;
        }
        if self.order.len() == self.capacity
            && let Some(old) = self.order.pop_front()
        {
            self.members.remove(&old);
        }
        self.members.insert(key.clone());
        self.order.push_back(key);
    }

    pub fn contains(&self, key: &K) -> bool {
        self.members.contains(key)
    }

    pub fn remove(&mut self, key: &K) -> bool {
        if self.members.remove(key) {
            self.order.retain(|k| k != key);
            true
        } else {
            false
        }
    }

    /// Removes and returns every key matching `pred`.
    pub fn drain_matching(&mut self, mut pred: impl FnMut(&K) -> bool) -> Vec<K> {
        let mut out = Vec::new();
        self.order.retain(|k| {
            if pred(k) {
                out.push(k.clone());
                false
            } else {
                true
            }
        });
        for k in &out {
            self.members.remove(k);
        }
        out
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_oldest_and_stays_bounded() {
        let mut s = BoundedSet::new(3);
        for i in 0..10 {
            s.insert(i);
        }
        assert_eq!(s.len(), 3);
        assert!(!s.contains(&6));
        assert!(s.contains(&7) && s.contains(&8) && s.contains(&9));
    }

    #[test]
    fn reinsert_does_not_duplicate() {
        let mut s = BoundedSet::new(2);
        s.insert("a");
        s.insert("a");
        s.insert("b");
        assert_eq!(s.len(), 2);
        assert!(s.contains(&"a"));
    }

    #[test]
    fn remove_and_drain() {
        let mut s = BoundedSet::new(10);
        for i in 0..6 {
            s.insert(i);
        }
        assert!(s.remove(&2));
        assert!(!s.remove(&2));
        let mut even = s.drain_matching(|k| k % 2 == 0);
        even.sort();
        assert_eq!(even, vec![0, 4]);
        assert_eq!(s.len(), 3);
        assert!(!s.contains(&4));
    }
}
