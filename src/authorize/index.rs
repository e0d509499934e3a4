//! The policies by scope (stage 3, authorize): which policies can apply
//! to a caller, target and action, so a request is judged by that slice
//! only; and which tools, resources and prompts policies name, so a list
//! decides alike ones once.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use cedar_policy::{EntityUid, PolicySet};
use serde_json::Value;

use super::context::ContextReads;
use super::entities::{PrincipalEntities, uid};
use super::{Action, ServerFacts};

/// Policies by scope. A policy whose scope (`principal …`, `action …`,
/// `resource …`) does not match a request cannot apply to it: it is neither
/// evaluated nor determining. So each request is judged by the slice of
/// policies whose scope can match (exactly the same answer as the whole
/// set, at a cost that grows with the policies that concern this caller
/// and target, not with all of them). Slices are remembered (at most
/// [`MAX_SLICES`]).
pub(super) struct Index {
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
    pub(super) reads: ContextReads,
    slices: quick_cache::sync::Cache<Vec<usize>, Arc<Slice>>,
}

/// The policies that can apply to some requests, split by what they read.
pub(super) struct Slice {
    /// Policies that read neither the arguments, the clock nor the request
    /// id: for one caller, target and listing flag, their outcome never
    /// changes, so it is found once (see [`Prepared`](super::cache::Prepared)).
    pub(super) fixed: PolicySet,
    /// The others, evaluated for every call.
    pub(super) varying: PolicySet,
}

/// Most remembered policy slices; at the bound the least used go
/// (`quick_cache`).
const MAX_SLICES: usize = 4096;

impl Index {
    pub(super) fn new(set: &PolicySet) -> Index {
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
    pub(super) fn slice(
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

/// Every `Tool::"…"`, `Resource::"…"` and `Prompt::"…"` a policy names, as
/// `Kind::id`; `None` if a name uses escapes (then nothing is grouped).
pub(super) fn named_things(set: &PolicySet) -> Option<HashSet<String>> {
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
