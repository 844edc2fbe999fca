//! The frame codec. Every frame is a little-endian `u32` payload length followed by the
//! payload, at most [`MAX_FRAME_LEN`] bytes.
//!
//! - The daemon's first frame is the Hello: `b"EXAI"`, the protocol version as a
//!   little-endian `u16`, then the [`Hello`]'s fields (a record without its length: the
//!   frame bounds it). The fixed prefix lets an agent name a version it does not speak
//!   instead of failing to decode. At most [`MAX_HELLO_LEN`] bytes.
//! - Every later daemon frame is a batch: the first event's sequence number, the number of
//!   events (a little-endian `u32`, so a sender can fill it in last), then each event (its
//!   kind's tag and its record). Event `i` of a batch has
//!   sequence number `first_seq + i`, so the agent counts losses from gaps; an event of a
//!   kind the agent does not know still takes its number.
//! - The agent answers with acknowledgements: the next sequence number it expects, meaning
//!   every event below it was processed.
//!
//! Values are encoded as `wire` describes, which also states what may change without a new
//! protocol version. Decoding never trusts the peer: lengths are checked before anything
//! is buffered or allocated.

use crate::event::Event;
pub use crate::frame_error::FrameError;
use crate::hello::Hello;
use crate::wire::{Reader, Unknown, Writer};
use crate::PROTOCOL_VERSION;
use std::ops::Range;

/// Largest payload either side accepts.
pub const MAX_FRAME_LEN: usize = 4 << 20;

/// Largest Hello an agent accepts: what a connection may make it buffer before it has said
/// who it is. A Hello is a few hundred bytes, plus ~50 bytes per model in its catalogue.
pub const MAX_HELLO_LEN: usize = 256 << 10;

/// Most events the daemon puts in one batch.
pub const MAX_EVENTS_PER_BATCH: usize = 4096;

/// The Hello frame's prefix.
pub const MAGIC: [u8; 4] = *b"EXAI";

const LEN_PREFIX: usize = 4;

/// A frame sent by the daemon.
#[derive(Debug, Clone, PartialEq)]
pub enum DaemonFrame {
    Hello {
        hello: Hello,
        /// Fields of a newer daemon's Hello that were skipped.
        unknown: Unknown,
    },
    Batch(Batch),
}

/// A batch of events as the agent decoded it.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub first_seq: u64,
    /// The events of kinds this side knows, in order.
    pub events: Vec<Event>,
    /// How many sequence numbers the batch covers: its events and those skipped.
    pub len: u64,
    /// What was skipped because the daemon is newer.
    pub unknown: Unknown,
}

