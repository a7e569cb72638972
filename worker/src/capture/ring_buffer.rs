//! A BPF ring buffer consumer over a received map fd: two mmaps (the
//! consumer page, writable; the producer page and data, read-only and mapped
//! twice back to back by the kernel so records never wrap) and the
//! acquire/release protocol of the kernel's producer.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

const RECORD_HEADER_BYTES: u64 = 8;
const BUSY_BIT: u32 = 1 << 31;
const DISCARD_BIT: u32 = 1 << 30;

pub struct RingBuffer {
    fd: OwnedFd,
    consumer: NonNull<u8>,
    producer: NonNull<u8>,
    page_size: usize,
    data_bytes: u64,
}

// SAFETY: the mappings are owned by this value and only touched through &mut self.
unsafe impl Send for RingBuffer {}

impl RingBuffer {
    /// Maps the ring buffer behind `fd`, whose size (`max_entries`) the loader announced.
    pub fn new(fd: OwnedFd, max_entries: u32) -> io::Result<Self> {
        let data_bytes = u64::from(max_entries);
        if !data_bytes.is_power_of_two() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "ring buffer size is not a power of two",
            ));
        }
        // SAFETY: sysconf has no memory effects.
        let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let raw = fd.as_raw_fd();
        let consumer = map(raw, page_size, libc::PROT_READ | libc::PROT_WRITE, 0)?;
        let producer = match map(
            raw,
            page_size + 2 * data_bytes as usize,
            libc::PROT_READ,
            page_size as libc::off_t,
        ) {
            Ok(p) => p,
            Err(e) => {
                // SAFETY: `consumer` was mapped above with this length.
                unsafe { libc::munmap(consumer.as_ptr().cast(), page_size) };
                return Err(e);
            }
        };
        Ok(Self {
            fd,
            consumer,
            producer,
            page_size,
            data_bytes,
        })
    }

    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }

    fn consumer_pos(&self) -> &AtomicU64 {
        // SAFETY: the first word of the consumer page is the kernel's u64 consumer position.
        unsafe { &*(self.consumer.as_ptr() as *const AtomicU64) }
    }

    fn producer_pos(&self) -> &AtomicU64 {
        // SAFETY: the first word of the producer page is the kernel's u64 producer position.
        unsafe { &*(self.producer.as_ptr() as *const AtomicU64) }
    }

    /// Hands committed records to `handle` and frees their space, until
    /// `handle` returns false or a record is still being written; returns how
    /// many records were consumed.
    pub fn consume(&mut self, mut handle: impl FnMut(&[u8]) -> bool) -> usize {
        let mask = self.data_bytes - 1;
        let mut consumer_pos = self.consumer_pos().load(Ordering::Acquire);
        let mut consumed = 0;
        loop {
            let producer_pos = self.producer_pos().load(Ordering::Acquire);
            if consumer_pos >= producer_pos {
                break;
            }
            while consumer_pos < producer_pos {
                let offset = self.page_size + (consumer_pos & mask) as usize;
                // SAFETY: offset is inside the data area; the header is 8-byte aligned.
                let header = unsafe { &*(self.producer.as_ptr().add(offset) as *const AtomicU32) };
                let len_word = header.load(Ordering::Acquire);
                if len_word & BUSY_BIT != 0 {
                    self.consumer_pos().store(consumer_pos, Ordering::Release);
                    return consumed;
                }
                let len = u64::from(len_word & !(BUSY_BIT | DISCARD_BIT));
                let mut more = true;
                if len > self.data_bytes {
                    // Cannot come from the kernel; stop rather than read out of bounds.
                    return consumed;
                }
                if len_word & DISCARD_BIT == 0 {
                    // SAFETY: the data area is mapped twice, so a committed record of
                    // `len` <= data_bytes bytes is contiguous from its header.
                    let record = unsafe {
                        std::slice::from_raw_parts(
                            self.producer
                                .as_ptr()
                                .add(offset + RECORD_HEADER_BYTES as usize),
                            len as usize,
                        )
                    };
                    more = handle(record);
                }
                consumer_pos += (len + RECORD_HEADER_BYTES + 7) & !7;
                consumed += 1;
                self.consumer_pos().store(consumer_pos, Ordering::Release);
                if !more {
                    return consumed;
                }
            }
        }
        consumed
    }

    /// Bytes committed but not yet consumed.
    pub fn pending_bytes(&self) -> u64 {
        self.producer_pos()
            .load(Ordering::Acquire)
            .saturating_sub(self.consumer_pos().load(Ordering::Acquire))
    }
}

impl Drop for RingBuffer {
    fn drop(&mut self) {
        // SAFETY: both regions were mapped in `new` with these lengths.
        unsafe {
            libc::munmap(self.consumer.as_ptr().cast(), self.page_size);
            libc::munmap(
                self.producer.as_ptr().cast(),
                self.page_size + 2 * self.data_bytes as usize,
            );
        }
    }
}

fn map(fd: i32, len: usize, prot: libc::c_int, offset: libc::off_t) -> io::Result<NonNull<u8>> {
    // SAFETY: a fresh shared mapping of the ring buffer fd; no existing memory is touched.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            prot,
            libc::MAP_SHARED,
            fd,
            offset,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    NonNull::new(ptr.cast()).ok_or_else(|| io::Error::other("mmap returned null"))
}
