//! Packet protection derived by qstream from TLS traffic secrets (RFC 9001 §5.1, RFC 9369
//! §3.3), for a QUIC version other than the one a TLS connection's key schedule was created
//! with. A client switched to another version during the handshake (RFC 9368 compatible
//! negotiation) needs this: rustls fixes the version of its QUIC key derivation when the
//! connection is created, before the server has chosen.

use aws_lc_rs::{aead, hkdf};
use rustls::quic::{DirectionalKeys, HeaderProtectionKey, Keys, PacketKey, PacketKeySet, Tag};

use crate::Side;
use crate::wire::Version;

/// The algorithms of a TLS 1.3 cipher suite that QUIC packet protection uses.
#[derive(Clone, Copy)]
struct SuiteAlgorithms {
    aead: &'static aead::Algorithm,
    header: &'static aead::quic::Algorithm,
    hkdf: hkdf::Algorithm,
    /// RFC 9001 §6.6: packets one key may protect, and forgeries it may see.
    confidentiality_limit: u64,
    integrity_limit: u64,
}

impl SuiteAlgorithms {
    fn of(suite: rustls::CipherSuite) -> Option<Self> {
        use rustls::CipherSuite as S;
        Some(match suite {
            S::TLS13_AES_128_GCM_SHA256 => Self {
                aead: &aead::AES_128_GCM,
                header: &aead::quic::AES_128,
                hkdf: hkdf::HKDF_SHA256,
                confidentiality_limit: 1 << 23,
                integrity_limit: 1 << 52,
            },
            S::TLS13_AES_256_GCM_SHA384 => Self {
                aead: &aead::AES_256_GCM,
                header: &aead::quic::AES_256,
                hkdf: hkdf::HKDF_SHA384,
                confidentiality_limit: 1 << 23,
                integrity_limit: 1 << 52,
            },
            S::TLS13_CHACHA20_POLY1305_SHA256 => Self {
                aead: &aead::CHACHA20_POLY1305,
                header: &aead::quic::CHACHA20,
                hkdf: hkdf::HKDF_SHA256,
                confidentiality_limit: u64::MAX,
                integrity_limit: 1 << 36,
            },
            _ => return None,
        })
    }
}

/// The labels of a version's key derivation (RFC 9001 §5.1, RFC 9369 §3.3.2).
struct Labels {
    key: &'static [u8],
    iv: &'static [u8],
    hp: &'static [u8],
    ku: &'static [u8],
}

fn labels(version: Version) -> Labels {
    if version == Version::V2 {
        Labels {
            key: b"quicv2 key",
            iv: b"quicv2 iv",
            hp: b"quicv2 hp",
            ku: b"quicv2 ku",
        }
    } else {
        Labels {
            key: b"quic key",
            iv: b"quic iv",
            hp: b"quic hp",
            ku: b"quic ku",
        }
    }
}

/// An output length for HKDF-Expand.
struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-Expand-Label(secret, label, "", len) of TLS 1.3 (RFC 8446 §7.1).
fn expand_label(algorithm: hkdf::Algorithm, secret: &[u8], label: &[u8], len: usize) -> Vec<u8> {
    let prk = hkdf::Prk::new_less_safe(algorithm, secret);
    let length = (len as u16).to_be_bytes();
    let label_len = [(b"tls13 ".len() + label.len()) as u8];
    let info: [&[u8]; 5] = [&length, &label_len, b"tls13 ", label, &[0]];
    let mut out = vec![0; len];
    prk.expand(&info, Len(len))
        .and_then(|okm| okm.fill(&mut out))
        .expect("lengths within HKDF's bounds");
    out
}

/// Header protection (RFC 9001 §5.4) with an aws-lc-rs mask.
struct HeaderKey(aead::quic::HeaderProtectionKey);

