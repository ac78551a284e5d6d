use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use kube::Client;
use kube::runtime::events::{Recorder, Reporter};

use crate::metrics::Metrics;

/// Field manager of every server-side apply: one owner for all the operator writes.
pub const MANAGER: &str = "godel-operator";

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    reporter: Reporter,
    pub metrics: Metrics,
    /// Consecutive failures per policy (`namespace/name`), for the error backoff.
    pub failures: Mutex<HashMap<String, u32>>,
    /// Owned objects (`namespace/kind/name`) this replica has seen live or written: one
    /// of them missing later was deleted by someone (drift), not yet to be created.
    pub seen: Mutex<HashSet<String>>,
}

impl Context {
    pub fn new(client: Client, metrics: Metrics) -> Self {
        let reporter = Reporter { controller: MANAGER.into(), instance: std::env::var("POD_NAME").ok() };
        Self { client, reporter, metrics, failures: Mutex::default(), seen: Mutex::default() }
    }

    /// A recorder for one Event. A shared one folds Events with the same reason into a
    /// series that keeps the first note, and each note here says what happened this time
    /// (which objects were applied, which fields were put back).
    pub fn recorder(&self) -> Recorder {
        Recorder::new(self.client.clone(), self.reporter.clone())
    }
}
