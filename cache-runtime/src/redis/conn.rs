//! Connecting: the URL and TLS settings, the rustls crypto provider, and the one connection
//! type every operation goes through.
//!
//! [`Connection`] is an enum so that the Cluster client can become a second variant without any
//! module that runs commands noticing.

use std::time::Duration;

use ::redis::aio::{ConnectionLike, MultiplexedConnection};
use ::redis::{AsyncConnectionConfig, Cmd, Pipeline, RedisFuture, Value};

use super::Error;
use crate::config::{Config, ConfigError, redact_url};

/// An open connection: cheap to clone (a handle on one multiplexed socket).
#[derive(Clone)]
pub(crate) enum Connection {
    Single(MultiplexedConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
        }
    }
}

/// Where to connect, checked once at start-up.
pub(crate) struct Target {
    client: ::redis::Client,
}

impl Target {
    /// Parses the URL and loads the TLS settings.
    ///
    /// # Errors
    /// A URL redis-rs cannot parse, `rediss://` without the `tls` feature, or a CA file that
    /// cannot be read; each names its variable.
    pub(crate) fn new(config: &Config) -> Result<Self, ConfigError> {
        let url = config.redis_url.as_str();
        let invalid = |reason: String| ConfigError::invalid("REDIS_URL", redact_url(url), reason);
        let tls = url.starts_with("rediss://");
        if tls && !cfg!(feature = "tls") {
            return Err(invalid(
                "TLS needs cache-runtime's `tls` feature".to_owned(),
            ));
        }
        if tls {
            install_crypto_provider();
        }
        let client = match &config.redis_tls_ca {
            Some(path) if tls => {
                let pem = std::fs::read(path).map_err(|e| {
                    ConfigError::invalid(
                        "REDIS_TLS_CA_CERT",
                        path.display().to_string(),
                        format!("cannot read the CA certificate: {e}"),
                    )
                })?;
                tls_client(url, pem)
            }
            Some(path) => {
                return Err(ConfigError::invalid(
                    "REDIS_TLS_CA_CERT",
                    path.display().to_string(),
                    "a CA certificate needs a `rediss://` REDIS_URL (or REDIS_SSL=true)",
                ));
            }
            None => ::redis::Client::open(url),
        }
        .map_err(|e| invalid(e.to_string()))?;
        Ok(Self { client })
    }

    /// Opens a connection within `timeout` (TCP, TLS handshake, AUTH and SELECT included).
    pub(crate) async fn connect(&self, timeout: Duration) -> Result<Connection, Error> {
        // Every operation runs under our own timeout; a second timer inside redis-rs would
        // only cost time on each call.
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(None);
        let conn = tokio::time::timeout(
            timeout,
            self.client
                .get_multiplexed_async_connection_with_config(&config),
        )
        .await
        .map_err(|_| Error::Timeout)??;
        Ok(Connection::Single(conn))
    }
}

#[cfg(feature = "tls")]
fn tls_client(url: &str, ca_pem: Vec<u8>) -> ::redis::RedisResult<::redis::Client> {
    ::redis::Client::build_with_tls(
        url,
        ::redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(ca_pem),
        },
    )
}

#[cfg(not(feature = "tls"))]
fn tls_client(url: &str, _: Vec<u8>) -> ::redis::RedisResult<::redis::Client> {
    // Unreachable in practice: `Target::new` refuses `rediss://` without the feature.
    ::redis::Client::open(url)
}

/// rustls needs a process-wide crypto provider; without one, the first TLS handshake panics
/// (REVIEW R2). Installs ring's unless the application installed one already.
fn install_crypto_provider() {
    #[cfg(feature = "tls")]
    {
        // `Err` means a provider is installed already, which is just as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

#[cfg(all(test, feature = "tls"))]
mod tests {
    use super::*;

    /// R2: a `rediss://` URL used to panic in rustls ("no process-level CryptoProvider") on the
    /// first handshake. Now it is an ordinary connection failure (nothing listens on port 1).
    #[tokio::test]
    async fn r02_a_tls_connection_attempt_does_not_panic() {
        let config = Config {
            redis_url: "rediss://127.0.0.1:1/".to_owned(),
            ..Config::default()
        };
        let target = Target::new(&config).unwrap();
        assert!(target.connect(Duration::from_millis(500)).await.is_err());
    }
}
