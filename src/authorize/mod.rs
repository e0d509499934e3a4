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

pub mod cases;
mod context;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use cedar_policy::{
    Authorizer, Context, Decision as CedarDecision, Entities, Entity, EntityId, EntityTypeName,
    EntityUid, PolicyId, PolicySet, Request, RestrictedExpression, Schema, ValidationMode,
    Validator,
};
use serde_json::Value;

use crate::call::{Caller, Credential};

pub use crate::call::{Action, Annotations, Decision, Gate, Query, Target};
pub use context::{ArgsUse, to_cedar};

pub use crate::config::ServerFacts;

/// One problem in `policies/`, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub file: PathBuf,
    /// 1-based; 0 when the problem is not at one place in the file.
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl PolicyError {
    /// A problem with a whole file or directory, not one place in it.
    fn whole(file: &Path, message: String) -> Self {
        Self {
            file: file.to_path_buf(),
            line: 0,
            column: 0,
            message,
        }
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file.display(),
                self.line,
                self.column,
                self.message
            )
        } else {
            write!(f, "{}: {}", self.file.display(), self.message)
        }
    }
}

/// Every problem found while loading.
#[derive(Debug, Clone)]
pub struct PolicyErrors(pub Vec<PolicyError>);

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.0 {
            writeln!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyErrors {}

/// The groups a policy set names (`Group::"…"` anywhere in a policy), read
/// from each policy's JSON form so escapes and spacing cannot hide one.
fn groups_named(set: &cedar_policy::PolicySet) -> std::collections::BTreeSet<String> {
    fn walk(value: &serde_json::Value, found: &mut std::collections::BTreeSet<String>) {
        match value {
            serde_json::Value::Object(map) => {
                if map.get("type").and_then(|t| t.as_str()) == Some("Group")
                    && let Some(id) = map.get("id").and_then(|i| i.as_str())
                {
                    found.insert(id.to_string());
                }
                map.values().for_each(|v| walk(v, found));
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, found)),
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

/// The schema and policy files of a policy directory, sorted by name,
/// each with its text (or why it could not be read).
type PolicyFiles = Vec<(PathBuf, Result<String, String>)>;

fn read_files(dir: &Path) -> std::io::Result<PolicyFiles> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("cedar" | "cedarschema")
            )
        })
        .collect();
    files.sort();
    Ok(files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read: {e}"));
            (path, text)
        })
        .collect())
}

/// SHA-256 over the names and texts of the files.
fn digest(files: &PolicyFiles) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    for (path, text) in files {
        hash.update(
            path.file_name()
                .map(|n| n.as_encoded_bytes())
                .unwrap_or_default(),
        );
        hash.update([0]);
        hash.update(text.as_deref().unwrap_or_default());
        hash.update([0]);
    }
    hash.finalize().into()
}

/// SHA-256 over the names and contents of the schema and policy files in
/// `dir`: what reload compares to notice a change.
pub fn dir_digest(dir: &Path) -> [u8; 32] {
    digest(&read_files(dir).unwrap_or_default())
}

