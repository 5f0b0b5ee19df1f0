//! The device gateway: the broker's only door for devices. It terminates TLS with a client
//! certificate required (rustls `WebPkiClientVerifier`, the CA's CRL checked), finds the
//! certificate's principal in the PKI index by its SHA-256 fingerprint, and forwards MQTT to
//! the broker behind it on loopback only after checking every packet the client sends
//! against the principal's topic rules ([`passage_policy::devices`]):
//!
//! * CONNECT: the client id must belong to the principal, and a will message's topic must be
//!   one it may publish on;
//! * PUBLISH: the topic must be one it may publish on (topic aliases are refused: the gateway
//!   checks names, not numbers);
//! * SUBSCRIBE: every filter must lie inside what it may read.
//!
//! A refused packet is never forwarded: the client gets CONNACK or DISCONNECT with reason
//! "not authorized" (0x87) and the connection closes. Malformed or oversize packets close it
//! too. The gateway watches `index.json` and `crl.pem`: after `passage pki revoke`, new
//! handshakes with the revoked certificate fail and its open connections are closed.
//! Every connection, refusal and revocation-driven close is reported as a [`GatewayEvent`]
//! (the services append them to the audit log); payloads are never looked at or logged.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::BytesMut;
use passage_policy::devices::{Action, Principal};
use passage_policy::pki::{fingerprint, PkiDir};
use rumqttc::v5::mqttbytes::v5::{check, ConnAck, ConnectReturnCode, Disconnect, DisconnectReasonCode, Packet};
use rumqttc::v5::mqttbytes::Error as MqttError;
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::tls::{server_config, ClientAuth, PkiPem, TlsError};
use crate::MAX_PACKET_BYTES;

/// Why the gateway could not start.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// The PKI directory could not be read.
    #[error(transparent)]
    Pki(#[from] passage_policy::pki::PkiError),
    /// The certificates could not be read, or the TLS configuration could not be built.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// What failed.
        source: std::io::Error,
    },
}

/// What happened at the door, for the audit log. Names principals and topics only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayEvent {
    /// A device connected (certificate verified, client id bound to it).
    Connected {
        /// Its principal.
        principal: String,
    },
    /// A connection or packet was refused and the connection closed.
    Refused {
        /// The principal, when the certificate was known.
        principal: Option<String>,
        /// Why (a topic or filter may be named; never a payload).
        reason: String,
    },
    /// A connection was closed because its certificate was revoked.
    Revoked {
        /// The principal.
        principal: String,
    },
}

/// Where the gateway listens and what it forwards to.
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    /// Address to listen on for devices.
    pub listen: SocketAddr,
    /// The broker behind it (loopback).
    pub upstream: SocketAddr,
    /// The PKI directory (`ca.pem`, `crl.pem`, `index.json`).
    pub pki: PathBuf,
    /// The gateway's own server certificate and key (issued by `passage pki server`).
    pub server_cert: PathBuf,
    /// Its key.
    pub server_key: PathBuf,
}

struct Material {
    acceptor: TlsAcceptor,
    principals: HashMap<String, Principal>,
    stamp: Option<(SystemTime, SystemTime)>,
}

struct Live {
    fingerprint: String,
    principal: String,
    cancel: CancellationToken,
}

