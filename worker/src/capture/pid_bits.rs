//! The kernel's bitmap of instrumented processes (`zt_pid_bits`), mapped
//! shared and writable: one bit per tgid, set for every process in the pid
//! filter. The programs look at it before the filter's hash, so processes
//! that are not instrumented cost one array load per socket call. Bits are
//! set and cleared with atomic or/and, as the kernel's fork program adds
//! bits to the same words concurrently. The map's second half holds a
//! second bit per tgid, set for Go programs: their data events then name
//! the goroutine instead of the thread (`zt_thread_of` in the kernel).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

pub struct PidBits {
    _fd: OwnedFd,
    words: NonNull<AtomicU64>,
    /// Words of each half: the instrumented bits, then the Go bits.
    word_count: usize,
    mapped_bytes: usize,
}

// SAFETY: the mapping is owned by this value and only touched through atomics.
unsafe impl Send for PidBits {}
// SAFETY: as above: every access is an atomic operation on the shared words.
unsafe impl Sync for PidBits {}

impl PidBits {
    /// Maps the bitmap behind `fd`: an array of `max_entries` 8-byte words,
    /// its two halves the instrumented bits and the Go bits.
    pub fn new(fd: OwnedFd, max_entries: u32, value_size: u32) -> io::Result<Self> {
        if value_size != 8 || max_entries == 0 || !max_entries.is_multiple_of(2) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("pid bitmap of {max_entries} values of {value_size} bytes: expected an even number of 8-byte words"),
            ));
        }
        let word_count = max_entries as usize / 2;
        // SAFETY: sysconf has no memory effects.
        let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let mapped_bytes = (word_count * 2 * 8).div_ceil(page_size) * page_size;
        // SAFETY: a fresh shared mapping of the array map's fd (created
        // mmapable by the loader); no existing memory is touched.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                mapped_bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let words =
            NonNull::new(ptr.cast()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Self {
            _fd: fd,
            words,
            word_count,
            mapped_bytes,
        })
    }

    /// The word holding `pid`'s bit in `half` (0: instrumented, 1: Go) and
    /// the bit, or None beyond the bitmap (those pids are always looked up
    /// in the filter's hash, and their events name threads).
    fn word_of(&self, pid: u32, half: usize) -> Option<(&AtomicU64, u64)> {
        let index = (pid / 64) as usize;
        if index >= self.word_count {
            return None;
        }
        // SAFETY: index < word_count and half <= 1, within the mapping of
        // 2 * word_count words; the kernel maps array values contiguously,
        // 8-byte aligned.
        let word = unsafe {
            &*self
                .words
                .as_ptr()
                .add(half.min(1) * self.word_count + index)
        };
        Some((word, 1u64 << (pid % 64)))
    }

    /// `pid` is in the filter now.
    pub fn set(&self, pid: u32) {
        if let Some((word, bit)) = self.word_of(pid, 0) {
            word.fetch_or(bit, Ordering::SeqCst);
        }
    }

    /// `pid` runs a Go program: its data events name goroutines.
    pub fn set_go(&self, pid: u32) {
        if let Some((word, bit)) = self.word_of(pid, 1) {
            word.fetch_or(bit, Ordering::SeqCst);
        }
    }

    /// `pid` exited or exec'd another program: its events name threads
    /// again. (Only the worker sets Go bits, so clearing one races with no
    /// fork, unlike the instrumented bit.)
    pub fn clear_go(&self, pid: u32) {
        if let Some((word, bit)) = self.word_of(pid, 1) {
            word.fetch_and(!bit, Ordering::SeqCst);
        }
    }

    /// `pid` left the filter: both its bits, as the next process with its
    /// number may run anything.
    pub fn clear(&self, pid: u32) {
        for half in 0..2 {
            if let Some((word, bit)) = self.word_of(pid, half) {
                word.fetch_and(!bit, Ordering::SeqCst);
            }
        }
    }

    pub fn is_set(&self, pid: u32) -> bool {
        self.word_of(pid, 0)
            .is_none_or(|(word, bit)| word.load(Ordering::SeqCst) & bit != 0)
    }

    /// Whether `pid` is marked Go (false beyond the bitmap): only the
    /// kernel reads the bit, this is for the tests.
    #[cfg(test)]
    pub fn is_go(&self, pid: u32) -> bool {
        self.word_of(pid, 1)
            .is_some_and(|(word, bit)| word.load(Ordering::SeqCst) & bit != 0)
    }
}

