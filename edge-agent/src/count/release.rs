//! Differentially private release of a venue's counts, interval by interval, over a day.
//!
//! A [`VenueReleaser`] holds, for the current UTC day, one continual counter per released cell
//! (line x direction, zone-to-zone pair) of every camera. At the first release of a day it
//! charges the day's budget to the venue in the [`BudgetLedger`]; if the ledger refuses (the
//! day was already spent, e.g. before a restart), nothing is released until the next day.
//!
//! Privacy unit and composition: one event (a crossing or a zone-to-zone move) changes one
//! interval count of exactly one cell of one camera (each line and zone is counted by one
//! camera), so all the venue's cells together are (epsilon, delta)-DP per day for each event, by
//! parallel composition. A person making k events a day is covered at k * epsilon (group
//! privacy); the deployment states the assumed k (`max_crossings_per_person_day`).
//!
//! Post-processing (after noise, so it costs no privacy): the interval figure is the difference
//! of successive rounded noisy totals, so interval figures are unbiased (they may be negative)
//! and add up to the rounded noisy total. The running total shown as a `Total` item is made
//! non-decreasing and non-negative ([`Monotone`]); it is for display only. Differences of
//! monotone totals would be biased upwards: a running maximum of noise drifts up even when
//! nothing happens, by about the noise std (or more) per cell, and sums over many cells and
//! intervals multiply that.

use passage_config::{Privacy, Venue};
use passage_dp::continual::{ContinualCounter, Mechanism};
use passage_dp::ledger::day_of;
use passage_dp::postprocess::{occupancy, Monotone};
use passage_dp::{Budget, BudgetLedger, DpError};
use passage_wire::{CountItem, CountRecord, Direction, Id, Metric, NoiseMechanism, DWELL_BUCKETS, PROTOCOL_VERSION};
use rand::RngCore;

use super::{CameraCounter, Tallies};

/// Why a release did not happen.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReleaseError {
    /// The budget (ledger, horizon or parameters) refused it.
    #[error(transparent)]
    Dp(#[from] DpError),
    /// The interval lies before one already released (the clock went back).
    #[error("interval starting at {start} is not after the last released interval ({last}); the clock went back")]
    ClockWentBack {
        /// The interval asked for.
        start: i64,
        /// The last interval released.
        last: i64,
    },
    /// The release interval must divide a day.
    #[error("release interval of {0} s does not divide a day")]
    BadInterval(u32),
    /// The tallies do not belong to the venue's cameras.
    #[error("expected tallies for {expected} cameras, got {got}")]
    WrongCameras {
        /// Cameras of the venue.
        expected: usize,
        /// Tallies given.
        got: usize,
    },
}

/// The DP mechanism the configuration names.
pub fn mechanism_of(configured: NoiseMechanism) -> Mechanism {
    match configured {
        NoiseMechanism::DiscreteLaplace => Mechanism::PerInterval,
        NoiseMechanism::DiscreteGaussian => Mechanism::PerIntervalGaussian,
        NoiseMechanism::BinaryTree => Mechanism::BinaryTree,
        NoiseMechanism::SqrtFactorization => Mechanism::SqrtFactorization,
    }
}

/// One released cell: its counter and its post-processing state.
struct Cell {
    /// For a zone's entries or exits cell: (zone index, true for entries).
    zone: Option<(usize, bool)>,
    metric_interval: Metric,
    metric_total: Option<Metric>,
    counter: ContinualCounter,
    monotone: Monotone,
    last_released: i64,
}

/// The day's state.
struct Day {
    day: i64,
    /// Per camera, its cells in release order.
    cells: Vec<Vec<Cell>>,
}

/// Releases a venue's noised records.
pub struct VenueReleaser {
    venue: Id,
    cameras: Vec<Id>,
    /// Per camera: (metric for the interval figure, metric for the running total).
    layout: Vec<Vec<(Metric, Option<Metric>)>>,
    /// Per camera: its zones' capacities (in zone order).
    zones: Vec<Vec<Option<f64>>>,
    /// Per camera: zone ids (in zone order).
    zone_ids: Vec<Vec<Id>>,
    configured: NoiseMechanism,
    mechanism: Mechanism,
    budget: Budget,
    interval_secs: u32,
    day: Option<Day>,
    last_start: Option<i64>,
}

