//! Element operations on a BPF map through a received fd: the `bpf()` system
//! call with BPF_MAP_*_ELEM, which needs no capability on the fd's holder
//! (kernels from 6.5, or with unprivileged BPF allowed). Older kernels refuse
//! it: `probe_writable` tells, and the worker then asks the loader instead.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;

/// The `bpf_attr` layout of the map element commands.
#[repr(C)]
struct MapElemAttr {
    map_fd: u32,
    pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

/// A map the worker holds an fd of, with the sizes the loader announced.
pub struct BpfMap {
    fd: OwnedFd,
    key_size: usize,
    value_size: usize,
}

impl BpfMap {
    pub fn new(fd: OwnedFd, key_size: u32, value_size: u32) -> Self {
        Self {
            fd,
            key_size: key_size as usize,
            value_size: value_size as usize,
        }
    }

    fn call(&self, cmd: libc::c_long, key: &[u8], value: u64, flags: u64) -> io::Result<()> {
        if key.len() != self.key_size {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "key size"));
        }
        let attr = MapElemAttr {
            map_fd: self.fd.as_raw_fd() as u32,
            pad: 0,
            key: key.as_ptr() as u64,
            value,
            flags,
        };
        // SAFETY: attr points at a live key buffer of the map's key size and,
        // for lookup/update, at a value buffer the caller sized (checked below).
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                cmd,
                &attr as *const MapElemAttr,
                std::mem::size_of::<MapElemAttr>(),
            )
        };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    pub fn update(&self, key: &[u8], value: &[u8]) -> io::Result<()> {
        if value.len() != self.value_size {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "value size"));
        }
        self.call(BPF_MAP_UPDATE_ELEM, key, value.as_ptr() as u64, 0)
    }

    pub fn delete(&self, key: &[u8]) -> io::Result<()> {
        self.call(BPF_MAP_DELETE_ELEM, key, 0, 0)
    }

    /// The value at `key`, or None when the map holds no such key.
    pub fn lookup(&self, key: &[u8]) -> io::Result<Option<Vec<u8>>> {
        let mut value = vec![0u8; self.value_size];
        match self.call(BPF_MAP_LOOKUP_ELEM, key, value.as_mut_ptr() as u64, 0) {
            Ok(()) => Ok(Some(value)),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Looks up a per-CPU value: one `value_size` slot (8-byte aligned) per possible CPU.
    pub fn lookup_percpu_u64_sum(&self, key: &[u8], possible_cpus: usize) -> io::Result<u64> {
        let slot = self.value_size.div_ceil(8) * 8;
        let mut values = vec![0u8; slot * possible_cpus.max(1)];
        self.call(BPF_MAP_LOOKUP_ELEM, key, values.as_mut_ptr() as u64, 0)?;
        Ok(values
            .chunks_exact(slot)
            .map(|chunk| {
                let mut word = [0u8; 8];
                word.copy_from_slice(chunk.get(..8).unwrap_or(&[0; 8]));
                u64::from_ne_bytes(word)
            })
            .sum())
    }

    /// Whether this process may change the map itself: deleting a key that
    /// cannot exist succeeds or says ENOENT when permitted, EPERM otherwise.
    pub fn probe_writable(&self) -> bool {
        let absent_key = vec![0u8; self.key_size];
        match self.delete(&absent_key) {
            Ok(()) => true,
            Err(e) => e.raw_os_error() == Some(libc::ENOENT),
        }
    }
}

/// Number of possible CPUs (per-CPU maps hold one value for each).
pub fn possible_cpus() -> usize {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/possible").unwrap_or_default();
    parse_cpu_list(text.trim()).unwrap_or(1)
}

fn parse_cpu_list(text: &str) -> Option<usize> {
    let mut highest = None;
    for part in text.split(',') {
        let last = part.rsplit('-').next()?.trim().parse::<usize>().ok()?;
        highest = Some(highest.map_or(last, |h: usize| h.max(last)));
    }
    highest.map(|h| h + 1)
}

#[cfg(test)]
mod tests {
    use super::parse_cpu_list;

    #[test]
    fn parses_possible_cpu_lists() {
        assert_eq!(parse_cpu_list("0-1"), Some(2));
        assert_eq!(parse_cpu_list("0"), Some(1));
        assert_eq!(parse_cpu_list("0-3,8-11"), Some(12));
        assert_eq!(parse_cpu_list("x"), None);
    }
}
