//! The frame codec. Every frame is a little-endian `u32` payload length followed by the
//! payload, at most [`MAX_FRAME_LEN`] bytes.
//!
//! - The daemon's first frame is the Hello: `b"EXAI"`, the protocol version as a
//!   little-endian `u16`, then the bincode-encoded [`Hello`]. The fixed prefix lets an
//!   agent name a version it does not speak instead of failing to decode.
//! - Every later daemon frame is a batch: bincode of `(first_seq, events)`. Event `i` of a
//!   batch has sequence number `first_seq + i`, so the agent counts losses from gaps.
//! - The agent answers with acknowledgements: bincode of the next sequence number it
//!   expects, meaning every event below it was processed.
//!
//! Decoding never trusts the peer: lengths are checked before anything is buffered or
//! allocated, and bincode runs with an allocation limit.

use crate::event::Event;
use crate::hello::Hello;
use crate::PROTOCOL_VERSION;
use bincode::config::{self, Config};
use std::ops::Range;

/// Largest payload either side accepts.
pub const MAX_FRAME_LEN: usize = 4 << 20;

/// Most events the daemon puts in one batch.
pub const MAX_EVENTS_PER_BATCH: usize = 4096;

/// The Hello frame's prefix.
pub const MAGIC: [u8; 4] = *b"EXAI";

/// Bound on what bincode may allocate while decoding one frame. A frame of
/// `MAX_FRAME_LEN` bytes cannot legitimately claim more than this; a hostile length field
/// inside the payload fails here instead of asking the allocator for terabytes.
const DECODE_LIMIT: usize = 64 << 20;

const LEN_PREFIX: usize = 4;

fn encode_config() -> impl Config {
    config::standard()
}

fn decode_config() -> impl Config {
    config::standard().with_limit::<DECODE_LIMIT>()
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame length {len} exceeds the maximum of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("not an exai event stream: the first frame does not start with the EXAI magic")]
    BadMagic,
    #[error("unsupported protocol version {got} (this side speaks version {supported})")]
    UnsupportedVersion { got: u16, supported: u16 },
    #[error("undecodable payload: {0}")]
    BadPayload(String),
    #[error("{extra} unexpected bytes after the payload")]
    TrailingBytes { extra: usize },
}

impl FrameError {
    /// A bounded label for counting rejections.
    pub const fn reason(&self) -> &'static str {
        match self {
            FrameError::TooLarge { .. } => "bad_length",
            FrameError::BadMagic => "bad_magic",
            FrameError::UnsupportedVersion { .. } => "bad_version",
            FrameError::BadPayload(_) | FrameError::TrailingBytes { .. } => "bad_payload",
        }
    }
}

/// A frame sent by the daemon.
#[derive(Debug, Clone, PartialEq)]
pub enum DaemonFrame {
    Hello(Hello),
    Batch { first_seq: u64, events: Vec<Event> },
}

/// Appends a Hello frame for this protocol version to `out`.
pub fn encode_hello(hello: &Hello, out: &mut Vec<u8>) {
    encode_hello_as_version(PROTOCOL_VERSION, hello, out);
}

/// Appends a Hello frame claiming `version`. Only tests of version refusal need another
/// version than [`PROTOCOL_VERSION`].
pub fn encode_hello_as_version(version: u16, hello: &Hello, out: &mut Vec<u8>) {
    let at = begin_frame(out);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&version.to_le_bytes());
    encode_value(hello, out);
    // A Hello is a few hundred bytes: it cannot exceed the frame limit.
    let _ = end_frame(out, at);
}

/// Appends a batch frame to `out`. Fails, leaving `out` as it was, when the encoded batch
/// would exceed [`MAX_FRAME_LEN`].
pub fn encode_batch(first_seq: u64, events: &[Event], out: &mut Vec<u8>) -> Result<(), FrameError> {
    let at = begin_frame(out);
    encode_value((first_seq, events), out);
    end_frame(out, at)
}

/// Appends an acknowledgement frame to `out`.
pub fn encode_ack(next_seq: u64, out: &mut Vec<u8>) {
    let at = begin_frame(out);
    encode_value(next_seq, out);
    let _ = end_frame(out, at);
}

fn begin_frame(out: &mut Vec<u8>) -> usize {
    let at = out.len();
    out.extend_from_slice(&[0; LEN_PREFIX]);
    at
}

fn end_frame(out: &mut Vec<u8>, at: usize) -> Result<(), FrameError> {
    let len = out.len() - at - LEN_PREFIX;
    if len > MAX_FRAME_LEN {
        out.truncate(at);
        return Err(FrameError::TooLarge {
            len,
            max: MAX_FRAME_LEN,
        });
    }
    out[at..at + LEN_PREFIX].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(())
}

fn encode_value<T: bincode::Encode>(value: T, out: &mut Vec<u8>) {
    // Writing into a Vec cannot fail, and every type on the wire encodes infallibly.
    let _ = bincode::encode_into_std_write(value, out, encode_config());
}

