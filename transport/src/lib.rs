//! MQTT 5 plumbing shared by every Passage service: the embedded broker ([`EmbeddedBroker`],
//! rumqttd) and a client ([`Bus`], rumqttc) with routed subscriptions and request/response by
//! response topic and correlation data.
//!
//! The same [`Bus`] works against the embedded broker and against any MQTT 5 broker
//! (Mosquitto is tested). Payloads are opaque here: `passage-wire` decodes them. [`https`]
//! serves the services' HTTP(S) routers.
#![deny(missing_docs)]

mod broker;
mod bus;
mod filter;
pub mod gateway;
pub mod https;
mod tls;
pub mod webhook;

pub use broker::{BrokerError, EmbeddedBroker};
pub use bus::{Bus, BusConfig, BusError, Message, QoS};
pub use filter::topic_matches;
pub use gateway::{Gateway, GatewayError, GatewayEvent, GatewayOptions};
pub use tls::{client_config, first_cert_der, server_config, ClientAuth, PkiPem, ServerTls, TlsError};

/// Largest MQTT packet any Passage client or the embedded broker accepts (match results for
/// large galleries are tens of megabytes).
pub const MAX_PACKET_BYTES: usize = 128 * 1024 * 1024;
