//! An MQTT 5 client with routed subscriptions and request/response.
//!
//! One task drives the rumqttc event loop: it reconnects with back-off, re-subscribes after
//! every reconnect, routes each incoming publish to the subscriptions whose filter matches,
//! and hands replies (publishes on this client's reply topic carrying a known correlation id)
//! to the request that waits for them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::{topic_matches, MAX_PACKET_BYTES};

pub use rumqttc::v5::mqttbytes::QoS;

/// Why a bus operation failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum BusError {
    /// The client's request queue is closed (the bus is shutting down).
    #[error("the MQTT client is closed")]
    Closed,
    /// The client's request queue is full (the broker has been unreachable for a while) or
    /// closed; nothing was queued. Only [`Bus::try_publish`] reports it.
    #[error("the MQTT client's request queue is full or closed")]
    QueueFull,
    /// No reply arrived in time.
    #[error("no reply on {topic} within {timeout:?}")]
    Timeout {
        /// Topic the request went to.
        topic: String,
        /// How long we waited.
        timeout: Duration,
    },
    /// The first connection to the broker failed.
    #[error("cannot connect to the MQTT broker at {addr}: {reason}")]
    Connect {
        /// Broker address.
        addr: String,
        /// What the client reported.
        reason: String,
    },
}

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct BusConfig {
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// MQTT client id; must be unique on the broker.
    pub client_id: String,
}

/// A message received on a subscription (or a reply to a request).
#[derive(Debug, Clone)]
pub struct Message {
    /// Topic it was published on.
    pub topic: String,
    /// Payload bytes.
    pub payload: Bytes,
    /// MQTT 5 response topic, when the sender expects a reply.
    pub response_topic: Option<String>,
    /// MQTT 5 correlation data, echoed in the reply.
    pub correlation: Option<Bytes>,
}

struct Route {
    filter: String,
    tx: mpsc::Sender<Message>,
}

/// How long [`Bus::subscribe`] waits for the broker to confirm a subscription.
const SUBSCRIBE_CONFIRMATION: Duration = Duration::from_secs(10);

type Pending = Arc<Mutex<HashMap<Bytes, oneshot::Sender<Message>>>>;

/// A connected MQTT 5 client. Cheap to clone.
#[derive(Clone)]
pub struct Bus {
    client: AsyncClient,
    routes: Arc<Mutex<Vec<Route>>>,
    subscriptions: Arc<Mutex<Vec<(String, QoS)>>>,
    pending: Pending,
    reply_topic: String,
    next_correlation: Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus").field("reply_topic", &self.reply_topic).finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Bus {
    /// Connects, waits for the broker's CONNACK (so a wrong address fails here, clearly), and
    /// starts the event-loop task on `tracker`. The task ends when `cancel` fires; every
    /// subscription channel then closes and every waiting request fails with `Closed`.
    pub async fn connect(config: BusConfig, cancel: CancellationToken, tracker: &TaskTracker) -> Result<Bus, BusError> {
        Bus::connect_with(config, None, cancel, tracker).await
    }

    /// [`Bus::connect`] over TLS with `tls` (which trusts the deployment's CA and carries
    /// this party's client certificate, for the device gateway).
    pub async fn connect_tls(
        config: BusConfig,
        tls: Arc<rustls::ClientConfig>,
        cancel: CancellationToken,
        tracker: &TaskTracker,
    ) -> Result<Bus, BusError> {
        Bus::connect_with(config, Some(tls), cancel, tracker).await
    }