impl std::fmt::Debug for VenueReleaser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VenueReleaser")
            .field("venue", &self.venue)
            .field("mechanism", &self.mechanism)
            .finish_non_exhaustive()
    }
}

impl VenueReleaser {
    /// A releaser for `venue` whose cameras' counters are `counters` (in the same order).
    ///
    /// # Errors
    /// [`ReleaseError::Dp`] for an invalid budget or interval.
    pub fn new(venue: &Venue, counters: &[CameraCounter], privacy: &Privacy) -> Result<VenueReleaser, ReleaseError> {
        let budget = Budget { epsilon: privacy.epsilon_per_day, delta: privacy.delta_per_day }.validate()?;
        let secs = privacy.interval_secs;
        if secs == 0 || 86_400 % secs != 0 {
            return Err(ReleaseError::BadInterval(secs));
        }
        let layout = counters.iter().map(CameraCounter::cell_layout).collect();
        Ok(VenueReleaser {
            venue: venue.id.clone(),
            cameras: counters.iter().map(|c| c.camera.clone()).collect(),
            layout,
            zones: counters
                .iter()
                .map(|c| {
                    c.zones
                        .iter()
                        .map(|z| venue.zones.iter().find(|vz| vz.id == z.id).map(|vz| f64::from(vz.capacity)))
                        .collect()
                })
                .collect(),
            zone_ids: counters.iter().map(|c| c.zones.iter().map(|z| z.id.clone()).collect()).collect(),
            configured: privacy.mechanism,
            mechanism: mechanism_of(privacy.mechanism),
            budget,
            interval_secs: secs,
            day: None,
            last_start: None,
        })
    }

    /// Intervals per day.
    fn horizon(&self) -> usize {
        86_400 / self.interval_secs as usize
    }

    /// Starts `day`'s counters after charging the ledger.
    fn open_day(&mut self, day: i64, ledger: &mut BudgetLedger) -> Result<(), ReleaseError> {
        let horizon = self.horizon();
        let mut cells = Vec::with_capacity(self.layout.len());
        // Calibrated once; every cell gets a fresh copy. A line crossing changes one line
        // cell. Entering a zone changes its entries cell and, coming from another zone, one
        // transition cell; leaving a zone changes its exits cell and one dwell cell. Zone cells
        // get half the budget each, so that every event costs at most the day's budget (basic
        // composition).
        let proto = ContinualCounter::new(self.mechanism, self.budget, horizon)?;
        let half = Budget { epsilon: self.budget.epsilon / 2.0, delta: self.budget.delta / 2.0 };
        let proto_zone = ContinualCounter::new(self.mechanism, half, horizon)?;
        for (camera, zone_ids) in self.layout.iter().zip(&self.zone_ids) {
            let index_of = |zone: &Id| zone_ids.iter().position(|z| z == zone);
            let row = camera
                .iter()
                .map(|(interval, total)| (interval, total, !matches!(interval, Metric::Crossings { .. })))
                .map(|(interval, total, zone_event)| Cell {
                    zone: match interval {
                        Metric::Entries { zone } => index_of(zone).map(|i| (i, true)),
                        Metric::Exits { zone } => index_of(zone).map(|i| (i, false)),
                        _ => None,
                    },
                    metric_interval: interval.clone(),
                    metric_total: total.clone(),
                    counter: if zone_event { proto_zone.fresh() } else { proto.fresh() },
                    monotone: Monotone::default(),
                    last_released: 0,
                })
                .collect();
            cells.push(row);
        }
        // Parallel composition across cameras and lines, basic composition of the two zone
        // cells an event touches: the cells together cost one full counter's budget.
        ledger.charge(self.venue.as_str(), day, proto.budget())?;
        self.day = Some(Day { day, cells });
        Ok(())
    }

