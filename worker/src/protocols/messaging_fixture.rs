//! The messaging decoders' recorded exchanges (`worker/testdata/`) replayed
//! into [`MessagingCall`]s, as `db::fixture` replays the databases'.

use super::db::fixture::{captured_pieces, connections, replay, Chunk, Cut};
use super::messaging_call::MessagingCall;
use super::messaging_session::MessagingDecoder;

/// The operations `decoder` makes of one recorded connection, closed at ts 1,000,000.
pub fn decode_chunks<D: MessagingDecoder>(
    chunks: &[Chunk],
    cut: Cut,
    mut decoder: D,
) -> Vec<MessagingCall> {
    let mut out = Vec::new();
    replay(chunks, cut, |direction, captured, gap, ts| {
        decoder.feed(direction, captured, gap, ts, &mut out)
    });
    decoder.finish(1_000_000, &mut out);
    out
}

/// The operations of every connection of a recording, each on a new decoder.
pub fn decode<D: MessagingDecoder>(fixture: &str, cut: Cut) -> Vec<MessagingCall> {
    connections(fixture)
        .iter()
        .flat_map(|chunks| decode_chunks(chunks, cut, D::new()))
        .collect()
}

/// The operations of a recording's `turns` when each is written or read in
/// the pieces `captured_pieces` makes of it (`first`, then `size` bytes,
/// 512 captured of each); turn `i` is at ts `(i+1)*1000`.
pub fn decode_turns<D: MessagingDecoder>(
    turns: &[Chunk],
    first: usize,
    size: usize,
) -> Vec<MessagingCall> {
    let mut decoder = D::new();
    let mut out = Vec::new();
    for (i, (direction, bytes)) in turns.iter().enumerate() {
        let ts = (i as u64 + 1) * 1000;
        for (captured, gap) in captured_pieces(bytes, first, size, 512) {
            decoder.feed(*direction, &captured, gap, ts, &mut out);
        }
    }
    decoder.finish(1_000_000, &mut out);
    out
}
