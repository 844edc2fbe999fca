//! Bounded label vocabularies and a fixed-capacity string, so an event is a plain value
//! that needs no heap allocation to build.

use bincode::de::{BorrowDecoder, Decoder};
use bincode::enc::Encoder;
use bincode::error::{DecodeError, EncodeError};
use bincode::{BorrowDecode, Decode, Encode};
use std::fmt;

/// Declares a closed set of label values: the enum, its Prometheus/JSON spelling, the list
/// of all values and a dense index for counter arrays.
macro_rules! label_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident { $($(#[$vmeta:meta])* $variant:ident => $label:literal),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, bincode::Encode, bincode::Decode)]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            /// Every value, in index order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// Number of values.
            pub const COUNT: usize = [$($label),+].len();

            /// The label value as it appears in metrics and JSON.
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $label),+ }
            }

            /// Dense index in `0..COUNT`, for counter arrays.
            pub const fn index(self) -> usize {
                self as usize
            }

            /// The value whose label is `s`, if any.
            pub fn from_label(s: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| v.as_str() == s)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

/// A UTF-8 string of at most `N` bytes stored inline. Longer input is cut at a character
/// boundary: labels and correlation ids are identifiers, and a bounded size keeps events
/// allocation-free and the wire format bounded.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct InlineStr<const N: usize> {
    len: u8,
    bytes: [u8; N],
}

impl<const N: usize> InlineStr<N> {
    /// Capacity in bytes.
    pub const CAPACITY: usize = N;

    /// The empty string.
    pub const fn empty() -> Self {
        assert!(N <= u8::MAX as usize, "InlineStr capacity must fit in a u8");
        Self {
            len: 0,
            bytes: [0; N],
        }
    }

    /// Copies `s`, cut to at most `N` bytes at a character boundary.
    pub fn new(s: &str) -> Self {
        let mut end = s.len().min(N);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        let mut out = Self::empty();
        out.bytes[..end].copy_from_slice(&s.as_bytes()[..end]);
        out.len = end as u8;
        out
    }

    pub fn as_str(&self) -> &str {
        // Only valid UTF-8 is ever stored: `new` cuts at a boundary, `decode` validates.
        std::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or_default()
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl<const N: usize> Default for InlineStr<N> {
    fn default() -> Self {
        Self::empty()
    }
}

impl<const N: usize> fmt::Debug for InlineStr<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl<const N: usize> fmt::Display for InlineStr<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<const N: usize> From<&str> for InlineStr<N> {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

/// On the wire: the length as a varint, then the bytes (not the whole buffer).
impl<const N: usize> Encode for InlineStr<N> {
    fn encode<E: Encoder>(&self, encoder: &mut E) -> Result<(), EncodeError> {
        self.as_str().as_bytes().encode(encoder)
    }
}

impl<Context, const N: usize> Decode<Context> for InlineStr<N> {
    fn decode<D: Decoder<Context = Context>>(decoder: &mut D) -> Result<Self, DecodeError> {
        let len = u64::decode(decoder)?;
        if len > N as u64 {
            return Err(DecodeError::OtherString(format!(
                "string of {len} bytes exceeds its capacity of {N}"
            )));
        }
        let len = len as usize;
        decoder.claim_bytes_read(len)?;
        let mut out = Self::empty();
        bincode::de::read::Reader::read(decoder.reader(), &mut out.bytes[..len])?;
        std::str::from_utf8(&out.bytes[..len]).map_err(|inner| DecodeError::Utf8 { inner })?;
        out.len = len as u8;
        Ok(out)
    }
}

impl<'de, Context, const N: usize> BorrowDecode<'de, Context> for InlineStr<N> {
    fn borrow_decode<D: BorrowDecoder<'de, Context = Context>>(
        decoder: &mut D,
    ) -> Result<Self, DecodeError> {
        <Self as Decode<Context>>::decode(decoder)
    }
}

#[cfg(test)]
mod tests {
    use super::InlineStr;

    #[test]
    fn cuts_long_input_at_a_character_boundary() {
        let s = InlineStr::<4>::new("aé€");
        assert_eq!(s.as_str(), "aé");
        assert_eq!(InlineStr::<8>::new("kimi-k2").as_str(), "kimi-k2");
        assert!(InlineStr::<8>::new("").is_empty());
    }
}