impl Policies {
    /// Load and validate the schema and policies in `dir`.
    pub fn load(dir: &Path, version: u64) -> Result<Policies, PolicyErrors> {
        // Read once: the same texts are parsed and give the digest.
        let files = read_files(dir).map_err(|e| {
            PolicyErrors(vec![PolicyError::whole(
                dir,
                format!("cannot read the policy directory: {e}; toolgate denies everything without policies (see policies/ in the repository)"),
            )])
        })?;
        let digest = digest(&files);
        let mut errors = Vec::new();
        let has = |ext: &str| {
            files
                .iter()
                .filter(|(p, _)| p.extension().is_some_and(|e| e == ext))
                .collect::<Vec<_>>()
        };
        let (schema_files, policy_files) = (has("cedarschema"), has("cedar"));
        let schema = match schema_files.as_slice() {
            [(path, text)] => load_schema(path, text, &mut errors),
            [] => {
                errors.push(PolicyError::whole(
                    dir,
                    "no Cedar schema (*.cedarschema): policies are validated against it".into(),
                ));
                None
            }
            [(first, _), ..] => {
                errors.push(PolicyError::whole(
                    first,
                    format!(
                        "{} schema files: keep exactly one *.cedarschema",
                        schema_files.len()
                    ),
                ));
                None
            }
        };
        if policy_files.is_empty() {
            errors.push(PolicyError::whole(
                dir,
                "no *.cedar policy files: everything would be denied".into(),
            ));
        }
        let mut set = PolicySet::new();
        let mut origin = HashMap::new();
        let mut gate_info = HashMap::new();
        for (file, text) in policy_files {
            load_policies(
                file,
                text,
                schema.as_ref(),
                &mut set,
                &mut origin,
                &mut gate_info,
                &mut errors,
            );
        }
        match schema {
            Some(_) if errors.is_empty() => {
                // Gates are decided apart from the policies that allow and
                // refuse.
                let (mut decisions, mut gates) = (PolicySet::new(), PolicySet::new());
                for policy in set.policies() {
                    let into = if gate_info.contains_key(AsRef::<str>::as_ref(policy.id())) {
                        &mut gates
                    } else {
                        &mut decisions
                    };
                    if let Err(e) = into.add(policy.clone()) {
                        errors.push(PolicyError::whole(dir, e.to_string()));
                    }
                }
                if !errors.is_empty() {
                    return Err(PolicyErrors(errors));
                }
                let gates = (!gate_info.is_empty()).then(|| {
                    Box::new(Policies::assemble(
                        gates,
                        HashMap::new(),
                        None,
                        HashMap::new(),
                        version,
                        digest,
                    ))
                });
                Ok(Policies::assemble(
                    decisions, origin, gates, gate_info, version, digest,
                ))
            }
            _ => Err(PolicyErrors(errors)),
        }
    }

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
        let key = self
            .cacheable()
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
            Err(e) => Decision::error(e),
        }
    }

    /// The entity store, the policy slice and what its fixed policies
    /// decide, for this caller, target and listing flag (the same whatever
    /// the arguments), built once and kept.
    fn prepare(&self, query: &Query<'_>) -> Result<Arc<Prepared>, String> {
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
        let entities = Entities::from_entities(entities, None).map_err(|e| e.to_string())?;
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
            Err(e) => return Decision::error(e),
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
    ) -> Result<Request, String> {
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
        .map_err(|e| format!("building the request: {e}"))
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

/// The principal of a query and its groups, as entities.
struct PrincipalEntities {
    uid: EntityUid,
    /// The principal and its groups.
    uids: Vec<EntityUid>,
    entities: Vec<Entity>,
}

fn principal_entities(caller: &Caller) -> PrincipalEntities {
    let principal_type = if caller.credential == Credential::ApiKey {
        "Agent"
    } else {
        "User"
    };
    let principal = uid(principal_type, &caller.subject);
    let groups: HashSet<EntityUid> = caller
        .groups
        .iter()
        .chain(&caller.roles)
        .map(|g| uid("Group", g))
        .collect();
    let mut entities: Vec<Entity> = groups
        .iter()
        .map(|g| Entity::new_no_attrs(g.clone(), HashSet::new()))
        .collect();
    let text = |v: &Option<String>| RestrictedExpression::new_string(v.clone().unwrap_or_default());
    let mut attrs = HashMap::from([
        ("name".to_string(), text(&caller.name)),
        (
            "credential".to_string(),
            RestrictedExpression::new_string(credential_name(caller.credential).into()),
        ),
    ]);
    if principal_type == "User" {
        attrs.insert("email".into(), text(&caller.email));
        attrs.insert("tenant".into(), text(&caller.tenant));
        attrs.insert("issuer".into(), text(&caller.issuer));
        attrs.insert("client_id".into(), text(&caller.client_id));
    }
    let mut uids: Vec<EntityUid> = groups.iter().cloned().collect();
    uids.push(principal.clone());
    // Strings and booleans only: this cannot fail.
    if let Ok(entity) = Entity::new(principal.clone(), attrs, groups) {
        entities.push(entity);
    }
    PrincipalEntities {
        uid: principal,
        uids,
        entities,
    }
}

/// The resource of a query and the entities it needs (it, its server).
fn target_entities(target: &Target<'_>) -> Result<(EntityUid, Vec<Entity>), String> {
    let server_entity = |server: &ServerFacts| {
        Entity::new(
            uid("Server", &server.name),
            HashMap::from([
                (
                    "tags".to_string(),
                    RestrictedExpression::new_set(
                        server
                            .tags
                            .iter()
                            .map(|t| RestrictedExpression::new_string(t.clone())),
                    ),
                ),
                (
                    "env".to_string(),
                    RestrictedExpression::new_string(server.env.clone()),
                ),
                (
                    "trusted".to_string(),
                    RestrictedExpression::new_bool(server.trusted),
                ),
            ]),
            HashSet::new(),
        )
        .map_err(|e| e.to_string())
    };
    let in_server =
        |kind: &str, id: &str, server: &ServerFacts| -> Result<(EntityUid, Vec<Entity>), String> {
            let thing = uid(kind, id);
            Ok((
                thing.clone(),
                vec![server_entity(server)?, in_server(&thing, server)?],
            ))
        };
    match target {
        Target::Tool { name, server, .. } => in_server("Tool", name, server),
        Target::Resource { uri, server } => in_server("Resource", uri, server),
        Target::Prompt { name, server } => in_server("Prompt", name, server),
        Target::Model { name } => Ok((uid("Model", name), Vec::new())),
        Target::Admin { name } => Ok((uid("Admin", name), Vec::new())),
    }
}

/// `ip("…")` for an address. Building one parses the extension's name,
/// so they are remembered (at most [`MAX_IPS`] addresses).
fn ip_expression(addr: IpAddr) -> RestrictedExpression {
    static IPS: std::sync::LazyLock<quick_cache::sync::Cache<IpAddr, RestrictedExpression>> =
        std::sync::LazyLock::new(|| quick_cache::sync::Cache::new(MAX_IPS));
    if let Some(e) = IPS.get(&addr) {
        return e;
    }
    let e = RestrictedExpression::new_ip(addr.to_string());
    IPS.insert(addr, e.clone());
    e
}

/// Most client addresses whose `ip(…)` expression is remembered.
const MAX_IPS: usize = 4096;

/// The parts of the context policies read; the others are not built (the
/// `ip` extension, the clock and large arguments are not free).
#[derive(Debug, Clone)]
struct ContextUse {
    time: bool,
    client_ip: bool,
    request_id: bool,
    args: ArgsUse,
}

impl ContextUse {
    /// Read off each policy's JSON form: `context.X` and `context has X`
    /// name what they read; `context` used whole reads everything.
    /// From what every policy reads (see [`Index`]).
    fn of(found: &ContextReads) -> ContextUse {
        let reads = |name: &str| found.whole || found.attrs.contains(name);
        ContextUse {
            time: reads("time"),
            client_ip: reads("client_ip"),
            request_id: reads("request_id"),
            args: if found.whole || found.whole_args {
                ArgsUse::All
            } else {
                ArgsUse::Only(found.args.clone())
            },
        }
    }
}

/// What [`ContextUse::of`] gathers from policies' JSON (Cedar's EST:
/// `{".": {"left": L, "attr": A}}`, `{"has": {"left": L, "attr": A}}`,
/// `{"Var": "context"}`).
#[derive(Default)]
struct ContextReads {
    /// Context attributes read.
    attrs: HashSet<String>,
    /// Top-level arguments read.
    args: std::collections::BTreeSet<String>,
    /// `context` used other than through an attribute.
    whole: bool,
    /// `context.args` used other than through an attribute.
    whole_args: bool,
}

impl ContextReads {
    /// What a policy reads, from its JSON form (`None`: it has none, so
    /// assume it reads everything).
    fn of(json: Option<&Value>) -> ContextReads {
        let mut found = ContextReads::default();
        match json {
            Some(json) => found.visit(json),
            None => found.whole = true,
        }
        found
    }

    fn add(&mut self, other: ContextReads) {
        self.attrs.extend(other.attrs);
        self.args.extend(other.args);
        self.whole |= other.whole;
        self.whole_args |= other.whole_args;
    }

    /// Whether it reads what changes from one call to the next for the
    /// same caller and target: the arguments, the clock, the request id.
    fn varies(&self) -> bool {
        self.whole
            || ["args", "time", "request_id"]
                .iter()
                .any(|a| self.attrs.contains(*a))
    }

    fn visit(&mut self, node: &Value) {
        match node {
            Value::Object(map) => {
                if map.get("Var").and_then(Value::as_str) == Some("context") {
                    self.whole = true;
                    return;
                }
                for op in [".", "has"] {
                    let Some(access) = map.get(op) else { continue };
                    let (Some(left), Some(attr)) = (
                        access.get("left"),
                        access.get("attr").and_then(Value::as_str),
                    ) else {
                        continue;
                    };
                    if is_context(left) {
                        self.attrs.insert(attr.to_string());
                        if attr == "args" && op == "." {
                            // `context.args` on its own.
                            self.whole_args = true;
                        }
                        return;
                    }
                    if let Some(Value::Object(inner)) = left.get(".")
                        && inner.get("attr").and_then(Value::as_str) == Some("args")
                        && inner.get("left").is_some_and(is_context)
                    {
                        self.attrs.insert("args".into());
                        self.args.insert(attr.to_string());
                        return;
                    }
                }
                map.values().for_each(|v| self.visit(v));
            }
            Value::Array(items) => items.iter().for_each(|v| self.visit(v)),
            _ => {}
        }
    }
}

fn is_context(node: &Value) -> bool {
    node.get("Var").and_then(Value::as_str) == Some("context")
}

/// The request context of a query (attributes no policy mentions are
/// left out: policies were validated, requests are not).
fn context(query: &Query<'_>, uses: &ContextUse, with_args: bool) -> Result<Context, String> {
    let args = if with_args { query.args } else { None };
    let mut context = vec![(
        "listing".to_string(),
        RestrictedExpression::new_bool(query.args.is_none()),
    )];
    if uses.request_id {
        context.push((
            "request_id".to_string(),
            RestrictedExpression::new_string(query.request_id.to_string()),
        ));
    }
    if uses.client_ip {
        context.push((
            "client_ip".to_string(),
            ip_expression(
                query
                    .caller
                    .address
                    .unwrap_or(IpAddr::from([127, 0, 0, 1]))
                    // `::ffff:10.1.2.3` (an IPv4 client of a dual-stack
                    // listener) is 10.1.2.3 to policies.
                    .to_canonical(),
            ),
        ));
    }
    if uses.time {
        context.push((
            "time".to_string(),
            context::time(crate::storage::now_unix()),
        ));
    }
    match &query.target {
        Target::Tool {
            server,
            annotations,
            ..
        } => {
            let believed = annotations.believed(server.trusted);
            context.push(("annotations".into(), context::annotations(believed)));
            context.push(("args".into(), context::args(args, &uses.args)?));
        }
        Target::Prompt { .. } => context.push(("args".into(), context::args(args, &uses.args)?)),
        Target::Resource { .. } | Target::Model { .. } | Target::Admin { .. } => {}
    }
    Context::from_pairs(context).map_err(|e| e.to_string())
}

/// A tool, resource or prompt in its server, with `server` pointing at it.
fn in_server(thing: &EntityUid, server: &ServerFacts) -> Result<Entity, String> {
    let server = uid("Server", &server.name);
    Entity::new(
        thing.clone(),
        HashMap::from([(
            "server".to_string(),
            RestrictedExpression::new_entity_uid(server.clone()),
        )]),
        HashSet::from([server]),
    )
    .map_err(|e| e.to_string())
}

fn credential_name(credential: Credential) -> &'static str {
    match credential {
        Credential::LocalProcess => "local_process",
        Credential::DevInsecure => "dev_insecure",
        Credential::ApiKey => "api_key",
        Credential::AccessToken => "access_token",
        Credential::Session => "session",
        Credential::None => "none",
    }
}

