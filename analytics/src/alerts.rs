//! Capacity alerts with hysteresis, published to MQTT and to an optional webhook.
//!
//! Every `alert_every_secs` the task reads each zone's latest released occupancy (noised, so
//! post-processing of DP output) and compares its load (occupancy / capacity) with two
//! thresholds: an alert is raised when the load reaches `alert_high` and cleared only when it
//! falls to `alert_low`, so noise around one threshold cannot make it flap. Each transition
//! is stored in the `alerts` table, published (QoS 1) on
//! `passage/v1/{venue}/alerts/{zone}` as a [`CapacityAlert`] (the gates into the zone follow
//! it), and POSTed as the same JSON
//! to the webhook when one is configured. Webhook delivery is best effort with a timeout and
//! never holds up the next round.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use passage_config::Config;
use passage_transport::{Bus, QoS};
use passage_wire::{topics, AlertState, CapacityAlert, Id};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::{now_unix, AlertEntry, Store};

/// Longest a webhook POST may take.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);

/// How far back a zone's released occupancy still counts as live: a few release intervals
/// (the alert task and the live view agree on it).
pub fn live_window(interval_secs: u32) -> i64 {
    3 * i64::from(interval_secs)
}

/// The hysteresis rule: given whether the alert is raised and the current load, the new
/// state when it changes.
pub fn transition(raised: bool, load: f64, high: f64, low: f64) -> Option<bool> {
    if !load.is_finite() {
        return None;
    }
    match raised {
        false if load >= high => Some(true),
        true if load <= low => Some(false),
        _ => None,
    }
}

/// Which zones are in alert now, shared with the HTTP side.
#[derive(Debug, Default)]
pub struct AlertBoard {
    raised: Mutex<BTreeMap<(String, String), bool>>,
}

impl AlertBoard {
    /// The zones of `venue` whose alert is raised, in zone order.
    pub fn raised(&self, venue: &Id) -> Vec<String> {
        let raised = self.raised.lock().unwrap_or_else(PoisonError::into_inner);
        raised.iter().filter(|((v, _), up)| v == venue.as_str() && **up).map(|((_, zone), _)| zone.clone()).collect()
    }

    fn get(&self, venue: &Id, zone: &str) -> bool {
        let raised = self.raised.lock().unwrap_or_else(PoisonError::into_inner);
        raised.get(&(venue.to_string(), zone.to_owned())).copied().unwrap_or(false)
    }

    fn set(&self, venue: &Id, zone: &str, up: bool) {
        let mut raised = self.raised.lock().unwrap_or_else(PoisonError::into_inner);
        raised.insert((venue.to_string(), zone.to_owned()), up);
    }
}

/// One round: looks at every zone of every venue at time `now` and returns the transitions,
/// after storing them and updating `board`.
pub fn check(store: &Store, config: &Config, board: &AlertBoard, now: i64) -> Vec<CapacityAlert> {
    let since = now - live_window(config.privacy.interval_secs);
    let mut out = Vec::new();
    for venue in &config.venues {
        let levels = match store.latest_zone_levels(&venue.id, since) {
            Ok(levels) => levels,
            Err(error) => {
                tracing::error!(venue = %venue.id, %error, "alert check could not read occupancy");
                continue;
            }
        };
        for zone in &venue.zones {
            let Some(level) = levels.iter().find(|l| l.zone == zone.id.as_str()) else { continue };
            let capacity = i64::from(zone.capacity);
            let load = level.value as f64 / capacity as f64;
            let raised = board.get(&venue.id, zone.id.as_str());
            let Some(up) = transition(raised, load, config.analytics.alert_high, config.analytics.alert_low) else {
                continue;
            };
            let state = if up { AlertState::Raised } else { AlertState::Cleared };
            let entry = AlertEntry {
                at: now,
                zone: zone.id.to_string(),
                state: state.as_str().to_owned(),
                occupancy: level.value as f64,
                std: level.std,
                capacity,
            };
            if let Err(error) = store.record_alert(&venue.id, &entry) {
                tracing::error!(venue = %venue.id, zone = %zone.id, %error, "could not store an alert");
            }
            board.set(&venue.id, zone.id.as_str(), up);
            tracing::info!(venue = %venue.id, zone = %zone.id, state = state.as_str(), load, "capacity alert");
            out.push(CapacityAlert {
                v: u32::from(passage_wire::PROTOCOL_VERSION),
                venue: venue.id.clone(),
                zone: zone.id.clone(),
                state,
                occupancy: entry.occupancy,
                std: entry.std,
                capacity: zone.capacity,
                at: now,
            });
        }
    }
    out
}