struct Shared {
    options: GatewayOptions,
    material: Mutex<Arc<Material>>,
    live: Mutex<HashMap<u64, Live>>,
    events: Option<mpsc::UnboundedSender<GatewayEvent>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn now_secs() -> i64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

fn stamp(options: &GatewayOptions) -> Option<(SystemTime, SystemTime)> {
    let pki = PkiDir::new(&options.pki);
    let modified = |path: PathBuf| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    Some((modified(pki.index_path())?, modified(pki.crl_path())?))
}

fn load(options: &GatewayOptions) -> Result<Material, GatewayError> {
    let stamp = stamp(options);
    let pki = PkiDir::new(&options.pki);
    let index = pki.index()?;
    let material = PkiPem::load(&pki, &options.server_cert, &options.server_key)?;
    let config = server_config(&material, ClientAuth::Required)?;
    let now = now_secs();
    let principals = index
        .certs
        .iter()
        .filter_map(|cert| cert.valid_principal(now).map(|p| (cert.fingerprint.clone(), p)))
        .collect();
    Ok(Material { acceptor: TlsAcceptor::from(config), principals, stamp })
}

/// A running gateway.
#[derive(Clone)]
pub struct Gateway {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").field("addr", &self.addr).finish_non_exhaustive()
    }
}

/// How often the gateway looks for a changed index or CRL.
const RELOAD_EVERY: Duration = Duration::from_millis(500);
/// How long a TLS handshake and the first packet may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

