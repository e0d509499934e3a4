//! The conformance fixture's `test://` resources: the static text and binary
//! resources, the watched resource (one `notifications/resources/updated`
//! shortly after a legacy subscription), and the `test://template/{id}/data`
//! template. Listing, subscribing and `subscriptions/listen` are answered by
//! the `ServerHandler` impl in `mod.rs`.

use std::time::Duration;

use rmcp::{
    ErrorData, RoleServer,
    model::{
        CacheScope, ReadResourceResult, Resource, ResourceContents, ResourceTemplate,
        ResourceUpdatedNotificationParam,
    },
    service::RequestContext,
};
use serde_json::json;

use crate::util::sync::LockExt;

use super::{
    CACHE_TTL_MS, ConformanceServer, TEST_IMAGE_BASE64, WATCHED_RESOURCE_URI, text_contents,
};
impl ConformanceServer {
    /// The resources `resources/list` returns.
    pub(super) fn resources() -> Vec<Resource> {
        vec![
            Resource::new("test://static-text", "static-text")
                .with_title("Static Text Resource")
                .with_description("A static text resource for testing")
                .with_mime_type("text/plain"),
            Resource::new("test://static-binary", "static-binary")
                .with_title("Static Binary Resource")
                .with_description("A static binary resource (image) for testing")
                .with_mime_type("image/png"),
            Resource::new(WATCHED_RESOURCE_URI, "watched-resource")
                .with_title("Watched Resource")
                .with_description("A resource that supports subscriptions")
                .with_mime_type("text/plain"),
        ]
    }

    /// The resource templates `resources/templates/list` returns.
    pub(super) fn resource_templates() -> Vec<ResourceTemplate> {
        vec![
            ResourceTemplate::new("test://template/{id}/data", "template")
                .with_title("Resource Template")
                .with_description("A resource template with parameter substitution")
                .with_mime_type("application/json"),
        ]
    }

    pub(super) fn read(&self, uri: &str) -> Result<ReadResourceResult, ErrorData> {
        let contents = match uri {
            "test://static-text" => text_contents(
                uri,
                "text/plain",
                "This is the content of the static text resource.",
            ),
            "test://static-binary" => ResourceContents::BlobResourceContents {
                uri: uri.to_owned(),
                mime_type: Some("image/png".to_owned()),
                blob: TEST_IMAGE_BASE64.to_owned(),
                meta: None,
            },
            WATCHED_RESOURCE_URI => text_contents(uri, "text/plain", "Watched resource content"),
            _ => match template_id(uri) {
                Some(id) => text_contents(
                    uri,
                    "application/json",
                    json!({ "id": id, "templateTest": true, "data": format!("Data for ID: {id}") })
                        .to_string(),
                ),
                // rmcp turns RESOURCE_NOT_FOUND into -32602 for 2026-07-28 peers (SEP-2164).
                None => {
                    return Err(ErrorData::resource_not_found(
                        format!("Resource not found: {uri}"),
                        Some(json!({ "uri": uri })),
                    ));
                }
            },
        };
        Ok(ReadResourceResult::new(vec![contents])
            .with_ttl_ms(CACHE_TTL_MS)
            .with_cache_scope(CacheScope::Private))
    }

    /// Sends one `notifications/resources/updated` shortly after a legacy
    /// subscription to the watched resource, so clients (and gateways) can see a
    /// server-initiated notification outside any request.
    pub(super) fn schedule_watched_update(&self, cx: &RequestContext<RoleServer>, uri: &str) {
        if uri != WATCHED_RESOURCE_URI {
            return;
        }
        let peer = cx.peer.clone();
        let state = self.state.clone();
        let uri = uri.to_owned();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if state.resource_subscriptions.locked().contains(&uri) {
                let _ = peer
                    .notify_resource_updated(ResourceUpdatedNotificationParam::new(uri))
                    .await;
            }
        });
    }
}

/// `id` from `test://template/{id}/data`.
fn template_id(uri: &str) -> Option<&str> {
    uri.strip_prefix("test://template/")
        .and_then(|rest| rest.strip_suffix("/data"))
        .filter(|id| !id.is_empty() && !id.contains('/'))
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    #[test]
    fn reads_static_and_templated_resources() {
        let server = ConformanceServer::new();
        let text =
            serde_json::to_value(server.read("test://static-text").expect("test")).expect("test");
        assert_eq!(
            text["contents"][0]["text"],
            "This is the content of the static text resource."
        );
        let blob =
            serde_json::to_value(server.read("test://static-binary").expect("test")).expect("test");
        assert_eq!(blob["contents"][0]["blob"], TEST_IMAGE_BASE64);
        let templated = serde_json::to_value(server.read("test://template/42/data").expect("test"))
            .expect("test");
        let body: Value =
            serde_json::from_str(templated["contents"][0]["text"].as_str().expect("test"))
                .expect("test");
        assert_eq!(body["id"], "42");
        assert!(server.read("test://nope").is_err());
    }
}
