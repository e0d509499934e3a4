//! Toxic flows: which kinds of data a session has touched. A tool carries
//! flow labels ([`Labels`]): `private_data` (reads the organisation's
//! data), `untrusted_content` (returns what outsiders can write),
//! `public_sink` (can send data out). An agent that has read private data
//! and untrusted content in one session, and then calls a sink, may be
//! carrying the first out on the orders of the second (the "lethal
//! trifecta"); policies see what the session touched
//! (`context.session.touched`) and the call's own labels
//! (`context.labels`), and the shipped policy holds such a call.
//!
//! A *flow* is one MCP session (2025-11-25); a stateless caller's
//! (2026-07-28) is its trace (W3C `traceparent`: one agent run), and
//! without one, the caller: never narrower than what the caller shows us.

use std::sync::Arc;

use quick_cache::sync::{Cache, EntryAction, EntryResult};

use crate::call::Annotations;
use crate::config::{IntegrityConfig, Labels};

/// The labels of a tool: its server's override (`[integrity.labels]`),
/// else what the annotations of a trusted server say. An untrusted
/// server's hints are not believed: its tools return untrusted content and
/// may send data out.
pub fn labels_of(
    integrity: &IntegrityConfig,
    trusted: bool,
    tool: &str,
    annotations: Annotations,
) -> Labels {
    if let Some(labels) = integrity.labels_for(tool) {
        return labels;
    }
    if !trusted {
        return Labels::UNTRUSTED_CONTENT.union(Labels::PUBLIC_SINK);
    }
    match (annotations.read_only, annotations.open_world) {
        (true, false) => Labels::PRIVATE_DATA,
        (true, true) => Labels::UNTRUSTED_CONTENT,
        (false, true) => Labels::PUBLIC_SINK,
        (false, false) => Labels::NONE,
    }
}

/// What one flow has touched: its labels, and the first tool that touched
/// each (to name the flow in the audit record).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Touched {
    pub labels: Labels,
    /// Per label of [`Labels::ALL`], in that order.
    pub by: [Option<Arc<str>>; 3],
}

impl Touched {
    /// The flow as recorded: each label touched, with the tool that did.
    pub fn describe(&self) -> serde_json::Map<String, serde_json::Value> {
        Labels::ALL
            .iter()
            .zip(&self.by)
            .filter_map(|((_, name), by)| {
                by.as_ref()
                    .map(|tool| (name.to_string(), serde_json::Value::from(tool.as_ref())))
            })
            .collect()
    }
}

/// Most flows remembered; at the bound, flows not used lately are
/// forgotten (`quick_cache`'s eviction: a session idle that long starts
/// afresh, while the ones in use stay).
pub const MAX_FLOWS: usize = 100_000;

/// What each flow has touched (in memory, per replica).
pub struct Flows {
    flows: Cache<String, Touched>,
}

impl Default for Flows {
    fn default() -> Self {
        Flows::with_capacity(MAX_FLOWS)
    }
}

impl Flows {
    pub fn with_capacity(capacity: usize) -> Self {
        Flows {
            flows: Cache::new(capacity),
        }
    }

    /// What `flow` has touched so far.
    pub fn touched(&self, flow: &str) -> Touched {
        self.flows.get(flow).unwrap_or_default()
    }

    /// `tool`, carrying `labels`, was called in `flow`. Atomic per flow:
    /// two calls finishing at once both count.
    pub fn touch(&self, flow: &str, labels: Labels, tool: &str) {
        if labels.is_empty() {
            return;
        }
        let add = |touched: &mut Touched| {
            for (i, (label, _)) in Labels::ALL.iter().enumerate() {
                if labels.contains(*label) && touched.by[i].is_none() {
                    touched.by[i] = Some(Arc::from(tool));
                }
            }
            touched.labels = touched.labels.union(labels);
        };
        match self.flows.entry(flow, None, |_, touched| {
            if touched.labels.contains(labels) {
                EntryAction::Retain(())
            } else {
                add(touched);
                EntryAction::Retain(())
            }
        }) {
            EntryResult::Vacant(guard) => {
                let mut touched = Touched::default();
                add(&mut touched);
                let _ = guard.insert(touched);
            }
            EntryResult::Retained(())
            | EntryResult::Removed(..)
            | EntryResult::Replaced(..)
            | EntryResult::Timeout => {}
        }
    }