impl Gateway {
    /// Loads the PKI, binds `options.listen` and serves until `cancel` fires. Events go to
    /// `events` when given.
    pub async fn start(
        options: GatewayOptions,
        events: Option<mpsc::UnboundedSender<GatewayEvent>>,
        cancel: CancellationToken,
        tracker: &TaskTracker,
    ) -> Result<Gateway, GatewayError> {
        let material = load(&options)?;
        let listener = TcpListener::bind(options.listen)
            .await
            .map_err(|source| GatewayError::Bind { addr: options.listen, source })?;
        let addr = listener.local_addr().map_err(|source| GatewayError::Bind { addr: options.listen, source })?;
        let shared =
            Arc::new(Shared { options, material: Mutex::new(Arc::new(material)), live: Mutex::default(), events });
        tracing::info!(%addr, "device gateway listening (client certificates required)");
        let gateway = Gateway { addr, shared: shared.clone() };

        let watcher = gateway.clone();
        let watch_cancel = cancel.clone();
        tracker.spawn(async move {
            let mut ticker = tokio::time::interval(RELOAD_EVERY);
            loop {
                tokio::select! {
                    () = watch_cancel.cancelled() => break,
                    _ = ticker.tick() => watcher.reload_if_changed(),
                }
            }
        });

        let conn_tracker = tracker.clone();
        tracker.spawn(async move {
            let mut next_id = 0u64;
            loop {
                let accepted = tokio::select! {
                    () = cancel.cancelled() => break,
                    accepted = listener.accept() => accepted,
                };
                let (stream, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(error) => {
                        tracing::warn!(%error, "device gateway accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                next_id += 1;
                let shared = shared.clone();
                let cancel = cancel.child_token();
                conn_tracker.spawn(async move { serve(shared, next_id, stream, peer, cancel).await });
            }
            tracing::info!(%addr, "device gateway stopped");
        });
        Ok(gateway)
    }

    /// The address devices connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Reloads the index and the CRL when either changed, and closes the connections whose
    /// certificate is no longer valid.
    pub fn reload_if_changed(&self) {
        let current = lock(&self.shared.material).stamp;
        if stamp(&self.shared.options) == current {
            return;
        }
        match load(&self.shared.options) {
            Ok(material) => {
                let material = Arc::new(material);
                *lock(&self.shared.material) = material.clone();
                let mut live = lock(&self.shared.live);
                live.retain(|_, conn| {
                    if material.principals.contains_key(&conn.fingerprint) {
                        return true;
                    }
                    tracing::warn!(principal = %conn.principal, "certificate revoked; connection closed");
                    conn.cancel.cancel();
                    self.shared.emit(GatewayEvent::Revoked { principal: conn.principal.clone() });
                    false
                });
                tracing::info!(devices = material.principals.len(), "device gateway reloaded the PKI index and CRL");
            }
            // Keep serving with what was loaded; a half-written file is read again next tick.
            Err(error) => tracing::warn!(%error, "device gateway could not reload the PKI; keeping the previous one"),
        }
    }
}

impl Shared {
    fn emit(&self, event: GatewayEvent) {
        if let Some(events) = &self.events {
            let _ = events.send(event);
        }
    }

    fn refuse(&self, principal: Option<&Principal>, reason: String) {
        tracing::warn!(principal = principal.map(ToString::to_string), %reason, "device gateway refused");
        self.emit(GatewayEvent::Refused { principal: principal.map(ToString::to_string), reason });
    }
}

/// Outcome of reading one packet from the device.
enum Read {
    Packet(BytesMut, Box<Packet>),
    Closed,
    Bad(String),
}

async fn read_packet<R: AsyncReadExt + Unpin>(reader: &mut R, buf: &mut BytesMut) -> Read {
    loop {
        match check(buf.iter(), Some(MAX_PACKET_BYTES as u32)) {
            Ok(header) => {
                let frame = buf.split_to(header.frame_length());
                let mut parse = frame.clone();
                return match Packet::read(&mut parse, Some(MAX_PACKET_BYTES as u32)) {
                    Ok(packet) => Read::Packet(frame, Box::new(packet)),
                    Err(error) => Read::Bad(format!("malformed packet: {error}")),
                };
            }
            Err(MqttError::InsufficientBytes(_)) => {}
            Err(error) => return Read::Bad(format!("malformed packet: {error}")),
        }
        buf.reserve(8 * 1024);
        match reader.read_buf(buf).await {
            Ok(0) | Err(_) => return Read::Closed,
            Ok(_) => {}
        }
    }
}

fn not_authorized(connecting: bool) -> Vec<u8> {
    let mut out = BytesMut::new();
    let packet = if connecting {
        Packet::ConnAck(ConnAck { session_present: false, code: ConnectReturnCode::NotAuthorized, properties: None })
    } else {
        Packet::Disconnect(Disconnect { reason_code: DisconnectReasonCode::NotAuthorized, properties: None })
    };
    // Writing a fixed, tiny packet cannot fail; an empty answer just closes.
    let _ = packet.write(&mut out, None);
    out.to_vec()
}

/// What the principal's rules say about one packet: `None` to forward, or why not.
fn judge(principal: &Principal, client_id: &str, packet: &Packet) -> Option<String> {
    match packet {
        Packet::Connect(..) => Some("a second CONNECT".into()),
        Packet::Publish(publish) => {
            if publish.properties.as_ref().is_some_and(|p| p.topic_alias.is_some()) {
                return Some("topic aliases are not accepted".into());
            }
            let topic = String::from_utf8_lossy(&publish.topic);
            (!principal.allows(client_id, Action::Publish { topic: &topic }))
                .then(|| format!("publish on {} not allowed", clip(&topic)))
        }
        Packet::Subscribe(subscribe) => subscribe
            .filters
            .iter()
            .find(|f| !principal.allows(client_id, Action::Subscribe { filter: &f.path }))
            .map(|f| format!("subscription to {} not allowed", clip(&f.path))),
        _ => None,
    }
}

fn clip(s: &str) -> String {
    s.chars().take(120).collect()
}

async fn serve(shared: Arc<Shared>, id: u64, stream: TcpStream, peer: SocketAddr, cancel: CancellationToken) {
    let material = lock(&shared.material).clone();
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, material.acceptor.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => {
            shared.refuse(None, format!("TLS handshake from {peer} failed: {error}"));
            return;
        }
        Err(_) => {
            shared.refuse(None, format!("TLS handshake from {peer} timed out"));
            return;
        }
    };
    let der = tls.get_ref().1.peer_certificates().and_then(|certs| certs.first()).map(|c| c.to_vec());
    let Some(der) = der else {
        shared.refuse(None, format!("{peer} presented no client certificate"));
        return;
    };
    let print = fingerprint(&der);
    let Some(principal) = material.principals.get(&print).cloned() else {
        shared.refuse(None, format!("{peer}: certificate {} is not in the index or not valid", &print[..16]));
        return;
    };
    let (mut from_device, to_device) = tokio::io::split(tls);
    let to_device = Arc::new(tokio::sync::Mutex::new(to_device));
    let refuse = |connecting: bool, reason: String| {
        let to_device = to_device.clone();
        let shared = shared.clone();
        let principal = principal.clone();
        async move {
            shared.refuse(Some(&principal), reason);
            let mut writer = to_device.lock().await;
            let _ = writer.write_all(&not_authorized(connecting)).await;
            let _ = writer.shutdown().await;
        }
    };

    // The first packet must be a CONNECT with a client id of this principal.
    let mut buf = BytesMut::with_capacity(8 * 1024);
    let first = match tokio::time::timeout(HANDSHAKE_TIMEOUT, read_packet(&mut from_device, &mut buf)).await {
        Ok(read) => read,
        Err(_) => return refuse(true, "no CONNECT in time".into()).await,
    };
    let (frame, client_id) = match first {
        Read::Packet(frame, packet) => match *packet {
            Packet::Connect(connect, will, _login) => {
                if !principal.allows(&connect.client_id, Action::Connect { client_id: &connect.client_id }) {
                    let reason = format!("client id {} is not bound to this certificate", clip(&connect.client_id));
                    return refuse(true, reason).await;
                }
                if let Some(will) = will {
                    let topic = String::from_utf8_lossy(&will.topic);
                    if !principal.allows(&connect.client_id, Action::Publish { topic: &topic }) {
                        return refuse(true, format!("will message on {} not allowed", clip(&topic))).await;
                    }
                }
                (frame, connect.client_id)
            }
            _ => return refuse(true, "the first packet is not CONNECT".into()).await,
        },
        Read::Bad(reason) => return refuse(true, reason).await,
        Read::Closed => return,
    };
    let upstream = match TcpStream::connect(shared.options.upstream).await {
        Ok(upstream) => upstream,
        Err(error) => {
            tracing::warn!(%error, "device gateway cannot reach the broker");
            let mut writer = to_device.lock().await;
            let _ = writer.shutdown().await;
            return;
        }
    };
    let (mut from_broker, mut to_broker) = upstream.into_split();
    if to_broker.write_all(&frame).await.is_err() {
        return;
    }
    lock(&shared.live)
        .insert(id, Live { fingerprint: print, principal: principal.to_string(), cancel: cancel.clone() });
    shared.emit(GatewayEvent::Connected { principal: principal.to_string() });
    tracing::debug!(%principal, "device connected through the gateway");

    // Broker to device: bytes as they come.
    let downstream = {
        let to_device = to_device.clone();
        let cancel = cancel.clone();
        async move {
            let mut chunk = vec![0u8; 64 * 1024];
            loop {
                let n = tokio::select! {
                    () = cancel.cancelled() => break,
                    n = from_broker.read(&mut chunk) => n,
                };
                match n {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if to_device.lock().await.write_all(&chunk[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            }
            cancel.cancel();
        }
    };
    // Device to broker: packet by packet, each judged first.
    let upstream_task = async {
        loop {
            let read = tokio::select! {
                () = cancel.cancelled() => break,
                read = read_packet(&mut from_device, &mut buf) => read,
            };
            match read {
                Read::Packet(frame, packet) => {
                    if let Some(reason) = judge(&principal, &client_id, &packet) {
                        refuse(false, reason).await;
                        break;
                    }
                    if to_broker.write_all(&frame).await.is_err() {
                        break;
                    }
                }
                Read::Bad(reason) => {
                    refuse(false, reason).await;
                    break;
                }
                Read::Closed => break,
            }
        }
        cancel.cancel();
    };
    tokio::join!(downstream, upstream_task);
    let _ = to_broker.shutdown().await;
    let _ = to_device.lock().await.shutdown().await;
    lock(&shared.live).remove(&id);
}