fn uid(kind: &str, id: &str) -> EntityUid {
    // Parsing a type name runs Cedar's parser: do it once per type.
    static TYPES: std::sync::LazyLock<HashMap<&'static str, EntityTypeName>> =
        std::sync::LazyLock::new(|| {
            [
                "User", "Agent", "Group", "Server", "Tool", "Resource", "Prompt", "Model", "Admin",
                "Action",
            ]
            .into_iter()
            .filter_map(|t| Some((t, EntityTypeName::from_str(t).ok()?)))
            .collect()
        });
    let kind = TYPES
        .get(kind)
        .cloned()
        .unwrap_or_else(|| unreachable!("entity type {kind} is one of ours"));
    EntityUid::from_type_name_and_id(kind, EntityId::new(id))
}

fn load_schema(
    file: &Path,
    text: &Result<String, String>,
    errors: &mut Vec<PolicyError>,
) -> Option<Schema> {
    let text = match text {
        Ok(text) => text,
        Err(why) => {
            errors.push(PolicyError::whole(file, why.clone()));
            return None;
        }
    };
    match Schema::from_cedarschema_str(text) {
        Ok((schema, _warnings)) => {
            // The index matches a policy's actions by name (see `Index`).
            let groups: Vec<String> = schema.action_groups().map(|g| g.to_string()).collect();
            if !groups.is_empty() {
                errors.push(PolicyError::whole(
                    file,
                    format!(
                        "action groups are not supported ({}): list the actions in each policy instead, e.g. `action in [Action::\"call_tool\", Action::\"get_prompt\"]`",
                        groups.join(", ")
                    ),
                ));
                return None;
            }
            Some(schema)
        }
        Err(e) => {
            push_diagnostic(errors, file, text, &e);
            None
        }
    }
}

fn load_policies(
    file: &Path,
    text: &Result<String, String>,
    schema: Option<&Schema>,
    set: &mut PolicySet,
    origin: &mut HashMap<String, PathBuf>,
    gates: &mut HashMap<String, Gate>,
    errors: &mut Vec<PolicyError>,
) {
    let text = match text {
        Ok(text) => text.as_str(),
        Err(why) => {
            errors.push(PolicyError::whole(file, why.clone()));
            return;
        }
    };
    let parsed = match PolicySet::from_str(text) {
        Ok(parsed) => parsed,
        Err(e) => {
            push_diagnostic(errors, file, text, &e);
            return;
        }
    };
    if let Some(template) = parsed.templates().next() {
        let (line, column) = locate(text, &template.to_string());
        errors.push(PolicyError {
            file: file.to_path_buf(),
            line,
            column,
            message: "templates (?principal / ?resource) are not supported: write the policy out"
                .into(),
        });
    }
    if let Some(schema) = schema {
        let result = Validator::new(schema.clone()).validate(&parsed, ValidationMode::Strict);
        let before = errors.len();
        for e in result.validation_errors() {
            push_diagnostic(errors, file, text, e);
        }
        // Name policies by their `@id`, not the parser's `policy0`.
        for e in &mut errors[before..] {
            for p in parsed.policies() {
                if let Some(id) = p.annotation("id") {
                    e.message = e
                        .message
                        .replace(&format!("policy `{}`", p.id()), &format!("policy `{id}`"));
                }
            }
        }
    }
    for policy in parsed.policies() {
        let (line, column) = locate(text, &policy.to_string());
        let at = |message: String| PolicyError {
            file: file.to_path_buf(),
            line,
            column,
            message,
        };
        let Some(id) = policy.annotation("id").map(str::to_string) else {
            errors.push(at("every policy needs an `@id(\"…\")` annotation: it names the policy in decisions and errors".into()));
            continue;
        };
        if id.is_empty() {
            errors.push(at("`@id` is empty".into()));
            continue;
        }
        if let Some(other) = origin.get(&id) {
            errors.push(at(format!(
                "`@id(\"{id}\")` is also used in {}",
                Path::display(other)
            )));
            continue;
        }
        match gate(&id, policy) {
            Ok(Some(gate)) => {
                gates.insert(id.clone(), gate);
            }
            Ok(None) => {}
            Err(e) => {
                errors.push(at(e));
                continue;
            }
        }
        if let Err(e) = set.add(policy.new_id(PolicyId::new(&id))) {
            errors.push(at(e.to_string()));
            continue;
        }
        origin.insert(id, file.to_path_buf());
    }
}

