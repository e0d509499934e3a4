//! Stage 3, authorize: Cedar policies decide who may see and use which
//! tool, resource, prompt and model.
//!
//! `policies/` holds one Cedar schema (`*.cedarschema`) and any number of
//! `*.cedar` files. Every policy carries `@id("…")` (its name in decisions,
//! errors, audit records) and may carry `@reason("…")` (told to a refused
//! agent). Loading checks syntax and validates every policy against the
//! schema (strict mode); every problem is reported with its file, line and
//! column, and an invalid set is never used.
//!
//! Entities are built per request from the caller and the target:
//! - principal `User::"<subject>"`, or `Agent::"<subject>"` for API keys,
//!   in `Group::"<name>"` for each of its groups and roles;
//! - resource `Tool::"<exposed name>"`, `Resource::"<exposed uri>"` or
//!   `Prompt::"<exposed name>"`, each in `Server::"<name>"` (attributes
//!   `tags`, `env`, `trusted` from `servers/*.toml`), or `Model::"<name>"`;
//! - context: `args` (the call's arguments as a record), `annotations` (the
//!   tool's hints, trusted only from a `trusted` server, else the worst
//!   case), `listing` (true when deciding visibility), `time`, `client_ip`,
//!   `request_id`.
//!
//! Default deny; `forbid` wins. A policy that cannot be evaluated (say, an
//! argument of an unexpected type) denies the request: an error must never
//! skip a `forbid`.
//!
//! [`Policies`] (here) decides. Beside it: `load` reads and checks
//! `policies/`; `engine` holds the set in force and reloads it; `entities`
//! and `context` build a request's entities and context; `index` picks the
//! policies that can apply to a request; `cache` bounds what a set
//! remembers between requests; `cases` (policy tests, explain) and
//! `exposure` (what each server shows to whom) ask a set questions.

mod cache;
pub mod cases;
mod context;
mod engine;
mod entities;
mod index;
mod load;

use std::collections::{HashMap, HashSet};

use std::hash::BuildHasher;
use std::path::PathBuf;
use std::sync::Arc;

use cedar_policy::{
    Authorizer, Decision as CedarDecision, Entities, EntityUid, PolicySet, Request,
};
use serde_json::Value;

use crate::call::Caller;

use cache::{DecisionCache, DecisionKey, MAX_PREPARED, Prepared, PreparedKey};
use context::{ContextUse, context};
use entities::{PrincipalEntities, principal_entities, target_entities, target_id, uid};
use index::{Index, Slice, named_things};

pub use crate::call::{Action, Annotations, Decision, Gate, Query, Target};
pub use crate::config::ServerFacts;
pub use context::{ArgsUse, to_cedar};
pub use engine::{Engine, Reload};
pub use load::{PolicyError, PolicyErrors, dir_digest};

