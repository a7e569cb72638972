//! The spans of one batch grouped by the row they count in, before the
//! view's rows are looked up: a batch's spans fall in a few rows (often one:
//! a busy route), so each row is found once per batch instead of once per
//! span, and the row key is built once per group.

use super::LiveKind;

/// Groups kept per batch at most; the spans of any further row are counted
/// one by one. A span is compared with each group in turn, so many groups
/// would cost more than the lookup they save.
pub(super) const MAX_GROUPS: usize = 8;

/// One row's spans in a batch.
#[derive(Debug, Default)]
pub(super) struct Group {
    /// The row's key as the view's rows hold it: kind letter, service, NUL, route.
    pub(super) key: String,
    service_len: usize,
    pub(super) requests: u32,
    pub(super) errors: u32,
    /// Each span's latency bucket, in order.
    pub(super) buckets: Vec<u16>,
    /// Each bucket of `buckets` once, with its count, in the order of their
    /// first spans ([`BatchGroups::tally`]): a row's histogram is asked once
    /// per bucket, not once per span.
    pub(super) tallied: Vec<(u16, u32)>,
}

impl Group {
    /// The row's kind, service and route, read back from its key.
    pub(super) fn parts(&self) -> (LiveKind, &str, &str) {
        let kind = if self.key.starts_with('C') {
            LiveKind::Client
        } else {
            LiveKind::Server
        };
        let service = self.key.get(1..1 + self.service_len).unwrap_or_default();
        let route = self.key.get(2 + self.service_len..).unwrap_or_default();
        (kind, service, route)
    }

    fn is(&self, kind: LiveKind, service: &str, route: &str) -> bool {
        let key = self.key.as_bytes();
        key.len() == 2 + service.len() + route.len()
            && self.service_len == service.len()
            && key.first() == Some(&kind_letter(kind))
            && key.get(2 + service.len()..) == Some(route.as_bytes())
            && key.get(1..1 + service.len()) == Some(service.as_bytes())
    }
}

/// The letter a row key starts with.
pub(super) fn kind_letter(kind: LiveKind) -> u8 {
    match kind {
        LiveKind::Server => b'S',
        LiveKind::Client => b'C',
    }
}

/// Writes a row key into `key` (emptied first).
pub(super) fn write_key(key: &mut String, kind: LiveKind, service: &str, route: &str) {
    key.clear();
    key.push(char::from(kind_letter(kind)));
    key.push_str(service);
    key.push('\0');
    key.push_str(route);
}

/// The groups of the batch being recorded. Their buffers are kept from one
/// batch to the next.
#[derive(Debug, Default)]
pub(super) struct BatchGroups {
    groups: Vec<Group>,
    used: usize,
    /// The group the last span went to, asked first.
    last: usize,
    /// A count per latency bucket while a group's are tallied; all zero
    /// between tallies.
    counts: Vec<u32>,
}

impl BatchGroups {
    /// Empties the groups for a new batch.
    pub(super) fn clear(&mut self) {
        self.used = 0;
        self.last = 0;
    }

    /// The group of a span of `kind`, `service` and `route` (already cut to
    /// the view's limits), created if there is room; None when the batch
    /// already has [`MAX_GROUPS`] others.
    pub(super) fn group_of(
        &mut self,
        kind: LiveKind,
        service: &str,
        route: &str,
    ) -> Option<&mut Group> {
        let index = match self.groups.get(self.last) {
            Some(group) if self.last < self.used && group.is(kind, service, route) => self.last,
            _ => match self
                .groups
                .iter()
                .take(self.used)
                .position(|group| group.is(kind, service, route))
            {
                Some(index) => index,
                None => self.add(kind, service, route)?,
            },
        };
        self.last = index;
        self.groups.get_mut(index)
    }

    fn add(&mut self, kind: LiveKind, service: &str, route: &str) -> Option<usize> {
        if self.used >= MAX_GROUPS {
            return None;
        }
        if self.used == self.groups.len() {
            self.groups.push(Group::default());
        }
        let group = self.groups.get_mut(self.used)?;
        write_key(&mut group.key, kind, service, route);
        group.service_len = service.len();
        group.requests = 0;
        group.errors = 0;
        group.buckets.clear();
        self.used += 1;
        Some(self.used - 1)
    }

