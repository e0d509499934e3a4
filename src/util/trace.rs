//! W3C Trace Context: which trace a request belongs to.

/// The trace id of a W3C `traceparent` header (`00-<32 hex>-<16 hex>-<2
/// hex>`), for audit records; `None` when absent or malformed.
pub fn trace_id(headers: &http::HeaderMap) -> Option<String> {
    let value = headers.get("traceparent")?.to_str().ok()?;
    let mut parts = value.split('-');
    let (_version, trace) = (parts.next()?, parts.next()?);
    (trace.len() == 32
        && trace.bytes().all(|b| b.is_ascii_hexdigit())
        && trace.bytes().any(|b| b != b'0'))
    .then(|| trace.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_ids_come_from_well_formed_traceparent_headers() {
        let with = |v: &str| {
            let mut h = http::HeaderMap::new();
            h.insert("traceparent", v.parse().expect("header value"));
            trace_id(&h)
        };
        assert_eq!(
            with("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01").as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(
            with("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            None
        );
        assert_eq!(with("00-xyz-00f067aa0ba902b7-01"), None);
        assert_eq!(trace_id(&http::HeaderMap::new()), None);
    }
}
