//! The embedded MQTT broker (rumqttd), started when no external broker is configured.

use std::collections::HashMap;
use std::io::{Read, Write};
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
    /// The broker did not accept MQTT connections in time.
    #[error("the embedded broker on {0} did not accept an MQTT connection within 10 s")]
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
        while !answers_mqtt(addr) {
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

/// Whether the broker at `addr` completes an MQTT 5 handshake: CONNECT answered by a CONNACK
/// that accepts it. A bare TCP connect that hangs up would do to see the port open, but
/// rumqttd logs every connection closed before its CONNECT as an error.
fn answers_mqtt(addr: SocketAddr) -> bool {
    const CLIENT_ID: &[u8] = b"passage-broker-ready";
    // The CONNECT below fits a one-byte remaining length.
    const _: () = assert!(CLIENT_ID.len() < 100);
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    // Variable header: protocol name, level 5, clean start, keep alive 10 s, no properties;
    // payload: the client identifier.
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 5, 0x02, 0, 10, 0];
    body.extend_from_slice(&(CLIENT_ID.len() as u16).to_be_bytes());
    body.extend_from_slice(CLIENT_ID);
    let mut connect = vec![0x10, body.len() as u8];
    connect.extend_from_slice(&body);
    if stream.write_all(&connect).is_err() {
        return false;
    }
    // CONNACK: type 2, remaining length (one byte: a broker's CONNACK is short), acknowledge
    // flags, reason code 0 (success), then its properties, read to the end so that nothing
    // unread turns the close into a reset.
    let mut head = [0u8; 4];
    if stream.read_exact(&mut head).is_err() || head[0] != 0x20 || head[1] < 2 || head[1] & 0x80 != 0 {
        return false;
    }
    let mut properties = vec![0u8; usize::from(head[1]) - 2];
    if head[3] != 0 || stream.read_exact(&mut properties).is_err() {
        return false;
    }
    // Then hang up without a DISCONNECT: rumqttd 0.20 logs a client's DISCONNECT as an error
    // ("router-drop") and a connection closed after CONNECT as an ordinary disconnection.
    true
}

/// Picks the address: the given port, or a free one found by binding port 0.
fn reserve_port(port: u16) -> Result<SocketAddr, BrokerError> {
    let wanted = SocketAddr::from(([127, 0, 0, 1], port));
    let listener = TcpListener::bind(wanted).map_err(|source| BrokerError::Bind { addr: wanted, source })?;
    listener.local_addr().map_err(|source| BrokerError::Bind { addr: wanted, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readiness_check_completes_an_mqtt_handshake_and_refuses_other_servers() {
        let broker = EmbeddedBroker::start(0).expect("broker starts");
        assert!(answers_mqtt(broker.addr()));
        // A server that accepts and hangs up is open, but no MQTT broker.
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = std::thread::spawn(move || {
            if let Ok((stream, _)) = listener.accept() {
                drop(stream);
            }
        });
        assert!(!answers_mqtt(addr));
        server.join().expect("server thread");
        // Nothing listening.
        let closed = reserve_port(0).expect("port");
        assert!(!answers_mqtt(closed));
    }
}
