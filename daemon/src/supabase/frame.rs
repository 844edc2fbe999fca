//! How one record sits in a spool segment:
//!
//! ```text
//! [payload length: u32 LE][CRC-32 (IEEE) of the length bytes then the payload: u32 LE][payload]
//! ```
//!
//! The checksum covers the length too, so a damaged length is caught rather than trusted.
//! A record is written with one `write` call; after a crash the end of a segment may hold
//! a partial record, which [`decode`] reports as [`Decoded::Torn`].

/// Bytes before the payload.
pub const HEADER: usize = 8;

/// Largest payload accepted: far above any chat turn the daemon lets through, small
/// enough that a damaged length cannot make the reader allocate gigabytes.
pub const MAX_PAYLOAD: usize = 32 << 20;

/// What the bytes at one offset hold.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A whole record; `len` is its size with the header.
    Record { payload: &'a [u8], len: usize },
    /// Nothing more: the offset is at the end.
    End,
    /// A record cut short: fewer bytes than its header promises, or not even a header.
    Torn,
    /// A whole record whose checksum does not match, or an impossible length.
    Corrupt,
}

fn checksum(len: &[u8; 4], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(len);
    h.update(payload);
    h.finalize()
}

/// Appends the framed `payload` to `out`. The caller keeps payloads under [`MAX_PAYLOAD`].
pub fn encode(payload: &[u8], out: &mut Vec<u8>) {
    debug_assert!(payload.len() <= MAX_PAYLOAD);
    let len = (payload.len() as u32).to_le_bytes();
    out.reserve(HEADER + payload.len());
    out.extend_from_slice(&len);
    out.extend_from_slice(&checksum(&len, payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// Frames a payload that was written after [`HEADER`] placeholder bytes at the start of
/// `buf`, so that a record is serialized straight into its frame without a copy.
pub fn finish(buf: &mut [u8]) {
    let payload_len = buf.len() - HEADER;
    debug_assert!(payload_len <= MAX_PAYLOAD);
    let len = (payload_len as u32).to_le_bytes();
    let crc = checksum(&len, &buf[HEADER..]);
    buf[..4].copy_from_slice(&len);
    buf[4..HEADER].copy_from_slice(&crc.to_le_bytes());
}

/// Reads the record at the start of `bytes`.
pub fn decode(bytes: &[u8]) -> Decoded<'_> {
    if bytes.is_empty() {
        return Decoded::End;
    }
    if bytes.len() < HEADER {
        return Decoded::Torn;
    }
    let len_bytes: [u8; 4] = bytes[..4].try_into().expect("4 bytes");
    let crc = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
    let len = u32::from_le_bytes(len_bytes) as usize;
    if len > MAX_PAYLOAD {
        return Decoded::Corrupt;
    }
    let Some(payload) = bytes.get(HEADER..HEADER + len) else {
        return Decoded::Torn;
    };
    if checksum(&len_bytes, payload) != crc {
        return Decoded::Corrupt;
    }
    Decoded::Record {
        payload,
        len: HEADER + len,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(payloads: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in payloads {
            encode(p, &mut out);
        }
        out
    }

    #[test]
    fn records_round_trip_one_after_another() {
        let bytes = frames(&[b"first", b"", b"third one"]);
        let mut at = 0;
        let mut seen = Vec::new();
        while let Decoded::Record { payload, len } = decode(&bytes[at..]) {
            seen.push(payload.to_vec());
            at += len;
        }
        assert_eq!(seen, [b"first".to_vec(), vec![], b"third one".to_vec()]);
        assert_eq!(decode(&bytes[at..]), Decoded::End);
    }

    #[test]
    fn finishing_in_place_matches_encoding() {
        let mut in_place = vec![0u8; HEADER];
        in_place.extend_from_slice(b"payload");
        finish(&mut in_place);
        assert_eq!(in_place, frames(&[b"payload"]));
    }

    #[test]
    fn every_truncation_of_the_last_record_is_torn() {
        let bytes = frames(&[b"kept", b"cut short by a crash"]);
        let second = HEADER + 4;
        for cut in second + 1..bytes.len() {
            assert_eq!(decode(&bytes[second..cut]), Decoded::Torn, "cut at {cut}");
        }
        assert!(matches!(
            decode(&bytes[..second]),
            Decoded::Record { len, .. } if len == second
        ));
    }

    #[test]
    fn a_flipped_bit_anywhere_is_caught() {
        let bytes = frames(&[b"a payload of some length"]);
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut damaged = bytes.clone();
                damaged[i] ^= 1 << bit;
                let got = decode(&damaged);
                assert!(
                    matches!(got, Decoded::Corrupt | Decoded::Torn),
                    "byte {i} bit {bit}: {got:?}"
                );
            }
        }
    }

    #[test]
    fn an_impossible_length_is_corrupt_not_an_allocation() {
        let mut bytes = vec![0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0];
        bytes.extend_from_slice(b"xyz");
        assert_eq!(decode(&bytes), Decoded::Corrupt);
    }
}
