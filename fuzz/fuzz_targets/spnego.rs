//! The SPNEGO parser is total on any token, and what it returns lies inside the token.
#![no_main]

use bits_compact::auth::spnego::{self, Token};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match spnego::parse(data) {
        Ok(Token::Init { mechs, mech_token, .. }) => {
            assert!(mechs.len() <= 16);
            assert!(mech_token.is_none_or(|t| t.len() <= data.len()));
        }
        Ok(Token::Resp { response_token, mech_list_mic }) => {
            assert!(response_token.is_none_or(|t| t.len() <= data.len()));
            assert!(mech_list_mic.is_none_or(|t| t.len() <= data.len()));
        }
        Ok(Token::RawNtlm(t)) => assert_eq!(t.len(), data.len()),
        _ => {}
    }
    // Our own answers always parse back.
    let answer = spnego::resp(spnego::state::ACCEPT_INCOMPLETE, Some(spnego::NTLMSSP), Some(data), None);
    assert!(matches!(spnego::parse(&answer), Ok(Token::Resp { response_token: Some(t), .. }) if t == data));
});
