//! Hidden text: the characters and markup a reader does not see but a
//! model (or a regex) does, and the normalisation every other detector's
//! input goes through first.
//!
//! Two jobs:
//! - [`normalise`] removes invisible characters (zero-width, bidi
//!   controls, Unicode tag characters, variation selectors, soft hyphen),
//!   applies NFKC (fullwidth and compatibility forms become ASCII) and
//!   maps Cyrillic and Greek letters that look like Latin ones to Latin,
//!   so `ghp_` split by a zero-width space, `ｓｋ－…` or a Cyrillic `о`
//!   inside a token cannot dodge a rule. [`Normalised::original`] maps a
//!   finding's span back to the original text. [`scan_normalised`] is
//!   what the inspect stages call: normalise once, run every detector,
//!   map spans back.
//! - [`Hidden`] reports hidden text as findings of its own: runs of
//!   invisible characters, Unicode tag text ("ASCII smuggling"), HTML
//!   comments and elements styled invisible, and long base64 blobs that
//!   decode to text.
//!
//! The look-alike table is ours, written from the idea of Unicode's
//! confusables (UTS #39) for the letters that matter to Latin tokens. The
//! `unicode-security` crate's `skeleton` was not used: a skeleton is made
//! to compare identifiers, not to be matched against (it rewrites ASCII
//! itself, e.g. `l` and `1`, `rn` and `m`), so tokens would no longer
//! match their rules.
//!
//! Not covered: Hangul jamo composed across clusters (NFKC is applied
//! per base character and its combining marks, so offsets stay exact),
//! base64 broken over lines, hidden text by colour (white on white) or
//! CSS classes.

use std::borrow::Cow;
use std::ops::Range;
use std::sync::{Arc, LazyLock};

use base64::Engine as _;
use regex::Regex;
use unicode_normalization::char::canonical_combining_class;
use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfkc_quick};

use super::{Detector, Finding};

/// The detector's name, as in [`Finding::detector`].
pub const NAME: &str = "hidden";

/// A base64 run shorter than this is not reported (keys, hashes and ids
/// are shorter; instructions worth hiding are longer).
const BASE64_MIN: usize = 200;
/// How much of a base64 run is decoded to judge whether it is text.
const BASE64_SAMPLE: usize = 4096;
/// How far a hidden element's closing tag is searched for.
const HTML_ELEMENT_MAX: usize = 64 * 1024;
/// How many characters of Unicode tag text are decoded per run.
const TAG_DECODE_MAX: usize = 4096;

/// The text a detector sees, with the way back to the original.
#[derive(Debug, Clone)]
pub struct Normalised<'a> {
    /// The normalised text: borrowed when nothing had to change (plain
    /// ASCII, or text already clean), so the common case allocates nothing.
    pub text: Cow<'a, str>,
    /// Runs of changed clusters (a base character and its combining
    /// marks), in text order; empty when `text` is borrowed. Unchanged
    /// stretches between entries map one to one.
    segments: Vec<Segment>,
}

/// A run of changed clusters of equal widths, back to back: each
/// `orig_width` bytes of the original became `norm_width` bytes (a
/// fullwidth word, a Cyrillic look-alike word, zero-width characters in a
/// row are one entry each), so positions inside the run map exactly.
#[derive(Debug, Clone, Copy)]
struct Segment {
    norm_start: usize,
    norm_end: usize,
    orig_start: usize,
    orig_end: usize,
    norm_width: usize,
    orig_width: usize,
}

impl Segment {
    /// The original offset of the cluster holding normalised offset `p`
    /// (rounded down, for a span's start, or up, for its end).
    fn orig_at(&self, p: usize, round_up: bool) -> usize {
        if self.norm_width == 0 {
            return if round_up {
                self.orig_end
            } else {
                self.orig_start
            };
        }
        let offset = p - self.norm_start;
        let clusters = if round_up {
            offset.div_ceil(self.norm_width)
        } else {
            offset / self.norm_width
        };
        self.orig_start + clusters * self.orig_width
    }
}

