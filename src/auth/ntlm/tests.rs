//! The acceptor against MS-NLMP's test vectors and a minimal in-test client (real clients are tested
//! over sockets in tests/it/ntlm.rs).

use super::*;
use crate::auth::password::{NtHash, Password};

/// MS-NLMP §4.2.4.1.1 and §4.2.4.2.2: NTOWFv2 and NTProofStr for User/Domain/"Password".
#[test]
fn ms_nlmp_ntlmv2_vectors() {
    let nt = NtHash::of(&Password::from("Password"));
    let response_key = hmac(&nt.0, &[&messages::utf16le("USERDomain")]);
    assert_eq!(hex(&response_key), "0c868a403bfd7a93a3001ef22ef02e3f");
    let server_challenge = [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef];
    let mut blob = vec![1, 1, 0, 0, 0, 0, 0, 0];
    blob.extend_from_slice(&[0; 8]); // time 0
    blob.extend_from_slice(&[0xaa; 8]); // client challenge
    blob.extend_from_slice(&[0; 4]);
    blob.extend_from_slice(&av_pair(av::NB_DOMAIN_NAME, &messages::utf16le("Domain")));
    blob.extend_from_slice(&av_pair(av::NB_COMPUTER_NAME, &messages::utf16le("Server")));
    blob.extend_from_slice(&av_pair(av::EOL, &[]));
    blob.extend_from_slice(&[0; 4]);
    let proof = hmac(&response_key, &[&server_challenge, &blob]);
    assert_eq!(hex(&proof), "68cd0ab851e51c96aabc927bebef6a1c");
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn av_pair(id: u16, value: &[u8]) -> Vec<u8> {
    let mut v = id.to_le_bytes().to_vec();
    v.extend_from_slice(&(value.len() as u16).to_le_bytes());
    v.extend_from_slice(value);
    v
}

const NEGOTIATE: &[u8] = b"NTLMSSP\0\x01\0\0\0\x35\x82\x08\x60\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0";

struct Client<'a> {
    user: &'a str,
    domain: &'a str,
    password: &'a str,
    mic: bool,
    key_exch: bool,
}

impl Client<'_> {
    /// An AUTHENTICATE_MESSAGE for a CHALLENGE, as a real NTLMv2 client builds it.
    fn authenticate(&self, challenge: &[u8]) -> Vec<u8> {
        let server_challenge: [u8; 8] = challenge[24..32].try_into().unwrap();
        let info_len = u16::from_le_bytes([challenge[40], challenge[41]]) as usize;
        let info_at = u32::from_le_bytes(challenge[44..48].try_into().unwrap()) as usize;
        let mut pairs: Vec<u8> = challenge[info_at..info_at + info_len - 4].to_vec();
        if self.mic {
            pairs.extend_from_slice(&av_pair(av::FLAGS, &2u32.to_le_bytes()));
        }
        pairs.extend_from_slice(&av_pair(av::EOL, &[]));
        let mut blob = vec![1, 1, 0, 0, 0, 0, 0, 0];
        blob.extend_from_slice(&filetime_now().to_le_bytes());
        blob.extend_from_slice(&[0x5a; 8]);
        blob.extend_from_slice(&[0; 4]);
        blob.extend_from_slice(&pairs);
        blob.extend_from_slice(&[0; 4]);
        let nt = NtHash::of(&Password::from(self.password));
        let key = hmac(
            &nt.0,
            &[&messages::utf16le(&format!(
                "{}{}",
                self.user.to_uppercase(),
                self.domain
            ))],
        );
        let proof = hmac(&key, &[&server_challenge, &blob]);
        let mut nt_response = proof.to_vec();
        nt_response.extend_from_slice(&blob);
        let session_base_key = hmac(&key, &[&proof]);
        let exported = [0x11u8; 16];
        let (flags, encrypted) = if self.key_exch {
            use rc4::{KeyInit, StreamCipher};
            let mut k = exported;
            rc4::Rc4::new_from_slice(&session_base_key)
                .unwrap()
                .apply_keystream(&mut k);
            (0xe2888215u32, k.to_vec())
        } else {
            (0xa2888205u32 & !messages::NEGOTIATE_KEY_EXCH, Vec::new())
        };
        let mic_key = if self.key_exch {
            exported
        } else {
            session_base_key
        };
        let (domain, user, ws) = (
            messages::utf16le(self.domain),
            messages::utf16le(self.user),
            messages::utf16le("WS"),
        );
        let mut payload_at = 88u32;
        let mut header = Vec::new();
        let mut payload = Vec::new();
        for part in [&[][..], &nt_response, &domain, &user, &ws, &encrypted] {
            header.extend_from_slice(&(part.len() as u16).to_le_bytes());
            header.extend_from_slice(&(part.len() as u16).to_le_bytes());
            header.extend_from_slice(&payload_at.to_le_bytes());
            payload.extend_from_slice(part);
            payload_at += part.len() as u32;
        }
        let mut m = messages::SIGNATURE.to_vec();
        m.extend_from_slice(&3u32.to_le_bytes());
        m.extend_from_slice(&header);
        m.extend_from_slice(&flags.to_le_bytes());
        m.extend_from_slice(&[10, 0, 0x7c, 0x4f, 0, 0, 0, 15]);
        m.extend_from_slice(&[0; 16]);
        m.extend_from_slice(&payload);
        if self.mic {
            let mic = hmac(&mic_key, &[NEGOTIATE, challenge, &m]);
            m[72..88].copy_from_slice(&mic);
        }
        m
    }
}

fn principals() -> Principals {
    let mut p = Principals::default();
    p.set_user("alice", &Password::from("RIGHT"), &[]).unwrap();
    p
}

