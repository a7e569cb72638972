//! Where the executable's bytes come from: a slice in memory, an open file (read at an
//! offset, never mapped), or any `Read + Seek`; every read is checked against the file's
//! length and a size cap before anything is allocated.

use std::cell::RefCell;
use std::io::{Read, Seek, SeekFrom};

use crate::error::GoBinError;

/// Random access to an executable's bytes.
pub trait ExecutableSource {
    /// The file's length in bytes.
    fn len(&self) -> u64;
    /// Whether the file is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Fills `buf` from `offset`; the caller has checked that the range is inside `len()`.
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()>;
}

impl ExecutableSource for [u8] {
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let start = usize::try_from(offset).map_err(|_| eof())?;
        let end = start.checked_add(buf.len()).ok_or_else(eof)?;
        let bytes = self.get(start..end).ok_or_else(eof)?;
        buf.copy_from_slice(bytes);
        Ok(())
    }
}

impl ExecutableSource for Vec<u8> {
    fn len(&self) -> u64 {
        self.as_slice().len() as u64
    }
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.as_slice().read_exact_at(offset, buf)
    }
}

impl<S: ExecutableSource + ?Sized> ExecutableSource for &S {
    fn len(&self) -> u64 {
        (**self).len()
    }
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        (**self).read_exact_at(offset, buf)
    }
}

/// An open file, read with `pread` (no shared cursor, no mapping: a file that changes under
/// us gives wrong bytes, which every later check treats like any hostile input).
#[derive(Debug)]
pub struct FileSource {
    file: std::fs::File,
    len: u64,
}

impl FileSource {
    /// Takes the file's length once, from its metadata.
    pub fn new(file: std::fs::File) -> Result<Self, GoBinError> {
        let len = file.metadata()?.len();
        Ok(Self { file, len })
    }
}

impl ExecutableSource for FileSource {
    fn len(&self) -> u64 {
        self.len
    }
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(&self.file, buf, offset)
    }
}

/// Any `Read + Seek` (its cursor moves with every read).
#[derive(Debug)]
pub struct SeekSource<R> {
    reader: RefCell<R>,
    len: u64,
}

impl<R: Read + Seek> SeekSource<R> {
    /// Takes the length by seeking to the end.
    pub fn new(mut reader: R) -> Result<Self, GoBinError> {
        let len = reader.seek(SeekFrom::End(0))?;
        Ok(Self {
            reader: RefCell::new(reader),
            len,
        })
    }
}

impl<R: Read + Seek> ExecutableSource for SeekSource<R> {
    fn len(&self) -> u64 {
        self.len
    }
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let mut reader = self
            .reader
            .try_borrow_mut()
            .map_err(|_| std::io::Error::other("reader busy"))?;
        reader.seek(SeekFrom::Start(offset))?;
        reader.read_exact(buf)
    }
}

fn eof() -> std::io::Error {
    std::io::ErrorKind::UnexpectedEof.into()
}

/// Reads `len` bytes at `offset` into a new buffer, after checking that the range is inside
/// the file and no larger than `cap` (`what` names the structure in the error).
pub(crate) fn read_range<S: ExecutableSource + ?Sized>(
    source: &S,
    offset: u64,
    len: u64,
    cap: u64,
    what: &'static str,
) -> Result<Vec<u8>, GoBinError> {
    if len > cap {
        return Err(GoBinError::TooLarge(what));
    }
    let end = offset.checked_add(len).ok_or(GoBinError::Truncated(what))?;
    if end > source.len() {
        return Err(GoBinError::Truncated(what));
    }
    let len = usize::try_from(len).map_err(|_| GoBinError::TooLarge(what))?;
    let mut buf = vec![0u8; len];
    source.read_exact_at(offset, &mut buf)?;
    Ok(buf)
}
