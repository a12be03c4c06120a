//! The list model behind `GET /instances` and `GET /instances/detail`: per project, the
//! ids of its non-deleted instances in ascending id order.
//!
//! Paging is keyset by id (spec `instances-api.md` §3.4 A): a page is a range scan of
//! one project's ordered set, so it costs O(log n + page) and never looks at other
//! projects. The set holds ids only; the records live in the instance map.

use std::collections::BTreeSet;
use std::ops::Bound;

use dashmap::DashMap;
use uuid::Uuid;

use super::footprint::Footprint;

/// Per-project ordered id sets.
#[derive(Debug, Default)]
pub(crate) struct ListModel {
    /// Empty sets are removed so a project that had instances costs nothing and the
    /// model equals a rebuild.
    by_project: DashMap<String, BTreeSet<Uuid>>,
}

impl ListModel {
    /// Moves `id` from its old entry to its new one.
    pub fn update(&self, id: Uuid, old: Option<&Footprint>, new: Option<&Footprint>) {
        fn key(f: Option<&Footprint>) -> Option<&str> {
            f.filter(|f| f.listed()).map(|f| f.project.as_str())
        }
        let (old, new) = (key(old), key(new));
        if old == new {
            return;
        }
        if let Some(project) = old {
            let now_empty = self.by_project.get_mut(project).is_some_and(|mut set| {
                set.remove(&id);
                set.is_empty()
            });
            if now_empty {
                self.by_project.remove_if(project, |_, set| set.is_empty());
            }
        }
        if let Some(project) = new {
            match self.by_project.get_mut(project) {
                Some(mut set) => {
                    set.insert(id);
                }
                None => {
                    self.by_project
                        .entry(project.to_string())
                        .or_default()
                        .insert(id);
                }
            }
        }
    }

    /// Up to `take` ids of `project` after `marker`, ascending. The set's guard is
    /// dropped before returning, so callers can look records up without holding it.
    pub fn ids_after(&self, project: &str, marker: Option<&str>, take: usize) -> Vec<Uuid> {
        let start = match marker {
            None => Bound::Unbounded,
            Some(m) => match first_id_after(m) {
                Some(bound) => bound,
                None => return Vec::new(),
            },
        };
        self.by_project.get(project).map_or_else(Vec::new, |set| {
            set.range((start, Bound::Unbounded))
                .take(take)
                .copied()
                .collect()
        })
    }

    /// Every project with its ids, for snapshots.
    pub fn entries(&self) -> Vec<(String, Vec<Uuid>)> {
        self.by_project
            .iter()
            .map(|e| (e.key().clone(), e.value().iter().copied().collect()))
            .collect()
    }
}

/// The lower bound of "ids whose canonical string is greater than `marker`".
///
/// Upstream compares the marker as a string (`id > marker`) and never validates it, so
/// a marker may be any text. Canonical ids (lower-case, hyphenated) sort as strings in
/// the same order as [`Uuid`]'s byte order, which is what makes the set usable: a
/// canonical marker is an exclusive bound; for any other text we binary-search the
/// smallest id whose string is greater (128 steps, each formatting one id on the stack).
/// `None` means no id can be greater.
pub(crate) fn first_id_after(marker: &str) -> Option<Bound<Uuid>> {
    if let Ok(id) = Uuid::parse_str(marker) {
        if canonical(id, &mut Uuid::encode_buffer()) == marker {
            return Some(Bound::Excluded(id));
        }
    }
    let mut buf = Uuid::encode_buffer();
    let mut greater = |v: u128| canonical(Uuid::from_u128(v), &mut buf) > marker;
    if !greater(u128::MAX) {
        return None;
    }
    // Invariant: the answer lies in [lo, hi] and `greater(hi)` holds; `greater` is
    // monotone because `from_u128` and canonical formatting both preserve order.
    let (mut lo, mut hi) = (0u128, u128::MAX);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if greater(mid) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Some(Bound::Included(Uuid::from_u128(lo)))
}

fn canonical(id: Uuid, buf: &mut [u8; 45]) -> &str {
    id.hyphenated().encode_lower(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first_after(ids: &[Uuid], marker: &str) -> Option<Uuid> {
        let set: BTreeSet<Uuid> = ids.iter().copied().collect();
        let bound = first_id_after(marker)?;
        set.range((bound, Bound::Unbounded)).next().copied()
    }

    fn brute_force(ids: &[Uuid], marker: &str) -> Option<Uuid> {
        let mut v: Vec<Uuid> = ids
            .iter()
            .copied()
            .filter(|id| id.to_string().as_str() > marker)
            .collect();
        v.sort();
        v.first().copied()
    }

    #[test]
    fn non_canonical_markers_compare_as_strings() {
        let ids: Vec<Uuid> = [
            "00000000-0000-0000-0000-000000000000",
            "0a000000-0000-0000-0000-000000000001",
            "7de1bed8-6983-4d46-9a52-0abfbb0d27a2",
            "7de1bed8-6983-4d46-9a52-0abfbb0d27a3",
            "b76a6a76-748b-4064-adec-4c9e6c9abd68",
            "ffffffff-ffff-ffff-ffff-ffffffffffff",
        ]
        .iter()
        .map(|s| Uuid::parse_str(s).unwrap_or_default())
        .collect();
        for marker in [
            "",
            "0",
            "0a",
            "0g",
            "7",
            "7de1bed8",
            "7de1bed8-6983-4d46-9a52-0abfbb0d27a2",
            "7de1bed8-6983-4d46-9a52-0abfbb0d27a2x",
            "7DE1BED8-6983-4D46-9A52-0ABFBB0D27A2",
            "7de1bed86983-4d46",
            "7de1bed8698349d469a520abfbb0d27a2",
            "b",
            "detail",
            "zzz",
            "ffffffff-ffff-ffff-ffff-ffffffffffff",
            "ffffffff-ffff-ffff-ffff-fffffffffffe",
            "ffffffff-ffff-ffff-ffff-ffffffffffff0",
            "~",
        ] {
            assert_eq!(
                first_after(&ids, marker),
                brute_force(&ids, marker),
                "marker {marker:?}"
            );
        }
    }
}