impl Normalised<'_> {
    /// The normalised text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether normalising changed anything.
    pub fn changed(&self) -> bool {
        !self.segments.is_empty()
    }

    /// Map a byte range of the normalised text back to the original.
    ///
    /// Exact on char boundaries; a span that starts or ends inside what
    /// one original character (or cluster) became covers that whole
    /// character. Invisible characters removed at a span's edges stay
    /// outside it; those inside it are inside it.
    pub fn original(&self, span: Range<usize>) -> Range<usize> {
        if self.segments.is_empty() {
            return span;
        }
        let start = self.map_start(span.start);
        let end = self.map_end(span.end).max(start);
        start..end
    }

    fn map_start(&self, p: usize) -> usize {
        // The first segment that ends after p; removed (empty) segments at
        // p are passed over, so the span starts after them.
        let i = self.segments.partition_point(|s| s.norm_end <= p);
        if let Some(s) = self.segments.get(i)
            && s.norm_start <= p
        {
            return s.orig_at(p, false);
        }
        self.after(i, p)
    }

    fn map_end(&self, p: usize) -> usize {
        // The last segment that starts before p; removed segments at p are
        // not counted, so the span ends before them.
        let i = self.segments.partition_point(|s| s.norm_start < p);
        if i > 0 {
            let s = self.segments[i - 1];
            if s.norm_end >= p {
                return s.orig_at(p, true);
            }
        }
        self.after(i, p)
    }

    /// p lies in the unchanged stretch after the first `i` segments.
    fn after(&self, i: usize, p: usize) -> usize {
        match i.checked_sub(1).and_then(|j| self.segments.get(j)) {
            Some(s) => s.orig_end + (p - s.norm_end),
            None => p,
        }
    }
}

/// Normalise `text` for matching: invisible characters removed, NFKC,
/// Latin look-alikes mapped to Latin. Borrows when nothing changes.
pub fn normalise(text: &str) -> Normalised<'_> {
    let borrowed = Normalised {
        text: Cow::Borrowed(text),
        segments: Vec::new(),
    };
    // ASCII is NFKC already and holds none of the characters we remove.
    if text.is_ascii() || !needs_change(text) {
        return borrowed;
    }
    let mut out = String::with_capacity(text.len());
    let mut segments: Vec<Segment> = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        // Copy the ASCII run up to the next non-ASCII character whole.
        let next = bytes[i..]
            .iter()
            .position(|b| !b.is_ascii())
            .map_or(bytes.len(), |p| i + p);
        let Some(c) = text[next..].chars().next() else {
            out.push_str(&text[i..]);
            break;
        };
        // A cluster: a character and the combining marks after it, the
        // unit NFKC may reorder or compose within. A mark after an ASCII
        // letter takes the letter into its cluster.
        let start = if next > i && canonical_combining_class(c) != 0 {
            next - 1
        } else {
            next
        };
        out.push_str(&text[i..start]);
        let mut end = next + c.len_utf8();
        for d in text[end..].chars() {
            if d.is_ascii() || canonical_combining_class(d) == 0 {
                break;
            }
            end += d.len_utf8();
        }
        i = end;
        let cluster = &text[start..end];
        // Most non-ASCII characters (letters of other scripts, symbols)
        // stay as they are.
        if end - start == c.len_utf8()
            && hidden_class(c).is_none()
            && latin_lookalike(c).is_none()
            && is_nfkc_quick(std::iter::once(c)) == IsNormalized::Yes
        {
            out.push(c);
            continue;
        }
        let norm_start = out.len();
        for d in cluster
            .chars()
            .filter(|&d| hidden_class(d).is_none())
            .nfkc()
        {
            out.push(latin_lookalike(d).unwrap_or(d));
        }
        if out[norm_start..] != *cluster {
            let (norm_width, orig_width) = (out.len() - norm_start, end - start);
            match segments.last_mut() {
                Some(run)
                    if run.norm_end == norm_start
                        && run.orig_end == start
                        && run.norm_width == norm_width
                        && run.orig_width == orig_width =>
                {
                    run.norm_end = out.len();
                    run.orig_end = end;
                }
                _ => segments.push(Segment {
                    norm_start,
                    norm_end: out.len(),
                    orig_start: start,
                    orig_end: end,
                    norm_width,
                    orig_width,
                }),
            }
        }
    }
    if segments.is_empty() {
        return borrowed;
    }
    Normalised {
        text: Cow::Owned(out),
        segments,
    }
}