/// The gate a policy is, if it has `@approval`; an error for a gate that
/// is not a `permit`, or for gate annotations that do not parse or sit on
/// a policy that is not a gate.
fn gate(id: &str, policy: &cedar_policy::Policy) -> Result<Option<Gate>, String> {
    let group = policy.annotation("approval");
    let confirm = policy.annotation("confirm");
    if group.is_none() && confirm.is_none() {
        for extra in ["timeout", "approvers"] {
            if policy.annotation(extra).is_some() {
                return Err(format!(
                    "policy `{id}`: `@{extra}` belongs to approval gates; add `@approval(\"<approver group>\")` or `@confirm(\"<question>\")`, or remove it"
                ));
            }
        }
        return Ok(None);
    }
    if policy.effect() != cedar_policy::Effect::Permit {
        return Err(format!(
            "policy `{id}`: an approval gate (`@approval`, `@confirm`) must be a `permit`: it says which allowed calls need approval"
        ));
    }
    if group.is_some_and(|g| g.trim().is_empty()) {
        return Err(format!(
            "policy `{id}`: `@approval` names the group whose members approve, e.g. @approval(\"security\")"
        ));
    }
    if group.is_none() && policy.annotation("approvers").is_some() {
        return Err(format!(
            "policy `{id}`: `@approvers` counts members of an `@approval` group; a `@confirm` gate asks only the user"
        ));
    }
    let timeout = match policy.annotation("timeout") {
        None => Gate::DEFAULT_TIMEOUT,
        Some(text) => match crate::config::parse_duration(text) {
            Ok(t) if !t.is_zero() && t <= std::time::Duration::from_secs(7 * 24 * 3600) => t,
            _ => {
                return Err(format!(
                    "policy `{id}`: @timeout(\"{text}\"): use a duration from 1s to 7d, e.g. \"15m\""
                ));
            }
        },
    };
    let approvers = match policy.annotation("approvers") {
        None => 1,
        Some(text) => match text.parse::<u32>() {
            Ok(n) if (1..=Gate::MAX_APPROVERS).contains(&n) => n,
            _ => {
                return Err(format!(
                    "policy `{id}`: @approvers(\"{text}\"): use a number of distinct approvers from 1 to {}",
                    Gate::MAX_APPROVERS
                ));
            }
        },
    };
    Ok(Some(Gate {
        policy: id.to_string(),
        group: group.map(|g| g.trim().to_string()),
        // `@confirm` alone asks a question of its own making.
        confirm: confirm.map(|q| match q.trim() {
            "" => "Allow this tool call?".to_string(),
            q => q.to_string(),
        }),
        timeout,
        approvers,
        reason: policy.annotation("reason").map(str::to_string),
    }))
}

/// A cedar error as one or more located errors.
fn push_diagnostic(
    errors: &mut Vec<PolicyError>,
    file: &Path,
    text: &str,
    diagnostic: &dyn miette::Diagnostic,
) {
    let mut message = diagnostic.to_string();
    if let Some(help) = diagnostic.help() {
        message.push_str(&format!(" (help: {help})"));
    }
    let offset = diagnostic
        .labels()
        .and_then(|mut labels| labels.next())
        .map(|label| label.offset());
    let (line, column) = offset.map(|o| line_col(text, o)).unwrap_or((0, 0));
    let related: Vec<_> = diagnostic
        .related()
        .map(|r| r.collect::<Vec<_>>())
        .unwrap_or_default();
    if related.is_empty() {
        errors.push(PolicyError {
            file: file.to_path_buf(),
            line,
            column,
            message,
        });
    } else {
        for r in related {
            push_diagnostic(errors, file, text, r);
        }
    }
}