impl HeaderKey {
    /// XORs the mask into the first byte's low bits and the packet number; `masked` says
    /// whether the first byte is currently protected (so its length bits need unmasking first).
    fn apply(
        &self,
        sample: &[u8],
        first: &mut u8,
        packet_number: &mut [u8],
        masked: bool,
    ) -> Result<(), rustls::Error> {
        let mask = self.0.new_mask(sample).map_err(|_| {
            rustls::Error::General("header protection sample of wrong length".into())
        })?;
        let bits = if *first & 0x80 != 0 { 0x0f } else { 0x1f };
        let plain_first = if masked {
            *first ^ (mask[0] & bits)
        } else {
            *first
        };
        let pn_len = usize::from(plain_first & 0x03) + 1;
        if packet_number.len() < pn_len {
            return Err(rustls::Error::General(
                "packet number shorter than announced".into(),
            ));
        }
        *first ^= mask[0] & bits;
        for (byte, m) in packet_number.iter_mut().zip(&mask[1..]).take(pn_len) {
            *byte ^= m;
        }
        Ok(())
    }
}

impl HeaderProtectionKey for HeaderKey {
    fn encrypt_in_place(
        &self,
        sample: &[u8],
        first: &mut u8,
        packet_number: &mut [u8],
    ) -> Result<(), rustls::Error> {
        self.apply(sample, first, packet_number, false)
    }

    fn decrypt_in_place(
        &self,
        sample: &[u8],
        first: &mut u8,
        packet_number: &mut [u8],
    ) -> Result<(), rustls::Error> {
        self.apply(sample, first, packet_number, true)
    }

    fn sample_len(&self) -> usize {
        self.0.algorithm().sample_len()
    }
}

/// Payload protection (RFC 9001 §5.3) with an aws-lc-rs AEAD.
struct PayloadKey {
    key: aead::LessSafeKey,
    iv: [u8; aead::NONCE_LEN],
    confidentiality_limit: u64,
    integrity_limit: u64,
}

impl PayloadKey {
    /// The nonce of packet `pn`: the IV XORed with the packet number, right-aligned.
    fn nonce(&self, pn: u64) -> aead::Nonce {
        let mut nonce = self.iv;
        for (byte, pn_byte) in nonce[aead::NONCE_LEN - 8..]
            .iter_mut()
            .zip(pn.to_be_bytes())
        {
            *byte ^= pn_byte;
        }
        aead::Nonce::assume_unique_for_key(nonce)
    }
}

impl PacketKey for PayloadKey {
    fn encrypt_in_place(
        &self,
        packet_number: u64,
        header: &[u8],
        payload: &mut [u8],
    ) -> Result<Tag, rustls::Error> {
        let tag = self
            .key
            .seal_in_place_separate_tag(self.nonce(packet_number), aead::Aad::from(header), payload)
            .map_err(|_| rustls::Error::EncryptError)?;
        Ok(Tag::from(tag.as_ref()))
    }

    fn decrypt_in_place<'a>(
        &self,
        packet_number: u64,
        header: &[u8],
        payload: &'a mut [u8],
    ) -> Result<&'a [u8], rustls::Error> {
        let plain = self
            .key
            .open_in_place(self.nonce(packet_number), aead::Aad::from(header), payload)
            .map_err(|_| rustls::Error::DecryptError)?;
        Ok(plain)
    }

    fn tag_len(&self) -> usize {
        self.key.algorithm().tag_len()
    }

    fn confidentiality_limit(&self) -> u64 {
        self.confidentiality_limit
    }

    fn integrity_limit(&self) -> u64 {
        self.integrity_limit
    }
}

/// The traffic secrets of one encryption level, and what derives from them in one version.
pub(crate) struct DerivedSecrets {
    algorithms: SuiteAlgorithms,
    version: Version,
    side: Side,
    client: Vec<u8>,
    server: Vec<u8>,
}

impl DerivedSecrets {
    /// The secrets of a level (as TLS logged them) for `version`, on `side`; `None` for a
    /// cipher suite QUIC cannot use.
    pub(crate) fn new(
        suite: rustls::CipherSuite,
        version: Version,
        side: Side,
        client: Vec<u8>,
        server: Vec<u8>,
    ) -> Option<Self> {
        Some(Self {
            algorithms: SuiteAlgorithms::of(suite)?,
            version,
            side,
            client,
            server,
        })
    }

    fn payload_key(&self, secret: &[u8]) -> Box<dyn PacketKey> {
        let labels = labels(self.version);
        let alg = self.algorithms;
        let key = expand_label(alg.hkdf, secret, labels.key, alg.aead.key_len());
        let iv = expand_label(alg.hkdf, secret, labels.iv, aead::NONCE_LEN);
        Box::new(PayloadKey {
            key: aead::LessSafeKey::new(
                aead::UnboundKey::new(alg.aead, &key).expect("key of the AEAD's length"),
            ),
            iv: iv.try_into().expect("nonce length"),
            confidentiality_limit: alg.confidentiality_limit,
            integrity_limit: alg.integrity_limit,
        })
    }

