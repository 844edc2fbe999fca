//! Feeds arbitrary bytes, in arbitrary chunks, to the agent's decoder and the daemon's
//! acknowledgement decoder. Run with `cargo fuzz run stream_decoder` from `proto/`.
#![no_main]

use exai_proto::{AckDecoder, StreamDecoder};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (chunk, bytes) = match data.split_first() {
        Some((c, rest)) => (usize::from(*c).max(1), rest),
        None => return,
    };
    let mut decoder = StreamDecoder::new();
    'stream: for piece in bytes.chunks(chunk) {
        decoder.feed(piece);
        loop {
            match decoder.next_frame() {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => break 'stream,
            }
        }
    }
    let mut acks = AckDecoder::new();
    acks.feed(bytes);
    while let Ok(Some(_)) = acks.next_ack() {}
});