/// Whether normalising could change `text` (a fast check over chars).
fn needs_change(text: &str) -> bool {
    text.chars()
        .any(|c| !c.is_ascii() && (hidden_class(c).is_some() || latin_lookalike(c).is_some()))
        || is_nfkc_quick(text.chars()) != IsNormalized::Yes
}

/// Run `detectors` over the normalised `text` and append their findings
/// to `found`, spans mapped back to `text`. The [`Hidden`] detector (by
/// name) is given the original text: normalising removes what it looks
/// for.
pub fn scan_normalised(detectors: &[Box<dyn Detector>], text: &str, found: &mut Vec<Finding>) {
    let normalised = normalise(text);
    for detector in detectors {
        if detector.name() == NAME {
            detector.scan(text, found);
            continue;
        }
        let first = found.len();
        detector.scan(normalised.as_str(), found);
        for finding in &mut found[first..] {
            finding.span = normalised.original(finding.span.clone());
        }
    }
}

/// The classes of invisible characters, as finding kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HiddenClass {
    ZeroWidth,
    Bidi,
    Tag,
    VariationSelector,
}

impl HiddenClass {
    fn kind(self) -> &'static str {
        match self {
            HiddenClass::ZeroWidth => "zero-width",
            HiddenClass::Bidi => "bidi-control",
            HiddenClass::Tag => "unicode-tag",
            HiddenClass::VariationSelector => "variation-selector",
        }
    }
}

/// Which invisible class `c` is in, if any.
fn hidden_class(c: char) -> Option<HiddenClass> {
    match c {
        // Zero-width space/non-joiner/joiner, word joiner and invisible
        // operators, BOM, soft hyphen, combining grapheme joiner,
        // Mongolian vowel separator, Hangul fillers (blank "names").
        '\u{200B}'..='\u{200D}'
        | '\u{2060}'..='\u{2064}'
        | '\u{FEFF}'
        | '\u{00AD}'
        | '\u{034F}'
        | '\u{180E}'
        | '\u{115F}'
        | '\u{1160}'
        | '\u{3164}'
        | '\u{FFA0}' => Some(HiddenClass::ZeroWidth),
        '\u{200E}'
        | '\u{200F}'
        | '\u{061C}'
        | '\u{202A}'..='\u{202E}'
        | '\u{2066}'..='\u{2069}' => Some(HiddenClass::Bidi),
        '\u{E0000}'..='\u{E007F}' => Some(HiddenClass::Tag),
        '\u{FE00}'..='\u{FE0F}'
        | '\u{E0100}'..='\u{E01EF}'
        | '\u{180B}'..='\u{180D}'
        | '\u{180F}' => Some(HiddenClass::VariationSelector),
        _ => None,
    }
}

/// The Latin letter (or ASCII sign) a character is drawn like, for the
/// characters NFKC leaves alone: Cyrillic, Greek and a few Latin
/// extensions and dashes.
fn latin_lookalike(c: char) -> Option<char> {
    Some(match c {
        // Cyrillic lower case.
        'а' => 'a',
        'в' => 'b',
        'е' | 'ё' => 'e',
        'һ' => 'h',
        'і' => 'i',
        'ї' => 'i',
        'ј' => 'j',
        'к' => 'k',
        'ӏ' => 'l',
        'м' => 'm',
        'н' => 'h',
        'о' => 'o',
        'р' => 'p',
        'ԛ' => 'q',
        'ѕ' => 's',
        'с' => 'c',
        'т' => 't',
        'у' => 'y',
        'ԝ' => 'w',
        'х' => 'x',
        'ԁ' => 'd',
        'ɡ' => 'g',
        // Cyrillic upper case.
        'А' => 'A',
        'В' => 'B',
        'Е' | 'Ё' => 'E',
        'З' => '3',
        'І' | 'Ӏ' => 'I',
        'Ј' => 'J',
        'К' => 'K',
        'М' => 'M',
        'Н' => 'H',
        'О' => 'O',
        'Р' => 'P',
        'Ԛ' => 'Q',
        'Ѕ' => 'S',
        'С' => 'C',
        'Т' => 'T',
        'У' | 'Ү' => 'Y',
        'Ԝ' => 'W',
        'Х' => 'X',
        // Greek upper case.
        'Α' => 'A',
        'Β' => 'B',
        'Ε' => 'E',
        'Ζ' => 'Z',
        'Η' => 'H',
        'Ι' => 'I',
        'Κ' => 'K',
        'Μ' => 'M',
        'Ν' => 'N',
        'Ο' => 'O',
        'Ρ' => 'P',
        'Τ' => 'T',
        'Υ' => 'Y',
        'Χ' => 'X',
        // Greek lower case.
        'α' => 'a',
        'ι' => 'i',
        'κ' => 'k',
        'ν' => 'v',
        'ο' => 'o',
        'ρ' => 'p',
        'υ' => 'u',
        'χ' => 'x',
        // Latin extensions and Armenian.
        'ı' => 'i',
        'ȷ' => 'j',
        'ɑ' => 'a',
        'ɩ' => 'i',
        'ʏ' => 'y',
        'օ' => 'o',
        'ո' => 'n',
        'ս' => 'u',
        // Dashes and minus signs NFKC keeps (tokens use '-').
        '\u{2010}'..='\u{2015}' | '\u{2212}' | '\u{FE58}' => '-',
        _ => return None,
    })
}

