//! The entities of a request (stage 3, authorize): the caller as
//! `User::"…"` or `Agent::"…"` in its groups, the target as a `Tool`,
//! `Resource` or `Prompt` in its `Server`, or a `Model` or `Admin` area.
//! Built per request for [`Policies`](super::Policies) and its index.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use cedar_policy::{Entity, EntityId, EntityTypeName, EntityUid, RestrictedExpression};

use crate::call::{Caller, Credential};

use super::{AuthorizeError, ServerFacts, Target};

/// The principal of a query and its groups, as entities.
pub(super) struct PrincipalEntities {
    pub(super) uid: EntityUid,
    /// The principal and its groups.
    pub(super) uids: Vec<EntityUid>,
    pub(super) entities: Vec<Entity>,
}

pub(super) fn principal_entities(caller: &Caller) -> PrincipalEntities {
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
pub(super) fn target_entities(
    target: &Target<'_>,
) -> Result<(EntityUid, Vec<Entity>), AuthorizeError> {
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
        .map_err(AuthorizeError::from)
    };
    let in_server = |kind: &str,
                     id: &str,
                     server: &ServerFacts|
     -> Result<(EntityUid, Vec<Entity>), AuthorizeError> {
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
        Target::Model { name, .. } => Ok((uid("Model", name), Vec::new())),
        Target::Admin { name } => Ok((uid("Admin", name), Vec::new())),
    }
}

/// A tool, resource or prompt in its server, with `server` pointing at it.
fn in_server(thing: &EntityUid, server: &ServerFacts) -> Result<Entity, AuthorizeError> {
    let server = uid("Server", &server.name);
    Entity::new(
        thing.clone(),
        HashMap::from([(
            "server".to_string(),
            RestrictedExpression::new_entity_uid(server.clone()),
        )]),
        HashSet::from([server]),
    )
    .map_err(AuthorizeError::from)
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

pub(super) fn uid(kind: &str, id: &str) -> EntityUid {
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

/// The kind and id of a target.
pub(super) fn target_id<'a>(target: &Target<'a>) -> (&'static str, &'a str) {
    match *target {
        Target::Tool { name, .. } => ("Tool", name),
        Target::Resource { uri, .. } => ("Resource", uri),
        Target::Prompt { name, .. } => ("Prompt", name),
        Target::Model { name, .. } => ("Model", name),
        Target::Admin { name } => ("Admin", name),
    }
}
