//! The encoding every frame's payload is made of, and the compatibility rule it keeps.
//!
//! Numbers, booleans and strings are bincode's (standard config: varint integers). Structures
//! are *records*: a length (varint), then their fields in declaration order. A reader takes a
//! record's bytes whole, reads the fields it knows, and
//! - skips the bytes after them: fields a newer peer appended (counted in [`Unknown::fields`]);
//! - reads a field that is not there as its default: a field an older peer never sent.
//!
//! Label values (tool, method, status, …) travel as their index; one this side does not know
//! reads as the enum's fallback (`other`, counted in [`Unknown::label_values`]). Events carry
//! a kind tag before their record, so an event of a kind this side does not know is skipped
//! whole (counted in [`Unknown::event_kinds`]).
//!
//! What may change without a new protocol version:
//! - a new field appended at the end of any record, with a default that means "not sent";
//! - a new label value appended at the end of its enum;
//! - a new event kind with a new tag.
//!
//! Anything else (removing, reordering or retyping a field, renumbering a label or a tag,
//! changing the frame layout) is a new protocol version.

use crate::frame_error::FrameError;
use bincode::config::{self, Config};

/// What a reader skipped because the peer is newer than this side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Unknown {
    /// Events of a kind this side does not know.
    pub event_kinds: u32,
    /// Records that carried fields after the ones this side knows.
    pub fields: u32,
    /// Label values this side does not know, read as the enum's fallback.
    pub label_values: u32,
}

impl Unknown {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    pub fn add(&mut self, other: Unknown) {
        self.event_kinds = self.event_kinds.saturating_add(other.event_kinds);
        self.fields = self.fields.saturating_add(other.fields);
        self.label_values = self.label_values.saturating_add(other.label_values);
    }
}

fn bincode_config() -> impl Config {
    config::standard()
}

/// Appends encoded values to a buffer.
pub struct Writer<'a> {
    out: &'a mut Vec<u8>,
}

impl<'a> Writer<'a> {
    pub fn new(out: &'a mut Vec<u8>) -> Self {
        Self { out }
    }

    /// An unsigned integer as bincode's varint: below 251 it is that one byte, the common
    /// case written here directly; wider values go through bincode.
    pub fn unsigned(&mut self, value: u64) {
        if value < 251 {
            self.out.push(value as u8);
        } else {
            self.primitive(value);
        }
    }

    /// A number, boolean or other bincode primitive.
    pub fn primitive<T: bincode::Encode>(&mut self, value: T) {
        // Writing into a Vec cannot fail, and the primitives encode infallibly.
        let _ = bincode::encode_into_std_write(value, self.out, bincode_config());
    }

    /// Bytes with their length first.
    pub fn bytes(&mut self, bytes: &[u8]) {
        self.unsigned(bytes.len() as u64);
        self.out.extend_from_slice(bytes);
    }

    /// Bytes as they are, for fixed prefixes.
    pub fn raw(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    /// A record: its length, then what `fields` writes.
    pub fn record(&mut self, fields: impl FnOnce(&mut Writer<'_>)) {
        // One byte of length is the common case (a varint below 251); a longer record
        // moves its body to make room for the wider length.
        let at = self.out.len();
        self.out.push(0);
        fields(&mut Writer { out: self.out });
        let len = self.out.len() - at - 1;
        let mut prefix = [0u8; 9];
        let width = bincode::encode_into_slice(len as u64, &mut prefix, bincode_config())
            .expect("a u64 varint fits in 9 bytes");
        self.out.splice(at..at + 1, prefix[..width].iter().copied());
    }
}

/// Reads encoded values from a slice.
pub struct Reader<'a> {
    input: &'a [u8],
    /// What was skipped so far.
    pub unknown: Unknown,
}

impl<'a> Reader<'a> {
    pub fn new(input: &'a [u8]) -> Self {
        Self {
            input,
            unknown: Unknown::default(),
        }
    }

    /// Whether everything was read.
    pub fn is_empty(&self) -> bool {
        self.input.is_empty()
    }

    pub fn remaining(&self) -> usize {
        self.input.len()
    }

    pub fn primitive<T: bincode::Decode<()>>(&mut self) -> Result<T, FrameError> {
        let (value, read) = bincode::decode_from_slice(self.input, bincode_config())
            .map_err(|e| FrameError::BadPayload(e.to_string()))?;
        self.input = &self.input[read..];
        Ok(value)
    }