/// Unicode tag text in `text`: each run of tag characters with the ASCII
/// it spells (tags U+E0020–U+E007E mirror ASCII 0x20–0x7E), at most
/// 4096 characters decoded per run. Emoji flag sequences (a black flag
/// followed by a region's tags) are not smuggled text and are skipped.
pub fn decode_unicode_tags(text: &str) -> Vec<(Range<usize>, String)> {
    let mut runs = Vec::new();
    for_each_run(text, |class, span| {
        if class != HiddenClass::Tag || is_flag_sequence(text, &span) {
            return;
        }
        let decoded = text[span.clone()]
            .chars()
            .filter_map(|c| {
                let ascii = u32::from(c).checked_sub(0xE0000)?;
                u8::try_from(ascii)
                    .ok()
                    .filter(|b| (0x20..0x7F).contains(b))
                    .map(char::from)
            })
            .take(TAG_DECODE_MAX)
            .collect();
        runs.push((span, decoded));
    });
    runs
}

/// An emoji subdivision flag: U+1F3F4, tag letters, cancel tag.
fn is_flag_sequence(text: &str, span: &Range<usize>) -> bool {
    text[..span.start].ends_with('\u{1F3F4}')
        && text[span.clone()].ends_with('\u{E007F}')
        && text[span.clone()].chars().count() <= 8
}

/// Call `f` for each maximal run of invisible characters of one class.
fn for_each_run(text: &str, mut f: impl FnMut(HiddenClass, Range<usize>)) {
    if text.is_ascii() {
        return;
    }
    let mut run: Option<(HiddenClass, Range<usize>)> = None;
    for (i, c) in text.char_indices() {
        let class = if c.is_ascii() { None } else { hidden_class(c) };
        match (&mut run, class) {
            (Some((open, span)), Some(class)) if *open == class => span.end = i + c.len_utf8(),
            (_, class) => {
                if let Some((open, span)) = run.take() {
                    f(open, span);
                }
                run = class.map(|class| (class, i..i + c.len_utf8()));
            }
        }
    }
    if let Some((open, span)) = run {
        f(open, span);
    }
}

/// Reports hidden text: runs of invisible characters, Unicode tag text,
/// hidden HTML and base64 blobs that decode to text. Give it the original
/// text (not the normalised one): [`scan_normalised`] does.
#[derive(Debug, Clone)]
pub struct Hidden {
    kinds: Kinds,
}

#[derive(Debug, Clone)]
struct Kinds {
    zero_width: Arc<str>,
    bidi: Arc<str>,
    tag: Arc<str>,
    variation: Arc<str>,
    html: Arc<str>,
    base64: Arc<str>,
}

impl Default for Hidden {
    fn default() -> Self {
        Hidden {
            kinds: Kinds {
                zero_width: HiddenClass::ZeroWidth.kind().into(),
                bidi: HiddenClass::Bidi.kind().into(),
                tag: HiddenClass::Tag.kind().into(),
                variation: HiddenClass::VariationSelector.kind().into(),
                html: "hidden-html".into(),
                base64: "base64-text".into(),
            },
        }
    }
}