/// Spawns the alert task on `tracker`: a round every `alert_every_secs` until `cancel`.
pub fn spawn_alerts(
    bus: Option<Bus>,
    config: Arc<Config>,
    store: Store,
    board: Arc<AlertBoard>,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) {
    let every = Duration::from_secs(u64::from(config.analytics.alert_every_secs.max(1)));
    let client =
        config.analytics.alert_webhook.as_ref().and_then(|_| passage_transport::webhook::client(WEBHOOK_TIMEOUT));
    let store = Arc::new(Mutex::new(store));
    let webhooks = tracker.clone();
    tracker.spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                _ = tick.tick() => {}
            }
            let (store, config_now, board_now) = (store.clone(), config.clone(), board.clone());
            let messages = tokio::task::spawn_blocking(move || {
                let store = store.lock().unwrap_or_else(PoisonError::into_inner);
                check(&store, &config_now, &board_now, now_unix())
            })
            .await
            .unwrap_or_default();
            for message in messages {
                let body = message.encode();
                if let Some(bus) = &bus {
                    let topic = topics::alert(&message.venue, &message.zone);
                    if let Err(error) = bus.try_publish(&topic, QoS::AtLeastOnce, body.clone()) {
                        tracing::warn!(%error, "alert not published on MQTT");
                    }
                }
                if let (Some(client), Some(url)) = (&client, &config.analytics.alert_webhook) {
                    let request = client.post(url).header("content-type", "application/json").body(body);
                    webhooks.spawn(async move {
                        match request.send().await {
                            Ok(response) if response.status().is_success() => {}
                            Ok(response) => tracing::warn!(status = %response.status(), "alert webhook refused"),
                            Err(error) => tracing::warn!(error = %error.without_url(), "alert webhook failed"),
                        }
                    });
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alerts_rise_and_clear_with_hysteresis() {
        let (high, low) = (0.9, 0.8);
        assert_eq!(transition(false, 0.85, high, low), None);
        assert_eq!(transition(false, 0.9, high, low), Some(true));
        // Noise around the high threshold does not clear it.
        assert_eq!(transition(true, 0.88, high, low), None);
        assert_eq!(transition(true, 0.81, high, low), None);
        assert_eq!(transition(true, 0.8, high, low), Some(false));
        assert_eq!(transition(false, 0.85, high, low), None);
        assert_eq!(transition(false, f64::NAN, high, low), None);
    }

    /// The alert task against a real broker and a webhook on loopback: a zone filling up
    /// raises one alert, published on MQTT, POSTed to the webhook and stored; emptying clears it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn alerts_reach_mqtt_the_webhook_and_the_store() {
        use crate::store::tests::record;
        use passage_wire::{CountItem, Metric};

        let broker = passage_transport::EmbeddedBroker::start(0).expect("broker");
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let bus_config = |client: &str| passage_transport::BusConfig {
            host: broker.addr().ip().to_string(),
            port: broker.addr().port(),
            client_id: client.to_owned(),
        };
        let bus = Bus::connect(bus_config("alerts"), cancel.clone(), &tracker).await.expect("connect");
        let watcher = Bus::connect(bus_config("watcher"), cancel.clone(), &tracker).await.expect("connect");
        let mut published = watcher.subscribe("passage/v1/+/alerts/+", QoS::AtLeastOnce, 16).await.expect("subscribe");

        // The webhook: an axum server on loopback that forwards what it receives.
        let (hook_tx, mut hook_rx) = tokio::sync::mpsc::channel::<CapacityAlert>(16);
        let hook = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |axum::Json(message): axum::Json<CapacityAlert>| {
                let hook_tx = hook_tx.clone();
                async move {
                    let _ = hook_tx.send(message).await;
                    "ok"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let hook_addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, hook).await });

        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Store::open(&dir.path().join("a.duckdb")).expect("open");
        let mut config = Config::default();
        config.analytics.alert_every_secs = 1;
        config.analytics.alert_webhook = Some(format!("http://{hook_addr}/hook"));
        let now = now_unix();
        let level =
            |value| CountItem { metric: Metric::Occupancy { zone: Id::new("stand-a").expect("id") }, value, std: 2.0 };
        // Stand A holds 150: 140 is above 90 %.
        store.insert_batch(&[record("o1", "arena", "cam-bowl", now - 30, vec![level(140)])]).expect("insert");
        let board = Arc::new(AlertBoard::default());
        spawn_alerts(
            Some(bus),
            Arc::new(config),
            store.try_clone().expect("clone"),
            board.clone(),
            cancel.clone(),
            &tracker,
        );

        let wait = Duration::from_secs(10);
        let message = tokio::time::timeout(wait, published.recv()).await.expect("published in time").expect("open");
        assert_eq!(message.topic, "passage/v1/arena/alerts/stand-a");
        let alert = CapacityAlert::decode(&message.payload).expect("a capacity alert");
        assert_eq!((alert.state, alert.occupancy, alert.capacity), (AlertState::Raised, 140.0, 150));
        let hooked = tokio::time::timeout(wait, hook_rx.recv()).await.expect("webhook in time").expect("open");
        assert_eq!(hooked, alert);
        assert_eq!(board.raised(&Id::new("arena").expect("id")), vec!["stand-a".to_owned()]);

        // 130 of 150 (87 %) is between the thresholds: nothing happens. 100 clears it.
        store.insert_batch(&[record("o2", "arena", "cam-bowl", now - 20, vec![level(130)])]).expect("insert");
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(published.try_recv().is_err(), "no transition inside the hysteresis band");
        store.insert_batch(&[record("o3", "arena", "cam-bowl", now - 10, vec![level(100)])]).expect("insert");
        let message = tokio::time::timeout(wait, published.recv()).await.expect("published in time").expect("open");
        let cleared = CapacityAlert::decode(&message.payload).expect("a capacity alert");
        assert_eq!(cleared.state, AlertState::Cleared);
        let stored = store.alerts(&Id::new("arena").expect("id"), 0, 10).expect("alerts");
        assert_eq!(stored.iter().map(|a| a.state.as_str()).collect::<Vec<_>>(), vec!["cleared", "raised"]);
        cancel.cancel();
        tracker.close();
        tracker.wait().await;
    }

    #[test]
    fn a_noisy_walk_across_one_threshold_flaps_less_than_without_hysteresis() {
        let loads: Vec<f64> = (0..200).map(|i| 0.9 + if i % 2 == 0 { 0.03 } else { -0.03 }).collect();
        let mut raised = false;
        let mut with = 0;
        for &load in &loads {
            if let Some(up) = transition(raised, load, 0.9, 0.8) {
                raised = up;
                with += 1;
            }
        }
        let mut raised = false;
        let mut without = 0;
        for &load in &loads {
            if let Some(up) = transition(raised, load, 0.9, 0.9) {
                raised = up;
                without += 1;
            }
        }
        assert_eq!(with, 1);
        assert_eq!(without, 200);
    }
}
