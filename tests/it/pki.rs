//! A test PKI made with rcgen: CAs, server certificates, client certificates (with a UPN), PKCS#12 files.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, OtherNameValue,
    RevocationReason, RevokedCertParams, SanType, SerialNumber,
};

pub const UPN_OID: [u64; 10] = [1, 3, 6, 1, 4, 1, 311, 20, 2, 3];

pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pub pem: String,
}

/// A certificate and its key, as PEM, and where they were written.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    pub fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, &self.pem).unwrap();
        path
    }

    /// A server certificate for these names (DNS names or IP addresses).
    pub fn server(&self, dir: &Path, file: &str, names: &[&str]) -> Leaf {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(DnType::CommonName, names[0]);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params, dir, file)
    }

    /// A client certificate with a common name and, optionally, a UPN otherName SAN.
    pub fn client(&self, dir: &Path, file: &str, cn: &str, upn: Option<&str>) -> Leaf {
        self.client_with_serial(dir, file, cn, upn, 1)
    }

    pub fn client_with_serial(
        &self,
        dir: &Path,
        file: &str,
        cn: &str,
        upn: Option<&str>,
        serial: u64,
    ) -> Leaf {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.serial_number = Some(SerialNumber::from(serial));
        params.distinguished_name.push(DnType::CommonName, cn);
        if let Some(upn) = upn {
            params.subject_alt_names.push(SanType::OtherName((
                UPN_OID.to_vec(),
                OtherNameValue::Utf8String(upn.to_owned()),
            )));
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params, dir, file)
    }

    fn sign(&self, params: CertificateParams, dir: &Path, file: &str) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let leaf = Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert: dir.join(format!("{file}.pem")),
            key: dir.join(format!("{file}.key")),
        };
        std::fs::write(&leaf.cert, &leaf.cert_pem).unwrap();
        std::fs::write(&leaf.key, &leaf.key_pem).unwrap();
        leaf
    }
}

impl Ca {
    /// A CRL from this CA revoking these serial numbers.
    pub fn crl(&self, dir: &Path, file: &str, revoked: &[u64]) -> PathBuf {
        let params = CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(2020, 1, 1),
            next_update: rcgen::date_time_ymd(2099, 1, 1),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: SerialNumber::from(*s),
                    revocation_time: rcgen::date_time_ymd(2021, 1, 1),
                    reason_code: Some(RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let path = dir.join(file);
        std::fs::write(
            &path,
            params.signed_by(&self.issuer).unwrap().pem().unwrap(),
        )
        .unwrap();
        path
    }
}

impl Leaf {
    /// Writes the certificate and key as a PKCS#12 file with this password.
    pub fn pkcs12(&self, path: &Path, password: &str) {
        use rustls_pki_types::pem::PemObject;
        let cert =
            rustls_pki_types::CertificateDer::from_pem_slice(self.cert_pem.as_bytes()).unwrap();
        let key =
            rustls_pki_types::PrivatePkcs8KeyDer::from_pem_slice(self.key_pem.as_bytes()).unwrap();
        let chain = p12_keystore::PrivateKeyChain::new(
            b"bcs-test".to_vec(),
            p12_keystore::PrivateKey::from_der(key.secret_pkcs8_der()).unwrap(),
            [p12_keystore::Certificate::from_der(cert.as_ref()).unwrap()],
        );
        let mut store = p12_keystore::KeyStore::new();
        store.add_entry(
            "server",
            p12_keystore::KeyStoreEntry::PrivateKeyChain(chain),
        );
        std::fs::write(path, store.writer(password).write().unwrap()).unwrap();
    }
}