    /// Releases the interval starting at `start` (seconds since the epoch, aligned to the
    /// interval): `tallies` has one entry per camera, in the order given to [`new`](Self::new).
    /// Returns one record per camera; `ids` supplies their message ids.
    ///
    /// Intervals skipped since the last release (the agent saw nothing) are fed as zeros, so
    /// the totals stay totals since midnight UTC.
    ///
    /// # Errors
    /// [`ReleaseError`]: budget refused (nothing released for the rest of the day), clock went
    /// back, or tallies for the wrong cameras. The tallies are dropped either way.
    pub fn release<R: RngCore>(
        &mut self,
        tallies: Vec<Tallies>,
        start: i64,
        ledger: &mut BudgetLedger,
        rng: &mut R,
        mut ids: impl FnMut(&mut R) -> String,
    ) -> Result<Vec<CountRecord>, ReleaseError> {
        if tallies.len() != self.cameras.len() {
            return Err(ReleaseError::WrongCameras { expected: self.cameras.len(), got: tallies.len() });
        }
        if let Some(last) = self.last_start {
            if start <= last {
                return Err(ReleaseError::ClockWentBack { start, last });
            }
        }
        let day = day_of(start);
        if self.day.as_ref().map(|d| d.day) != Some(day) {
            self.day = None;
            self.open_day(day, ledger)?;
        }
        self.last_start = Some(start);
        let secs = i64::from(self.interval_secs);
        let index = (start.rem_euclid(86_400) / secs) as usize;
        let closing = index + 1 == self.horizon();
        let Some(state) = self.day.as_mut() else { return Ok(Vec::new()) };
        let mut records = Vec::with_capacity(self.cameras.len());
        for ((((camera, cells), tallies), capacities), zone_ids) in
            self.cameras.iter().zip(state.cells.iter_mut()).zip(tallies).zip(&self.zones).zip(&self.zone_ids)
        {
            let values = tallies.cell_values(capacities.len());
            let mut items = Vec::with_capacity(cells.len() * 2);
            // Per zone: (entries total, exits total, variance of their difference).
            let mut flows = vec![(0.0, 0.0, 0.0); capacities.len()];
            for (cell, count) in cells.iter_mut().zip(values) {
                // Zeros for the intervals nobody reported (agent started late or skipped);
                // the interval figure below is the change since the last *released* noisy
                // total, so released interval figures always add up to the noisy total.
                // Their noise is drawn (later totals depend on it) but nothing is computed
                // for them: an agent starting in the afternoon skips thousands at once.
                cell.counter.skip(index.saturating_sub(cell.counter.released()), rng)?;
                let r = cell.counter.push(u64::from(count), rng)?;
                let noisy_total = r.total.round() as i64;
                let interval = noisy_total - cell.last_released;
                cell.last_released = noisy_total;
                let total = cell.monotone.next(r.total).round() as i64;
                if let Some(zone) = cell.zone {
                    // Occupancy from the unbiased totals; `occupancy` clamps it afterwards.
                    let flow = &mut flows[zone.0];
                    if zone.1 {
                        flow.0 += noisy_total as f64;
                    } else {
                        flow.1 += noisy_total as f64;
                    }
                    flow.2 += r.total_std * r.total_std;
                }
                items.push(CountItem { metric: cell.metric_interval.clone(), value: interval, std: r.interval_std });
                if let Some(metric) = &cell.metric_total {
                    items.push(CountItem { metric: metric.clone(), value: total, std: r.total_std });
                }
            }
            // Occupancy is post-processing of the released transition totals: entries minus
            // exits, clamped to [0, capacity], and zero in the day's last interval (closing).
            for ((zone, capacity), (entries, exits, var)) in zone_ids.iter().zip(capacities).zip(flows) {
                items.push(CountItem {
                    metric: Metric::Occupancy { zone: zone.clone() },
                    value: occupancy(entries, exits, *capacity, closing).round() as i64,
                    std: var.sqrt(),
                });
            }
            records.push(CountRecord {
                v: u32::from(PROTOCOL_VERSION),
                id: ids(rng),
                venue: self.venue.clone(),
                camera: camera.clone(),
                start,
                secs: self.interval_secs,
                mechanism: self.configured,
                epsilon: self.budget.epsilon,
                items,
            });
        }
        Ok(records)
    }
}