    fn directional(&self, secret: &[u8]) -> DirectionalKeys {
        let labels = labels(self.version);
        let alg = self.algorithms;
        let hp = expand_label(alg.hkdf, secret, labels.hp, alg.header.key_len());
        DirectionalKeys {
            header: Box::new(HeaderKey(
                aead::quic::HeaderProtectionKey::new(alg.header, &hp)
                    .expect("key of the algorithm's length"),
            )),
            packet: self.payload_key(secret),
        }
    }

    fn local_remote(&self) -> (&[u8], &[u8]) {
        match self.side {
            Side::Client => (&self.client, &self.server),
            Side::Server => (&self.server, &self.client),
        }
    }

    /// Header and packet keys of this level, both directions.
    pub(crate) fn keys(&self) -> Keys {
        let (local, remote) = self.local_remote();
        Keys {
            local: self.directional(local),
            remote: self.directional(remote),
        }
    }

    /// Moves to the next generation of 1-RTT secrets (RFC 9001 §6.1).
    pub(crate) fn update(&mut self) {
        let (alg, ku) = (self.algorithms.hkdf, labels(self.version).ku);
        let len = hkdf::KeyType::len(&alg);
        self.client = expand_label(alg, &self.client, ku, len);
        self.server = expand_label(alg, &self.server, ku, len);
    }

    /// The packet keys of the current generation, then moves to the next (as rustls's
    /// `Secrets::next_packet_keys`).
    pub(crate) fn next_packet_keys(&mut self) -> PacketKeySet {
        let (local, remote) = self.local_remote();
        let keys = PacketKeySet {
            local: self.payload_key(local),
            remote: self.payload_key(remote),
        };
        self.update();
        keys
    }
}

/// The TLS traffic secrets of one connection, as its TLS library logs them (NSS key log
/// labels), passed on to the key log the application configured.
pub(crate) struct SecretCapture {
    inner: std::sync::Arc<dyn rustls::KeyLog>,
    secrets: std::sync::Mutex<Vec<(&'static str, Vec<u8>)>>,
}

/// The key log labels of the secrets a version switch needs.
const CAPTURED: [&str; 4] = [
    "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
    "SERVER_HANDSHAKE_TRAFFIC_SECRET",
    "CLIENT_TRAFFIC_SECRET_0",
    "SERVER_TRAFFIC_SECRET_0",
];

impl SecretCapture {
    /// A capture that also logs everything to `inner`.
    pub(crate) fn new(inner: std::sync::Arc<dyn rustls::KeyLog>) -> Self {
        Self {
            inner,
            secrets: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// The secret logged under `label`, once TLS derived it.
    pub(crate) fn get(&self, label: &str) -> Option<Vec<u8>> {
        let secrets = self.secrets.lock().unwrap_or_else(|p| p.into_inner());
        secrets
            .iter()
            .find(|(l, _)| *l == label)
            .map(|(_, secret)| secret.clone())
    }
}

impl std::fmt::Debug for SecretCapture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretCapture").finish_non_exhaustive()
    }
}

impl rustls::KeyLog for SecretCapture {
    fn log(&self, label: &str, client_random: &[u8], secret: &[u8]) {
        if let Some(label) = CAPTURED.iter().find(|l| **l == label) {
            let mut secrets = self.secrets.lock().unwrap_or_else(|p| p.into_inner());
            secrets.push((label, secret.to_vec()));
        }
        if self.inner.will_log(label) {
            self.inner.log(label, client_random, secret);
        }
    }

