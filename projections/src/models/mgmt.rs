//! The mgmt (admin) model behind `GET /mgmt/instances`: every instance of every project,
//! soft-deleted ones included, ordered by `updated` descending, paged by offset
//! (spec `instances-api.md` §3.4 B and §10.1).
//!
//! Live and deleted instances sit in separate ordered sets, globally and per project, so
//! each filter combination (`deleted` true/false/absent × `project_id` given or not) is
//! a scan of one set or a merge of two; the cost is O(offset + limit), as offset paging
//! is in any database. The global sets are behind one `RwLock` (admin reads are rare and
//! the single writer holds it for one insert/remove); per-project sets are in a DashMap.

use std::cmp::{Ordering, Reverse};
use std::collections::BTreeSet;
use std::iter::Peekable;
use std::sync::{PoisonError, RwLock};

use chrono::{DateTime, Utc};
use dashmap::DashMap;
use uuid::Uuid;

use super::footprint::Footprint;

/// Ordering key: newest `updated` first; the id breaks ties so order is total and a
/// rebuild pages identically.
pub(crate) type MgmtKey = (Reverse<DateTime<Utc>>, Uuid);

/// Which instances `GET /mgmt/instances` returns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MgmtFilter {
    /// `Some(true)`: only soft-deleted; `Some(false)`: only live; `None`: both
    /// (the query parameter `deleted` absent or not `true`/`false`).
    pub deleted: Option<bool>,
    /// Only instances of this project (query parameter `project_id`).
    pub project: Option<String>,
}

/// Live and deleted instances, each ordered by [`MgmtKey`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct MgmtSets {
    live: BTreeSet<MgmtKey>,
    deleted: BTreeSet<MgmtKey>,
}

impl MgmtSets {
    fn set_mut(&mut self, deleted: bool) -> &mut BTreeSet<MgmtKey> {
        if deleted {
            &mut self.deleted
        } else {
            &mut self.live
        }
    }

    fn remove(&mut self, f: &Footprint, id: Uuid) {
        self.set_mut(f.deleted).remove(&(Reverse(f.updated), id));
    }

    fn insert(&mut self, f: &Footprint, id: Uuid) {
        self.set_mut(f.deleted).insert((Reverse(f.updated), id));
    }

    fn is_empty(&self) -> bool {
        self.live.is_empty() && self.deleted.is_empty()
    }

    /// The ids at `offset..offset + limit` of the filtered order.
    fn page(&self, deleted: Option<bool>, offset: usize, limit: usize) -> Vec<Uuid> {
        let pick = |it: &mut dyn Iterator<Item = &MgmtKey>| {
            it.skip(offset).take(limit).map(|k| k.1).collect::<Vec<_>>()
        };
        match deleted {
            Some(true) => pick(&mut self.deleted.iter()),
            Some(false) => pick(&mut self.live.iter()),
            None => pick(&mut Merge::new(self.live.iter(), self.deleted.iter())),
        }
    }

    /// Every key with its deleted flag, in order, for snapshots.
    pub fn entries(&self) -> Vec<(MgmtKey, bool)> {
        let live = self.live.iter().map(|k| (*k, false));
        let deleted = self.deleted.iter().map(|k| (*k, true));
        let mut all: Vec<_> = live.chain(deleted).collect();
        all.sort();
        all
    }
}

/// Merges two ascending iterators of distinct keys into one ascending iterator.
struct Merge<'a, I: Iterator<Item = &'a MgmtKey>> {
    a: Peekable<I>,
    b: Peekable<I>,
}

impl<'a, I: Iterator<Item = &'a MgmtKey>> Merge<'a, I> {
    fn new(a: I, b: I) -> Self {
        Merge {
            a: a.peekable(),
            b: b.peekable(),
        }
    }
}

impl<'a, I: Iterator<Item = &'a MgmtKey>> Iterator for Merge<'a, I> {
    type Item = &'a MgmtKey;

    fn next(&mut self) -> Option<&'a MgmtKey> {
        let take_a = match (self.a.peek(), self.b.peek()) {
            (Some(a), Some(b)) => a.cmp(b) != Ordering::Greater,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if take_a {
            self.a.next()
        } else {
            self.b.next()
        }
    }
}

/// The global and per-project ordered sets.
#[derive(Debug, Default)]
pub(crate) struct MgmtModel {
    all: RwLock<MgmtSets>,
    by_project: DashMap<String, MgmtSets>,
}

impl MgmtModel {
    /// Replaces the instance's old entry by its new one.
    pub fn update(&self, id: Uuid, old: Option<&Footprint>, new: Option<&Footprint>) {
        fn key(f: Option<&Footprint>) -> Option<(bool, DateTime<Utc>, &str)> {
            f.map(|f| (f.deleted, f.updated, f.project.as_str()))
        }
        if key(old) == key(new) {
            return;
        }
        {
            // A poisoned lock only means a reader panicked while holding it; the sets
            // are still consistent (readers never mutate), so keep going.
            let mut all = self.all.write().unwrap_or_else(PoisonError::into_inner);
            if let Some(f) = old {
                all.remove(f, id);
            }
            if let Some(f) = new {
                all.insert(f, id);
            }
        }
        if let Some(f) = old {
            let now_empty = self.by_project.get_mut(&f.project).is_some_and(|mut sets| {
                sets.remove(f, id);
                sets.is_empty()
            });
            if now_empty {
                self.by_project
                    .remove_if(&f.project, |_, sets| sets.is_empty());
            }
        }
        if let Some(f) = new {
            // One writer: no other apply can add the project between these two steps.
            match self.by_project.get_mut(&f.project) {
                Some(mut sets) => sets.insert(f, id),
                None => self
                    .by_project
                    .entry(f.project.clone())
                    .or_default()
                    .insert(f, id),
            }
        }
    }

    /// The ids of one page, in `updated`-descending order.
    pub fn page(&self, filter: &MgmtFilter, offset: usize, limit: usize) -> Vec<Uuid> {
        match &filter.project {
            Some(p) => self
                .by_project
                .get(p)
                .map_or_else(Vec::new, |s| s.page(filter.deleted, offset, limit)),
            None => self
                .all
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .page(filter.deleted, offset, limit),
        }
    }

    /// The global sets and every project's sets, for snapshots.
    pub fn entries(&self) -> (MgmtSets, Vec<(String, MgmtSets)>) {
        let all = self
            .all
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let by_project = self
            .by_project
            .iter()
            .map(|e| (e.key().clone(), e.value().clone()))
            .collect();
        (all, by_project)
    }
}