impl Hidden {
    fn finding(kind: &Arc<str>, span: Range<usize>, score: f32) -> Finding {
        Finding {
            detector: NAME,
            kind: kind.clone(),
            span,
            score,
        }
    }

    fn scan_invisible(&self, text: &str, found: &mut Vec<Finding>) {
        for_each_run(text, |class, span| {
            let score = match class {
                HiddenClass::ZeroWidth => {
                    // A BOM opening the text and a single joiner inside
                    // emoji or non-Latin script are ordinary writing.
                    if span.start == 0 && &text[span.clone()] == "\u{FEFF}" {
                        return;
                    }
                    let before = text[..span.start].chars().next_back();
                    let after = text[span.end..].chars().next();
                    let in_word = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
                    let single_joiner = matches!(&text[span.clone()], "\u{200D}" | "\u{200C}");
                    if in_word(before) && in_word(after) {
                        1.0
                    } else if single_joiner
                        && before.is_some_and(|c| !c.is_ascii())
                        && after.is_some_and(|c| !c.is_ascii())
                    {
                        return;
                    } else {
                        0.6
                    }
                }
                HiddenClass::Bidi => {
                    // Marks (LRM, RLM, ALM) are common in right-to-left
                    // text; embeddings, overrides and isolates reorder
                    // what is shown ("Trojan Source").
                    if text[span.clone()]
                        .chars()
                        .all(|c| matches!(c, '\u{200E}' | '\u{200F}' | '\u{061C}'))
                    {
                        0.4
                    } else {
                        1.0
                    }
                }
                HiddenClass::Tag => {
                    if is_flag_sequence(text, &span) {
                        return;
                    }
                    1.0
                }
                HiddenClass::VariationSelector => {
                    // One selector after a character picks its glyph
                    // (emoji); a run of them carries data.
                    if text[span.clone()].chars().nth(1).is_none() {
                        return;
                    }
                    1.0
                }
            };
            let kind = match class {
                HiddenClass::ZeroWidth => &self.kinds.zero_width,
                HiddenClass::Bidi => &self.kinds.bidi,
                HiddenClass::Tag => &self.kinds.tag,
                HiddenClass::VariationSelector => &self.kinds.variation,
            };
            found.push(Self::finding(kind, span, score));
        });
    }

    fn scan_html(&self, text: &str, found: &mut Vec<Finding>) {
        if !text.contains('<') {
            return;
        }
        for m in HTML_COMMENT.find_iter(text) {
            found.push(Self::finding(&self.kinds.html, m.range(), 1.0));
        }
        for caps in HTML_STYLED.captures_iter(text) {
            let (Some(tag), Some(whole)) = (caps.get(1), caps.get(0)) else {
                continue;
            };
            let attrs = caps.get(2).map_or("", |m| m.as_str());
            let hidden_style = STYLE_ATTR
                .captures(attrs)
                .and_then(|c| c.get(1))
                .is_some_and(|style| HIDING_STYLE.is_match(style.as_str()));
            if !hidden_style && !HIDDEN_ATTR.is_match(attrs) {
                continue;
            }
            let end = if whole.as_str().ends_with("/>") {
                whole.end()
            } else {
                element_end(text, whole.end(), tag.as_str()).unwrap_or(whole.end())
            };
            found.push(Self::finding(&self.kinds.html, whole.start()..end, 1.0));
        }
    }

    fn scan_base64(&self, text: &str, found: &mut Vec<Finding>) {
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if !is_base64_byte(bytes[i]) {
                i += 1;
                continue;
            }
            let start = i;
            while i < bytes.len() && is_base64_byte(bytes[i]) {
                i += 1;
            }
            let mut end = i;
            while end < bytes.len() && end - i < 2 && bytes[end] == b'=' {
                end += 1;
            }
            if i - start >= BASE64_MIN && decodes_to_text(&text[start..i]) {
                found.push(Self::finding(&self.kinds.base64, start..end, 1.0));
            }
            i = end.max(i);
        }
    }
}

