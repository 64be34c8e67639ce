//! Certificates for TLS servers ([`RedisServerBuilder::tls`](crate::RedisServerBuilder::tls))
//! and the rustls crypto provider of the harness's TLS clients.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Once;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// File name of the CA certificate (PEM) inside the server directory.
const CA_CERT_FILE: &str = "ca.crt";
/// File name of the server certificate (PEM) inside the server directory.
const SERVER_CERT_FILE: &str = "server.crt";
/// File name of the server's private key (PEM, PKCS#8) inside the server directory.
const SERVER_KEY_FILE: &str = "server.key";
/// The names the server certificate is valid for (IP addresses become IP SANs).
const SERVER_NAMES: [&str; 2] = ["127.0.0.1", "localhost"];

/// The PEM files of a TLS server, written once by [`generate`] and reused on restart.
#[derive(Debug, Clone)]
pub(crate) struct TlsFiles {
    /// The self-signed CA that signed the server certificate; what clients trust.
    pub(crate) ca_cert: PathBuf,
    /// The server certificate, valid for `127.0.0.1` and `localhost`.
    pub(crate) cert: PathBuf,
    /// The server certificate's private key.
    pub(crate) key: PathBuf,
}

/// Generates a fresh self-signed CA and a server certificate for `127.0.0.1` and `localhost`
/// signed by it, and writes them as PEM files into `dir`.
pub(crate) fn generate(dir: &Path) -> Result<TlsFiles, String> {
    let ca_key = KeyPair::generate().map_err(|err| format!("CA key: {err}"))?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())
        .map_err(|err| format!("CA parameters: {err}"))?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "integration-tests CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params
        .self_signed(&ca_key)
        .map_err(|err| format!("CA certificate: {err}"))?;
    let issuer = Issuer::new(ca_params, ca_key);

    let server_key = KeyPair::generate().map_err(|err| format!("server key: {err}"))?;
    let names: Vec<String> = SERVER_NAMES.iter().map(|name| (*name).to_owned()).collect();
    let mut server_params =
        CertificateParams::new(names).map_err(|err| format!("server parameters: {err}"))?;
    server_params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    server_params.use_authority_key_identifier_extension = true;
    server_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    // Cluster nodes present the same certificate as clients of each other's bus.
    server_params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let server_cert = server_params
        .signed_by(&server_key, &issuer)
        .map_err(|err| format!("server certificate: {err}"))?;

    let files = TlsFiles {
        ca_cert: dir.join(CA_CERT_FILE),
        cert: dir.join(SERVER_CERT_FILE),
        key: dir.join(SERVER_KEY_FILE),
    };
    for (path, pem) in [
        (&files.ca_cert, ca_cert.pem()),
        (&files.cert, server_cert.pem()),
        (&files.key, server_key.serialize_pem()),
    ] {
        fs::write(path, pem).map_err(|err| format!("cannot write {}: {err}", path.display()))?;
    }
    Ok(files)
}

/// Makes `ring` the process-wide rustls crypto provider unless one is installed already.
///
/// redis-rs builds rustls without a provider feature, and rustls 0.23 panics ("no process-level
/// CryptoProvider available") when it cannot pick exactly one. This crate enables rustls' `ring`
/// feature, which alone would let rustls pick it, but installing it explicitly keeps working if
/// some other dependency ever enables `aws-lc-rs` as well.
pub(crate) fn install_crypto_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // `Err` means another provider was installed first, which serves just as well.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
