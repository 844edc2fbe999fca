//! Walking the records of a stretch of segment held in memory, past damage: a record
//! whose checksum fails (a flipped byte) or that is cut short is skipped, and the walk
//! goes on at the next whole record.
//!
//! Finding that record: first the damaged one's own length is trusted, when a whole
//! record (or the end) follows it; a flipped byte in a payload or checksum costs nothing
//! more. Otherwise every later offset is tried until one holds a record whose checksum
//! matches. The checksum is computed only where the length fits in what is left and the
//! payload begins as every spooled record does (its format number and a newline, see
//! [`crate::supabase::record`]), so a stretch of garbage costs one pass over it.

use crate::supabase::frame::{self, Decoded, HEADER, MAX_PAYLOAD};

/// What one step of a walk found.
#[derive(Debug, PartialEq, Eq)]
pub enum Step<'a> {
    /// A whole record: its payload, and where the next record starts.
    Record { payload: &'a [u8], next: usize },
    /// Damaged or torn bytes from the offset up to `next`, where a whole record starts or
    /// the data ends.
    Damaged { next: usize },
    /// The end of the data.
    End,
}

/// The record at `at` in `data`, whose end is the end of whole data (a file's length, or
/// where the writer stopped): a record cut short there is damage, not "come back later".
pub fn step(data: &[u8], at: usize) -> Step<'_> {
    match frame::decode(&data[at..]) {
        Decoded::Record { payload, len } => Step::Record {
            payload,
            next: at + len,
        },
        Decoded::End => Step::End,
        Decoded::Torn | Decoded::Corrupt => Step::Damaged {
            next: resync(data, at),
        },
    }
}

/// Where the next whole record after the damaged one at `at` starts, or `data.len()`.
pub fn resync(data: &[u8], at: usize) -> usize {
    if let Some(next) = claimed_end(data, at) {
        if next == data.len() || matches!(frame::decode(&data[next..]), Decoded::Record { .. }) {
            return next;
        }
    }
    (at + 1..data.len())
        .find(|&o| {
            plausible(&data[o..]) && matches!(frame::decode(&data[o..]), Decoded::Record { .. })
        })
        .unwrap_or(data.len())
}

/// Where the record at `at` ends if its length is right.
fn claimed_end(data: &[u8], at: usize) -> Option<usize> {
    let header = data.get(at..at + HEADER)?;
    let len = u32::from_le_bytes(header[..4].try_into().ok()?) as usize;
    let end = at.checked_add(HEADER)?.checked_add(len)?;
    (len <= MAX_PAYLOAD && end <= data.len()).then_some(end)
}

/// Whether a record may start at the beginning of `data`, before its checksum is
/// computed: its length fits what is left, and its payload starts with the record
/// format's first line (digits, then a newline).
fn plausible(data: &[u8]) -> bool {
    let Some(header) = data.get(..HEADER) else {
        return false;
    };
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    if len > MAX_PAYLOAD || len > data.len() - HEADER {
        return false;
    }
    let payload = &data[HEADER..HEADER + len];
    let digits = payload.iter().take_while(|b| b.is_ascii_digit()).count();
    digits > 0 && payload.get(digits) == Some(&b'\n')
}

/// Whole records in `data`, damage skipped; and the damaged stretches.
pub fn count(data: &[u8]) -> (u64, u64) {
    let (mut records, mut damaged, mut at) = (0, 0, 0);
    loop {
        match step(data, at) {
            Step::Record { next, .. } => {
                records += 1;
                at = next;
            }
            Step::Damaged { next } => {
                damaged += 1;
                at = next;
            }
            Step::End => return (records, damaged),
        }
    }
}

/// Where the last whole record of `data` ends: bytes after it hold no record.
pub fn end_of_records(data: &[u8]) -> usize {
    let (mut at, mut end) = (0, 0);
    loop {
        match step(data, at) {
            Step::Record { next, .. } => {
                at = next;
                end = next;
            }
            Step::Damaged { next } => at = next,
            Step::End => return end,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(payloads: &[&str]) -> (Vec<u8>, Vec<usize>) {
        let mut out = Vec::new();
        let mut starts = Vec::new();
        for p in payloads {
            starts.push(out.len());
            frame::encode(p.as_bytes(), &mut out);
        }
        (out, starts)
    }

    fn walk(data: &[u8]) -> (Vec<String>, u64) {
        let (mut at, mut seen, mut damaged) = (0, Vec::new(), 0);
        loop {
            match step(data, at) {
                Step::Record { payload, next } => {
                    seen.push(String::from_utf8_lossy(payload).into_owned());
                    at = next;
                }
                Step::Damaged { next } => {
                    damaged += 1;
                    at = next;
                }
                Step::End => return (seen, damaged),
            }
        }
    }

    const TWELVE: [&str; 12] = [
        "1\na", "1\nb", "1\nc", "1\nd", "1\ne", "1\nf", "1\ng", "1\nh", "1\ni", "1\nj", "1\nk",
        "1\nl",
    ];

    #[test]
    fn a_flipped_byte_anywhere_loses_only_its_record() {
        let (data, starts) = records(&TWELVE);
        for victim in [0, 3, 11] {
            let from = starts[victim];
            let to = starts.get(victim + 1).copied().unwrap_or(data.len());
            for i in from..to {
                for bit in [0, 3, 7] {
                    let mut damaged = data.clone();
                    damaged[i] ^= 1 << bit;
                    let (seen, skipped) = walk(&damaged);
                    let mut expected: Vec<String> = TWELVE.iter().map(|s| s.to_string()).collect();
                    expected.remove(victim);
                    assert_eq!(seen, expected, "record {victim}, byte {i}, bit {bit}");
                    assert_eq!(skipped, 1);
                }
            }
        }
    }

    #[test]
    fn garbage_and_zeros_between_records_are_skipped() {
        let (data, starts) = records(&TWELVE);
        let mut damaged = data[..starts[4]].to_vec();
        damaged.extend(std::iter::repeat_n(0u8, 4096));
        damaged.extend((0..5000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
        damaged.extend_from_slice(&data[starts[4]..]);
        let (seen, skipped) = walk(&damaged);
        assert_eq!(seen.len(), 12);
        assert_eq!(skipped, 1);
        assert_eq!(count(&damaged), (12, 1));
    }

    #[test]
    fn a_torn_tail_is_cut_and_damage_before_whole_records_is_not() {
        let (data, starts) = records(&TWELVE);
        assert_eq!(end_of_records(&data[..data.len() - 2]), starts[11]);
        let mut damaged = data.clone();
        damaged[starts[5] + HEADER] ^= 0xff;
        assert_eq!(end_of_records(&damaged), data.len());
        assert_eq!(count(&damaged), (11, 1));
    }
}