/// Where a policy's own text (Cedar keeps it verbatim) starts in its file.
fn locate(file_text: &str, policy_text: &str) -> (usize, usize) {
    file_text
        .find(policy_text.trim())
        .map(|at| line_col(file_text, at))
        .unwrap_or((0, 0))
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// The policies in force, swapped atomically on reload.
pub struct Engine {
    current: ArcSwap<Policies>,
    pub dir: PathBuf,
}

impl Engine {
    pub fn new(policies: Policies, dir: PathBuf) -> Self {
        Self {
            current: ArcSwap::from_pointee(policies),
            dir,
        }
    }

    pub fn current(&self) -> Arc<Policies> {
        self.current.load_full()
    }

    /// Load `dir` again; on success swap it in (calls in flight finish
    /// under the set they started with), on failure keep the old set.
    /// Returns the new version.
    pub fn reload(&self) -> Result<u64, PolicyErrors> {
        let version = self.current.load().version + 1;
        let policies = Policies::load(&self.dir, version)?;
        self.current.store(Arc::new(policies));
        Ok(version)
    }

    /// Reload if the files changed since the set in force (or since the
    /// last refused attempt, in `refused`).
    pub fn reload_if_changed(&self, refused: &mut Option<[u8; 32]>) -> Reload {
        let digest = dir_digest(&self.dir);
        if digest == self.current.load().digest || Some(digest) == *refused {
            return Reload::Unchanged;
        }
        match self.reload() {
            Ok(version) => {
                *refused = None;
                tracing::info!(
                    version,
                    policies = self.current().len(),
                    dir = %self.dir.display(),
                    "policies reloaded"
                );
                Reload::Swapped
            }
            Err(errors) => {
                *refused = Some(digest);
                for e in &errors.0 {
                    tracing::error!(error = %e, "policy reload refused; the previous policies stay in force");
                }
                Reload::Refused(errors)
            }
        }
    }
}

/// What [`Engine::reload_if_changed`] did.
#[derive(Debug)]
pub enum Reload {
    Unchanged,
    /// A new set is in force.
    Swapped,
    /// The files changed but are invalid; the old set stays.
    Refused(PolicyErrors),
}

/// Policies by scope. A policy whose scope (`principal …`, `action …`,
/// `resource …`) does not match a request cannot apply to it: it is neither
/// evaluated nor determining. So each request is judged by the slice of
/// policies whose scope can match (exactly the same answer as the whole
/// set, at a cost that grows with the policies that concern this caller
/// and target, not with all of them). Slices are remembered (at most
/// [`MAX_SLICES`]).
struct Index {
    policies: Vec<cedar_policy::Policy>,
    /// Per policy, when the index alone decides its scope (see
    /// [`unscoped`]): the same policy with the scope `principal, action,
    /// resource`, which Cedar evaluates faster.
    unscoped: Vec<Option<cedar_policy::Policy>>,
    /// Entity (as `Type::"id"`) a principal scope names → policies; `None`
    /// key: any principal.
    by_principal: HashMap<Option<String>, Vec<usize>>,
    by_resource: HashMap<Option<String>, Vec<usize>>,
    /// Per policy: the actions it names (`None`: any).
    actions: Vec<Option<Vec<String>>>,
    /// Per policy: whether it reads what changes from call to call (see
    /// [`Slice`]).
    varying: Vec<bool>,
    /// What the policies read of the context, all together.
    reads: ContextReads,
    slices: quick_cache::sync::Cache<Vec<usize>, Arc<Slice>>,
}

/// The policies that can apply to some requests, split by what they read.
struct Slice {
    /// Policies that read neither the arguments, the clock nor the request
    /// id: for one caller, target and listing flag, their outcome never
    /// changes, so it is found once (see [`Prepared`]).
    fixed: PolicySet,
    /// The others, evaluated for every call.
    varying: PolicySet,
}

/// Most remembered policy slices; at the bound the least used go
/// (`quick_cache`).
const MAX_SLICES: usize = 4096;

impl Index {
    fn new(set: &PolicySet) -> Index {
        use cedar_policy::{ActionConstraint, PrincipalConstraint, ResourceConstraint};
        let mut index = Index {
            policies: Vec::new(),
            unscoped: Vec::new(),
            by_principal: HashMap::new(),
            by_resource: HashMap::new(),
            actions: Vec::new(),
            varying: Vec::new(),
            reads: ContextReads::default(),
            slices: quick_cache::sync::Cache::new(MAX_SLICES),
        };
        for (i, policy) in set.policies().enumerate() {
            let principal = match policy.principal_constraint() {
                PrincipalConstraint::In(e)
                | PrincipalConstraint::Eq(e)
                | PrincipalConstraint::IsIn(_, e) => Some(e.to_string()),
                PrincipalConstraint::Any | PrincipalConstraint::Is(_) => None,
            };
            let resource = match policy.resource_constraint() {
                ResourceConstraint::In(e)
                | ResourceConstraint::Eq(e)
                | ResourceConstraint::IsIn(_, e) => Some(e.to_string()),
                ResourceConstraint::Any | ResourceConstraint::Is(_) => None,
            };
            let actions = match policy.action_constraint() {
                ActionConstraint::Any => None,
                ActionConstraint::Eq(a) => Some(vec![a.id().unescaped().to_string()]),
                ActionConstraint::In(list) => Some(
                    list.iter()
                        .map(|a| a.id().unescaped().to_string())
                        .collect(),
                ),
            };
            index.by_principal.entry(principal).or_default().push(i);
            index.by_resource.entry(resource).or_default().push(i);
            index.actions.push(actions);
            // Its JSON form, read once for both uses.
            let json = policy.to_json().ok();
            index.unscoped.push(unscoped(policy, json.as_ref()));
            let reads = ContextReads::of(json.as_ref());
            index.varying.push(reads.varies());
            index.reads.add(reads);
            index.policies.push(policy.clone());
        }
        index
    }

    /// The policies that can apply to this principal (and its groups),
    /// resource (and its server) and action.
    fn slice(
        &self,
        principal: &PrincipalEntities,
        resource: &EntityUid,
        server: Option<&ServerFacts>,
        action: Action,
    ) -> Arc<Slice> {
        let gather = |map: &HashMap<Option<String>, Vec<usize>>, keys: &[String]| {
            let mut found: Vec<usize> = map.get(&None).cloned().unwrap_or_default();
            for key in keys {
                if let Some(list) = map.get(&Some(key.clone())) {
                    found.extend(list);
                }
            }
            found.sort_unstable();
            found.dedup();
            found
        };
        let principals: Vec<String> = principal.uids.iter().map(|u| u.to_string()).collect();
        let mut resources = vec![resource.to_string()];
        if let Some(server) = server {
            resources.push(uid("Server", &server.name).to_string());
        }
        let by_principal = gather(&self.by_principal, &principals);
        let by_resource = gather(&self.by_resource, &resources);
        let chosen: Vec<usize> = by_principal
            .into_iter()
            .filter(|i| by_resource.binary_search(i).is_ok())
            .filter(|i| {
                self.actions[*i]
                    .as_ref()
                    .is_none_or(|names| names.iter().any(|n| n == action.name()))
            })
            .collect();
        if let Some(set) = self.slices.get(&chosen) {
            return set;
        }
        let mut slice = Slice {
            fixed: PolicySet::new(),
            varying: PolicySet::new(),
        };
        for i in &chosen {
            let policy = self.unscoped[*i].as_ref().unwrap_or(&self.policies[*i]);
            let part = if self.varying[*i] {
                &mut slice.varying
            } else {
                &mut slice.fixed
            };
            // Ids are unique in the whole set, so in any part of it.
            let _ = part.add(policy.clone());
        }
        let set = Arc::new(slice);
        self.slices.insert(chosen, set.clone());
        set
    }
}

/// `policy` with its scope removed, when a slice of the [`Index`] only
/// ever holds it for requests its scope matches: then the scope is
/// already known true, and Cedar need not test it again (each test
/// allocates). The principal's entities are the principal and its groups
/// (groups have no parents), a resource's are it and its server, and
/// actions are matched by name; so `in` scopes are exact, `==` scopes are
/// exact unless they name a group (a principal) or a server (a resource),
/// which the index matches through membership, and `is` scopes are not
/// indexed. `None`: keep the policy as written.
fn unscoped(policy: &cedar_policy::Policy, json: Option<&Value>) -> Option<cedar_policy::Policy> {
    use cedar_policy::{PrincipalConstraint, ResourceConstraint};
    let exact_principal = match policy.principal_constraint() {
        PrincipalConstraint::Any | PrincipalConstraint::In(_) => true,
        PrincipalConstraint::Eq(e) => e.type_name().to_string() != "Group",
        PrincipalConstraint::Is(_) | PrincipalConstraint::IsIn(..) => false,
    };
    let exact_resource = match policy.resource_constraint() {
        ResourceConstraint::Any | ResourceConstraint::In(_) => true,
        ResourceConstraint::Eq(e) => e.type_name().to_string() != "Server",
        ResourceConstraint::Is(_) | ResourceConstraint::IsIn(..) => false,
    };
    if !(exact_principal && exact_resource) {
        return None;
    }
    let mut json = json?.clone();
    for scope in ["principal", "action", "resource"] {
        json[scope] = serde_json::json!({"op": "All"});
    }
    cedar_policy::Policy::from_json(Some(policy.id().clone()), json).ok()
}

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
struct DecisionCache {
    map: quick_cache::sync::Cache<DecisionKey, Decision>,
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
struct DecisionKey {
    caller: Caller,
    action: Action,
    target: String,
    server: Option<ServerFacts>,
    annotations: Option<(bool, bool, bool, bool)>,
    /// The arguments as JSON; `None`: a listing.
    args: Option<String>,
}

impl DecisionKey {
    /// The key of `query`, whose arguments count only as far as policies
    /// read them.
    fn of(query: &Query<'_>, uses: &ArgsUse) -> Option<DecisionKey> {
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
            Target::Prompt { name, .. } | Target::Model { name } | Target::Admin { name } => {
                (name.to_string(), None)
            }
        };
        Some(DecisionKey {
            caller: query.caller.clone(),
            action: query.target.action(),
            target,
            server: query.target.server().cloned(),
            annotations,
            args,
        })
    }
}

impl DecisionCache {
    fn get(&self, key: &DecisionKey) -> Option<Decision> {
        self.map.get(key)
    }

    fn put(&self, key: DecisionKey, decision: Decision) {
        self.map.insert(key, decision);
    }
}

/// Every `Tool::"…"`, `Resource::"…"` and `Prompt::"…"` a policy names, as
/// `Kind::id`; `None` if a name uses escapes (then nothing is grouped).
fn named_things(set: &PolicySet) -> Option<HashSet<String>> {
    let mut named = HashSet::new();
    for policy in set.policies() {
        let text = policy.to_string();
        for kind in ["Tool", "Resource", "Prompt"] {
            let marker = format!("{kind}::\"");
            let mut rest = text.as_str();
            while let Some(at) = rest.find(&marker) {
                let after = &rest[at + marker.len()..];
                let end = after.find('"')?;
                let id = &after[..end];
                if id.contains('\\') {
                    return None;
                }
                named.insert(format!("{kind}::{id}"));
                rest = &after[end + 1..];
            }
        }
        // Spaces or comments between `::` and the id would hide a name.
        for kind in ["Tool", "Resource", "Prompt"] {
            if text.matches(&format!("{kind}::")).count()
                != text.matches(&format!("{kind}::\"")).count()
            {
                return None;
            }
        }
    }
    Some(named)
}

/// What deciding for one caller and target needs besides the context.
struct Prepared {
    principal: EntityUid,
    resource: EntityUid,
    entities: Entities,
    slice: Arc<Slice>,
    /// What `slice.fixed` decides.
    fixed: Outcome,
}

/// What a [`Prepared`] was built for (the kind of target gives the action).
struct PreparedKey {
    caller: Caller,
    kind: &'static str,
    id: String,
    server: Option<ServerFacts>,
    annotations: Option<Annotations>,
    listing: bool,
}

/// Most kept [`Prepared`]; at the bound the least used go (`quick_cache`).
const MAX_PREPARED: usize = 10_000;

/// The kind and id of a target.
fn target_id<'a>(target: &Target<'a>) -> (&'static str, &'a str) {
    match *target {
        Target::Tool { name, .. } => ("Tool", name),
        Target::Resource { uri, .. } => ("Resource", uri),
        Target::Prompt { name, .. } => ("Prompt", name),
        Target::Model { name } => ("Model", name),
        Target::Admin { name } => ("Admin", name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policies(text: &str) -> (tempfile::TempDir, Policies) {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/schema.cedarschema"),
            dir.path().join("schema.cedarschema"),
        )
        .expect("schema");
        std::fs::write(dir.path().join("p.cedar"), text).expect("policy");
        let p = Policies::load(dir.path(), 1).unwrap_or_else(|e| panic!("{e}"));
        (dir, p)
    }

    #[test]
    fn every_group_a_policy_names_is_found_wherever_it_is_named() {
        let (_dir, p) = policies(
            "@id(\"scope\")\npermit (principal in Group::\"eng\", action, resource);\n\
             @id(\"unless\")\nforbid (principal, action, resource)\n\
             unless { principal in Group::\"break-glass\" || principal in [Group::\"a \\\"quoted\\\" one\"] };\n\
             @id(\"spaced\")\npermit (principal in Group :: \"ops\", action, resource);\n\
             @id(\"not-a-group\")\npermit (principal, action, resource == Tool::\"Group\");\n",
        );
        assert_eq!(
            p.groups().into_iter().collect::<Vec<_>>(),
            ["a \"quoted\" one", "break-glass", "eng", "ops"]
        );
    }

    #[test]
    fn lists_group_alike_tools_but_never_a_named_one() {
        let (_dir, p) = policies(
            "@id(\"all\")\npermit (principal, action, resource);\n\
             @id(\"not-that-one\")\nforbid (principal, action, resource == Tool::\"s__b\");\n",
        );
        assert_eq!(
            p.named,
            Some(HashSet::from(["Tool::s__b".to_string()])),
            "the named tool is known"
        );
        let server = ServerFacts {
            name: "s".into(),
            ..ServerFacts::default()
        };
        let tool = |name| Target::Tool {
            name,
            server: &server,
            annotations: Annotations::WORST,
        };
        let caller = Caller::new("u".into(), Credential::AccessToken);
        // a and c are one class; b is named, so decided on its own.
        let seen = p.visible(&caller, &[tool("s__a"), tool("s__b"), tool("s__c")]);
        assert_eq!(seen, vec![true, false, true]);
        // The same as deciding one by one.
        for (name, want) in [("s__a", true), ("s__b", false), ("s__c", true)] {
            let d = p.decide_uncached(&Query {
                caller: &caller,
                target: tool(name),
                args: None,
                request_id: "t",
            });
            assert_eq!(d.allowed, want, "{name}");
        }
    }

    #[test]
    fn gates_hold_allowed_calls_they_match_and_read_their_own_arguments() {
        let (_dir, p) = policies(
            "@id(\"all\")\npermit (principal, action == Action::\"call_tool\", resource);\n\
             @id(\"big-refunds\")\n@approval(\"finance\")\n@timeout(\"10m\")\n@approvers(\"2\")\n\
             @reason(\"refunds over 1000 need two approvers\")\n\
             permit (principal, action == Action::\"call_tool\", resource == Tool::\"s__refund\")\n\
             when { context.args has amount && context.args.amount > 1000 };\n\
             @id(\"no-delete\")\nforbid (principal, action, resource == Tool::\"s__delete\");\n\
             @id(\"deletes-too\")\n@approval(\"security\")\n\
             permit (principal, action == Action::\"call_tool\", resource == Tool::\"s__delete\");\n",
        );
        // Gates are not among the policies that allow and refuse.
        assert_eq!(p.len(), 2);
        let server = ServerFacts {
            name: "s".into(),
            ..ServerFacts::default()
        };
        let caller = Caller::new("u".into(), Credential::AccessToken);
        let ask = |name, args: Option<&serde_json::Map<String, Value>>| {
            p.decide(&Query {
                caller: &caller,
                target: Target::Tool {
                    name,
                    server: &server,
                    annotations: Annotations::WORST,
                },
                args,
                request_id: "t",
            })
        };
        let big = json!({"amount": 5000})
            .as_object()
            .cloned()
            .expect("an object");
        let small = json!({"amount": 10})
            .as_object()
            .cloned()
            .expect("an object");
        let d = ask("s__refund", Some(&big));
        assert!(d.allowed, "{d}");
        assert_eq!(
            d.gates,
            vec![Gate {
                policy: "big-refunds".into(),
                group: Some("finance".into()),
                confirm: None,
                timeout: std::time::Duration::from_secs(600),
                approvers: 2,
                reason: Some("refunds over 1000 need two approvers".into()),
            }]
        );
        assert!(
            d.to_string()
                .contains("needs approval by `finance` (gate `big-refunds`)"),
            "{d}"
        );
        // No policy that allows reads `amount`: the remembered decision must
        // not carry the gate over to other amounts.
        assert!(ask("s__refund", Some(&small)).gates.is_empty());
        assert_eq!(ask("s__refund", Some(&big)).gates.len(), 1);
        // Listing never asks the gates.
        assert!(ask("s__refund", None).gates.is_empty());
        // A refused call is refused, whatever gate matches it.
        let d = ask("s__delete", Some(&small));
        assert!(!d.allowed && d.gates.is_empty(), "{d}");
    }

    #[test]
    fn gate_annotations_are_checked_at_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/schema.cedarschema"),
            dir.path().join("schema.cedarschema"),
        )
        .expect("schema");
        for (text, want) in [
            (
                "@id(\"g\")\n@approval(\"sec\")\nforbid (principal, action, resource);",
                "must be a `permit`",
            ),
            (
                "@id(\"g\")\n@approval(\" \")\npermit (principal, action, resource);",
                "names the group",
            ),
            (
                "@id(\"g\")\n@approval(\"sec\")\n@timeout(\"soon\")\npermit (principal, action, resource);",
                "@timeout(\"soon\")",
            ),
            (
                "@id(\"g\")\n@approval(\"sec\")\n@approvers(\"0\")\npermit (principal, action, resource);",
                "@approvers(\"0\")",
            ),
            (
                "@id(\"g\")\n@timeout(\"5m\")\npermit (principal, action, resource);",
                "belongs to approval gates",
            ),
            (
                "@id(\"g\")\n@confirm\n@approvers(\"2\")\npermit (principal, action, resource);",
                "a `@confirm` gate asks only the user",
            ),
            (
                "@id(\"g\")\n@confirm(\"sure?\")\nforbid (principal, action, resource);",
                "must be a `permit`",
            ),
        ] {
            std::fs::write(dir.path().join("p.cedar"), text).expect("policy");
            let Err(e) = Policies::load(dir.path(), 1) else {
                panic!("loaded: {text}")
            };
            let e = e.to_string();
            assert!(e.contains(want) && e.contains("p.cedar:"), "{text}: {e}");
        }
    }

    #[test]
    fn remembered_decisions_are_bounded_and_a_flood_keeps_the_hot_one() {
        let cache = DecisionCache::default();
        let key = |who: &str| DecisionKey {
            caller: Caller::new(who.to_string(), Credential::AccessToken),
            action: Action::CallTool,
            target: "t".into(),
            server: None,
            annotations: None,
            args: None,
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

    /// Cedar's own answer: the whole set as written, one entity store.
    fn reference(p: &Policies, query: &Query<'_>) -> Decision {
        let principal = principal_entities(query.caller);
        let (resource, mut entities) = target_entities(&query.target).expect("entities");
        entities.extend(principal.entities);
        let entities = Entities::from_entities(entities, None).expect("entities");
        let request = p
            .request(query, &principal.uid, resource, true)
            .expect("request");
        Outcome::of(&p.set, &request, &entities).decision(&p.reasons)
    }

    #[test]
    fn slices_decide_exactly_as_the_whole_set() {
        // Scopes of every kind the index handles (or does not), policies
        // that read arguments, the address or nothing, and one that fails
        // to evaluate on a string count.
        let (_dir, p) = policies(
            r#"@id("read-only") permit (principal, action == Action::"call_tool", resource) when { context.annotations.read_only };
@id("eng-writes") permit (principal in Group::"eng", action == Action::"call_tool", resource) when { !context.annotations.destructive };
@id("alice") permit (principal == User::"alice", action, resource);
@id("group-eq") permit (principal == Group::"eng", action, resource);
@id("server-eq") permit (principal, action, resource == Server::"gh");
@id("agents") permit (principal is Agent, action == Action::"call_tool", resource in Server::"gh");
@id("tool-is") forbid (principal, action, resource is Tool in Server::"prod") when { !context.annotations.read_only };
@id("one-tool") forbid (principal, action == Action::"call_tool", resource == Tool::"gh__delete");
@id("repo") forbid (principal, action == Action::"call_tool", resource in Server::"gh") when { context.args has repository && !(context.args.repository like "acme/*") };
@id("title") forbid (principal, action == Action::"call_tool", resource) when { context.args has title && context.args.title like "x*" };
@id("office") forbid (principal, action, resource in Server::"prod") unless { context.client_ip.isInRange(ip("10.0.0.0/8")) };
@id("prompts") permit (principal, action in [Action::"get_prompt", Action::"read_resource"], resource) when { principal.credential != "api_key" };
"#,
        );
        let servers = ["gh", "prod", "notes"].map(|name| ServerFacts {
            name: name.into(),
            trusted: name != "notes",
            ..ServerFacts::default()
        });
        let callers = [
            ("alice", Credential::AccessToken, vec![], "10.1.2.3"),
            (
                "bob",
                Credential::AccessToken,
                vec!["eng".to_string()],
                "192.0.2.1",
            ),
            (
                "bot",
                Credential::ApiKey,
                vec!["eng".to_string()],
                "10.0.0.9",
            ),
            ("eng", Credential::AccessToken, vec![], "10.0.0.1"),
        ]
        .map(|(subject, credential, groups, address)| Caller {
            groups,
            address: address.parse().ok(),
            ..Caller::new(subject.into(), credential)
        });
        let args = [
            json!({}),
            json!({"repository": "acme/x"}),
            json!({"repository": "evil/x", "body": "text"}),
            json!({"title": "xy"}),
            json!({"title": 11}),
        ];
        let annotations = [
            Annotations::WORST,
            Annotations {
                read_only: true,
                destructive: false,
                idempotent: true,
                open_world: false,
            },
        ];
        let mut compared = 0;
        for caller in &callers {
            for server in &servers {
                for name in ["delete", "read"] {
                    let name = format!("{}__{name}", server.name);
                    let mut targets: Vec<Target<'_>> = annotations
                        .iter()
                        .map(|a| Target::Tool {
                            name: &name,
                            server,
                            annotations: *a,
                        })
                        .collect();
                    targets.push(Target::Prompt {
                        name: &name,
                        server,
                    });
                    targets.push(Target::Resource { uri: &name, server });
                    for target in &targets {
                        for a in args.iter().map(|a| a.as_object()).chain([None]) {
                            let query = Query {
                                caller,
                                target: target.clone(),
                                args: a,
                                request_id: "r",
                            };
                            // Twice: built, then from what was kept.
                            for _ in 0..2 {
                                assert_eq!(
                                    p.decide_uncached(&query),
                                    reference(&p, &query),
                                    "{} {target:?} {a:?}",
                                    caller.subject
                                );
                                compared += 1;
                            }
                        }
                    }
                }
            }
        }
        assert_eq!(compared, 4 * 3 * 2 * 4 * 6 * 2);
    }

    #[test]
    fn only_the_arguments_policies_read_count() {
        let (_dir, p) = policies(
            r#"@id("all") permit (principal, action, resource);
@id("repo") forbid (principal, action == Action::"call_tool", resource) when { context.args has repository && context.args.repository == "x" };
@id("title") forbid (principal, action == Action::"call_tool", resource) when { context.args has title && context.args.title == "y" };
"#,
        );
        assert_eq!(
            p.uses.args,
            ArgsUse::Only(["repository".to_string(), "title".to_string()].into())
        );
        let server = ServerFacts {
            name: "s".into(),
            ..ServerFacts::default()
        };
        let caller = Caller::new("u".into(), Credential::AccessToken);
        let decide = |args: Value| {
            p.decide(&Query {
                caller: &caller,
                target: Target::Tool {
                    name: "s__t",
                    server: &server,
                    annotations: Annotations::WORST,
                },
                args: args.as_object(),
                request_id: "r",
            })
        };
        // An argument nested past the limit that no policy reads is not
        // converted, so it cannot deny; one that is read does.
        let mut deep = json!(1);
        for _ in 0..=context::MAX_ARG_DEPTH {
            deep = json!([deep]);
        }
        assert!(decide(json!({"title": "t", "body": deep.clone()})).allowed);
        assert!(!decide(json!({"title": "t", "repository": deep})).allowed);
        assert!(!decide(json!({"repository": "x", "body": "a"})).allowed);
        // Calls that differ only in what no policy reads share a decision,
        // however large.
        let before = p.decisions.map.len();
        for i in 0..50 {
            assert!(decide(json!({"title": "u", "body": "b".repeat(4096 + i)})).allowed);
        }
        assert_eq!(p.decisions.map.len(), before + 1);
    }

    #[test]
    fn context_reads_are_found() {
        let (_dir, p) = policies(
            "@id(\"whole-args\") permit (principal, action == Action::\"call_tool\", resource) when { context.args == context.args };\n",
        );
        assert_eq!(p.uses.args, ArgsUse::All);
        assert!(!p.uses.time && !p.uses.client_ip);
        let (_dir, p) = policies(
            "@id(\"t\") permit (principal, action, resource) when { context.time.hour > 8 && context.client_ip.isIpv4() };\n@id(\"h\") permit (principal, action == Action::\"call_tool\", resource) when { context has args };\n",
        );
        assert!(p.uses.time && p.uses.client_ip && !p.uses.request_id);
        assert_eq!(p.uses.args, ArgsUse::Only(Default::default()));
        assert!(!p.cacheable(), "a policy reads the clock");
    }

    #[test]
    fn action_groups_in_the_schema_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let schema = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/schema.cedarschema"),
        )
        .expect("schema")
        .replace(
            "action call_tool",
            "action writes;\naction call_tool in [Action::\"writes\"]",
        );
        assert!(
            schema.contains("action writes;"),
            "the schema declares call_tool"
        );
        std::fs::write(dir.path().join("schema.cedarschema"), schema).expect("schema");
        std::fs::write(
            dir.path().join("p.cedar"),
            "@id(\"a\") permit (principal, action, resource);\n",
        )
        .expect("policy");
        let Err(e) = Policies::load(dir.path(), 1) else {
            panic!("loaded a schema with action groups")
        };
        assert!(
            e.to_string()
                .contains("action groups are not supported (Action::\"writes\")"),
            "{e}"
        );
    }

    #[test]
    fn escaped_names_turn_grouping_off() {
        let (_dir, p) = policies(
            "@id(\"odd\")\nforbid (principal, action, resource == Tool::\"a\\\"b\");\n\
             @id(\"all\")\npermit (principal, action, resource);\n",
        );
        assert_eq!(p.named, None);
    }
}