impl Drop for PidBits {
    fn drop(&mut self) {
        // SAFETY: mapped in `new` with this length.
        unsafe { libc::munmap(self.words.as_ptr().cast(), self.mapped_bytes) };
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::FromRawFd;
    use std::os::unix::fs::FileExt;

    use super::*;

    /// Words of each half, as the kernel's map has them.
    const WORDS: u32 = 65536;
    /// The map's entries: the instrumented bits, then the Go bits.
    const ENTRIES: u32 = 2 * WORDS;

    /// A shared memory file standing in for the map: what the mapping
    /// writes is read back through the file, not through `PidBits`.
    fn memory_file() -> (std::fs::File, OwnedFd) {
        // SAFETY: a plain memfd_create call with a valid C string.
        let raw = unsafe { libc::memfd_create(c"zt-pid-bits-test".as_ptr(), 0) };
        assert!(raw >= 0, "memfd_create: {}", io::Error::last_os_error());
        // SAFETY: raw is a fresh fd this test owns.
        let file = unsafe { std::fs::File::from_raw_fd(raw) };
        file.set_len(u64::from(ENTRIES) * 8)
            .unwrap_or_else(|e| panic!("{e}"));
        let fd = file
            .try_clone()
            .map(OwnedFd::from)
            .unwrap_or_else(|e| panic!("{e}"));
        (file, fd)
    }

    fn word(file: &std::fs::File, index: u64) -> u64 {
        let mut bytes = [0u8; 8];
        file.read_exact_at(&mut bytes, index * 8)
            .unwrap_or_else(|e| panic!("{e}"));
        u64::from_ne_bytes(bytes)
    }

    #[test]
    fn a_pid_is_bit_pid_mod_64_of_word_pid_div_64_as_the_kernel_reads_it() {
        let (file, fd) = memory_file();
        let bits = PidBits::new(fd, ENTRIES, 8).unwrap_or_else(|e| panic!("{e}"));
        bits.set(200); // word 3, bit 8
        bits.set(201);
        bits.set(63);
        bits.set(4_194_303); // the last pid the bitmap holds
        assert_eq!(word(&file, 3), (1 << 8) | (1 << 9));
        assert_eq!(word(&file, 0), 1 << 63);
        assert_eq!(word(&file, 65535), 1 << 63);
        bits.clear(200);
        assert_eq!(word(&file, 3), 1 << 9);
        assert!(bits.is_set(201) && !bits.is_set(200) && !bits.is_set(202));
    }

    #[test]
    fn pids_beyond_the_bitmap_are_left_to_the_filter() {
        let (file, fd) = memory_file();
        let bits = PidBits::new(fd, ENTRIES, 8).unwrap_or_else(|e| panic!("{e}"));
        bits.set(4_194_304);
        bits.clear(u32::MAX);
        assert!(
            bits.is_set(4_194_304),
            "no bit: the kernel looks in the filter"
        );
        bits.set_go(4_194_304);
        assert!(!bits.is_go(4_194_304));
        assert!((0..u64::from(ENTRIES)).all(|i| word(&file, i) == 0));
    }

    #[test]
    fn a_go_bit_is_the_same_bit_in_the_second_half_and_goes_with_the_process() {
        let (file, fd) = memory_file();
        let bits = PidBits::new(fd, ENTRIES, 8).unwrap_or_else(|e| panic!("{e}"));
        bits.set(200);
        bits.set_go(200); // word 65536 + 3, bit 8
        bits.set_go(4_194_303);
        assert_eq!(word(&file, 3), 1 << 8);
        assert_eq!(word(&file, 65536 + 3), 1 << 8);
        assert_eq!(word(&file, 2 * 65536 - 1), 1 << 63);
        assert!(bits.is_go(200) && !bits.is_go(201) && bits.is_set(200));
        assert!(
            !bits.is_set(4_194_303),
            "a Go bit is not an instrumented one"
        );
        bits.clear_go(4_194_303);
        assert_eq!(word(&file, 2 * 65536 - 1), 0);
        bits.clear(200);
        assert_eq!((word(&file, 3), word(&file, 65536 + 3)), (0, 0));
    }

    #[test]
    fn a_map_that_is_not_of_words_in_two_halves_is_refused() {
        let (_file, fd) = memory_file();
        assert!(PidBits::new(fd, ENTRIES, 4).is_err());
        let (_file, fd) = memory_file();
        assert!(PidBits::new(fd, ENTRIES - 1, 8).is_err());
    }
}