/// Appends one frame to `out`: its length, then what `payload` writes. Fails, leaving
/// `out` as it was, when the payload would exceed [`MAX_FRAME_LEN`].
pub fn encode_frame(
    out: &mut Vec<u8>,
    payload: impl FnOnce(&mut Writer<'_>),
) -> Result<(), FrameError> {
    let at = out.len();
    out.extend_from_slice(&[0; LEN_PREFIX]);
    payload(&mut Writer::new(out));
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

/// Appends a Hello frame for this protocol version to `out`.
pub fn encode_hello(hello: &Hello, out: &mut Vec<u8>) {
    encode_hello_as_version(PROTOCOL_VERSION, hello, out);
}

/// Appends a Hello frame claiming `version`. Only tests of version refusal need another
/// version than [`PROTOCOL_VERSION`].
pub fn encode_hello_as_version(version: u16, hello: &Hello, out: &mut Vec<u8>) {
    // A Hello with a catalogue of a thousand models is ~50 KB: it cannot exceed the limit.
    let _ = encode_frame(out, |w| {
        w.raw(&MAGIC);
        w.raw(&version.to_le_bytes());
        hello.write_fields(w);
    });
}

/// Appends a batch frame to `out`. Fails, leaving `out` as it was, when the encoded batch
/// would exceed [`MAX_FRAME_LEN`].
pub fn encode_batch(first_seq: u64, events: &[Event], out: &mut Vec<u8>) -> Result<(), FrameError> {
    let mut batch = BatchEncoder::begin(out, first_seq);
    events.iter().for_each(|e| batch.push(out, e));
    batch.finish(out)
}

/// Writes a batch frame as its events come, so a sender can encode each event straight
/// from wherever it holds it: the header first, each event appended, and the frame's length
/// and event count filled in at the end.
#[derive(Debug)]
pub struct BatchEncoder {
    /// Where the frame starts in the buffer.
    at: usize,
    /// Where its event count goes.
    count_at: usize,
    count: u32,
}

impl BatchEncoder {
    pub fn begin(out: &mut Vec<u8>, first_seq: u64) -> Self {
        let at = out.len();
        out.extend_from_slice(&[0; LEN_PREFIX]);
        Writer::new(out).primitive(first_seq);
        let count_at = out.len();
        out.extend_from_slice(&[0; 4]);
        Self {
            at,
            count_at,
            count: 0,
        }
    }

    pub fn push(&mut self, out: &mut Vec<u8>, event: &Event) {
        event.write(&mut Writer::new(out));
        self.count += 1;
    }

    /// Events pushed so far.
    pub fn len(&self) -> u32 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Completes the frame. Fails, leaving `out` as it was before [`Self::begin`], when it
    /// would exceed [`MAX_FRAME_LEN`].
    pub fn finish(self, out: &mut Vec<u8>) -> Result<(), FrameError> {
        let len = out.len() - self.at - LEN_PREFIX;
        if len > MAX_FRAME_LEN {
            out.truncate(self.at);
            return Err(FrameError::TooLarge {
                len,
                max: MAX_FRAME_LEN,
            });
        }
        out[self.at..self.at + LEN_PREFIX].copy_from_slice(&(len as u32).to_le_bytes());
        out[self.count_at..self.count_at + 4].copy_from_slice(&self.count.to_le_bytes());
        Ok(())
    }
}

/// Appends an acknowledgement frame to `out`.
pub fn encode_ack(next_seq: u64, out: &mut Vec<u8>) {
    let _ = encode_frame(out, |w| w.primitive(next_seq));
}

/// Decodes a Hello payload (the frame without its length prefix), with what a newer
/// daemon sent that this side skipped.
pub fn decode_hello(payload: &[u8]) -> Result<(Hello, Unknown), FrameError> {
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
    let mut r = Reader::new(&payload[MAGIC.len() + 2..]);
    let hello = Hello::read_fields(&mut r)?;
    if !r.is_empty() {
        r.unknown.fields = r.unknown.fields.saturating_add(1);
    }
    Ok((hello, r.unknown))
}

/// Decodes a batch payload.
pub fn decode_batch(payload: &[u8]) -> Result<Batch, FrameError> {
    let mut r = Reader::new(payload);
    let first_seq: u64 = r.primitive()?;
    let count = u32::from_le_bytes(
        r.take(4)?
            .try_into()
            .map_err(|_| FrameError::BadPayload("event count".into()))?,
    ) as usize;
    // Every event takes at least two bytes: a count beyond that is a lie.
    if count > r.remaining() / 2 {
        return Err(FrameError::BadPayload(format!(
            "{count} events announced in {} bytes",
            r.remaining()
        )));
    }
    let mut events = Vec::with_capacity(count);
    for _ in 0..count {
        if let Some(event) = Event::read(&mut r)? {
            events.push(event);
        }
    }
    if !r.is_empty() {
        return Err(FrameError::TrailingBytes {
            extra: r.remaining(),
        });
    }
    Ok(Batch {
        first_seq,
        events,
        len: count as u64,
        unknown: r.unknown,
    })
}

fn decode_ack(payload: &[u8]) -> Result<u64, FrameError> {
    let mut r = Reader::new(payload);
    let seq = r.primitive()?;
    if !r.is_empty() {
        return Err(FrameError::TrailingBytes {
            extra: r.remaining(),
        });
    }
    Ok(seq)
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
        let max = if self.hello_seen {
            MAX_FRAME_LEN
        } else {
            MAX_HELLO_LEN
        };
        let Some(range) = self.frames.next_payload(max)? else {
            return Ok(None);
        };
        let payload = &self.frames.buf[range];
        if self.hello_seen {
            decode_batch(payload).map(|batch| Some(DaemonFrame::Batch(batch)))
        } else {
            let (hello, unknown) = decode_hello(payload)?;
            self.hello_seen = true;
            Ok(Some(DaemonFrame::Hello { hello, unknown }))
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
            Some(range) => decode_ack(&self.frames.buf[range]).map(Some),
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
            name: "host:8079".into(),
            pid: 42,
            version: "0.1.0".into(),
            started_at_unix_ms: 1,
            sampling: SamplingPolicy::default(),
            next_seq: 10,
            acked_seq: 7,
            models: vec![],
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
                DaemonFrame::Hello {
                    hello: hello(),
                    unknown: Unknown::default()
                },
                DaemonFrame::Batch(Batch {
                    first_seq: 10,
                    events: vec![event(1), event(2)],
                    len: 2,
                    unknown: Unknown::default()
                }),
                DaemonFrame::Batch(Batch {
                    first_seq: 12,
                    events: vec![event(3)],
                    len: 1,
                    unknown: Unknown::default()
                }),
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
                    if let DaemonFrame::Batch(batch) = frame {
                        got.push(batch.events);
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
            format!(
                "unsupported protocol version 99 (this side speaks version {PROTOCOL_VERSION})"
            )
        );
    }

    #[test]
    fn an_oversized_length_is_refused_before_the_payload_arrives() {
        let mut decoder = StreamDecoder::new();
        decoder.feed(&((MAX_FRAME_LEN as u32) + 1).to_le_bytes());
        assert_eq!(decoder.next_frame().unwrap_err().reason(), "bad_length");
    }

    #[test]
    fn a_hello_larger_than_its_limit_is_refused_before_it_is_buffered() {
        let mut decoder = StreamDecoder::new();
        decoder.feed(&((MAX_HELLO_LEN as u32) + 1).to_le_bytes());
        assert_eq!(
            decoder.next_frame().unwrap_err(),
            FrameError::TooLarge {
                len: MAX_HELLO_LEN + 1,
                max: MAX_HELLO_LEN
            }
        );
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
        // A batch announcing more events than its bytes could hold.
        let mut payload = vec![0u8];
        payload.extend_from_slice(&u32::MAX.to_le_bytes());
        payload.extend_from_slice(&[0; 16]);
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
