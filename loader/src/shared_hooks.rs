//! Uprobe hooks shared by the processes that asked for them: one entry per
//! function in a file (the file by device and inode, so every path and mount
//! namespace that reaches it shares the hook), with the pids using it. An
//! entry's links are detached, by dropping them, when no process that asked
//! for it is instrumented any more. The OpenSSL and the Go TLS hooks keep
//! their links here.

use std::collections::{BTreeSet, HashMap};

/// A hooked function: the file's device and inode, and the function's name.
pub type HookKey = (u64, u64, &'static str);

struct SharedHook<L> {
    /// Held only to keep the hook attached.
    _links: L,
    /// The path the first request named, for logs.
    file: String,
    /// Processes that asked for this hook and were instrumented when last checked.
    pids: BTreeSet<u32>,
}

/// The hooks in place, each with its links of type `L`.
pub struct SharedHooks<L> {
    hooks: HashMap<HookKey, SharedHook<L>>,
}

impl<L> Default for SharedHooks<L> {
    fn default() -> Self {
        Self {
            hooks: HashMap::new(),
        }
    }
}

impl<L> SharedHooks<L> {
    /// How many hooks are attached.
    pub fn len(&self) -> usize {
        self.hooks.len()
    }

    /// Adds `pid` to the users of the hook at `key`; false when there is no
    /// such hook yet.
    pub fn join(&mut self, key: &HookKey, pid: u32) -> bool {
        match self.hooks.get_mut(key) {
            Some(hook) => {
                hook.pids.insert(pid);
                true
            }
            None => false,
        }
    }

    /// Keeps a hook just attached for `pid` (at `file`).
    pub fn insert(&mut self, key: HookKey, links: L, file: &str, pid: u32) {
        self.hooks.insert(
            key,
            SharedHook {
                _links: links,
                file: file.to_owned(),
                pids: BTreeSet::from([pid]),
            },
        );
    }

    /// Forgets processes no longer instrumented (the kernel removes exited
    /// ones from the pid filter) and detaches hooks nobody uses any more.
    /// Returns the hooks detached, as (file, function).
    pub fn sweep(&mut self, instrumented: impl Fn(u32) -> bool) -> Vec<(String, &'static str)> {
        let mut detached = Vec::new();
        self.hooks.retain(|key, hook| {
            hook.pids.retain(|pid| instrumented(*pid));
            if hook.pids.is_empty() {
                detached.push((hook.file.clone(), key.2));
                false
            } else {
                true
            }
        });
        detached
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::rc::Rc;

    use super::*;

    /// Counts its drops: a detached hook's links are dropped.
    struct Links(Rc<Cell<u32>>);

    impl Drop for Links {
        fn drop(&mut self) {
            self.0.set(self.0.get() + 1);
        }
    }

    #[test]
    fn a_hook_is_detached_with_its_last_instrumented_user() {
        let dropped = Rc::new(Cell::new(0));
        let mut hooks = SharedHooks::default();
        let key = (8, 42, "SSL_read");
        assert!(!hooks.join(&key, 10), "no hook yet");
        hooks.insert(key, Links(dropped.clone()), "/lib/libssl.so.3", 10);
        assert!(hooks.join(&key, 11));
        assert_eq!(hooks.len(), 1);

        // 10 exited: 11 still uses the hook.
        assert!(hooks.sweep(|pid| pid == 11).is_empty());
        assert_eq!(dropped.get(), 0);
        // 11 is gone too: detached, once.
        assert_eq!(
            hooks.sweep(|_| false),
            vec![("/lib/libssl.so.3".to_owned(), "SSL_read")]
        );
        assert_eq!(dropped.get(), 1);
        assert_eq!(hooks.len(), 0);
        assert!(hooks.sweep(|_| false).is_empty());
    }

    #[test]
    fn functions_of_one_file_are_separate_hooks() {
        let mut hooks = SharedHooks::default();
        hooks.insert((8, 42, "SSL_read"), (), "/lib/libssl.so.3", 10);
        hooks.insert((8, 42, "SSL_write"), (), "/lib/libssl.so.3", 11);
        let mut detached = hooks.sweep(|pid| pid == 10);
        detached.sort();
        assert_eq!(detached, vec![("/lib/libssl.so.3".to_owned(), "SSL_write")]);
        assert_eq!(hooks.len(), 1);
    }
}
