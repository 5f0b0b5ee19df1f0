//! The per-venue, per-day privacy budget ledger. Every release is charged before its noise is
//! drawn; a charge that would exceed the day's budget is refused and nothing is released.
//!
//! The ledger itself holds no personal data (venue ids, day numbers and budgets), so the edge
//! persists it ([`BudgetLedger::to_json`]) and reloads it on restart: a restarted agent cannot
//! spend a day's budget twice.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::accounting::Budget;
use crate::DpError;

/// Days since the Unix epoch (UTC) of a Unix timestamp in seconds.
pub fn day_of(unix_secs: i64) -> i64 {
    unix_secs.div_euclid(86_400)
}

/// The budget ledger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetLedger {
    /// Budget per venue per day.
    limit: Budget,
    /// Spent so far, keyed by "venue" then day number.
    spent: BTreeMap<String, BTreeMap<i64, Budget>>,
}

impl BudgetLedger {
    /// A ledger allowing `limit` per venue per day.
    ///
    /// # Errors
    /// [`DpError::BadEpsilon`] or [`DpError::BadDelta`] for an invalid limit.
    pub fn new(limit: Budget) -> Result<BudgetLedger, DpError> {
        Ok(BudgetLedger { limit: limit.validate()?, spent: BTreeMap::new() })
    }

    /// The same spending under a new per-day limit.
    ///
    /// # Errors
    /// [`DpError::BadEpsilon`] or [`DpError::BadDelta`] for an invalid limit.
    pub fn with_limit(self, limit: Budget) -> Result<BudgetLedger, DpError> {
        Ok(BudgetLedger { limit: limit.validate()?, ..self })
    }

    /// The per-day limit.
    pub fn limit(&self) -> Budget {
        self.limit
    }

    /// What `venue` has spent on `day`.
    pub fn spent(&self, venue: &str, day: i64) -> Budget {
        self.spent.get(venue).and_then(|days| days.get(&day)).copied().unwrap_or(Budget { epsilon: 0.0, delta: 0.0 })
    }

    /// What `venue` may still spend on `day`.
    pub fn remaining(&self, venue: &str, day: i64) -> Budget {
        self.limit.minus(self.spent(venue, day))
    }

    /// Charges `cost` to `venue` on `day`, or refuses it (and records nothing) when the day's
    /// budget would be exceeded.
    ///
    /// # Errors
    /// [`DpError::BudgetExhausted`].
    pub fn charge(&mut self, venue: &str, day: i64, cost: Budget) -> Result<(), DpError> {
        let after = self.spent(venue, day).plus(cost);
        if !after.within(self.limit) {
            return Err(DpError::BudgetExhausted {
                venue: venue.to_owned(),
                day,
                asked: cost.epsilon,
                remaining: self.remaining(venue, day).epsilon,
            });
        }
        self.spent.entry(venue.to_owned()).or_default().insert(day, after);
        Ok(())
    }

    /// Forgets days before `day` (their budget can no longer be spent).
    pub fn prune_before(&mut self, day: i64) {
        for days in self.spent.values_mut() {
            days.retain(|&d, _| d >= day);
        }
        self.spent.retain(|_, days| !days.is_empty());
    }

    /// Serialises the ledger (no personal data in it).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Reads a ledger back; the limit is re-validated.
    ///
    /// # Errors
    /// [`DpError::BadLedger`] for malformed input.
    pub fn from_json(text: &str) -> Result<BudgetLedger, DpError> {
        let ledger: BudgetLedger = serde_json::from_str(text).map_err(|e| DpError::BadLedger(e.to_string()))?;
        ledger.limit.validate()?;
        Ok(ledger)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_beyond_the_day_budget_are_refused_and_days_are_separate() {
        let mut ledger = BudgetLedger::new(Budget { epsilon: 1.0, delta: 1e-6 }).expect("valid");
        ledger.charge("arena", 10, Budget::pure(0.6)).expect("fits");
        let refused = ledger.charge("arena", 10, Budget::pure(0.6));
        assert!(matches!(refused, Err(DpError::BudgetExhausted { .. })), "{refused:?}");
        assert!((ledger.spent("arena", 10).epsilon - 0.6).abs() < 1e-12, "a refused charge records nothing");
        ledger.charge("arena", 10, Budget::pure(0.4)).expect("exactly the rest fits");
        ledger.charge("arena", 11, Budget::pure(1.0)).expect("a new day");
        ledger.charge("hall", 10, Budget { epsilon: 1.0, delta: 1e-6 }).expect("another venue");
        assert!(ledger.charge("hall", 10, Budget { epsilon: 0.0, delta: 1e-7 }).is_err(), "delta is budgeted too");
    }

    #[test]
    fn the_ledger_survives_a_round_trip_and_rejects_garbage() {
        let mut ledger = BudgetLedger::new(Budget::pure(2.0)).expect("valid");
        ledger.charge("arena", day_of(1_700_000_000), Budget::pure(1.5)).expect("fits");
        let back = BudgetLedger::from_json(&ledger.to_json()).expect("round trip");
        assert_eq!(back, ledger);
        assert!(BudgetLedger::from_json("{").is_err());
        assert!(BudgetLedger::from_json(r#"{"limit":{"epsilon":-1,"delta":0},"spent":{}}"#).is_err());
    }

    #[test]
    fn pruning_forgets_old_days() {
        let mut ledger = BudgetLedger::new(Budget::pure(1.0)).expect("valid");
        ledger.charge("arena", 1, Budget::pure(1.0)).expect("fits");
        ledger.charge("arena", 2, Budget::pure(1.0)).expect("fits");
        ledger.prune_before(2);
        assert_eq!(ledger.spent("arena", 1).epsilon, 0.0);
        assert_eq!(ledger.spent("arena", 2).epsilon, 1.0);
        assert_eq!(day_of(-1), -1);
    }
}
