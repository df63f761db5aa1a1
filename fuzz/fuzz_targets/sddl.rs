//! SDDL parsing is total; what parses prints canonically and parses back to the same descriptor, and the
//! access check on it never panics.
#![no_main]

use bits_compact::authz::{AccessMask, SecurityDescriptor, Sid};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let domain: Sid = "S-1-5-21-1-2-3".parse().expect("a SID");
    if let Ok(sd) = SecurityDescriptor::parse(text, Some(&domain)) {
        let printed = sd.to_string();
        let again: SecurityDescriptor = printed.parse().expect("canonical SDDL parses");
        assert_eq!(again, sd);
        let token = [Sid::everyone(), Sid::anonymous(), Sid::network()];
        let _ = sd.access_check(&token, AccessMask::FILE_READ_DATA);
    }
});