    pub fn len(&self) -> usize {
        self.flows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }
}

/// The flow a call belongs to: its MCP session, else its trace, else its
/// caller.
pub fn flow_key(session: Option<&str>, trace: Option<&str>, subject: &str) -> String {
    match (session, trace) {
        (Some(session), _) => format!("session:{session}"),
        (None, Some(trace)) => format!("trace:{subject}:{trace}"),
        (None, None) => format!("caller:{subject}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hints(read_only: bool, open_world: bool) -> Annotations {
        Annotations {
            read_only,
            destructive: false,
            idempotent: false,
            open_world,
        }
    }

    #[test]
    fn labels_from_trusted_annotations_and_overrides() {
        let none = IntegrityConfig::default();
        assert_eq!(
            labels_of(&none, true, "t", hints(true, false)),
            Labels::PRIVATE_DATA
        );
        assert_eq!(
            labels_of(&none, true, "t", hints(true, true)),
            Labels::UNTRUSTED_CONTENT
        );
        assert_eq!(
            labels_of(&none, true, "t", hints(false, true)),
            Labels::PUBLIC_SINK
        );
        assert_eq!(
            labels_of(&none, true, "t", hints(false, false)),
            Labels::NONE
        );
        // An untrusted server's hints are not believed.
        assert_eq!(
            labels_of(&none, false, "t", hints(true, false)),
            Labels::UNTRUSTED_CONTENT.union(Labels::PUBLIC_SINK)
        );
        let over = IntegrityConfig {
            labels: vec![("t".into(), Labels::PRIVATE_DATA)],
            ..Default::default()
        };
        assert_eq!(
            labels_of(&over, false, "t", hints(false, true)),
            Labels::PRIVATE_DATA
        );
    }

    #[test]
    fn flows_accumulate_and_name_the_first_tool() {
        let flows = Flows::default();
        flows.touch("s", Labels::PRIVATE_DATA, "crm__read");
        flows.touch("s", Labels::PRIVATE_DATA, "crm__other");
        flows.touch("s", Labels::UNTRUSTED_CONTENT, "web__fetch");
        let t = flows.touched("s");
        assert!(
            t.labels
                .contains(Labels::PRIVATE_DATA.union(Labels::UNTRUSTED_CONTENT))
        );
        assert_eq!(
            serde_json::Value::Object(t.describe()),
            serde_json::json!({"private_data": "crm__read", "untrusted_content": "web__fetch"})
        );
        assert_eq!(flows.touched("other"), Touched::default());
    }

    #[test]
    fn concurrent_touches_are_not_lost() {
        let flows = Arc::new(Flows::default());
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let flows = flows.clone();
                std::thread::spawn(move || {
                    let label = Labels::ALL[i % 3].0;
                    for n in 0..200 {
                        flows.touch(&format!("f{n}"), label, "t");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("joined");
        }
        for n in 0..200 {
            assert_eq!(
                flows.touched(&format!("f{n}")).labels,
                Labels::ALL
                    .iter()
                    .fold(Labels::NONE, |a, (l, _)| a.union(*l))
            );
        }
    }

    #[test]
    fn at_the_bound_flows_not_used_lately_are_forgotten() {
        let flows = Flows::with_capacity(100);
        for n in 0..1000 {
            flows.touch(&format!("f{n}"), Labels::PRIVATE_DATA, "t");
            // One session stays busy throughout.
            flows.touch("busy", Labels::UNTRUSTED_CONTENT, "t");
            let _ = flows.touched("busy");
        }
        assert!(flows.len() <= 110, "bounded: {}", flows.len());
        assert!(flows.touched("f999").labels.contains(Labels::PRIVATE_DATA));
        assert!(
            flows
                .touched("busy")
                .labels
                .contains(Labels::UNTRUSTED_CONTENT)
        );
    }

    #[test]
    fn flow_keys() {
        assert_eq!(flow_key(Some("abc"), Some("t"), "u"), "session:abc");
        assert_eq!(flow_key(None, Some("t"), "u"), "trace:u:t");
        assert_eq!(flow_key(None, None, "u"), "caller:u");
    }
}