/// Why a query could not be put to Cedar (its entities, context or
/// request); the decision is then an error, which denies.
#[derive(Debug, thiserror::Error)]
pub enum AuthorizeError {
    #[error("arguments nested deeper than {} levels", context::MAX_ARG_DEPTH)]
    TooDeep,
    #[error(transparent)]
    Expression(#[from] cedar_policy::ExpressionConstructionError),
    // Cedar's errors are large: boxed, so every `Result` here stays small.
    #[error(transparent)]
    Context(Box<cedar_policy::ContextCreationError>),
    #[error(transparent)]
    Entity(Box<cedar_policy::EntityAttrEvaluationError>),
    #[error(transparent)]
    Entities(Box<cedar_policy::entities_errors::EntitiesError>),
    #[error("building the request: {0}")]
    Request(#[source] Box<cedar_policy::RequestValidationError>),
}

impl From<cedar_policy::ContextCreationError> for AuthorizeError {
    fn from(e: cedar_policy::ContextCreationError) -> Self {
        AuthorizeError::Context(Box::new(e))
    }
}

impl From<cedar_policy::EntityAttrEvaluationError> for AuthorizeError {
    fn from(e: cedar_policy::EntityAttrEvaluationError) -> Self {
        AuthorizeError::Entity(Box::new(e))
    }
}

impl From<cedar_policy::entities_errors::EntitiesError> for AuthorizeError {
    fn from(e: cedar_policy::entities_errors::EntitiesError) -> Self {
        AuthorizeError::Entities(Box::new(e))
    }
}

/// The groups a policy set names (`Group::"…"` anywhere in a policy), read
/// from each policy's JSON form so escapes and spacing cannot hide one.
fn groups_named(set: &cedar_policy::PolicySet) -> std::collections::BTreeSet<String> {
    fn walk(value: &Value, found: &mut std::collections::BTreeSet<String>) {
        match value {
            Value::Object(map) => {
                if map.get("type").and_then(|t| t.as_str()) == Some("Group")
                    && let Some(id) = map.get("id").and_then(|i| i.as_str())
                {
                    found.insert(id.to_string());
                }
                map.values().for_each(|v| walk(v, found));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, found)),
            _ => {}
        }
    }
    let mut found = std::collections::BTreeSet::new();
    for policy in set.policies() {
        if let Ok(json) = policy.to_json() {
            walk(&json, &mut found);
        }
    }
    found
}

/// A validated policy set and its schema.
pub struct Policies {
    set: PolicySet,
    /// The policies by scope, so a request is judged only by those that
    /// can apply to it (see [`Index`]).
    index: Index,
    /// Which context attributes any policy mentions; the others are not
    /// built (the `ip` extension and the clock are not free).
    uses: ContextUse,
    /// `@reason` of each policy that has one (looking annotations up in a
    /// policy set parses the key every time).
    reasons: HashMap<String, String>,
    /// Decisions already taken under this set (see [`DecisionCache`]).
    decisions: DecisionCache,
    /// Entity stores and policy slices per caller and target.
    prepared: quick_cache::sync::Cache<u64, Arc<(PreparedKey, Arc<Prepared>)>>,
    hasher: std::hash::RandomState,
    /// Tools, resources and prompts some policy names (`Tool::"…"`, …);
    /// `None` when that cannot be read reliably (escapes). Things no
    /// policy names are decided alike when their server and annotations
    /// are alike, so a list decides each such class once.
    named: Option<HashSet<String>>,
    /// Where each policy came from (`@id` → file).
    pub origin: HashMap<String, PathBuf>,
    /// The approval gates, decided as a set of their own (see [`Gate`]);
    /// `None` when there are none.
    gates: Option<Box<Policies>>,
    /// Each gate policy's group, timeout, approvers and reason.
    gate_info: HashMap<String, Gate>,
    /// Bumped by every successful (re)load.
    pub version: u64,
    /// SHA-256 over the files it was loaded from (see [`dir_digest`]).
    pub digest: [u8; 32],
}

// `Policies::load`, which reads and checks `policies/`, is in load.rs.
impl Policies {
    /// A loaded, validated set, indexed.
    fn assemble(
        set: PolicySet,
        origin: HashMap<String, PathBuf>,
        gates: Option<Box<Policies>>,
        gate_info: HashMap<String, Gate>,
        version: u64,
        digest: [u8; 32],
    ) -> Policies {
        let index = Index::new(&set);
        Policies {
            uses: ContextUse::of(&index.reads),
            index,
            decisions: DecisionCache::default(),
            prepared: quick_cache::sync::Cache::new(MAX_PREPARED),
            hasher: std::hash::RandomState::new(),
            named: named_things(&set),
            reasons: set
                .policies()
                .filter_map(|p| Some((p.id().to_string(), p.annotation("reason")?.to_string())))
                .collect(),
            set,
            origin,
            gates,
            gate_info,
            version,
            digest,
        }
    }

    /// How many policies are in force.
    pub fn len(&self) -> usize {
        self.set.policies().count()
    }