    async fn connect_with(
        config: BusConfig,
        tls: Option<Arc<rustls::ClientConfig>>,
        cancel: CancellationToken,
        tracker: &TaskTracker,
    ) -> Result<Bus, BusError> {
        let mut options = MqttOptions::new(config.client_id.clone(), config.host.clone(), config.port);
        if let Some(tls) = tls {
            options.set_transport(rumqttc::Transport::tls_with_config(rumqttc::TlsConfiguration::Rustls(tls)));
        }
        options.set_keep_alive(Duration::from_secs(15));
        options.set_max_packet_size(Some(MAX_PACKET_BYTES as u32));
        options.set_clean_start(true);
        let (client, mut eventloop) = AsyncClient::new(options, 256);
        let addr = format!("{}:{}", config.host, config.port);

        // First connection: poll until CONNACK or a connection error.
        let first = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok(()),
                    Ok(_) => continue,
                    Err(error) => return Err(error.to_string()),
                }
            }
        })
        .await;
        match first {
            Ok(Ok(())) => {}
            Ok(Err(reason)) => return Err(BusError::Connect { addr, reason }),
            Err(_) => return Err(BusError::Connect { addr, reason: "no CONNACK within 10 s".into() }),
        }

        let bus = Bus {
            client,
            routes: Arc::default(),
            subscriptions: Arc::default(),
            pending: Arc::default(),
            reply_topic: passage_wire::topics::reply_to(&config.client_id),
            next_correlation: Arc::default(),
        };
        bus.client.subscribe(bus.reply_topic.clone(), QoS::AtLeastOnce).await.map_err(|_| BusError::Closed)?;
        let driver = bus.clone();
        tracker.spawn(async move { driver.drive(eventloop, cancel, addr).await });
        // Replies can arrive from now on.
        if let Err(error) = bus.barrier(SUBSCRIBE_CONFIRMATION).await {
            tracing::warn!(%error, "reply subscription not confirmed by the broker yet");
        }
        Ok(bus)
    }

    /// Drives the event loop until cancelled.
    async fn drive(self, mut eventloop: EventLoop, cancel: CancellationToken, addr: String) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let event = tokio::select! {
                () = cancel.cancelled() => break,
                event = eventloop.poll() => event,
            };
            match event {
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    backoff = Duration::from_millis(100);
                    self.route(publish.topic, publish.payload, publish.properties).await;
                }
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    // A reconnect: the session is clean, so subscribe again. Not with
                    // `try_subscribe`: after a long outage the client's request queue can be
                    // full of publishes waiting for the broker, and a dropped SUBSCRIBE would
                    // lose the subscription for good. A task waits for room in the queue while
                    // this loop keeps polling (which is what drains it).
                    tracing::info!(broker = %addr, "reconnected to the MQTT broker");
                    let mut filters = vec![(self.reply_topic.clone(), QoS::AtLeastOnce)];
                    filters.extend(lock(&self.subscriptions).iter().cloned());
                    let client = self.client.clone();
                    tokio::spawn(async move {
                        for (filter, qos) in filters {
                            if let Err(error) = client.subscribe(filter.clone(), qos).await {
                                tracing::warn!(%filter, %error, "could not subscribe again after reconnecting");
                            }
                        }
                    });
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(broker = %addr, %error, retry_in_ms = backoff.as_millis() as u64, "MQTT connection lost");
                    tokio::select! {
                        () = cancel.cancelled() => break,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        let _ = self.client.try_disconnect();
        // Close every subscription channel and fail every waiting request, so that consumers
        // see the end of the stream instead of waiting forever on a bus that is gone.
        lock(&self.routes).clear();
        lock(&self.pending).clear();
    }

    async fn route(&self, topic: Bytes, payload: Bytes, properties: Option<PublishProperties>) {
        let Ok(topic) = String::from_utf8(topic.to_vec()) else {
            tracing::warn!("dropped a publish whose topic is not UTF-8");
            return;
        };
        let (response_topic, correlation) = match properties {
            Some(p) => (p.response_topic, p.correlation_data),
            None => (None, None),
        };
        let message = Message { topic, payload, response_topic, correlation };
        if message.topic == self.reply_topic {
            let waiter = message.correlation.as_ref().and_then(|c| lock(&self.pending).remove(c));
            match waiter {
                Some(tx) => {
                    let _ = tx.send(message);
                }
                None => tracing::debug!("dropped a reply nobody waits for (late or unknown)"),
            }
            return;
        }
        let targets: Vec<mpsc::Sender<Message>> = lock(&self.routes)
            .iter()
            .filter(|route| topic_matches(&route.filter, &message.topic))
            .map(|route| route.tx.clone())
            .collect();
        for tx in targets {
            // Awaiting here applies back-pressure to the broker connection instead of
            // buffering without bound.
            if tx.send(message.clone()).await.is_err() {
                lock(&self.routes).retain(|route| !route.tx.is_closed());
            }
        }
    }

    /// Subscribes to `filter` (wildcards and `$share/...` allowed) and returns a channel of
    /// matching messages holding at most `capacity` undelivered messages.
    pub async fn subscribe(
        &self,
        filter: &str,
        qos: QoS,
        capacity: usize,
    ) -> Result<mpsc::Receiver<Message>, BusError> {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        lock(&self.routes).push(Route { filter: filter.to_owned(), tx });
        lock(&self.subscriptions).push((filter.to_owned(), qos));
        self.client.subscribe(filter.to_owned(), qos).await.map_err(|_| BusError::Closed)?;
        // Return once the subscription is in effect, so that a request published right after
        // (by this or another client) is not lost to a SUBSCRIBE still in flight.
        if let Err(error) = self.barrier(SUBSCRIBE_CONFIRMATION).await {
            // The broker is unreachable; the subscription is made again on reconnect.
            tracing::warn!(%filter, %error, "subscription not confirmed by the broker yet");
        }
        Ok(rx)
    }

    /// Waits until the broker has handled every packet this client sent before: publishes an
    /// empty message on this client's own reply topic and waits for it to come back. A broker
    /// handles one connection's packets in order, so a SUBSCRIBE sent earlier is in effect
    /// when this returns.
    async fn barrier(&self, timeout: Duration) -> Result<(), BusError> {
        let n = self.next_correlation.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let correlation = Bytes::from(n.to_be_bytes().to_vec());
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(correlation.clone(), tx);
        let properties =
            PublishProperties { correlation_data: Some(correlation.clone()), ..PublishProperties::default() };
        let topic = self.reply_topic.clone();
        if self
            .client
            .publish_with_properties(topic.clone(), QoS::AtLeastOnce, false, Bytes::new(), properties)
            .await
            .is_err()
        {
            lock(&self.pending).remove(&correlation);
            return Err(BusError::Closed);
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(BusError::Closed),
            Err(_) => {
                lock(&self.pending).remove(&correlation);
                Err(BusError::Timeout { topic, timeout })
            }
        }
    }

    /// Publishes `payload` on `topic`.
    pub async fn publish(&self, topic: &str, qos: QoS, payload: impl Into<Bytes>) -> Result<(), BusError> {
        self.client.publish(topic.to_owned(), qos, false, payload.into()).await.map_err(|_| BusError::Closed)
    }

    /// Publishes `payload` on `topic` if the client's request queue has room, without waiting.
    /// While the broker is unreachable the queue fills up and [`Bus::publish`] would wait until
    /// it is back; senders that keep their own copy and retry (the edge spool) use this
    /// instead. A queued publish is not yet delivered: the client drops its queue when a
    /// connection breaks (clean sessions), so only the receiver's acknowledgement proves
    /// delivery.
    pub fn try_publish(&self, topic: &str, qos: QoS, payload: impl Into<Bytes>) -> Result<(), BusError> {
        self.client.try_publish(topic.to_owned(), qos, false, payload.into()).map_err(|_| BusError::QueueFull)
    }

    /// Publishes a request on `topic` with this client's reply topic and a fresh correlation id,
    /// and waits for the reply.
    pub async fn request(
        &self,
        topic: &str,
        payload: impl Into<Bytes>,
        timeout: Duration,
    ) -> Result<Message, BusError> {
        let n = self.next_correlation.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let correlation = Bytes::from(n.to_be_bytes().to_vec());
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(correlation.clone(), tx);
        let properties = PublishProperties {
            response_topic: Some(self.reply_topic.clone()),
            correlation_data: Some(correlation.clone()),
            ..PublishProperties::default()
        };
        let sent = self
            .client
            .publish_with_properties(topic.to_owned(), QoS::AtLeastOnce, false, payload.into(), properties)
            .await;
        if sent.is_err() {
            lock(&self.pending).remove(&correlation);
            return Err(BusError::Closed);
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(message)) => Ok(message),
            Ok(Err(_)) => Err(BusError::Closed),
            Err(_) => {
                lock(&self.pending).remove(&correlation);
                Err(BusError::Timeout { topic: topic.to_owned(), timeout })
            }
        }
    }

    /// Answers `request` on its response topic with its correlation data. A request without a
    /// response topic is answered nowhere (returns `Ok`).
    pub async fn respond(&self, request: &Message, payload: impl Into<Bytes>) -> Result<(), BusError> {
        let Some(topic) = &request.response_topic else { return Ok(()) };
        let properties =
            PublishProperties { correlation_data: request.correlation.clone(), ..PublishProperties::default() };
        self.client
            .publish_with_properties(topic.clone(), QoS::AtLeastOnce, false, payload.into(), properties)
            .await
            .map_err(|_| BusError::Closed)
    }
}
