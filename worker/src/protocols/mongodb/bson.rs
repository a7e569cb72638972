//! A reader of BSON documents (<https://bsonspec.org/spec.html>) that may be
//! cut short by the capture: it walks a document's elements in order and
//! stops, without error, at the first one whose bytes are not all there.
//! Only the values the decoder reads are decoded (strings, numbers,
//! booleans, embedded documents and arrays); every other type is skipped
//! by its size.

#![forbid(unsafe_code)]

/// One element's value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    Double(f64),
    /// A UTF-8 string's bytes, without its NUL.
    String(&'a [u8]),
    /// An embedded document's or an array's bytes (its length prefix
    /// included), as far as they were captured.
    Document(&'a [u8]),
    Array(&'a [u8]),
    Int32(i32),
    Int64(i64),
    Bool(bool),
    /// Any other type (ObjectId, dates, binary, null…).
    Other,
}

impl Value<'_> {
    /// The value as an integer, when it is a number holding one (servers
    /// write `ok` as a double, counts as 32- or 64-bit integers).
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::Int32(n) => Some(i64::from(n)),
            Value::Int64(n) => Some(n),
            Value::Double(d) if d.fract() == 0.0 && d.abs() < 9.0e15 => Some(d as i64),
            Value::Bool(b) => Some(i64::from(b)),
            _ => None,
        }
    }
}

/// One element: its key and value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Element<'a> {
    pub key: &'a [u8],
    pub value: Value<'a>,
}

/// The elements of a document, in order.
#[derive(Debug, Clone)]
pub struct Elements<'a> {
    /// The bytes after the length prefix, up to the document's declared end
    /// or the end of what was captured.
    rest: &'a [u8],
}

/// Reads a document's length prefix: the elements that follow, and whether
/// all of the document's bytes are in `bytes`. `None` when `bytes` cannot
/// start a document (a length under 5, or fewer than 4 bytes).
pub fn document(bytes: &[u8]) -> Option<(Elements<'_>, bool)> {
    let declared = usize::try_from(read_i32(bytes)?).ok()?;
    if declared < 5 {
        return None;
    }
    let whole = bytes.len() >= declared;
    // Without the terminating NUL.
    let end = if whole { declared - 1 } else { bytes.len() };
    Some((
        Elements {
            rest: &bytes[4..end],
        },
        whole,
    ))
}

fn read_i32(bytes: &[u8]) -> Option<i32> {
    Some(i32::from_le_bytes(bytes.get(..4)?.try_into().ok()?))
}

fn read_i64(bytes: &[u8]) -> Option<i64> {
    Some(i64::from_le_bytes(bytes.get(..8)?.try_into().ok()?))
}

/// A NUL-terminated string at the start of `bytes`: it and the bytes after its NUL.
pub fn cstring(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let nul = memchr::memchr(0, bytes)?;
    Some((&bytes[..nul], &bytes[nul + 1..]))
}

/// A length-prefixed value (string, binary) whose total size is `4 + len + extra`.
fn prefixed(bytes: &[u8], extra: usize) -> Option<usize> {
    let len = usize::try_from(read_i32(bytes)?).ok()?;
    4usize.checked_add(len)?.checked_add(extra)
}

impl<'a> Iterator for Elements<'a> {
    type Item = Element<'a>;

