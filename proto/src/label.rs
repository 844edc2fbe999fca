//! Bounded label vocabularies and a fixed-capacity string, so an event is a plain value
//! that needs no heap allocation to build.

use std::fmt;

/// Declares a set of label values: the enum, its Prometheus/JSON spelling, the list of all
/// values and a dense index for counter arrays. With `fallback`, the enum also travels on the
/// wire: as its index, a value this side does not know reading as the fallback (a newer
/// peer's value; see `wire`). New values go at the end: the index is the wire format.
macro_rules! label_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident { $($(#[$vmeta:meta])* $variant:ident => $label:literal),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
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

            /// The value at `index`, if there is one.
            pub fn from_index(index: usize) -> Option<Self> {
                Self::ALL.get(index).copied()
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
    (
        $(#[$meta:meta])*
        pub enum $name:ident { $($(#[$vmeta:meta])* $variant:ident => $label:literal),+ $(,)? }
        fallback $fallback:ident
    ) => {
        label_enum! {
            $(#[$meta])*
            pub enum $name { $($(#[$vmeta])* $variant => $label),+ }
        }

        /// The fallback: what a value this side does not know reads as.
        impl Default for $name {
            fn default() -> Self {
                $name::$fallback
            }
        }

        impl $crate::wire::Wire for $name {
            fn write(&self, w: &mut $crate::wire::Writer<'_>) {
                w.unsigned(self.index() as u64);
            }

            fn read(r: &mut $crate::wire::Reader<'_>) -> Result<Self, $crate::frame_error::FrameError> {
                let index: u32 = r.unsigned()?;
                Ok(match Self::from_index(index as usize) {
                    Some(value) => value,
                    None => {
                        r.unknown.label_values = r.unknown.label_values.saturating_add(1);
                        $name::$fallback
                    }
                })
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

/// On the wire: the length as a varint, then the bytes. A longer string from a newer peer
/// is cut to this side's capacity, like any other input.
impl<const N: usize> crate::wire::Wire for InlineStr<N> {
    fn write(&self, w: &mut crate::wire::Writer<'_>) {
        w.bytes(self.as_str().as_bytes());
    }

    fn read(r: &mut crate::wire::Reader<'_>) -> Result<Self, crate::frame_error::FrameError> {
        let bytes = r.bytes()?;
        let s = std::str::from_utf8(bytes)
            .map_err(|e| crate::frame_error::FrameError::BadPayload(format!("string: {e}")))?;
        Ok(Self::new(s))
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