impl CameraCounter {
    /// The cells this camera releases, in order: per line (in, out) with their totals, then
    /// every ordered pair of distinct zones.
    fn cell_layout(&self) -> Vec<(Metric, Option<Metric>)> {
        let mut cells = Vec::new();
        for line in &self.lines {
            for dir in [Direction::In, Direction::Out] {
                cells.push((
                    Metric::Crossings { line: line.id.clone(), dir },
                    Some(Metric::Total { line: line.id.clone(), dir }),
                ));
            }
        }
        for zone in &self.zones {
            cells.push((Metric::Entries { zone: zone.id.clone() }, None));
            cells.push((Metric::Exits { zone: zone.id.clone() }, None));
        }
        for (a, b) in transition_pairs(self.zones.len()) {
            cells.push((Metric::Transition { from: self.zones[a].id.clone(), to: self.zones[b].id.clone() }, None));
        }
        for zone in &self.zones {
            for bucket in 0..DWELL_BUCKETS {
                cells.push((Metric::Dwell { zone: zone.id.clone(), bucket: bucket as u8 }, None));
            }
        }
        cells
    }
}

/// The ordered pairs of distinct zones released as transitions.
fn transition_pairs(zones: usize) -> Vec<(usize, usize)> {
    let mut pairs = Vec::new();
    for a in 0..zones {
        for b in 0..zones {
            if a != b {
                pairs.push((a, b));
            }
        }
    }
    pairs
}

impl Tallies {
    /// The raw values in [`CameraCounter::cell_layout`] order; consumed by the release.
    fn cell_values(&self, zones: usize) -> Vec<u32> {
        let mut values = Vec::new();
        for &(n_in, n_out) in &self.crossings {
            values.push(n_in);
            values.push(n_out);
        }
        for zone in 0..zones {
            let (entries, exits) = self.flow(zone);
            values.push(entries);
            values.push(exits);
        }
        for (a, b) in transition_pairs(zones) {
            values.push(self.transition(a, b));
        }
        for zone in 0..zones {
            for bucket in 0..DWELL_BUCKETS {
                values.push(self.dwell(zone, bucket));
            }
        }
        values
    }
}

#[cfg(test)]
mod tests {
    use passage_config::Config;
    use passage_dp::Csprng;
    use rand::SeedableRng;

    use super::*;

    fn setup(mechanism: NoiseMechanism) -> (Venue, Vec<CameraCounter>, Privacy) {
        let config = Config::default();
        let venue = config.venues[0].clone();
        let counters = venue.cameras.iter().map(|c| CameraCounter::new(&venue, &c.id).expect("configured")).collect();
        let privacy = Privacy { mechanism, ..Privacy::default() };
        (venue, counters, privacy)
    }

    fn id_gen(rng: &mut Csprng) -> String {
        use rand::Rng;
        format!("{:032x}", rng.random::<u128>())
    }

    const DAY: i64 = 20_000 * 86_400;

    #[test]
    fn every_cell_is_released_and_displayed_totals_never_go_down() {
        for mechanism in [
            NoiseMechanism::SqrtFactorization,
            NoiseMechanism::BinaryTree,
            NoiseMechanism::DiscreteLaplace,
            NoiseMechanism::DiscreteGaussian,
        ] {
            let (venue, mut counters, privacy) = setup(mechanism);
            let mut releaser = VenueReleaser::new(&venue, &counters, &privacy).expect("valid");
            let mut ledger = BudgetLedger::new(Budget { epsilon: 1.0, delta: 1e-6 }).expect("valid");
            let mut rng = Csprng::seed_from_u64(1);
            let mut totals: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
            for i in 0..30 {
                let tallies: Vec<Tallies> = counters.iter_mut().map(CameraCounter::close_interval).collect();
                let records =
                    releaser.release(tallies, DAY + 600 + i * 60, &mut ledger, &mut rng, id_gen).expect("released");
                assert_eq!(records.len(), venue.cameras.len());
                for record in &records {
                    assert_eq!(record.mechanism, mechanism);
                    assert!(CountRecord::decode(&record.encode()).is_ok(), "records pass the wire decoder");
                    for item in &record.items {
                        if let Metric::Total { line, dir } = &item.metric {
                            let last = totals.insert(format!("{line}/{dir:?}"), item.value).unwrap_or(0);
                            assert!(item.value >= last, "displayed totals never go down");
                        }
                    }
                }
            }
            let spent = ledger.spent(venue.id.as_str(), day_of(DAY));
            assert!(
                spent.epsilon > 0.99 && spent.epsilon <= 1.0,
                "{mechanism:?}: one day's budget for the venue, {spent:?}"
            );
        }
    }