fn decode_exact<T: bincode::Decode<()>>(payload: &[u8]) -> Result<T, FrameError> {
    let (value, read) = bincode::decode_from_slice(payload, decode_config())
        .map_err(|e| FrameError::BadPayload(e.to_string()))?;
    if read != payload.len() {
        return Err(FrameError::TrailingBytes {
            extra: payload.len() - read,
        });
    }
    Ok(value)
}

/// Decodes a Hello payload (the frame without its length prefix).
pub fn decode_hello(payload: &[u8]) -> Result<Hello, FrameError> {
    if payload.len() < MAGIC.len() + 2 || payload[..MAGIC.len()] != MAGIC {
        return Err(FrameError::BadMagic);
    }
    let version = u16::from_le_bytes([payload[4], payload[5]]);
    if version != PROTOCOL_VERSION {
        return Err(FrameError::UnsupportedVersion {
            got: version,
            supported: PROTOCOL_VERSION,
        });
    }
    decode_exact(&payload[MAGIC.len() + 2..])
}

/// Decodes a batch payload into its first sequence number and events.
pub fn decode_batch(payload: &[u8]) -> Result<(u64, Vec<Event>), FrameError> {
    decode_exact(payload)
}

/// Bytes received but not yet consumed, split into length-prefixed payloads.
#[derive(Debug, Default)]
struct FrameBuffer {
    /// Received bytes are `buf[start..end]`; beyond `end` is room for the next read.
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl FrameBuffer {
    fn feed(&mut self, data: &[u8]) {
        self.spare(data.len())[..data.len()].copy_from_slice(data);
        self.filled(data.len());
    }

    /// Room for at least `min` more bytes after those received, consumed bytes moved
    /// out of the way first.
    fn spare(&mut self, min: usize) -> &mut [u8] {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.buf.len() < self.end + min {
            self.buf.resize(self.end + min, 0);
        }
        &mut self.buf[self.end..]
    }

    /// `n` bytes were written at the start of the last [`Self::spare`].
    fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }

    /// The next whole payload, once its length is checked and all its bytes are here.
    fn next_payload(&mut self, max: usize) -> Result<Option<Range<usize>>, FrameError> {
        let pending = &self.buf[self.start..self.end];
        if pending.len() < LEN_PREFIX {
            return Ok(None);
        }
        let len = u32::from_le_bytes([pending[0], pending[1], pending[2], pending[3]]) as usize;
        if len > max {
            return Err(FrameError::TooLarge { len, max });
        }
        if pending.len() < LEN_PREFIX + len {
            return Ok(None);
        }
        let begin = self.start + LEN_PREFIX;
        self.start = begin + len;
        Ok(Some(begin..begin + len))
    }

    fn buffered(&self) -> usize {
        self.end - self.start
    }
}

/// The agent's sans-I/O decoder for one daemon connection: feed it bytes as they arrive,
/// then take frames until it returns `None`. The first frame must be a Hello. After an
/// error the connection must be closed: the stream position is no longer known.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    frames: FrameBuffer,
    hello_seen: bool,
}

impl StreamDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn feed(&mut self, data: &[u8]) {
        self.frames.feed(data);
    }

    /// Room to read at least `min` bytes into, straight into the decoder's buffer (no
    /// second buffer per connection); then call [`Self::filled`] with what was read.
    pub fn spare(&mut self, min: usize) -> &mut [u8] {
        self.frames.spare(min)
    }

    /// `n` bytes were read into the start of the last [`Self::spare`].
    pub fn filled(&mut self, n: usize) {
        self.frames.filled(n);
    }

    pub fn next_frame(&mut self) -> Result<Option<DaemonFrame>, FrameError> {
        let Some(range) = self.frames.next_payload(MAX_FRAME_LEN)? else {
            return Ok(None);
        };
        let payload = &self.frames.buf[range];
        if self.hello_seen {
            let (first_seq, events) = decode_batch(payload)?;
            Ok(Some(DaemonFrame::Batch { first_seq, events }))
        } else {
            let hello = decode_hello(payload)?;
            self.hello_seen = true;
            Ok(Some(DaemonFrame::Hello(hello)))
        }
    }

    /// Bytes received that do not yet form a whole frame.
    pub fn buffered(&self) -> usize {
        self.frames.buffered()
    }
}

/// The daemon's decoder for acknowledgements coming back from the agent.
#[derive(Debug, Default)]
pub struct AckDecoder {
    frames: FrameBuffer,
}

impl AckDecoder {
    /// An acknowledgement is one varint; anything longer is not one.
    const MAX_ACK_LEN: usize = 16;

    pub fn new() -> Self {
        Self::default()
    }

    pub fn feed(&mut self, data: &[u8]) {
        self.frames.feed(data);
    }

