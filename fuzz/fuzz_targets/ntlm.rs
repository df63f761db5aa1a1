//! NTLM message parsing and the acceptor are total on any token: a NEGOTIATE answered, an AUTHENTICATE
//! checked against a pending challenge, never a panic and never a success without the password.
#![no_main]

use bits_compact::auth::basic;
use bits_compact::auth::ntlm::messages::{self, Authenticate, Negotiate};
use bits_compact::{Password, Principals};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = messages::message_type(data);
    let _ = Negotiate::parse(data);
    if let Ok(msg) = Authenticate::parse(data) {
        assert!(msg.nt_response.len() <= data.len());
    }
    let _ = messages::av_pairs(data);
    let _ = basic::parse(data);
    thread_local! {
        static PRINCIPALS: Principals = {
            let mut p = Principals::default();
            p.set_user("alice", &Password::from("RIGHT"), &[]).expect("a user");
            p
        };
    }
    PRINCIPALS.with(|p| {
        let negotiate = b"NTLMSSP\0\x01\0\0\0\x35\x82\x08\x60\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0";
        let mut ctx = bits_compact::auth::ntlm::Acceptor::default();
        ctx.challenge(negotiate, "FILES", "FILES").expect("a challenge");
        assert!(ctx.authenticate(data, p).is_err(), "accepted without knowing the challenge");
    });
});