    /// Fills each group's `tallied` from its `buckets`.
    pub(super) fn tally(&mut self) {
        let counts = &mut self.counts;
        for group in self.groups.iter_mut().take(self.used) {
            group.tallied.clear();
            for &bucket in &group.buckets {
                let i = usize::from(bucket);
                if i >= counts.len() {
                    counts.resize(i + 1, 0);
                }
                if let Some(count) = counts.get_mut(i) {
                    if *count == 0 {
                        group.tallied.push((bucket, 0));
                    }
                    *count += 1;
                }
            }
            for (bucket, tally) in &mut group.tallied {
                if let Some(count) = counts.get_mut(usize::from(*bucket)) {
                    *tally = std::mem::take(count);
                }
            }
        }
    }

    /// This batch's groups, in the order their first spans came.
    pub(super) fn groups(&self) -> &[Group] {
        self.groups.get(..self.used).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_of_one_row_share_a_group_and_others_get_their_own() {
        let mut batch = BatchGroups::default();
        for (kind, service, route) in [
            (LiveKind::Server, "svc", "/a"),
            (LiveKind::Server, "svc", "/a"),
            (LiveKind::Client, "svc", "/a"),
            (LiveKind::Server, "sv", "c/a"),
            (LiveKind::Server, "svc", "/b"),
            (LiveKind::Server, "svc", "/a"),
        ] {
            let group = batch.group_of(kind, service, route);
            let Some(group) = group else {
                panic!("room for every row");
            };
            group.requests += 1;
        }
        let rows: Vec<(LiveKind, &str, &str, u32)> = batch
            .groups()
            .iter()
            .map(|g| {
                let (kind, service, route) = g.parts();
                (kind, service, route, g.requests)
            })
            .collect();
        assert_eq!(
            rows,
            vec![
                (LiveKind::Server, "svc", "/a", 3),
                (LiveKind::Client, "svc", "/a", 1),
                // Same key bytes but for the NUL's place: another row.
                (LiveKind::Server, "sv", "c/a", 1),
                (LiveKind::Server, "svc", "/b", 1),
            ]
        );
    }

    #[test]
    fn past_the_limit_a_new_row_gets_no_group_and_a_cleared_batch_starts_over() {
        let mut batch = BatchGroups::default();
        for i in 0..MAX_GROUPS {
            assert!(batch
                .group_of(LiveKind::Server, "svc", &format!("/{i}"))
                .is_some());
        }
        assert!(batch.group_of(LiveKind::Server, "svc", "/new").is_none());
        // A row already grouped still finds its group.
        assert!(batch.group_of(LiveKind::Server, "svc", "/0").is_some());
        batch.clear();
        assert!(batch.groups().is_empty());
        let group = batch.group_of(LiveKind::Client, "other", "/x");
        assert!(group.is_some_and(|g| g.requests == 0 && g.buckets.is_empty()));
        assert_eq!(batch.groups().len(), 1);
    }

    #[test]
    fn a_group_s_buckets_are_tallied_in_the_order_they_first_came() {
        let mut batch = BatchGroups::default();
        for (route, buckets) in [("/a", &[7_u16, 900, 7, 3, 900, 7][..]), ("/b", &[3, 3])] {
            let Some(group) = batch.group_of(LiveKind::Server, "svc", route) else {
                panic!("room for every row");
            };
            group.buckets.extend_from_slice(buckets);
        }
        batch.tally();
        let tallied: Vec<&[(u16, u32)]> = batch
            .groups()
            .iter()
            .map(|g| g.tallied.as_slice())
            .collect();
        assert_eq!(
            tallied,
            vec![&[(7, 3), (900, 2), (3, 1)][..], &[(3, 2)][..]]
        );
        // The counts start from zero again: a second tally gives the same.
        batch.tally();
        assert_eq!(batch.groups()[1].tallied, vec![(3, 2)]);
    }
}
