//! A first-in first-out queue that keeps its oldest element in place: an
//! HTTP/1 connection that does not pipeline has one request waiting at a
//! time, so most connections never allocate for their queue (a connection of
//! one request would otherwise allocate and free it once).

use std::collections::VecDeque;

#[derive(Debug)]
pub(super) struct InlineFirstQueue<T> {
    /// The oldest element; None only when the queue is empty.
    first: Option<T>,
    /// The others, oldest first.
    rest: VecDeque<T>,
}

impl<T> Default for InlineFirstQueue<T> {
    fn default() -> Self {
        Self {
            first: None,
            rest: VecDeque::new(),
        }
    }
}

impl<T> InlineFirstQueue<T> {
    pub fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.len()
    }

    pub fn front(&self) -> Option<&T> {
        self.first.as_ref()
    }

    pub fn push_back(&mut self, value: T) {
        if self.first.is_none() {
            self.first = Some(value);
        } else {
            self.rest.push_back(value);
        }
    }

    pub fn pop_front(&mut self) -> Option<T> {
        // One move of the element out when nothing follows it (elements can
        // be large: an HTTP message is a few hundred bytes).
        if self.rest.is_empty() {
            return self.first.take();
        }
        let next = self.rest.pop_front();
        std::mem::replace(&mut self.first, next)
    }

    /// The element at `index` (0: the oldest), taken out.
    pub fn remove(&mut self, index: usize) -> Option<T> {
        match index.checked_sub(1) {
            None => self.pop_front(),
            Some(in_rest) => self.rest.remove(in_rest),
        }
    }

    /// The element at `index` (0: the oldest), in place.
    pub fn get_mut(&mut self, index: usize) -> Option<&mut T> {
        match index.checked_sub(1) {
            None => self.first.as_mut(),
            Some(in_rest) => self.rest.get_mut(in_rest),
        }
    }

    /// Drops the element at `index` where it is: unlike [`Self::remove`],
    /// the oldest, when nothing follows it, is not moved out first.
    pub fn discard(&mut self, index: usize) {
        match index.checked_sub(1) {
            None if self.rest.is_empty() => self.first = None,
            None => self.first = self.rest.pop_front(),
            Some(in_rest) => drop(self.rest.remove(in_rest)),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.first.iter().chain(self.rest.iter())
    }

    pub fn clear(&mut self) {
        self.first = None;
        self.rest.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::InlineFirstQueue;
    use proptest::prelude::*;
    use std::collections::VecDeque;

    #[derive(Debug, Clone)]
    enum Op {
        Push(u8),
        Pop,
        Remove(usize),
        Discard(usize),
        Replace(usize, u8),
        Clear,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => any::<u8>().prop_map(Op::Push),
            2 => Just(Op::Pop),
            2 => (0usize..6).prop_map(Op::Remove),
            2 => (0usize..6).prop_map(Op::Discard),
            1 => (0usize..6, any::<u8>()).prop_map(|(i, v)| Op::Replace(i, v)),
            1 => Just(Op::Clear),
        ]
    }

    proptest! {
        /// Every sequence of operations leaves the same elements in the same
        /// order as a VecDeque given the same operations.
        #[test]
        fn behaves_as_a_vecdeque(ops in proptest::collection::vec(op(), 0..64)) {
            let mut queue = InlineFirstQueue::default();
            let mut model = VecDeque::new();
            for op in ops {
                match op {
                    Op::Push(v) => {
                        queue.push_back(v);
                        model.push_back(v);
                    }
                    Op::Pop => prop_assert_eq!(queue.pop_front(), model.pop_front()),
                    Op::Remove(i) => prop_assert_eq!(queue.remove(i), model.remove(i)),
                    Op::Discard(i) => {
                        queue.discard(i);
                        model.remove(i);
                    }
                    Op::Replace(i, v) => {
                        let (ours, theirs) = (queue.get_mut(i), model.get_mut(i));
                        prop_assert_eq!(ours.is_some(), theirs.is_some());
                        if let (Some(ours), Some(theirs)) = (ours, theirs) {
                            (*ours, *theirs) = (v, v);
                        }
                    }
                    Op::Clear => {
                        queue.clear();
                        model.clear();
                    }
                }
                prop_assert_eq!(queue.len(), model.len());
                prop_assert_eq!(queue.front(), model.front());
                prop_assert!(queue.iter().eq(model.iter()));
            }
        }
    }
}
