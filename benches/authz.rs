//! SDDL parsing and the access check (divan). `cargo bench --bench authz`
#![allow(missing_docs)]

use bits_compact::authz::{AccessMask, SecurityDescriptor, Sid};

fn main() {
    divan::main();
}

const TYPICAL: &str = "D:(A;;GR;;;AU)";
const LONG: &str = "O:BAG:SYD:PAI(D;;GA;;;S-1-5-21-1-2-3-1002)(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)\
(A;;0x1200a9;;;S-1-5-21-1-2-3-513)(A;IO;GA;;;CO)(A;;FR;;;S-1-5-21-1-2-3-1100)(A;;GR;;;AU)S:(AU;SAFA;FA;;;WD)";

#[divan::bench(args = [TYPICAL, LONG])]
fn parse(sddl: &str) -> SecurityDescriptor {
    divan::black_box(sddl).parse().expect("valid SDDL")
}

#[divan::bench(args = [TYPICAL, LONG])]
fn access_check(bencher: divan::Bencher, sddl: &str) {
    let sd: SecurityDescriptor = sddl.parse().expect("valid SDDL");
    let token: Vec<Sid> = [
        "S-1-5-21-1-2-3-1001",
        "S-1-5-21-1-2-3-513",
        "S-1-5-21-1-2-3-1100",
        "S-1-1-0",
        "S-1-5-11",
        "S-1-5-2",
    ]
    .iter()
    .map(|s| s.parse().expect("a SID"))
    .collect();
    bencher.bench(|| {
        let d = divan::black_box(&sd)
            .access_check(divan::black_box(&token), AccessMask::FILE_READ_DATA);
        assert!(d.allowed);
    });
}