    /// The next acknowledged sequence number (every event below it was processed).
    pub fn next_ack(&mut self) -> Result<Option<u64>, FrameError> {
        match self.frames.next_payload(Self::MAX_ACK_LEN)? {
            Some(range) => decode_exact(&self.frames.buf[range]).map(Some),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Direction, EventKind};
    use crate::sampling::SamplingPolicy;

    fn hello() -> Hello {
        Hello {
            instance_id: "7b0c".into(),
            pid: 42,
            version: "0.1.0".into(),
            started_at_unix_ms: 1,
            sampling: SamplingPolicy::default(),
            next_seq: 10,
            acked_seq: 7,
        }
    }

    fn event(bytes: u32) -> Event {
        Event {
            at_unix_us: 5,
            correlation: "c-1".into(),
            weight: 10,
            kind: EventKind::WsMessage {
                direction: Direction::Inbound,
                bytes,
            },
        }
    }

    #[test]
    fn a_stream_split_at_every_byte_decodes_to_the_same_frames() {
        let mut wire = Vec::new();
        encode_hello(&hello(), &mut wire);
        encode_batch(10, &[event(1), event(2)], &mut wire).unwrap();
        encode_batch(12, &[event(3)], &mut wire).unwrap();

        let mut decoder = StreamDecoder::new();
        let mut frames = Vec::new();
        for byte in &wire {
            decoder.feed(std::slice::from_ref(byte));
            while let Some(frame) = decoder.next_frame().unwrap() {
                frames.push(frame);
            }
        }
        assert_eq!(
            frames,
            vec![
                DaemonFrame::Hello(hello()),
                DaemonFrame::Batch {
                    first_seq: 10,
                    events: vec![event(1), event(2)]
                },
                DaemonFrame::Batch {
                    first_seq: 12,
                    events: vec![event(3)]
                },
            ]
        );
        assert_eq!(decoder.buffered(), 0);
    }

    /// Reads into `spare` of every size, as a connection does, whether they end inside a
    /// frame, at its end, or span several.
    #[test]
    fn reading_into_spare_room_decodes_the_same_frames() {
        let mut wire = Vec::new();
        encode_hello(&hello(), &mut wire);
        let batches: Vec<Vec<Event>> = (0..40u32)
            .map(|i| (0..i % 7).map(|k| event(i * 100 + k)).collect())
            .collect();
        let mut seq = 10;
        for batch in &batches {
            encode_batch(seq, batch, &mut wire).unwrap();
            seq += batch.len() as u64;
        }
        for read_size in [1, 3, 16, 61, 4096] {
            let mut decoder = StreamDecoder::new();
            let mut got = Vec::new();
            let mut rest = &wire[..];
            while !rest.is_empty() {
                let room = decoder.spare(read_size);
                assert!(room.len() >= read_size);
                // A read returns at most what was asked for, often less.
                let n = rest.len().min(read_size).min(1 + rest.len() % read_size);
                room[..n].copy_from_slice(&rest[..n]);
                decoder.filled(n);
                rest = &rest[n..];
                while let Some(frame) = decoder.next_frame().unwrap() {
                    if let DaemonFrame::Batch { events, .. } = frame {
                        got.push(events);
                    }
                }
            }
            assert_eq!(got, batches, "reads of up to {read_size} bytes");
            assert_eq!(decoder.buffered(), 0);
        }
    }

    #[test]
    fn another_protocol_version_is_named_in_the_error() {
        let mut wire = Vec::new();
        encode_hello_as_version(99, &hello(), &mut wire);
        let mut decoder = StreamDecoder::new();
        decoder.feed(&wire);
        let err = decoder.next_frame().unwrap_err();
        assert_eq!(
            err,
            FrameError::UnsupportedVersion {
                got: 99,
                supported: PROTOCOL_VERSION
            }
        );
        assert_eq!(
            err.to_string(),
            "unsupported protocol version 99 (this side speaks version 1)"
        );
    }

    #[test]
    fn an_oversized_length_is_refused_before_the_payload_arrives() {
        let mut decoder = StreamDecoder::new();
        decoder.feed(&((MAX_FRAME_LEN as u32) + 1).to_le_bytes());
        assert_eq!(decoder.next_frame().unwrap_err().reason(), "bad_length");
    }

    #[test]
    fn a_batch_before_the_hello_is_not_an_exai_stream() {
        let mut wire = Vec::new();
        encode_batch(0, &[event(1)], &mut wire).unwrap();
        let mut decoder = StreamDecoder::new();
        decoder.feed(&wire);
        assert_eq!(decoder.next_frame().unwrap_err(), FrameError::BadMagic);
    }

    #[test]
    fn a_hostile_element_count_fails_without_allocating_it() {
        // first_seq = 0, then a Vec length of u64::MAX (varint 0xFF + 8 bytes).
        let mut payload = vec![0u8, 0xFF];
        payload.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            decode_batch(&payload),
            Err(FrameError::BadPayload(_))
        ));
    }

    #[test]
    fn acks_decode_in_order() {
        let mut wire = Vec::new();
        encode_ack(5, &mut wire);
        encode_ack(300, &mut wire);
        let mut decoder = AckDecoder::new();
        decoder.feed(&wire);
        assert_eq!(decoder.next_ack().unwrap(), Some(5));
        assert_eq!(decoder.next_ack().unwrap(), Some(300));
        assert_eq!(decoder.next_ack().unwrap(), None);
    }
}