    /// The groups the policies name (`Group::"…"`), sorted.
    pub fn groups(&self) -> std::collections::BTreeSet<String> {
        groups_named(&self.set)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Decide one query (remembered, see [`DecisionCache`]); for an
    /// allowed call (not a listing), also which gates it must pass. The
    /// gates are a set of their own with their own memory, keyed on the
    /// arguments they read. A gate that cannot be evaluated refuses the
    /// call (it might have asked for approval).
    pub fn decide(&self, query: &Query<'_>) -> Decision {
        let mut decision = self.decide_policies(query);
        if let (true, Some(_), Some(gates)) = (decision.allowed, query.args, &self.gates) {
            let gated = gates.decide_policies(query);
            if gated.errors.is_empty() {
                decision.gates = gated
                    .policies
                    .iter()
                    .filter_map(|id| self.gate_info.get(id).cloned())
                    .collect();
            } else {
                decision.allowed = false;
                decision.policies = Vec::new();
                decision.reasons = Vec::new();
                decision.errors = gated.errors;
            }
        }
        decision
    }

    fn decide_policies(&self, query: &Query<'_>) -> Decision {
        // A decision on findings is not remembered: they are rare, and the
        // key does not hold them.
        let key = (self.cacheable() && query.findings.is_empty())
            .then(|| DecisionKey::of(query, &self.uses.args))
            .flatten();
        if let Some(key) = &key
            && let Some(decision) = self.decisions.get(key)
        {
            return decision;
        }
        let decision = self.decide_uncached(query);
        if let Some(key) = key {
            self.decisions.put(key, decision.clone());
        }
        decision
    }

    /// Whether some policy reads `context.findings` (then a call whose
    /// input the guardrails found something in is decided again with them).
    pub fn reads_findings(&self) -> bool {
        self.uses.findings
    }

    /// Whether a decision depends only on what a [`DecisionKey`] holds: no
    /// policy reads the clock or the request id.
    fn cacheable(&self) -> bool {
        !self.uses.time && !self.uses.request_id
    }

    /// Decide one query, evaluating the policies.
    pub fn decide_uncached(&self, query: &Query<'_>) -> Decision {
        match self.prepare(query) {
            Ok(p) => self.evaluate(
                query,
                &p.principal,
                p.resource.clone(),
                &p.entities,
                &p.slice,
                Some(&p.fixed),
            ),
            Err(e) => Decision::error(e.to_string()),
        }
    }

    /// The entity store, the policy slice and what its fixed policies
    /// decide, for this caller, target and listing flag (the same whatever
    /// the arguments), built once and kept.
    fn prepare(&self, query: &Query<'_>) -> Result<Arc<Prepared>, AuthorizeError> {
        // Looked up by a hash of the borrowed parts, so a call for a known
        // caller and target copies nothing.
        let (kind, id) = target_id(&query.target);
        let server = query.target.server();
        let annotations = match query.target {
            Target::Tool { annotations, .. } => Some(annotations),
            _ => None,
        };
        let listing = query.args.is_none();
        let hash = self
            .hasher
            .hash_one((query.caller, kind, id, server, annotations, listing));
        let known = |key: &PreparedKey| {
            key.caller == *query.caller
                && key.kind == kind
                && key.id == id
                && key.server.as_ref() == server
                && key.annotations == annotations
                && key.listing == listing
        };
        if let Some(entry) = self.prepared.get(&hash)
            && known(&entry.0)
        {
            return Ok(entry.1.clone());
        }
        let principal = principal_entities(query.caller);
        let (resource, mut entities) = target_entities(&query.target)?;
        entities.extend(principal.entities.iter().cloned());
        let entities = Entities::from_entities(entities, None)?;
        let slice = self.index.slice(
            &principal,
            &resource,
            query.target.server(),
            query.target.action(),
        );
        let request = self.request(query, &principal.uid, resource.clone(), false)?;
        let fixed = Outcome::of(&slice.fixed, &request, &entities);
        let prepared = Arc::new(Prepared {
            principal: principal.uid,
            resource,
            entities,
            slice,
            fixed,
        });
        let key = PreparedKey {
            caller: query.caller.clone(),
            kind,
            id: id.to_string(),
            server: server.cloned(),
            annotations,
            listing,
        };
        // A hash collision replaces the other one.
        self.prepared
            .insert(hash, Arc::new((key, prepared.clone())));
        Ok(prepared)
    }

    /// Whether `caller` may see each of `targets` (a list view): one entity
    /// store for all of them.
    pub fn visible(&self, caller: &Caller, targets: &[Target<'_>]) -> Vec<bool> {
        // Which target decides for which: one per class of alike ones
        // (see `class_of`), each named one on its own.
        let mut representative: HashMap<(&'static str, String, Option<Annotations>), usize> =
            HashMap::new();
        let decided_by: Vec<usize> = targets
            .iter()
            .enumerate()
            .map(|(i, target)| match self.class_of(target) {
                Some(class) => *representative.entry(class).or_insert(i),
                None => i,
            })
            .collect();
        // One entity store for the principal and the targets evaluated.
        let principal = principal_entities(caller);
        let mut entities = principal.entities.clone();
        let mut servers = HashSet::new();
        let mut resources: HashMap<usize, EntityUid> = HashMap::new();
        for (i, target) in targets.iter().enumerate() {
            if decided_by[i] != i {
                continue;
            }
            if let Ok((resource, found)) = target_entities(target) {
                for e in found {
                    // Each server once.
                    if e.uid().type_name().to_string() != "Server" || servers.insert(e.uid()) {
                        entities.push(e);
                    }
                }
                resources.insert(i, resource);
            }
        }
        let Ok(entities) = Entities::from_entities(entities, None) else {
            return vec![false; targets.len()];
        };
        let mut decided: HashMap<usize, bool> = HashMap::new();
        for (i, target) in targets.iter().enumerate() {
            if decided_by[i] != i {
                continue;
            }
            let allowed = resources.remove(&i).is_some_and(|resource| {
                let query = Query {
                    caller,
                    target: target.clone(),
                    args: None,
                    request_id: "list",
                    findings: &[],
                    touched: crate::config::Labels::NONE,
                };
                self.decide_with(&query, &principal, resource, &entities)
                    .allowed
            });
            decided.insert(i, allowed);
        }
        decided_by
            .iter()
            .map(|by| decided.get(by).copied().unwrap_or(false))
            .collect()
    }

    /// The class a target is decided with in a list: `None` when some
    /// policy names it (or names can't be read), so it is decided alone.
    fn class_of(&self, target: &Target<'_>) -> Option<(&'static str, String, Option<Annotations>)> {
        let named = self.named.as_ref()?;
        let (kind, id, annotations) = match target {
            Target::Tool {
                name, annotations, ..
            } => ("Tool", *name, Some(*annotations)),
            Target::Resource { uri, .. } => ("Resource", *uri, None),
            Target::Prompt { name, .. } => ("Prompt", *name, None),
            Target::Model { .. } | Target::Admin { .. } => return None,
        };
        if named.contains(&format!("{kind}::{id}")) {
            return None;
        }
        Some((kind, target.server()?.name.clone(), annotations))
    }

    fn decide_with(
        &self,
        query: &Query<'_>,
        principal: &PrincipalEntities,
        resource: EntityUid,
        entities: &Entities,
    ) -> Decision {
        let slice = self.index.slice(
            principal,
            &resource,
            query.target.server(),
            query.target.action(),
        );
        self.evaluate(query, &principal.uid, resource, entities, &slice, None)
    }

    /// Judge `query` with `slice` over `entities`; `fixed`: what the
    /// slice's fixed policies decide, when already known.
    fn evaluate(
        &self,
        query: &Query<'_>,
        principal: &EntityUid,
        resource: EntityUid,
        entities: &Entities,
        slice: &Slice,
        fixed: Option<&Outcome>,
    ) -> Decision {
        let request = match self.request(query, principal, resource, true) {
            Ok(r) => r,
            Err(e) => return Decision::error(e.to_string()),
        };
        let varying = Outcome::of(&slice.varying, &request, entities);
        match fixed {
            Some(fixed) => fixed.clone(),
            None => Outcome::of(&slice.fixed, &request, entities),
        }
        .and(varying)
        .decision(&self.reasons)
    }

    /// The Cedar request of `query`; without the arguments unless
    /// `with_args`.
    fn request(
        &self,
        query: &Query<'_>,
        principal: &EntityUid,
        resource: EntityUid,
        with_args: bool,
    ) -> Result<Request, AuthorizeError> {
        let context = context(query, &self.uses, with_args)?;
        // Policies are validated against the schema when loaded; requests
        // are not (arguments are whatever the agent sent, with attributes
        // the schema does not list). A value of an unexpected type makes
        // the policy that reads it fail to evaluate, which denies.
        Request::new(
            principal.clone(),
            uid("Action", query.target.action().name()),
            resource,
            context,
            None,
        )
        .map_err(|e| AuthorizeError::Request(Box::new(e)))
    }
}

/// What some policies decided about one request (Cedar's answer, kept so
/// that the answers of two disjoint parts of a slice can be combined).
#[derive(Debug, Clone, Default)]
struct Outcome {
    /// Permits satisfied (known only when no forbid was).
    permits: Vec<String>,
    /// Forbids satisfied.
    forbids: Vec<String>,
    /// Policies that could not be evaluated, and why.
    errors: Vec<(String, String)>,
}

impl Outcome {
    fn of(set: &PolicySet, request: &Request, entities: &Entities) -> Outcome {
        if set.is_empty() {
            return Outcome::default();
        }
        let response = Authorizer::new().is_authorized(request, set, entities);
        let diagnostics = response.diagnostics();
        let errors = diagnostics
            .errors()
            .map(|e| {
                let cedar_policy::AuthorizationError::PolicyEvaluationError(inner) = e;
                (inner.policy_id().to_string(), e.to_string())
            })
            .collect();
        // Cedar's reasons: the satisfied forbids when it denies, the
        // satisfied permits when it allows.
        let reasons = diagnostics
            .reason()
            .map(|id| AsRef::<str>::as_ref(id).to_owned())
            .collect();
        match response.decision() {
            CedarDecision::Allow => Outcome {
                permits: reasons,
                forbids: Vec::new(),
                errors,
            },
            CedarDecision::Deny => Outcome {
                permits: Vec::new(),
                forbids: reasons,
                errors,
            },
        }
    }

    /// Both parts together: what Cedar says of their union.
    fn and(mut self, other: Outcome) -> Outcome {
        self.permits.extend(other.permits);
        self.forbids.extend(other.forbids);
        self.errors.extend(other.errors);
        self
    }

    fn decision(self, reasons: &HashMap<String, String>) -> Decision {
        let (allowed, mut policies, errors) = if !self.errors.is_empty() {
            // A policy that fails to evaluate decides (a denial: it may be
            // a forbid): name it, not the permits that happened to match.
            let (ids, messages) = self.errors.into_iter().unzip();
            (false, ids, messages)
        } else if !self.forbids.is_empty() {
            (false, self.forbids, Vec::new())
        } else {
            (!self.permits.is_empty(), self.permits, Vec::new())
        };
        policies.sort_unstable();
        policies.dedup();
        let reasons = policies
            .iter()
            .filter_map(|id| reasons.get(id).cloned())
            .collect();
        Decision {
            allowed,
            policies,
            reasons,
            errors,
            gates: Vec::new(),
        }
    }
}

impl Decision {
    fn error(e: String) -> Decision {
        Decision {
            allowed: false,
            policies: Vec::new(),
            reasons: Vec::new(),
            errors: vec![e],
            gates: Vec::new(),
        }
    }
}

#[cfg(test)]
#[path = "mod_tests.rs"]
mod tests;
