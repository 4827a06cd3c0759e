//! The simulator's object store: namespaced objects by kind, one global resourceVersion counter,
//! an event history that watches replay from, and compaction of that history.

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// The kinds the simulator serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Job,
    Pod,
    Event,
}

impl Kind {
    pub fn list_kind(self) -> &'static str {
        match self {
            Kind::Job => "JobList",
            Kind::Pod => "PodList",
            Kind::Event => "EventList",
        }
    }
    pub fn api_version(self) -> &'static str {
        match self {
            Kind::Job => "batch/v1",
            Kind::Pod | Kind::Event => "v1",
        }
    }
    pub fn kind(self) -> &'static str {
        match self {
            Kind::Job => "Job",
            Kind::Pod => "Pod",
            Kind::Event => "Event",
        }
    }
}

/// One change, as a watch delivers it.
#[derive(Debug, Clone)]
pub struct Change {
    pub rv: u64,
    pub kind: Kind,
    pub namespace: String,
    /// ADDED, MODIFIED or DELETED.
    pub kind_of_change: &'static str,
    pub object: Value,
}

#[derive(Debug, Default)]
pub struct Store {
    pub rv: u64,
    pub objects: BTreeMap<(Kind, String, String), Value>,
    pub history: Vec<Change>,
    /// Watches asking to resume from a resourceVersion below this get 410 Expired.
    pub compacted_below: u64,
    /// Changes are applied but not recorded for watches: open watch streams stay up and go
    /// silent (bookmarks still advance), as behind a stalled watch cache or a half-dead
    /// connection. Reads (GET, LIST) still see every change.
    pub silent: bool,
    next_uid: u64,
}

impl Store {
    pub fn uid(&mut self) -> String {
        self.next_uid += 1;
        format!("00000000-0000-4000-8000-{:012x}", self.next_uid)
    }

    fn record(&mut self, kind: Kind, ns: &str, change: &'static str, object: Value) {
        if self.silent {
            return;
        }
        self.history.push(Change {
            rv: self.rv,
            kind,
            namespace: ns.to_owned(),
            kind_of_change: change,
            object,
        });
    }

    /// Stores a new object, stamping uid, resourceVersion and creationTimestamp. Returns it,
    /// or `None` when the name is taken.
    pub fn create(&mut self, kind: Kind, ns: &str, mut obj: Value) -> Option<Value> {
        let name = obj["metadata"]["name"].as_str().unwrap_or("").to_owned();
        let key = (kind, ns.to_owned(), name);
        if self.objects.contains_key(&key) {
            return None;
        }
        self.rv += 1;
        let uid = self.uid();
        let meta = &mut obj["metadata"];
        meta["namespace"] = json!(ns);
        meta["uid"] = json!(uid);
        meta["resourceVersion"] = json!(self.rv.to_string());
        meta["creationTimestamp"] = json!(now_rfc3339());
        obj["apiVersion"] = json!(kind.api_version());
        obj["kind"] = json!(kind.kind());
        self.objects.insert(key, obj.clone());
        self.record(kind, ns, "ADDED", obj.clone());
        Some(obj)
    }

    pub fn get(&self, kind: Kind, ns: &str, name: &str) -> Option<&Value> {
        self.objects.get(&(kind, ns.to_owned(), name.to_owned()))
    }

    /// Applies `f` to a stored object and records a MODIFIED change.
    pub fn update(
        &mut self,
        kind: Kind,
        ns: &str,
        name: &str,
        f: impl FnOnce(&mut Value),
    ) -> Option<Value> {
        let key = (kind, ns.to_owned(), name.to_owned());
        let obj = self.objects.get_mut(&key)?;
        f(obj);
        self.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        let obj = obj.clone();
        self.record(kind, ns, "MODIFIED", obj.clone());
        Some(obj)
    }

    pub fn delete(&mut self, kind: Kind, ns: &str, name: &str) -> Option<Value> {
        let mut obj = self
            .objects
            .remove(&(kind, ns.to_owned(), name.to_owned()))?;
        self.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.record(kind, ns, "DELETED", obj.clone());
        Some(obj)
    }

    pub fn list(&self, kind: Kind, ns: &str) -> Vec<Value> {
        self.objects
            .iter()
            .filter(|((k, n, _), _)| *k == kind && (ns.is_empty() || n == ns))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Drops the history: watches resuming from an older resourceVersion get 410.
    pub fn compact(&mut self) {
        self.compacted_below = self.rv + 1;
        self.history.clear();
    }
}

/// A label or field selector: `k=v`, `k==v`, `k!=v`, `k`, `!k`, comma-separated.
pub fn matches_selector(obj: &Value, selector: &str, field: bool) -> bool {
    selector.split(',').filter(|s| !s.is_empty()).all(|term| {
        let lookup = |key: &str| -> Option<String> {
            if field {
                let mut v = obj;
                for part in key.split('.') {
                    v = v.get(part)?;
                }
                v.as_str().map(str::to_owned)
            } else {
                obj["metadata"]["labels"][key].as_str().map(str::to_owned)
            }
        };
        if let Some((k, v)) = term.split_once("!=") {
            lookup(k).as_deref() != Some(v)
        } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
            lookup(k).as_deref() == Some(v)
        } else if let Some(k) = term.strip_prefix('!') {
            lookup(k).is_none()
        } else {
            lookup(term).is_some()
        }
    })
}

pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    rfc3339(secs)
}

/// Seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // Civil-from-days (Howard Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
