//! What a policy set remembers between requests (stage 3, authorize):
//! decisions already taken, and per caller and target the entity store and
//! policy slice. Each is bounded; a reload starts afresh with the new set.

use std::sync::Arc;

use cedar_policy::{Entities, EntityUid};

use crate::call::Caller;
use crate::config::Labels;

use super::context::{self, ArgsUse};
use super::index::Slice;
use super::{Action, Annotations, Decision, Outcome, Query, ServerFacts, Target};

/// Decisions already taken, per policy set (a reload starts afresh). A
/// decision is a pure function of the caller (with its groups, roles and
/// address), the target (with its server and annotations), the arguments
/// policies read (see [`ArgsUse`]) and whether it is a listing, unless a
/// policy reads the clock or the request id, in which case nothing is
/// remembered. Read arguments over [`MAX_CACHED_ARGS`] bytes are not
/// remembered either; at most
/// [`MAX_DECISIONS`] decisions; at the bound the least used go
/// (`quick_cache`), so a flood of one-off queries does not push out the
/// decisions taken on every call.
pub(super) struct DecisionCache {
    pub(super) map: quick_cache::sync::Cache<DecisionKey, Decision>,
}

impl Default for DecisionCache {
    fn default() -> Self {
        Self {
            map: quick_cache::sync::Cache::new(MAX_DECISIONS),
        }
    }
}

const MAX_DECISIONS: usize = 10_000;
const MAX_CACHED_ARGS: usize = 1024;

#[derive(Clone, PartialEq, Eq, Hash)]
pub(super) struct DecisionKey {
    caller: Caller,
    action: Action,
    target: String,
    server: Option<ServerFacts>,
    annotations: Option<(bool, bool, bool, bool)>,
    /// A tool's flow labels and what its session has touched.
    flow: (Labels, Labels),
    /// The arguments as JSON; `None`: a listing.
    args: Option<String>,
    /// What an LLM request asks for (`context.request`).
    request: Option<crate::call::ModelRequest>,
}

impl DecisionKey {
    /// The key of `query`, whose arguments count only as far as policies
    /// read them.
    pub(super) fn of(query: &Query<'_>, uses: &ArgsUse) -> Option<DecisionKey> {
        let args = match query.args {
            None => None,
            Some(map) => {
                let read: Vec<_> = context::read_args(map, uses).collect();
                let json = serde_json::to_string(&read).ok()?;
                if json.len() > MAX_CACHED_ARGS {
                    return None;
                }
                Some(json)
            }
        };
        let flow_labels = match &query.target {
            Target::Tool { labels, .. } => *labels,
            _ => Labels::NONE,
        };
        let (target, annotations) = match &query.target {
            Target::Tool {
                name, annotations, ..
            } => (
                name.to_string(),
                Some((
                    annotations.read_only,
                    annotations.destructive,
                    annotations.idempotent,
                    annotations.open_world,
                )),
            ),
            Target::Resource { uri, .. } => (uri.to_string(), None),
            Target::Prompt { name, .. } | Target::Model { name, .. } | Target::Admin { name } => {
                (name.to_string(), None)
            }
        };
        Some(DecisionKey {
            caller: query.caller.clone(),
            action: query.target.action(),
            target,
            server: query.target.server().cloned(),
            annotations,
            flow: (flow_labels, query.touched),
            args,
            request: match &query.target {
                Target::Model { request, .. } if query.args.is_some() => *request,
                _ => None,
            },
        })
    }
}

impl DecisionCache {
    pub(super) fn get(&self, key: &DecisionKey) -> Option<Decision> {
        self.map.get(key)
    }

    pub(super) fn put(&self, key: DecisionKey, decision: Decision) {
        self.map.insert(key, decision);
    }
}

/// What deciding for one caller and target needs besides the context.
pub(super) struct Prepared {
    pub(super) principal: EntityUid,
    pub(super) resource: EntityUid,
    pub(super) entities: Entities,
    pub(super) slice: Arc<Slice>,
    /// What `slice.fixed` decides.
    pub(super) fixed: Outcome,
}

/// What a [`Prepared`] was built for (the kind of target gives the action).
pub(super) struct PreparedKey {
    pub(super) caller: Caller,
    pub(super) kind: &'static str,
    pub(super) id: String,
    pub(super) server: Option<ServerFacts>,
    pub(super) annotations: Option<Annotations>,
    pub(super) listing: bool,
}

/// Most kept [`Prepared`]; at the bound the least used go (`quick_cache`).
pub(super) const MAX_PREPARED: usize = 10_000;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::Credential;

    #[test]
    fn remembered_decisions_are_bounded_and_a_flood_keeps_the_hot_one() {
        let cache = DecisionCache::default();
        let key = |who: &str| DecisionKey {
            caller: Caller::new(who.to_string(), Credential::AccessToken),
            action: Action::CallTool,
            target: "t".into(),
            server: None,
            annotations: None,
            flow: (Labels::NONE, Labels::NONE),
            args: None,
            request: None,
        };
        let hot = Decision::error("hot".into());
        cache.put(key("hot"), hot.clone());
        let decision = Decision::error("x".into());
        // Three times the bound of one-off queries, the hot one asked for
        // in between as a busy agent's would be.
        for i in 0..3 * MAX_DECISIONS {
            cache.put(key(&format!("u{i}")), decision.clone());
            if i % 1000 == 0 {
                assert!(
                    cache.get(&key("hot")).is_some(),
                    "hot decision evicted at {i}"
                );
            }
            assert!(cache.map.len() <= MAX_DECISIONS);
        }
        assert_eq!(
            cache.get(&key("hot")).map(|d| d.errors),
            Some(hot.errors),
            "the hot decision is still remembered"
        );
    }
}