    fn next(&mut self) -> Option<Element<'a>> {
        let (&kind, after_kind) = self.rest.split_first()?;
        let (key, body) = cstring(after_kind)?;
        // Each arm: the value, and how many bytes it takes.
        let (value, size) = match kind {
            0x01 => (
                Value::Double(f64::from_le_bytes(body.get(..8)?.try_into().ok()?)),
                8,
            ),
            0x02 | 0x0D | 0x0E => {
                let size = prefixed(body, 0)?;
                let text = body.get(4..size)?;
                let text = text.strip_suffix(&[0]).unwrap_or(text);
                let value = if kind == 0x02 {
                    Value::String(text)
                } else {
                    Value::Other
                };
                (value, size)
            }
            0x03 | 0x04 => {
                let size = usize::try_from(read_i32(body)?).ok().filter(|s| *s >= 5)?;
                // Kept even when cut: what was captured of it can be read.
                let bytes = &body[..size.min(body.len())];
                let value = if kind == 0x03 {
                    Value::Document(bytes)
                } else {
                    Value::Array(bytes)
                };
                (value, size)
            }
            0x05 => (Value::Other, prefixed(body, 1)?),
            0x06 | 0x0A | 0xFF | 0x7F => (Value::Other, 0),
            0x07 => (Value::Other, 12),
            0x08 => (Value::Bool(*body.first()? != 0), 1),
            0x09 | 0x11 => (Value::Other, 8),
            0x0B => {
                let (_, after_pattern) = cstring(body)?;
                let (_, after_options) = cstring(after_pattern)?;
                (Value::Other, body.len() - after_options.len())
            }
            0x0C => (Value::Other, prefixed(body, 12)?),
            0x0F => (Value::Other, usize::try_from(read_i32(body)?).ok()?),
            0x10 => (Value::Int32(read_i32(body)?), 4),
            0x12 => (Value::Int64(read_i64(body)?), 8),
            0x13 => (Value::Other, 16),
            _ => {
                self.rest = &[];
                return None;
            }
        };
        match body.get(size..) {
            Some(after) => self.rest = after,
            None => {
                // Cut inside the value: a document or array is still
                // handed out for what was captured of it; nothing follows.
                self.rest = &[];
                if !matches!(value, Value::Document(_) | Value::Array(_)) {
                    return None;
                }
            }
        }
        Some(Element { key, value })
    }
}

/// The value of the first element named `key` in a document's elements.
pub fn find<'a>(elements: Elements<'a>, key: &[u8]) -> Option<Value<'a>> {
    elements.into_iter().find(|e| e.key == key).map(|e| e.value)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `{"find": "users", "n": 3 (int32), "ok": 1.0, "sub": {"x": true}}`.
    fn sample() -> Vec<u8> {
        let mut elements = Vec::new();
        elements.extend_from_slice(b"\x02find\0\x06\0\0\0users\0");
        elements.extend_from_slice(b"\x10n\0\x03\0\0\0");
        elements.extend_from_slice(b"\x01ok\0");
        elements.extend_from_slice(&1.0f64.to_le_bytes());
        elements.extend_from_slice(b"\x03sub\0\x09\0\0\0\x08x\0\x01\0");
        let mut doc = ((elements.len() + 5) as i32).to_le_bytes().to_vec();
        doc.extend_from_slice(&elements);
        doc.push(0);
        doc
    }

    #[test]
    fn a_whole_document_s_elements_are_read_in_order() {
        let doc = sample();
        let (elements, whole) = document(&doc).unwrap_or_else(|| panic!("not a document"));
        assert!(whole);
        let read: Vec<_> = elements.collect();
        assert_eq!(read.len(), 4);
        assert_eq!(read[0].key, b"find");
        assert_eq!(read[0].value, Value::String(b"users"));
        assert_eq!(read[1].value.as_i64(), Some(3));
        assert_eq!(read[2].value.as_i64(), Some(1));
        let Value::Document(sub) = read[3].value else {
            panic!("{:?}", read[3]);
        };
        let (inner, inner_whole) = document(sub).unwrap_or_else(|| panic!("not embedded"));
        assert!(inner_whole);
        assert_eq!(find(inner, b"x"), Some(Value::Bool(true)));
    }

    #[test]
    fn a_cut_document_yields_the_elements_before_the_cut() {
        let doc = sample();
        for cut in 0..doc.len() {
            let bytes = &doc[..cut];
            let Some((elements, whole)) = document(bytes) else {
                assert!(cut < 4);
                continue;
            };
            assert!(!whole);
            let keys: Vec<_> = elements.map(|e| e.key).collect();
            // Every element read is one of the document's, in order.
            let all: [&[u8]; 4] = [b"find", b"n", b"ok", b"sub"];
            assert_eq!(keys[..], all[..keys.len()], "cut at {cut}");
        }
    }

    #[test]
    fn hostile_lengths_end_the_walk() {
        // A string whose length runs past the end, a negative length, an
        // unknown type: no element, no panic.
        for bytes in [
            &b"\x20\0\0\0\x02k\0\xff\xff\xff\x7fab"[..],
            b"\x20\0\0\0\x02k\0\xfe\xff\xff\xffab",
            b"\x20\0\0\0\x03k\0\x02\0\0\0",
            b"\x20\0\0\0\x42k\0ab",
            b"\x04\0\0\0",
            b"\xff\xff\xff\xff",
        ] {
            let count = document(bytes).map_or(0, |(e, _)| e.count());
            assert_eq!(count, 0, "{bytes:?}");
        }
    }
}
