//! UrlPrefix parsing is total, and what it accepts prints back to a prefix that parses to the same value.
#![no_main]

use bits_compact::UrlPrefix;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match text.parse::<UrlPrefix>() {
        Ok(prefix) => {
            let printed = prefix.to_string();
            let again: UrlPrefix = printed.parse().expect("a printed prefix parses");
            assert_eq!(again, prefix);
            assert_eq!(again.to_string(), printed);
        }
        Err(e) => assert!(e.offset() <= text.len()),
    }
});
