//! Text for the gateway's web pages and their URLs: what a caller, an
//! approver or an identity provider wrote is shown, never interpreted.

use std::fmt::Write as _;

/// Text as HTML: markup escaped, and characters that could hide or
/// disguise text (C0/C1 controls such as ANSI's ESC, bidirectional
/// overrides, zero-width marks) shown as `\u{…}`. Newlines and tabs stay.
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