    /// An unsigned integer written by [`Writer::unsigned`] (bincode's varint): one byte
    /// below 251, read here directly; wider values through bincode.
    pub fn unsigned<T: bincode::Decode<()> + From<u8>>(&mut self) -> Result<T, FrameError> {
        match self.input.first() {
            Some(&b) if b < 251 => {
                self.input = &self.input[1..];
                Ok(T::from(b))
            }
            _ => self.primitive(),
        }
    }

    /// A length or element count, checked against the bytes that are left (every element
    /// takes at least one byte), so a hostile count fails before anything is allocated.
    pub fn count(&mut self) -> Result<usize, FrameError> {
        let n: u64 = self.unsigned()?;
        if n > self.input.len() as u64 {
            return Err(FrameError::BadPayload(format!(
                "length {n} exceeds the {} bytes left",
                self.input.len()
            )));
        }
        Ok(n as usize)
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        if n > self.input.len() {
            return Err(FrameError::BadPayload(format!(
                "{n} bytes announced, {} left",
                self.input.len()
            )));
        }
        let (taken, rest) = self.input.split_at(n);
        self.input = rest;
        Ok(taken)
    }

    pub fn bytes(&mut self) -> Result<&'a [u8], FrameError> {
        let n = self.count()?;
        self.take(n)
    }

