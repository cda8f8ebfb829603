//! TLS with rustls: a certificate chain and key from PEM files, ALPN `h2`
//! and `http/1.1`, and a reload that swaps them without a restart.
//!
//! Browsers speak HTTP/2 only over TLS; over HTTP/1.1 they open at most six
//! connections per host, which six `EventSource` streams use up. Over TLS
//! with `h2`, every stream of a page shares one connection.
//!
//! [`Tls::reload`] reads the files again and swaps the configuration for
//! new handshakes (connections already open keep theirs); a reload that
//! fails keeps the old certificate and says why. The binary calls it on
//! `SIGHUP`; [`Tls::watch`] calls it when a file's modification time
//! changes (a renewal by certbot or cert-manager).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_util::sync::CancellationToken;

/// Why a certificate or key could not be used.
#[derive(Debug)]
pub struct TlsError(String);

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsError {}

/// The server's TLS configuration, shared by every connection and
/// replaced whole on reload. Cheap to clone.
#[derive(Clone)]
pub struct Tls {
    inner: Arc<Inner>,
}

struct Inner {
    cert: PathBuf,
    key: PathBuf,
    config: RwLock<Arc<ServerConfig>>,
    /// Modification times of the files last loaded.
    stamps: Mutex<(Option<SystemTime>, Option<SystemTime>)>,
}

impl Tls {
    /// Loads the certificate chain (`cert`, PEM, leaf first) and its
    /// private key (`key`, PEM: PKCS#8, PKCS#1 or SEC1).
    pub fn from_files(cert: &Path, key: &Path) -> Result<Tls, TlsError> {
        let stamps = (modified(cert), modified(key));
        let config = load(cert, key)?;
        Ok(Tls {
            inner: Arc::new(Inner {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
                config: RwLock::new(Arc::new(config)),
                stamps: Mutex::new(stamps),
            }),
        })
    }

    /// An acceptor with the current configuration.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        let config = self
            .inner
            .config
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        tokio_rustls::TlsAcceptor::from(config)
    }

    /// Reads the files again; new handshakes use them. On error the
    /// current certificate stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let stamps = (modified(&self.inner.cert), modified(&self.inner.key));
        let config = load(&self.inner.cert, &self.inner.key)?;
        *self
            .inner
            .config
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(config);
        *self
            .inner
            .stamps
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = stamps;
        metrics::counter!("gate_tls_reloads_total").increment(1);
        tracing::info!(cert = %self.inner.cert.display(), "TLS certificate loaded");
        Ok(())
    }

    /// Checks the files every `every` until `shutdown`, and reloads when
    /// either one's modification time changed.
    pub fn watch(&self, every: Duration, shutdown: CancellationToken) {
        let tls = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = shutdown.cancelled() => return,
                }
                let now = (modified(&tls.inner.cert), modified(&tls.inner.key));
                let seen = *tls
                    .inner
                    .stamps
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                if now != seen {
                    if let Err(err) = tls.reload() {
                        tracing::error!(error = %err, "TLS files changed but cannot be loaded; keeping the current certificate");
                        // Do not retry until they change again.
                        *tls.inner
                            .stamps
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner) = now;
                    }
                }
            }
        });
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn load(cert: &Path, key: &Path) -> Result<ServerConfig, TlsError> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError(format!("cannot read --tls-cert {}: {e}", cert.display())))?;
    if chain.is_empty() {
        return Err(TlsError(format!(
            "--tls-cert {} holds no PEM certificate",
            cert.display()
        )));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => TlsError(format!(
            "--tls-key {} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)",
            key.display()
        )),
        e => TlsError(format!("cannot read --tls-key {}: {e}", key.display())),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(format!("TLS setup: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| {
            TlsError(format!(
                "--tls-cert {} and --tls-key {} do not make a usable pair: {e}",
                cert.display(),
                key.display()
            ))
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
