//! What the database decoders' fuzz targets share: the input read as a
//! sequence of captured segments, both directions, with gaps.

use zerotrace_shared::event::Direction;
use zerotrace_worker::protocols::db::DbConnection;

/// Feeds `data` to `connection` as segments. Layout: `[control][len][len bytes]...`;
/// control bit 0: a client write, bit 1: a gap (bytes not captured) follows,
/// bit 2 (with a gap): the last `len / 2` bytes, at most 128, are the
/// segment's end copied apart (a tail), after the gap.
/// Every operation out must end no earlier than it started.
pub fn replay(mut connection: impl DbConnection, data: &[u8]) {
    let mut out = Vec::new();
    let mut ts = 0u64;
    let mut rest = data;
    while let [control, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (segment, next) = tail.split_at(len);
        let direction = if control & 1 == 1 { Direction::Egress } else { Direction::Ingress };
        let gap = if control & 2 == 2 { u64::from(*control) * 37 } else { 0 };
        let (captured, end) = if gap > 0 && control & 4 == 4 {
            segment.split_at(segment.len() - (segment.len() / 2).min(128))
        } else {
            (segment, &[][..])
        };
        ts += 1;
        connection.feed_with_tail(direction, captured, gap + end.len() as u64, end, ts, &mut out);
        rest = next;
    }
    connection.finish(ts + 1, &mut out);
    assert!(out.iter().all(|op| op.end_ns >= op.start_ns));
}
