//! A spool segment as a crash or a bad disk may leave it: the walk past damaged and torn
//! records must end, never panic, and never report a record that is not whole. Run with
//! `cargo fuzz run spool_records` from `daemon/`.
#![no_main]

use exai_daemon::supabase::spool::scan::{self, Step};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut at = 0;
    let mut steps = 0;
    loop {
        match scan::step(data, at) {
            Step::Record { payload, next } => {
                assert!(next > at && next <= data.len());
                assert!(payload.len() < next - at);
                at = next;
            }
            Step::Damaged { next } => {
                assert!(next > at && next <= data.len());
                at = next;
            }
            Step::End => break,
        }
        steps += 1;
        assert!(steps <= data.len() + 1, "the walk moves forward");
    }
    let (records, _) = scan::count(data);
    assert!(scan::end_of_records(data) <= data.len());
    let _ = records;
});