    /// A record: `fields` reads what it knows from the record's bytes; what it leaves is
    /// skipped and counted.
    pub fn record<T>(
        &mut self,
        fields: impl FnOnce(&mut Reader<'a>) -> Result<T, FrameError>,
    ) -> Result<T, FrameError> {
        let body = self.bytes()?;
        let outer = std::mem::replace(&mut self.input, body);
        let value = fields(self);
        let left = std::mem::replace(&mut self.input, outer);
        if value.is_ok() && !left.is_empty() {
            self.unknown.fields = self.unknown.fields.saturating_add(1);
        }
        value
    }

    /// Skips a record whole.
    pub fn skip_record(&mut self) -> Result<(), FrameError> {
        self.bytes().map(|_| ())
    }

    /// The next field of a record, or its default when the record has ended (an older
    /// peer did not send it).
    pub fn field<T: Wire + Default>(&mut self) -> Result<T, FrameError> {
        if self.input.is_empty() {
            Ok(T::default())
        } else {
            T::read(self)
        }
    }
}

/// A value that travels between daemon and agent.
pub trait Wire: Sized {
    fn write(&self, w: &mut Writer<'_>);
    fn read(r: &mut Reader<'_>) -> Result<Self, FrameError>;
}

macro_rules! wire_primitive {
    ($($t:ty),+) => {$(
        impl Wire for $t {
            fn write(&self, w: &mut Writer<'_>) {
                w.primitive(*self);
            }
            fn read(r: &mut Reader<'_>) -> Result<Self, FrameError> {
                r.primitive()
            }
        }
    )+};
}

wire_primitive!(bool, u8, i64, f32, f64);

macro_rules! wire_unsigned {
    ($($t:ty),+) => {$(
        impl Wire for $t {
            fn write(&self, w: &mut Writer<'_>) {
                w.unsigned(u64::from(*self));
            }
            fn read(r: &mut Reader<'_>) -> Result<Self, FrameError> {
                r.unsigned()
            }
        }
    )+};
}

wire_unsigned!(u16, u32, u64);

impl<T: Wire> Wire for Vec<T> {
    fn write(&self, w: &mut Writer<'_>) {
        w.unsigned(self.len() as u64);
        self.iter().for_each(|v| v.write(w));
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, FrameError> {
        let n = r.count()?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(T::read(r)?);
        }
        Ok(out)
    }
}

impl<T: Wire> Wire for Option<T> {
    fn write(&self, w: &mut Writer<'_>) {
        match self {
            None => w.primitive(0u8),
            Some(v) => {
                w.primitive(1u8);
                v.write(w);
            }
        }
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, FrameError> {
        match r.primitive::<u8>()? {
            0 => Ok(None),
            1 => T::read(r).map(Some),
            tag => Err(FrameError::BadPayload(format!("option tag {tag}"))),
        }
    }
}

impl<T: Wire> Wire for Box<T> {
    fn write(&self, w: &mut Writer<'_>) {
        (**self).write(w);
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, FrameError> {
        T::read(r).map(Box::new)
    }
}

/// Declares a record: the struct, and its encoding as a length and its fields in order.
/// New fields go at the end, with a default that means "not sent" (see the module docs).
macro_rules! record {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $($(#[$fmeta:meta])* pub $field:ident : $ty:ty),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        pub struct $name {
            $($(#[$fmeta])* pub $field: $ty),+
        }

        impl $name {
            /// Writes the fields without the record's length (for a record inlined in
            /// another, such as an event's payload).
            #[allow(dead_code)]
            pub(crate) fn write_fields(&self, w: &mut $crate::wire::Writer<'_>) {
                $( $crate::wire::Wire::write(&self.$field, w); )+
            }

            /// Reads the fields written by [`Self::write_fields`]; missing ones default.
            #[allow(dead_code)]
            pub(crate) fn read_fields(
                r: &mut $crate::wire::Reader<'_>,
            ) -> Result<Self, $crate::frame_error::FrameError> {
                Ok(Self { $($field: r.field()?),+ })
            }
        }

        impl $crate::wire::Wire for $name {
            fn write(&self, w: &mut $crate::wire::Writer<'_>) {
                w.record(|w| self.write_fields(w));
            }

            fn read(r: &mut $crate::wire::Reader<'_>) -> Result<Self, $crate::frame_error::FrameError> {
                r.record(Self::read_fields)
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    record! {
        #[derive(Debug, Clone, PartialEq, Default)]
        pub struct Old {
            pub a: u64,
            pub b: Vec<u32>,
        }
    }

    record! {
        #[derive(Debug, Clone, PartialEq, Default)]
        pub struct New {
            pub a: u64,
            pub b: Vec<u32>,
            pub c: Option<u64>,
            pub d: Vec<u8>,
        }
    }

    fn encode<T: Wire>(value: &T) -> Vec<u8> {
        let mut out = Vec::new();
        value.write(&mut Writer::new(&mut out));
        out
    }

    #[test]
    fn an_older_reader_skips_appended_fields_and_counts_them() {
        let new = New {
            a: 7,
            b: vec![1, 2],
            c: Some(9),
            d: vec![3; 400],
        };
        let bytes = encode(&vec![new.clone(), new]);
        let mut r = Reader::new(&bytes);
        let old: Vec<Old> = Wire::read(&mut r).unwrap();
        assert!(r.is_empty());
        assert_eq!(
            old,
            vec![
                Old {
                    a: 7,
                    b: vec![1, 2]
                };
                2
            ]
        );
        assert_eq!(r.unknown.fields, 2);
    }

    #[test]
    fn a_newer_reader_defaults_fields_an_older_peer_never_sent() {
        let bytes = encode(&Old { a: 1, b: vec![5] });
        let mut r = Reader::new(&bytes);
        let new = New::read(&mut r).unwrap();
        assert_eq!(
            new,
            New {
                a: 1,
                b: vec![5],
                c: None,
                d: vec![]
            }
        );
        assert!(r.unknown.is_empty());
    }

    #[test]
    fn records_longer_than_a_one_byte_length_round_trip() {
        for n in [0, 1, 249, 250, 251, 300, 70_000] {
            let value = New {
                a: u64::MAX,
                b: vec![],
                c: None,
                d: vec![1; n],
            };
            let bytes = encode(&value);
            let mut r = Reader::new(&bytes);
            assert_eq!(New::read(&mut r).unwrap(), value, "{n} bytes");
            assert!(r.is_empty());
        }
    }

    #[test]
    fn unsigned_integers_are_bincodes_varints() {
        for n in [
            0u64,
            1,
            250,
            251,
            252,
            65_535,
            65_536,
            u32::MAX as u64,
            u64::MAX,
        ] {
            let mut ours = Vec::new();
            Writer::new(&mut ours).unsigned(n);
            let theirs = bincode::encode_to_vec(n, bincode_config()).unwrap();
            assert_eq!(ours, theirs, "{n}");
            let mut r = Reader::new(&ours);
            assert_eq!(r.unsigned::<u64>().unwrap(), n);
            assert!(r.is_empty());
        }
        // A u32 field holding a u64's width fails, it is not cut.
        let mut wide = Vec::new();
        Writer::new(&mut wide).unsigned(u64::MAX);
        assert!(Reader::new(&wide).unsigned::<u32>().is_err());
    }

    #[test]
    fn a_hostile_count_fails_before_allocating() {
        let mut bytes = Vec::new();
        Writer::new(&mut bytes).primitive(u64::MAX);
        let mut r = Reader::new(&bytes);
        assert!(matches!(
            Vec::<u64>::read(&mut r),
            Err(FrameError::BadPayload(_))
        ));
    }
}
