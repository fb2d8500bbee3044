//! TLS on client connections (`-Z`, `-o ssl_*`): rustls with the ring
//! provider, the certificates read at start and again on SIGHUP, and the
//! handshake done by the connection's task on the core that accepted it.
//!
//! ```text
//! accept (core k) ─▶ first read ─┬─ 0x16 (a TLS record) ─▶ handshake ─▶ Conn (core k)
//!                                └─ anything else ─▶ "SERVER_ERROR this port requires TLS", close
//! ```
//!
//! A reload swaps the `ServerConfig` that new handshakes take; connections
//! already open keep the one they were made with, so none is dropped. A
//! reload that fails (a missing file, a key that does not match) keeps the
//! old certificates and says why in the log.
//!
//! `ClientStream` is what `Conn` reads and writes: a plain socket or a TLS
//! session over one, so the rest of the connection does not know which.
//!
//! Imports config's `TlsSettings`; `server::run` and `conn` use it.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use futures_rustls::rustls::{self, ServerConfig, pki_types::pem::PemObject};
use futures_rustls::server::TlsStream;
use glommio::net::TcpStream;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{TlsMinVersion, TlsSettings};

/// How long a client has to send its hello and finish the handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The first byte of a TLS handshake record.
const TLS_HANDSHAKE: u8 = 0x16;
/// Bytes read before the handshake starts (a ClientHello fits, usually).
const FIRST_READ: usize = 2048;
pub const PLAIN_ON_TLS_PORT: &[u8] = b"SERVER_ERROR this port requires TLS\r\n";

/// The TLS settings and the `ServerConfig` built from their files.
pub struct Tls {
    settings: TlsSettings,
    current: RwLock<Arc<ServerConfig>>,
}

impl Tls {
    /// Read the certificates and key: errors are one line naming the file.
    pub fn load(settings: &TlsSettings) -> Result<Tls, String> {
        Ok(Tls { settings: settings.clone(), current: RwLock::new(Arc::new(server_config(settings)?)) })
    }

    pub fn current(&self) -> Arc<ServerConfig> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Read the files again (SIGHUP); on failure the old ones stay in force.
    pub fn reload(&self) -> Result<(), String> {
        let c = server_config(&self.settings)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(c);
        Ok(())
    }
}

fn read_certs(what: &str, path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read {what} {path}: {e}"))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("cannot read {what} {path}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{what} {path} holds no PEM certificate"));
    }
    Ok(certs)
}

/// Build rustls's server configuration from the files `s` names.
pub fn server_config(s: &TlsSettings) -> Result<ServerConfig, String> {
    let chain = read_certs("ssl_chain_cert", &s.chain_cert)?;
    let key = PrivateKeyDer::from_pem_file(&s.key)
        .map_err(|e| format!("cannot read ssl_key {}: {e} (a PEM private key is expected)", s.key))?;
    // ring: it builds with the C compiler the project already needs, where
    // aws-lc-rs wants cmake (and NASM on some targets). rustls 0.23.48 marks
    // ring's provider deprecated because it lacks the post-quantum key
    // exchange (X25519MLKEM768); X25519 and the NIST curves remain, which is
    // what memcached's OpenSSL offers clients today (docs/security.md).
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = match s.min_version {
        TlsMinVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsMinVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| format!("TLS setup: {e}"))?;
    let builder = match (&s.ca_cert, s.verify_mode) {
        (_, 0) => builder.with_no_client_auth(),
        (None, m) => return Err(format!("ssl_verify_mode={m} needs ssl_ca_cert to verify client certificates with")),
        (Some(ca), m) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in read_certs("ssl_ca_cert", ca)? {
                roots.add(c).map_err(|e| format!("ssl_ca_cert {ca}: {e}"))?;
            }
            let v = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            // 1: ask for a certificate, verify one if given; 2 and 3 (once
            // per connection: rustls never renegotiates): require one.
            let v = if m == 1 { v.allow_unauthenticated() } else { v };
            builder.with_client_cert_verifier(v.build().map_err(|e| format!("ssl_ca_cert {ca}: {e}"))?)
        }
    };
    builder.with_single_cert(chain, key).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => {
            format!("ssl_key {} does not match the certificate in ssl_chain_cert {}", s.key, s.chain_cert)
        }
        e => format!("ssl_chain_cert {} with ssl_key {}: {e}", s.chain_cert, s.key),
    })
}

/// Why a connection on a TLS port did not become one.
pub enum Refused {
    /// The client spoke plain text; it was told so.
    Plain,
    /// It closed before sending anything (a TCP health check, a scan).
    Gone,
    /// It went away, took too long, or the handshake failed (a certificate
    /// refused, no common protocol): the reason, for the log.
    Failed(String),
}

/// The handshake for a connection accepted on a TLS port.
pub async fn accept(config: Arc<ServerConfig>, mut stream: TcpStream) -> Result<ClientStream, Refused> {
    let handshake = async {
        // Read (not peek: glommio's peek missed its wake-up for about one
        // connection in a hundred) the first bytes, then hand them to rustls
        // ahead of the rest of the stream.
        let mut first = vec![0u8; FIRST_READ];
        let n = match stream.read(&mut first).await {
            Ok(0) => return Err(Refused::Gone),
            Ok(n) => n,
            Err(e) => return Err(Refused::Failed(e.to_string())),
        };
        if first[0] != TLS_HANDSHAKE {
            let _ = stream.write_all(PLAIN_ON_TLS_PORT).await;
            let _ = stream.close().await;
            return Err(Refused::Plain);
        }
        first.truncate(n);
        let stream = Prefixed { prefix: first, at: 0, inner: stream };
        let tls = futures_rustls::TlsAcceptor::from(config)
            .accept(stream)
            .await
            .map_err(|e| Refused::Failed(e.to_string()))?;
        Ok(ClientStream::Tls(Box::new(tls)))
    };
    futures_lite::future::or(handshake, async {
        glommio::timer::sleep(HANDSHAKE_TIMEOUT).await;
        Err(Refused::Failed(format!("no handshake within {} s", HANDSHAKE_TIMEOUT.as_secs())))
    })
    .await
}

/// The socket with the bytes read before the handshake put back in front.
pub struct Prefixed {
    prefix: Vec<u8>,
    at: usize,
    inner: TcpStream,
}

impl AsyncRead for Prefixed {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.at < this.prefix.len() {
            let n = buf.len().min(this.prefix.len() - this.at);
            buf[..n].copy_from_slice(&this.prefix[this.at..this.at + n]);
            this.at += n;
            if this.at == this.prefix.len() {
                this.prefix = Vec::new();
                this.at = 0;
            }
            return Poll::Ready(Ok(n));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_close(cx)
    }
}

/// A client connection's byte stream: plain, or TLS over the socket. The
/// plain socket stays inline (the common path takes no extra indirection);
/// the TLS session, tens of KiB of buffers, is boxed.
#[allow(clippy::large_enum_variant)]
pub enum ClientStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<Prefixed>>),
}

impl AsRawFd for ClientStream {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            ClientStream::Plain(s) => s.as_raw_fd(),
            ClientStream::Tls(s) => s.get_ref().0.inner.as_raw_fd(),
        }
    }
}

impl AsyncRead for ClientStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ClientStream::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ClientStream::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    /// A TLS session may hold records its socket did not take yet; a plain
    /// socket holds nothing.
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(_) => Poll::Ready(Ok(())),
            ClientStream::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_close(cx),
            ClientStream::Tls(s) => Pin::new(&mut **s).poll_close(cx),
        }
    }
}
