//! Text for the gateway's web pages and their URLs: what a caller, an
//! approver or an identity provider wrote is shown, never interpreted.

use std::fmt::Write as _;

/// Text as HTML element content: markup escaped, and characters that
/// could hide or disguise text (C0/C1 controls such as ANSI's ESC,
/// bidirectional overrides, zero-width marks) shown as `\u{…}` in a
/// `<span class="ctl">`. Newlines and tabs stay.
///
/// Its output holds markup, so it belongs between tags only: never in an
/// attribute value, `<title>` or `<textarea>` (where the `<span>` would be
/// literal text or break the quoting). Templates use it as the `visible`
/// filter ([`filters::visible`]) and let askama's own escaper do
/// attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\n' | '\t' => out.push(c),
            c if c.is_control()
                || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}'
                    | '\u{2066}'..='\u{2069}' | '\u{061c}' | '\u{feff}') =>
            {
                let _ = write!(out, "<span class=\"ctl\">\\u{{{:x}}}</span>", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// Filters for the gateway's askama templates (a template module brings
/// them in with `use crate::util::html::filters;`).
pub mod filters {
    /// `{{ text|visible }}`: text shown as [`super::escape`] shows it, for
    /// element content only (see there); the template's escaper does not
    /// escape it again.
    #[askama::filter_fn]
    pub fn visible<T: std::fmt::Display>(
        text: T,
        _: &dyn askama::Values,
    ) -> askama::Result<askama::filters::Safe<String>> {
        Ok(askama::filters::Safe(super::escape(&text.to_string())))
    }
}

/// For a URL component: all but ASCII letters, digits and `-_.~` (RFC 3986
/// unreserved) encoded.
pub const COMPONENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
/// For a path: as [`COMPONENT`], keeping `/`.
pub const PATH: &percent_encoding::AsciiSet = &COMPONENT.remove(b'/');

/// `text` for a URL, the bytes in `set` as `%XX` (by the
/// `percent-encoding` crate).
pub fn percent_encode(text: &str, set: &'static percent_encoding::AsciiSet) -> String {
    percent_encoding::utf8_percent_encode(text, set).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_others_wrote_stays_inert_text() {
        assert_eq!(
            escape("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
        // ANSI colour, a bidirectional override, a zero-width space, DEL.
        assert_eq!(
            escape("\u{1b}[31mred\u{202e}cba\u{200b}\u{7f}"),
            "<span class=\"ctl\">\\u{1b}</span>[31mred<span class=\"ctl\">\\u{202e}</span>cba\
             <span class=\"ctl\">\\u{200b}</span><span class=\"ctl\">\\u{7f}</span>"
        );
        assert_eq!(escape("**bold**\n\tx"), "**bold**\n\tx");
    }

    /// The `visible` filter writes markup: in every template (each file
    /// in the directories `src/askama.toml` names) it stands between tags
    /// only, never inside a tag (an attribute value) or in `<title>`,
    /// `<textarea>` or `<option>` (whose text is not parsed for markup).
    #[test]
    fn control_display_stays_out_of_attributes_and_raw_text() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let config = std::fs::read_to_string(root.join("src/askama.toml")).expect("askama.toml");
        let dirs: Vec<&str> = config
            .lines()
            .filter_map(|l| l.trim().strip_prefix("dirs = ["))
            .flat_map(|l| l.trim_end_matches(']').split(','))
            .map(|d| d.trim().trim_matches('"'))
            .collect();
        assert!(!dirs.is_empty(), "{config}");
        let mut checked = 0;
        for dir in dirs {
            for file in std::fs::read_dir(root.join(dir)).expect("a template directory") {
                let path = file.expect("a template").path();
                let source = std::fs::read_to_string(&path).expect("a template");
                // Block tags (`<`, `>` as operators) and comments are not
                // markup.
                let mut markup = source;
                for (open, close) in [("{#", "#}"), ("{%", "%}")] {
                    let mut kept = String::new();
                    let mut rest = markup.as_str();
                    while let Some(at) = rest.find(open) {
                        kept.push_str(&rest[..at]);
                        rest = rest[at..].split_once(close).map_or("", |(_, r)| r);
                    }
                    kept.push_str(rest);
                    markup = kept;
                }
                for (at, _) in markup.match_indices("|visible") {
                    let before = &markup[..at];
                    let in_tag = before.rfind('<') > before.rfind('>');
                    assert!(
                        !in_tag,
                        "{}: `visible` inside a tag at {at}",
                        path.display()
                    );
                    for raw in ["title", "textarea", "option"] {
                        let open = before.rfind(&format!("<{raw}"));
                        let close = before.rfind(&format!("</{raw}>"));
                        assert!(
                            open <= close,
                            "{}: `visible` inside <{raw}> at {at}",
                            path.display()
                        );
                    }
                    checked += 1;
                }
            }
        }
        assert!(checked > 10, "the templates show text through `visible`");
    }

    #[test]
    fn urls_get_only_safe_bytes() {
        assert_eq!(
            percent_encode("a b&c=d/é", COMPONENT),
            "a%20b%26c%3Dd%2F%C3%A9"
        );
        assert_eq!(percent_encode("/ui/a?b=c", PATH), "/ui/a%3Fb%3Dc");
        assert_eq!(percent_encode("-_.~%+#\0", COMPONENT), "-_.~%25%2B%23%00");
        assert_eq!(percent_encode("//x/../y", PATH), "//x/../y");
    }
}