    /// With nobody counted all day, the interval figures of a cell sum to zero on average
    /// (they are unbiased); differences of the displayed, monotone totals would not be.
    #[test]
    fn interval_figures_are_unbiased_where_nothing_happens() {
        let days = 300;
        let intervals = 60;
        let mut sums = Vec::new();
        let mut totals = Vec::new();
        let mut total_std = 0.0;
        for seed in 0..days {
            let (venue, mut counters, privacy) = setup(NoiseMechanism::SqrtFactorization);
            let mut releaser = VenueReleaser::new(&venue, &counters, &privacy).expect("valid");
            let mut ledger = BudgetLedger::new(Budget { epsilon: 1.0, delta: 1e-6 }).expect("valid");
            let mut rng = Csprng::seed_from_u64(1000 + seed);
            let (mut sum, mut last_total) = (0, 0);
            for i in 0..intervals {
                let tallies: Vec<Tallies> = counters.iter_mut().map(CameraCounter::close_interval).collect();
                let records = releaser.release(tallies, DAY + i * 60, &mut ledger, &mut rng, id_gen).expect("released");
                // The first line's "in" cell of the first camera.
                let items = &records[0].items;
                sum += items[0].value;
                if let Some(total) = items.iter().find(|item| matches!(item.metric, Metric::Total { .. })) {
                    last_total = total.value;
                    total_std = total.std;
                }
            }
            sums.push(sum as f64);
            totals.push(last_total as f64);
        }
        let mean = sums.iter().sum::<f64>() / f64::from(days as u32);
        let bound = 4.0 * total_std / f64::from(days as u32).sqrt();
        assert!(mean.abs() < bound, "interval figures sum to {mean} on average (4 standard errors: {bound})");
        let monotone_mean = totals.iter().sum::<f64>() / f64::from(days as u32);
        assert!(monotone_mean > bound, "the displayed total is a running maximum, biased up: {monotone_mean}");
    }

    #[test]
    fn a_spent_day_releases_nothing_and_the_next_day_does() {
        let (venue, mut counters, privacy) = setup(NoiseMechanism::SqrtFactorization);
        let mut ledger = BudgetLedger::new(Budget { epsilon: 1.0, delta: 1e-6 }).expect("valid");
        let mut rng = Csprng::seed_from_u64(2);
        let mut first = VenueReleaser::new(&venue, &counters, &privacy).expect("valid");
        let tallies: Vec<Tallies> = counters.iter_mut().map(CameraCounter::close_interval).collect();
        first.release(tallies, DAY, &mut ledger, &mut rng, id_gen).expect("first release of the day");
        // A restarted agent (new releaser, same ledger) must not spend the day again.
        let mut restarted = VenueReleaser::new(&venue, &counters, &privacy).expect("valid");
        let tallies: Vec<Tallies> = counters.iter_mut().map(CameraCounter::close_interval).collect();
        let refused = restarted.release(tallies, DAY + 60, &mut ledger, &mut rng, id_gen);
        assert!(matches!(refused, Err(ReleaseError::Dp(DpError::BudgetExhausted { .. }))), "{refused:?}");
        let tallies: Vec<Tallies> = counters.iter_mut().map(CameraCounter::close_interval).collect();
        assert!(
            restarted.release(tallies, DAY + 86_400, &mut ledger, &mut rng, id_gen).is_ok(),
            "a new day has a new budget"
        );
    }