fn run(client: &Client<'_>, principals: &Principals) -> Result<String, NtlmError> {
    let mut ctx = Acceptor::default();
    let challenge = ctx.challenge(NEGOTIATE, "FILES", "FILES").unwrap();
    let token = client.authenticate(&challenge);
    ctx.authenticate(&token, principals)
        .map(|a| a.name.to_owned())
}

#[test]
fn right_and_wrong_passwords_with_and_without_mic() {
    let p = principals();
    for mic in [true, false] {
        for key_exch in [true, false] {
            let ok = Client {
                user: "alice",
                domain: "CORP",
                password: "RIGHT",
                mic,
                key_exch,
            };
            assert_eq!(
                run(&ok, &p),
                Ok("alice".into()),
                "mic {mic} key_exch {key_exch}"
            );
            // SECURITY: the proof is checked whether or not the client sends a MIC.
            let wrong = Client {
                password: "WRONG",
                ..ok
            };
            assert_eq!(
                run(&wrong, &p),
                Err(NtlmError::BadProof),
                "mic {mic} key_exch {key_exch}"
            );
        }
    }
    let upper = Client {
        user: "ALICE",
        domain: "",
        password: "RIGHT",
        mic: true,
        key_exch: true,
    };
    assert_eq!(run(&upper, &p), Ok("alice".into()));
    let nobody = Client {
        user: "mallory",
        domain: "CORP",
        password: "RIGHT",
        mic: true,
        key_exch: true,
    };
    assert_eq!(run(&nobody, &p), Err(NtlmError::UnknownUser));
}

#[test]
fn tampering_replay_and_downgrades_are_refused() {
    let p = principals();
    let client = Client {
        user: "alice",
        domain: "CORP",
        password: "RIGHT",
        mic: true,
        key_exch: true,
    };
    let mut ctx = Acceptor::default();
    let challenge = ctx.challenge(NEGOTIATE, "FILES", "FILES").unwrap();
    let mut token = client.authenticate(&challenge);
    token[80] ^= 1; // a flipped MIC bit
    assert_eq!(ctx.authenticate(&token, &p).err(), Some(NtlmError::BadMic));
    // The challenge is spent: the same (or a corrected) message cannot be replayed.
    token[80] ^= 1;
    assert_eq!(
        ctx.authenticate(&token, &p).err(),
        Some(NtlmError::NoChallenge)
    );
    // Replayed on another connection it meets another challenge.
    let mut other = Acceptor::default();
    other.challenge(NEGOTIATE, "FILES", "FILES").unwrap();
    assert_eq!(
        other.authenticate(&token, &p).err(),
        Some(NtlmError::BadProof)
    );

    // The MIC announced in the signed blob cannot be stripped from the message header.
    let mut ctx = Acceptor::default();
    let challenge = ctx.challenge(NEGOTIATE, "FILES", "FILES").unwrap();
    let token = client.authenticate(&challenge);
    let mut no_mic = token[..72].to_vec();
    no_mic.extend_from_slice(&token[88..]);
    for at in [20, 28, 36, 44, 52] {
        let off = u32::from_le_bytes(no_mic[at + 4..at + 8].try_into().unwrap()) - 16;
        no_mic[at + 4..at + 8].copy_from_slice(&off.to_le_bytes());
    }
    assert_eq!(ctx.authenticate(&no_mic, &p).err(), Some(NtlmError::BadMic));

    // NTLMv1 and anonymous.
    let mut ctx = Acceptor::default();
    let challenge = ctx.challenge(NEGOTIATE, "FILES", "FILES").unwrap();
    let mut v1 = client.authenticate(&challenge);
    v1[20..22].copy_from_slice(&24u16.to_le_bytes());
    assert_eq!(ctx.authenticate(&v1, &p).err(), Some(NtlmError::Version1));
    let mut ctx = Acceptor::default();
    ctx.challenge(NEGOTIATE, "FILES", "FILES").unwrap();
    let mut anonymous = vec![0u8; 88];
    anonymous[..8].copy_from_slice(messages::SIGNATURE);
    anonymous[8] = 3;
    assert_eq!(
        ctx.authenticate(&anonymous, &p).err(),
        Some(NtlmError::Anonymous)
    );
    // An AUTHENTICATE with no challenge at all.
    assert_eq!(
        Acceptor::default().authenticate(&token, &p).err(),
        Some(NtlmError::NoChallenge)
    );
}

#[test]
fn session_signatures_verify_and_tampering_fails() {
    let p = principals();
    let client = Client {
        user: "alice",
        domain: "CORP",
        password: "RIGHT",
        mic: true,
        key_exch: true,
    };
    let mut ctx = Acceptor::default();
    let challenge = ctx.challenge(NEGOTIATE, "FILES", "FILES").unwrap();
    let done = ctx
        .authenticate(&client.authenticate(&challenge), &p)
        .unwrap();
    let list = b"\x30\x0c\x06\x0a\x2b\x06\x01\x04\x01\x82\x37\x02\x02\x0a";
    let signature = done.session.sign(Direction::ClientToServer, 0, list);
    assert_eq!(&signature[..4], &1u32.to_le_bytes());
    assert!(done.session.verify(list, &signature));
    let mut tampered = signature;
    tampered[5] ^= 1;
    assert!(!done.session.verify(list, &tampered));
    assert!(!done.session.verify(b"another list", &signature));
    assert!(!done.session.verify(list, &signature[..15]));
    // The two directions use different keys.
    assert_ne!(
        signature,
        done.session.sign(Direction::ServerToClient, 0, list)
    );
}
