//! Range parsing is total, and every range it returns lies inside the file, in a request of bounded size.
#![no_main]

use bits_compact::files::range::{self, RangeRequest, MAX_RANGES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (u64, &[u8])| {
    let (len, header) = input;
    if let RangeRequest::Ranges(ranges) = range::parse(header, len) {
        assert!(!ranges.is_empty() && ranges.len() <= MAX_RANGES);
        for r in ranges {
            assert!(r.start <= r.end && r.end < len);
        }
    }
});
