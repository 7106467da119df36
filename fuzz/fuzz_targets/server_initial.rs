//! A server endpoint fed client Initials whose payload is arbitrary: the input is the plaintext,
//! protected with real Initial keys so it reaches frame handling, CRYPTO reassembly and TLS. The
//! first input byte chooses the version; a second datagram, raw, follows. Nothing may panic.
#![no_main]

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use qstream_proto::crypto::{initial_keys, protect};
use qstream_proto::wire::{ConnectionId, Header, TruncatedPacketNumber, Version};
use qstream_proto::{Endpoint, EndpointConfig, ServerConfig, Side};

fn server_config() -> ServerConfig {
    static CONFIG: OnceLock<ServerConfig> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
                .unwrap()
                .self_signed(&key)
                .unwrap();
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let mut tls = rustls::ServerConfig::builder_with_provider(provider)
                .with_protocol_versions(&[&rustls::version::TLS13])
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(
                    vec![cert.der().clone()],
                    rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
                )
                .unwrap();
            tls.alpn_protocols = vec![b"fuzz".to_vec()];
            ServerConfig::new(Arc::new(tls))
        })
        .clone()
}

fuzz_target!(|input: &[u8]| {
    let Some((&selector, rest)) = input.split_first() else {
        return;
    };
    let split = rest.len().min(1100);
    let (payload, raw) = rest.split_at(split);
    let version = if selector & 1 == 0 { Version::V1 } else { Version::V2 };
    let dcid = ConnectionId::from_slice(&[0x5a; 8]).unwrap();
    let header = Header::Initial {
        version,
        dcid,
        scid: ConnectionId::from_slice(&[0xc1; 8]).unwrap(),
        token: &[],
    };
    let pn = TruncatedPacketNumber::encode(0, None);
    let mut plaintext = payload.to_vec();
    plaintext.resize(1100, 0);
    let mut datagram = Vec::new();
    let pn_offset = header.encode(pn, plaintext.len() + 16, &mut datagram);
    datagram.extend_from_slice(&plaintext);
    datagram.extend_from_slice(&[0; 16]);
    let keys = initial_keys(version, &dcid, Side::Client).unwrap();
    protect(&mut datagram, pn_offset, 0, &*keys.local.header, &*keys.local.packet).unwrap();

    let mut server = Endpoint::new(EndpointConfig::from_seed([7; 32]), Some(server_config()));
    let client: SocketAddr = "192.0.2.1:4433".parse().unwrap();
    let mut now = Instant::now();
    server.handle_datagram(now, client, None, BytesMut::from(&datagram[..]));
    server.handle_datagram(now, client, None, BytesMut::from(raw));
    let mut buf = Vec::new();
    for _ in 0..8 {
        while server.poll_transmit(now, &mut buf).is_some() {
            buf.clear();
        }
        now += Duration::from_millis(500);
        server.handle_timeout(now);
    }
    for handle in server.connection_handles() {
        let connection = server.connection_mut(handle).unwrap();
        while connection.poll_event().is_some() {}
        let _ = connection.streams_snapshot(now);
    }
});