impl Detector for Hidden {
    fn name(&self) -> &'static str {
        NAME
    }

    fn scan(&self, text: &str, found: &mut Vec<Finding>) {
        self.scan_invisible(text, found);
        self.scan_html(text, found);
        self.scan_base64(text, found);
    }
}

static HTML_COMMENT: LazyLock<Regex> = LazyLock::new(|| {
    // An unterminated comment hides the rest of the page.
    Regex::new(r"(?s)<!--(?:.*?-->|.*\z)").expect("constant pattern (tested)")
});

/// An opening tag (name in group 1, attributes in group 2) whose
/// attributes mention `hidden` or `style`.
static HTML_STYLED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)<([a-z][a-z0-9]{0,15})(?-u:\b)([^<>]*(?:hidden|style)[^<>]*)>")
        .expect("constant pattern (tested)")
});

/// A `hidden` attribute.
static HIDDEN_ATTR: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(?:^|\s)hidden(?:\s|=|/|$)").expect("constant pattern (tested)")
});

/// A style attribute's value (group 1).
static STYLE_ATTR: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?i)(?:^|\s)style\s*=\s*("[^"]*"|'[^']*')"#).expect("constant pattern (tested)")
});

static HIDING_STYLE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)display\s*:\s*none|visibility\s*:\s*hidden|font-size\s*:\s*0(?:\.0*)?(?:px|pt|em|rem|%)?\s*(?:;|!|$|'|\x22)|opacity\s*:\s*0(?:\.0*)?\s*(?:;|!|$|'|\x22)",
    )
    .expect("constant pattern (tested)")
});

/// Where the element opened by `<tag …>` (ending at `from`) closes,
/// counting nested elements of the same name; bounded.
fn element_end(text: &str, from: usize, tag: &str) -> Option<usize> {
    let limit = (from + HTML_ELEMENT_MAX).min(text.len());
    let bytes = text.as_bytes().get(from..limit)?;
    let tag = tag.as_bytes();
    let mut depth = 1usize;
    let mut i = 0;
    while let Some(off) = bytes[i..].iter().position(|&b| b == b'<') {
        i += off + 1;
        let closing = bytes.get(i) == Some(&b'/');
        let name_at = i + usize::from(closing);
        let name_end = name_at + tag.len();
        let Some(name) = bytes.get(name_at..name_end) else {
            break;
        };
        let boundary = bytes
            .get(name_end)
            .is_none_or(|b| !b.is_ascii_alphanumeric());
        if !name.eq_ignore_ascii_case(tag) || !boundary {
            continue;
        }
        if closing {
            depth -= 1;
            if depth == 0 {
                let close = bytes[name_end..].iter().position(|&b| b == b'>')?;
                return Some(from + name_end + close + 1);
            }
        } else {
            depth += 1;
        }
    }
    None
}

fn is_base64_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_')
}

/// Whether a base64 run decodes to mostly printable UTF-8 text (judged on
/// its first [`BASE64_SAMPLE`] characters).
fn decodes_to_text(run: &str) -> bool {
    let url_safe = run.contains(['-', '_']);
    if url_safe && run.contains(['+', '/']) {
        return false;
    }
    // Whole quanta only, so a sample cut from a longer run decodes.
    let take = run.len().min(BASE64_SAMPLE) / 4 * 4;
    let engine = if url_safe {
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
    } else {
        &base64::engine::general_purpose::STANDARD_NO_PAD
    };
    let Ok(bytes) = engine.decode(&run[..take]) else {
        return false;
    };
    let text = match std::str::from_utf8(&bytes) {
        Ok(text) => text,
        // A sample may cut a character in two at its end.
        Err(e) if bytes.len() - e.valid_up_to() < 4 && e.error_len().is_none() => {
            match std::str::from_utf8(&bytes[..e.valid_up_to()]) {
                Ok(text) => text,
                Err(_) => return false,
            }
        }
        Err(_) => return false,
    };
    let (mut total, mut printable) = (0usize, 0usize);
    for c in text.chars() {
        total += 1;
        if !c.is_control() || matches!(c, '\n' | '\r' | '\t') {
            printable += 1;
        }
    }
    total > 0 && printable * 100 >= total * 95
}

#[cfg(test)]
#[path = "hidden_tests.rs"]
mod tests;