    fn will_log(&self, _label: &str) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 9001 Appendix A.1 and RFC 9369 Appendix A.1: from the client Initial secret, the
    /// key, IV and header protection key of each version.
    #[test]
    fn derived_keys_match_the_rfc_vectors() {
        let client_initial_v1 =
            hex_literal::hex!("c00cf151ca5be075ed0ebfb5c80323c42d6b7db67881289af4008f1f6c357aea");
        let v1 = labels(Version::V1);
        let sha256 = hkdf::HKDF_SHA256;
        assert_eq!(
            expand_label(sha256, &client_initial_v1, v1.key, 16),
            hex_literal::hex!("1f369613dd76d5467730efcbe3b1a22d")
        );
        assert_eq!(
            expand_label(sha256, &client_initial_v1, v1.iv, 12),
            hex_literal::hex!("fa044b2f42a3fd3b46fb255c")
        );
        assert_eq!(
            expand_label(sha256, &client_initial_v1, v1.hp, 16),
            hex_literal::hex!("9f50449e04a0e810283a1e9933adedd2")
        );
        let client_initial_v2 =
            hex_literal::hex!("14ec9d6eb9fd7af83bf5a668bc17a7e283766aade7ecd0891f70f9ff7f4bf47b");
        let v2 = labels(Version::V2);
        assert_eq!(
            expand_label(sha256, &client_initial_v2, v2.key, 16),
            hex_literal::hex!("8b1a0bc121284290a29e0971b5cd045d")
        );
        assert_eq!(
            expand_label(sha256, &client_initial_v2, v2.iv, 12),
            hex_literal::hex!("91f73e2351d8fa91660e909f")
        );
        assert_eq!(
            expand_label(sha256, &client_initial_v2, v2.hp, 16),
            hex_literal::hex!("45b95e15235d6f45a6b19cbcb0294ba9")
        );
    }

    /// RFC 9001 Appendix A.5: the key update secret, and the ChaCha20-Poly1305 short header
    /// packet, sealed, header-protected and opened again with keys derived here.
    #[test]
    fn derived_keys_protect_the_rfc9001_a5_packet() {
        let secret =
            hex_literal::hex!("9ac312a7f877468ebe69422748ad00a15443f18203a07d6060f688f30f21632b");
        let mut ours = DerivedSecrets::new(
            rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
            Version::V1,
            Side::Client,
            secret.to_vec(),
            secret.to_vec(),
        )
        .unwrap();
        // RFC 9001 A.5: the ChaCha20 short header packet, sealed and opened by our own keys.
        let keys = ours.keys();
        let header = hex_literal::hex!("4200bff4");
        let mut payload = *b"\x01";
        let tag = keys
            .local
            .packet
            .encrypt_in_place(654_360_564, &header, &mut payload)
            .unwrap();
        assert_eq!(payload, hex_literal::hex!("65"));
        assert_eq!(
            tag.as_ref(),
            hex_literal::hex!("5e5cd55c41f69080575d7999c25a5bfb")
        );
        // Header protection with the sample that follows (RFC 9001 A.5: header 4cfe4189).
        let (mut first, mut pn) = (0x42, [0x00, 0xbf, 0xf4]);
        keys.local
            .header
            .encrypt_in_place(tag.as_ref(), &mut first, &mut pn)
            .unwrap();
        assert_eq!([first, pn[0], pn[1], pn[2]], hex_literal::hex!("4cfe4189"));
        keys.remote
            .header
            .decrypt_in_place(tag.as_ref(), &mut first, &mut pn)
            .unwrap();
        assert_eq!([first, pn[0], pn[1], pn[2]], hex_literal::hex!("4200bff4"));
        let mut sealed = [&payload[..], tag.as_ref()].concat();
        let opened = keys
            .remote
            .packet
            .decrypt_in_place(654_360_564, &header, &mut sealed)
            .unwrap();
        assert_eq!(opened, b"\x01");
        // next_packet_keys gives the keys of the current secret (the same packet again), then
        // moves to the next generation: A.5's ku secret.
        let next = ours.next_packet_keys();
        let mut again = *b"\x01";
        let tag = next
            .local
            .encrypt_in_place(654_360_564, &header, &mut again)
            .unwrap();
        assert_eq!(
            [&again[..], tag.as_ref()].concat(),
            hex_literal::hex!("655e5cd55c41f69080575d7999c25a5bfb")
        );
        let ku =
            hex_literal::hex!("1223504755036d556342ee9361d253421a826c9ecdf3c7148684b36b714881f9");
        assert_eq!(
            (ours.client.as_slice(), ours.server.as_slice()),
            (&ku[..], &ku[..])
        );
    }
}
