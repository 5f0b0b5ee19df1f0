//! The embedded MQTT broker (rumqttd), started when no external broker is configured.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};
use thiserror::Error;

use crate::MAX_PACKET_BYTES;

/// Why the embedded broker did not start.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// No free port could be reserved, or the port is taken.
    #[error("cannot bind the embedded broker to {addr}")]
    Bind {
        /// Address tried.
        addr: SocketAddr,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The broker thread could not be spawned.
    #[error("cannot start the embedded broker thread")]
    Thread(#[source] std::io::Error),
    /// The broker did not accept connections in time.
    #[error("the embedded broker did not start listening on {0} within 10 s")]
    NotListening(SocketAddr),
}

/// A running embedded broker, listening for MQTT 5 on loopback. It runs on its own threads
/// until the process exits (rumqttd has no stop call); tests that need to stop a broker use
/// Mosquitto.
#[derive(Debug)]
pub struct EmbeddedBroker {
    addr: SocketAddr,
}

impl EmbeddedBroker {
    /// Starts a broker on `127.0.0.1:port` (`port` 0 picks a free port) and waits until it
    /// accepts connections.
    pub fn start(port: u16) -> Result<EmbeddedBroker, BrokerError> {
        let addr = reserve_port(port)?;
        let connections = ConnectionSettings {
            connection_timeout_ms: 10_000,
            max_payload_size: MAX_PACKET_BYTES,
            max_inflight_count: 500,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        };
        let server = ServerSettings {
            name: "passage-v5".into(),
            listen: addr,
            tls: None,
            next_connection_delay_ms: 1,
            connections,
        };
        let config = Config {
            id: 0,
            router: RouterConfig {
                max_connections: 10_000,
                max_outgoing_packet_count: 1_000,
                max_segment_size: 256 * 1024 * 1024,
                max_segment_count: 4,
                ..RouterConfig::default()
            },
            v5: Some(HashMap::from([("1".to_owned(), server)])),
            ..Config::default()
        };
        let mut broker = Broker::new(config);
        std::thread::Builder::new()
            .name("mqtt-broker".into())
            .spawn(move || {
                if let Err(error) = broker.start() {
                    tracing::error!(%error, "embedded broker stopped");
                }
            })
            .map_err(BrokerError::Thread)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if Instant::now() > deadline {
                return Err(BrokerError::NotListening(addr));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        tracing::info!(%addr, "embedded MQTT 5 broker listening");
        Ok(EmbeddedBroker { addr })
    }

    /// The address the broker listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// Picks the address: the given port, or a free one found by binding port 0.
fn reserve_port(port: u16) -> Result<SocketAddr, BrokerError> {
    let wanted = SocketAddr::from(([127, 0, 0, 1], port));
    let listener = TcpListener::bind(wanted).map_err(|source| BrokerError::Bind { addr: wanted, source })?;
    listener.local_addr().map_err(|source| BrokerError::Bind { addr: wanted, source })
}