    #[test]
    fn the_clock_going_back_is_refused() {
        let (venue, mut counters, privacy) = setup(NoiseMechanism::BinaryTree);
        let mut ledger = BudgetLedger::new(Budget { epsilon: 1.0, delta: 1e-6 }).expect("valid");
        let mut rng = Csprng::seed_from_u64(3);
        let mut releaser = VenueReleaser::new(&venue, &counters, &privacy).expect("valid");
        let tallies: Vec<Tallies> = counters.iter_mut().map(CameraCounter::close_interval).collect();
        releaser.release(tallies, DAY + 120, &mut ledger, &mut rng, id_gen).expect("released");
        let tallies: Vec<Tallies> = counters.iter_mut().map(CameraCounter::close_interval).collect();
        assert!(matches!(
            releaser.release(tallies, DAY + 60, &mut ledger, &mut rng, id_gen),
            Err(ReleaseError::ClockWentBack { .. })
        ));
        assert!(matches!(
            releaser.release(Vec::new(), DAY + 180, &mut ledger, &mut rng, id_gen),
            Err(ReleaseError::WrongCameras { .. })
        ));
    }

    #[test]
    fn occupancy_and_dwell_are_released_for_every_zone() {
        let (venue, counters, privacy) = setup(NoiseMechanism::SqrtFactorization);
        let mut ledger = BudgetLedger::new(Budget { epsilon: 1.0, delta: 1e-6 }).expect("valid");
        let mut rng = Csprng::seed_from_u64(5);
        let mut releaser = VenueReleaser::new(&venue, &counters, &privacy).expect("valid");
        let bowl = venue.cameras.iter().position(|c| c.zones.len() == 3).expect("a camera with three zones");
        // Per minute, 3 people enter the first zone and 1 leaves it after two minutes.
        let mut last = None;
        for i in 0..60 {
            let mut tallies: Vec<Tallies> = counters.iter().map(CameraCounter::empty_tallies).collect();
            tallies[bowl].flows[0] = (3, 1);
            tallies[bowl].dwell[0][1] = 1;
            let records = releaser.release(tallies, DAY + i * 60, &mut ledger, &mut rng, id_gen).expect("released");
            let record = &records[bowl];
            let zones: Vec<&Id> = record
                .items
                .iter()
                .filter_map(|item| match &item.metric {
                    Metric::Occupancy { zone } => Some(zone),
                    _ => None,
                })
                .collect();
            assert_eq!(zones.len(), 3, "one occupancy per zone");
            let dwell = record.items.iter().filter(|item| matches!(item.metric, Metric::Dwell { .. })).count();
            assert_eq!(dwell, 3 * DWELL_BUCKETS);
            last = record.items.iter().find(|item| matches!(item.metric, Metric::Occupancy { .. })).cloned();
        }
        let occupancy = last.expect("an occupancy item");
        assert!(occupancy.value >= 0);
        assert!((occupancy.value - 120).abs() as f64 <= 5.0 * occupancy.std, "{occupancy:?} vs 120");
        // The day's last interval is closing time: every zone is empty.
        let tallies: Vec<Tallies> = counters.iter().map(CameraCounter::empty_tallies).collect();
        let records = releaser.release(tallies, DAY + 86_400 - 60, &mut ledger, &mut rng, id_gen).expect("released");
        assert!(records[bowl]
            .items
            .iter()
            .filter(|item| matches!(item.metric, Metric::Occupancy { .. }))
            .all(|item| item.value == 0));
    }

    #[test]
    fn totals_track_the_truth_within_their_noise() {
        let (venue, counters, privacy) = setup(NoiseMechanism::SqrtFactorization);
        let mut ledger = BudgetLedger::new(Budget { epsilon: 1.0, delta: 1e-6 }).expect("valid");
        let mut rng = Csprng::seed_from_u64(4);
        let mut releaser = VenueReleaser::new(&venue, &counters, &privacy).expect("valid");
        // 10 people in through the first camera's first line every minute for 3 hours.
        let mut last_total = (0, 0.0);
        for i in 0..180 {
            let mut tallies: Vec<Tallies> = counters.iter().map(CameraCounter::empty_tallies).collect();
            tallies[0].crossings[0].0 = 10;
            let records = releaser.release(tallies, DAY + i * 60, &mut ledger, &mut rng, id_gen).expect("released");
            for item in &records[0].items {
                if let Metric::Total { dir: Direction::In, .. } = item.metric {
                    last_total = (item.value, item.std);
                    break;
                }
            }
        }
        let (value, std) = last_total;
        assert!((value - 1800).abs() as f64 <= 5.0 * std, "total {value} vs 1800 (std {std})");
        assert!(std < 20.0, "{std}");
    }
}
