//! The checks that reproduce RFC 9001 and RFC 9369 Appendix A byte for byte, shared by both test
//! files; each file holds its RFC's values, the long ones copied mechanically from the RFC text
//! (whitespace removed).

use aws_lc_rs::{hkdf, hmac};
use qstream_proto::Side;
use qstream_proto::crypto::{
    decrypt_payload, initial_keys, protect, retry_tag, retry_tag_valid, unprotect_header,
};
use qstream_proto::wire::{
    ConnectionId, Frame, Frames, Header, Packet, RetryPacket, TruncatedPacketNumber, Version,
    parse_packet,
};
use rustls::crypto::cipher::{AeadKey, Iv};
use rustls::quic::DirectionalKeys;

/// The client's Destination Connection ID in every Appendix A example.
pub(crate) const CLIENT_DCID: &str = "8394c8f03e515708";
/// The server's connection ID in A.3 and A.4.
pub(crate) const SERVER_CID: &str = "f067a5502a4262b5";

/// The version-specific values of one RFC's Appendix A.
pub(crate) struct AppendixA {
    pub(crate) version: Version,
    pub(crate) salt: &'static str,
    pub(crate) label_prefix: &'static str,
    pub(crate) initial_secret: &'static str,
    /// (secret, key, iv, hp) for the client, then the server.
    pub(crate) client: [&'static str; 4],
    pub(crate) server: [&'static str; 4],
    pub(crate) a2_crypto_frame: &'static str,
    pub(crate) a2_unprotected_header: &'static str,
    pub(crate) a2_protected: &'static str,
    pub(crate) a3_payload: &'static str,
    pub(crate) a3_unprotected_header: &'static str,
    pub(crate) a3_protected: &'static str,
    pub(crate) a4_retry: &'static str,
    /// (key, iv, hp, ku) from the A.5 secret.
    pub(crate) a5_keys: [&'static str; 4],
    pub(crate) a5_packet: &'static str,
}

/// The A.5 application secret, the same in both RFCs.
pub(crate) const A5_SECRET: &str =
    "9ac312a7f877468ebe69422748ad00a15443f18203a07d6060f688f30f21632b";

pub(crate) fn hex(s: &str) -> Vec<u8> {
    assert!(s.len() % 2 == 0, "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
        .collect()
}

struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-Expand-Label (RFC 8446 §7.1) with an empty context, as RFC 9001 §5.1 uses it.
fn expand_label(secret: &[u8], label: &str, len: usize) -> Vec<u8> {
    let prk = hkdf::Prk::new_less_safe(hkdf::HKDF_SHA256, secret);
    let full_label = format!("tls13 {label}");
    let mut info = (len as u16).to_be_bytes().to_vec();
    info.push(full_label.len() as u8);
    info.extend_from_slice(full_label.as_bytes());
    info.push(0);
    let mut out = vec![0; len];
    prk.expand(&[&info], Len(len))
        .expect("valid length")
        .fill(&mut out)
        .expect("fill");
    out
}

fn cid(s: &str) -> ConnectionId {
    ConnectionId::from_slice(&hex(s)).unwrap()
}

/// A.1: every secret, key, IV and header protection key.
pub(crate) fn check_keys(v: &AppendixA) {
    // HKDF-Extract(salt, IKM) is HMAC-Hash(salt, IKM) (RFC 5869 §2.2).
    let salt = hmac::Key::new(hmac::HMAC_SHA256, &hex(v.salt));
    let initial_secret = hmac::sign(&salt, &hex(CLIENT_DCID));
    let initial_secret = initial_secret.as_ref();
    assert_eq!(initial_secret, hex(v.initial_secret), "initial_secret");
    for (label, [secret, key, iv, hp]) in [("client in", v.client), ("server in", v.server)] {
        let derived = expand_label(initial_secret, label, 32);
        assert_eq!(derived, hex(secret), "{label} secret");
        let prefix = v.label_prefix;
        assert_eq!(
            expand_label(&derived, &format!("{prefix} key"), 16),
            hex(key)
        );
        assert_eq!(expand_label(&derived, &format!("{prefix} iv"), 12), hex(iv));
        assert_eq!(expand_label(&derived, &format!("{prefix} hp"), 16), hex(hp));
    }
}

/// Protects `payload` (frames, no tag) behind `header`, returning the unprotected header bytes
/// and the protected packet.
fn build(
    header: &Header<'_>,
    pn: u64,
    pn_bytes: &[u8],
    payload: &[u8],
    keys: &DirectionalKeys,
) -> (Vec<u8>, Vec<u8>) {
    let truncated = TruncatedPacketNumber::from_wire(pn_bytes).unwrap();
    let mut packet = Vec::new();
    let pn_offset = header.encode(truncated, payload.len() + 16, &mut packet);
    let unprotected_header = packet.clone();
    packet.extend_from_slice(payload);
    packet.extend_from_slice(&[0; 16]);
    protect(&mut packet, pn_offset, pn, &*keys.header, &*keys.packet).unwrap();
    (unprotected_header, packet)
}

/// Parses, unprotects and decrypts `packet` as its receiver would, returning the header, the
/// full packet number and the plaintext.
fn open(
    packet: &[u8],
    largest: Option<u64>,
    keys: &DirectionalKeys,
) -> (Header<'static>, u64, Vec<u8>) {
    let mut packet = packet.to_vec();
    let Packet::Protected(located) = parse_packet(&packet, 0).unwrap() else {
        panic!("not a protected packet");
    };
    assert_eq!(located.len, packet.len());
    let unprotected = unprotect_header(&mut packet, located.pn_offset, &*keys.header).unwrap();
    let pn = unprotected.pn.decode(largest);
    let header = located.header(&packet, unprotected.first_byte);
    let header = match header {
        Header::Short {
            dcid,
            spin,
            key_phase,
        } => Header::Short {
            dcid,
            spin,
            key_phase,
        },
        Header::Initial {
            version,
            dcid,
            scid,
            token,
        } => {
            assert!(token.is_empty());
            Header::Initial {
                version,
                dcid,
                scid,
                token: &[],
            }
        }
        other => panic!("unexpected header {other:?}"),
    };
    let plaintext =
        decrypt_payload(&mut packet, unprotected.header_len, pn, &*keys.packet).unwrap();
    (header, pn, plaintext.to_vec())
}

/// A.2: the client Initial, protected by the client and opened by the server.
pub(crate) fn check_client_initial(v: &AppendixA) {
    let crypto = hex(v.a2_crypto_frame);
    let mut payload = crypto.clone();
    payload.resize(1162, 0);
    let header = Header::Initial {
        version: v.version,
        dcid: cid(CLIENT_DCID),
        scid: ConnectionId::EMPTY,
        token: &[],
    };
    let client = initial_keys(v.version, &hex(CLIENT_DCID), Side::Client).unwrap();
    let (unprotected, packet) = build(&header, 2, &[0, 0, 0, 2], &payload, &client.local);
    assert_eq!(
        unprotected,
        hex(v.a2_unprotected_header),
        "unprotected header"
    );
    assert_eq!(packet, hex(v.a2_protected), "protected client Initial");

    let server = initial_keys(v.version, &hex(CLIENT_DCID), Side::Server).unwrap();
    let (opened_header, pn, plaintext) = open(&packet, None, &server.remote);
    assert_eq!((opened_header, pn), (header, 2));
    assert_eq!(plaintext, payload);
    let frames: Vec<_> = Frames::new(&plaintext).map(Result::unwrap).collect();
    assert_eq!(frames.len(), 2);
    assert!(
        matches!(frames[0], Frame::Crypto { offset, data } if offset.into_inner() == 0 && data == &crypto[4..])
    );
    assert_eq!(frames[1], Frame::Padding(1162 - crypto.len()));
}

/// A.3: the server Initial, protected by the server and opened by the client.
pub(crate) fn check_server_initial(v: &AppendixA) {
    let payload = hex(v.a3_payload);
    let header = Header::Initial {
        version: v.version,
        dcid: ConnectionId::EMPTY,
        scid: cid(SERVER_CID),
        token: &[],
    };
    let server = initial_keys(v.version, &hex(CLIENT_DCID), Side::Server).unwrap();
    let (unprotected, packet) = build(&header, 1, &[0, 1], &payload, &server.local);
    assert_eq!(
        unprotected,
        hex(v.a3_unprotected_header),
        "unprotected header"
    );
    assert_eq!(packet, hex(v.a3_protected), "protected server Initial");

    let client = initial_keys(v.version, &hex(CLIENT_DCID), Side::Client).unwrap();
    let (opened_header, pn, plaintext) = open(&packet, Some(0), &client.remote);
    assert_eq!((opened_header, pn, &plaintext), (header, 1, &payload));
    let frames: Vec<_> = Frames::new(&plaintext).map(Result::unwrap).collect();
    let Frame::Ack(ack) = &frames[0] else {
        panic!("expected ACK first, got {frames:?}");
    };
    assert_eq!(ack.ranges().collect::<Vec<_>>(), vec![0..=0]);
    assert!(matches!(frames[1], Frame::Crypto { .. }));
}

/// A.4: the Retry packet, built with its integrity tag, then parsed and verified.
pub(crate) fn check_retry(v: &AppendixA) {
    let expected = hex(v.a4_retry);
    let mut packet = Vec::new();
    let unused = expected[0] & 0x0f;
    RetryPacket::encode_without_tag(
        v.version,
        &ConnectionId::EMPTY,
        &cid(SERVER_CID),
        b"token",
        unused,
        &mut packet,
    );
    let tag = retry_tag(v.version, &cid(CLIENT_DCID), &packet).unwrap();
    packet.extend_from_slice(&tag);
    assert_eq!(packet, expected, "Retry packet");

    let Packet::Retry(retry) = parse_packet(&packet, 0).unwrap() else {
        panic!("not a Retry");
    };
    assert_eq!(retry.token, b"token");
    assert_eq!(retry.scid, cid(SERVER_CID));
    assert_eq!(retry.integrity_tag, tag);
    assert!(retry_tag_valid(v.version, &cid(CLIENT_DCID), &packet));
    let mut forged = packet.clone();
    forged[20] ^= 1;
    assert!(!retry_tag_valid(v.version, &cid(CLIENT_DCID), &forged));
    assert!(!retry_tag_valid(v.version, &cid(SERVER_CID), &packet));
}

/// A.5: the ChaCha20-Poly1305 short header packet.
pub(crate) fn check_chacha20_short_header(v: &AppendixA) {
    let secret = hex(A5_SECRET);
    let prefix = v.label_prefix;
    let [key, iv, hp, ku] = v.a5_keys.map(hex);
    assert_eq!(expand_label(&secret, &format!("{prefix} key"), 32), key);
    assert_eq!(expand_label(&secret, &format!("{prefix} iv"), 12), iv);
    assert_eq!(expand_label(&secret, &format!("{prefix} hp"), 32), hp);
    assert_eq!(expand_label(&secret, &format!("{prefix} ku"), 32), ku);

    let suite = rustls::crypto::aws_lc_rs::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256
        .tls13()
        .unwrap()
        .quic_suite()
        .unwrap();
    let keys = || DirectionalKeys {
        header: suite
            .quic
            .header_protection_key(AeadKey::from(<[u8; 32]>::try_from(&hp[..]).unwrap())),
        packet: suite.quic.packet_key(
            AeadKey::from(<[u8; 32]>::try_from(&key[..]).unwrap()),
            Iv::from(<[u8; 12]>::try_from(&iv[..]).unwrap()),
        ),
    };
    let header = Header::Short {
        dcid: ConnectionId::EMPTY,
        spin: false,
        key_phase: false,
    };
    let pn = 654_360_564;
    let (unprotected, packet) = build(&header, pn, &[0x00, 0xbf, 0xf4], &[0x01], &keys());
    assert_eq!(unprotected, hex("4200bff4"));
    assert_eq!(packet, hex(v.a5_packet), "protected short header packet");
    assert_eq!(packet.len(), 21);

    let (opened_header, opened_pn, plaintext) = open(&packet, Some(pn - 1), &keys());
    assert_eq!((opened_header, opened_pn), (header, pn));
    assert_eq!(
        Frames::new(&plaintext).collect::<Vec<_>>(),
        vec![Ok(Frame::Ping)]
    );
}
