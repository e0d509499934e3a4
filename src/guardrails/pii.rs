//! Personal data: the PII detector. Finds, as findings of detector `pii`:
//!
//! | kind | what | how it is checked |
//! |---|---|---|
//! | `email` | `local@domain.tld` | practical RFC 5322 subset: dot-atom local part (≤ 64), domain of ≥ 2 labels (LDH, ≤ 63 each), alphabetic TLD of 2–24 letters or `xn--`; not `user@localhost`, not `obj@host.method()` in code, not image names like `icon@2x.png` |
//! | `phone` | international numbers (`+` or `00`), NANP numbers in a clear format (`(415) 555-0132`, `415-555-0132`), national numbers with a trunk `0` next to a word such as "phone" | country code and national number length (and leading digits) for 56 countries; NANP area and exchange codes; other `+` numbers of 8–15 digits only at score 0.5 |
//! | `card` | 13–19 digits, grouped with spaces or dashes or not | Luhn, and the issuer ranges of Visa, Mastercard, Amex, Discover, JCB, Diners, UnionPay, Maestro, Mir, RuPay, Troy with their lengths |
//! | `iban` | 2 letters, 2 check digits, BBAN; with or without spaces in groups of 4 | the registry length of each of the IBAN countries, mod 97 = 1 |
//! | `us-ssn` | `AAA-GG-SSSS`; undashed or spaced only next to a word such as "SSN" | area not 000, 666 or 900–999; group not 00; serial not 0000 |
//! | `ipv4`, `ipv6` | addresses | `std::net` parsing; public addresses score 1.0, private/unique-local/link-local 0.5, loopback, unspecified, documentation, multicast and reserved ranges 0.2 (they say little about a person) |
//! | user kinds | [`CustomPattern`] | the user's regex, and optional context words within 64 bytes |
//!
//! Not detected, because finding them in free text needs a language
//! model, not a pattern: names, postal addresses, dates of birth, national
//! ids other than the US SSN (unless the user adds a pattern), phone
//! numbers written in words, lowercase or partial IBANs, numbers split by
//! line breaks. Numbers of other countries without a `+`/`00` prefix are
//! only found next to a phone word.
//!
//! Cost: one pass over the bytes learns whether there is an `@`, a digit
//! or a colon at all; emails are looked for at each `@` only, IPv6 where
//! colons are; the number-shaped families (card, IBAN, SSN, phone, IPv4)
//! run only inside "numeric windows" (digits, capitals and number
//! punctuation joined by single spaces, lower-case prose breaks them),
//! each only when the window holds enough digits for it. Where built-in
//! findings overlap, the stricter type wins (a card number is not also a
//! phone number). The checksum code (Luhn, mod 97) is ours: both are a few
//! lines and fully specified.
//!
//! Spans are byte offsets into the text given; run it through
//! [`super::hidden::scan_normalised`] so fullwidth digits or zero-width
//! characters inside a number do not hide it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::Range;
use std::sync::{Arc, LazyLock};

use regex::{Regex, RegexBuilder};

use super::{Detector, Finding};

mod checks;

use checks::*;

/// The detector's name, as in [`Finding::detector`].
pub const NAME: &str = "pii";

/// How far (bytes, each side) context words are looked for.
pub const CONTEXT_WINDOW: usize = 64;

/// The compiled size a user pattern may take (bounds memory and the time
/// to build it).
const CUSTOM_REGEX_SIZE: usize = 1 << 20;

/// A user-defined PII type: a regex, and optionally words that must occur
/// near a match for it to count.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomPattern {
    /// The finding's kind (`employee-id`).
    pub kind: String,
    /// A Rust regex (no look-around, no back-references).
    pub regex: String,
    /// Words (case-insensitive) of which one must occur within
    /// [`CONTEXT_WINDOW`] bytes of a match; empty: every match counts.
    pub context: Vec<String>,
    /// The findings' score, 0.0–1.0.
    pub score: f32,
}

/// Why a set of PII patterns could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PiiError {
    #[error("PII pattern #{index}: the kind is empty; name it (e.g. `employee-id`)")]
    EmptyKind { index: usize },
    #[error(
        "PII pattern `{kind}`: the regex does not compile ({source}); use Rust regex syntax (no look-around or back-references)"
    )]
    BadRegex {
        kind: String,
        #[source]
        source: Box<regex::Error>,
    },
    #[error(
        "PII pattern `{kind}`: the regex matches the empty string, so it would flag every position; make it need at least one character"
    )]
    MatchesEmpty { kind: String },
    #[error("PII pattern `{kind}`: score {score} is not within 0.0–1.0")]
    BadScore { kind: String, score: f32 },
    #[error("PII pattern `{kind}`: context word #{index} is empty; remove it")]
    EmptyContext { kind: String, index: usize },
}

struct Custom {
    kind: Arc<str>,
    regex: Regex,
    /// Lower-cased.
    context: Vec<String>,
    score: f32,
}

/// The PII detector: built-in types and the user's patterns, compiled
/// once.
pub struct Pii {
    kinds: Kinds,
    custom: Vec<Custom>,
}

struct Kinds {
    email: Arc<str>,
    phone: Arc<str>,
    card: Arc<str>,
    iban: Arc<str>,
    ssn: Arc<str>,
    ipv4: Arc<str>,
    ipv6: Arc<str>,
}

impl Default for Pii {
    fn default() -> Self {
        Pii {
            kinds: Kinds {
                email: "email".into(),
                phone: "phone".into(),
                card: "card".into(),
                iban: "iban".into(),
                ssn: "us-ssn".into(),
                ipv4: "ipv4".into(),
                ipv6: "ipv6".into(),
            },
            custom: Vec::new(),
        }
    }
}

impl std::fmt::Debug for Pii {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pii")
            .field(
                "custom",
                &self.custom.iter().map(|c| &*c.kind).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Pii {
    /// The built-in types plus `custom`; every pattern is checked and
    /// compiled here, so scanning cannot fail.
    pub fn new(custom: Vec<CustomPattern>) -> Result<Pii, PiiError> {
        let mut pii = Pii::default();
        for (index, pattern) in custom.into_iter().enumerate() {
            let CustomPattern {
                kind,
                regex,
                context,
                score,
            } = pattern;
            if kind.trim().is_empty() {
                return Err(PiiError::EmptyKind { index });
            }
            if !(0.0..=1.0).contains(&score) {
                return Err(PiiError::BadScore { kind, score });
            }
            if let Some(index) = context.iter().position(|w| w.trim().is_empty()) {
                return Err(PiiError::EmptyContext { kind, index });
            }
            let compiled = match RegexBuilder::new(&regex)
                .size_limit(CUSTOM_REGEX_SIZE)
                .dfa_size_limit(CUSTOM_REGEX_SIZE)
                .build()
            {
                Ok(compiled) => compiled,
                Err(e) => {
                    return Err(PiiError::BadRegex {
                        kind,
                        source: Box::new(e),
                    });
                }
            };
            if compiled.is_match("") {
                return Err(PiiError::MatchesEmpty { kind });
            }
            pii.custom.push(Custom {
                kind: kind.into(),
                regex: compiled,
                context: context.iter().map(|w| w.trim().to_lowercase()).collect(),
                score,
            });
        }
        Ok(pii)
    }
}

impl Detector for Pii {
    fn name(&self) -> &'static str {
        NAME
    }

    fn scan(&self, text: &str, found: &mut Vec<Finding>) {
        let first = found.len();
        let mut scan = Scan {
            text,
            found,
            first,
            kinds: &self.kinds,
        };
        let bytes = text.as_bytes();
        // One pass to learn which families can match at all.
        let (mut digit, mut at, mut colon) = (false, false, false);
        for &b in bytes {
            digit |= b.is_ascii_digit();
            at |= b == b'@';
            colon |= b == b':';
        }
        if at {
            scan.emails();
        }
        if digit {
            if colon {
                scan.ipv6();
            }
            scan.numbers();
        }
        scan.resolve_overlaps();
        for custom in &self.custom {
            for m in custom.regex.find_iter(text) {
                if m.is_empty() {
                    continue;
                }
                if custom.context.is_empty()
                    || near(text, m.range(), custom.context.iter().map(String::as_str))
                {
                    scan.found.push(Finding {
                        detector: NAME,
                        kind: custom.kind.clone(),
                        span: m.range(),
                        score: custom.score,
                    });
                }
            }
        }
    }
}

/// One scan's state: the text and the findings so far.
struct Scan<'t, 'f> {
    text: &'t str,
    found: &'f mut Vec<Finding>,
    /// Where this scan's findings start in `found`.
    first: usize,
    kinds: &'t Kinds,
}

impl Scan<'_, '_> {
    fn push(&mut self, kind: &Arc<str>, span: Range<usize>, score: f32) {
        self.found.push(Finding {
            detector: NAME,
            kind: kind.clone(),
            span,
            score,
        });
    }

    /// Where built-in findings overlap, keep the stricter type's (a card
    /// number is not also a phone number; an IPv4 address inside an IPv6
    /// one is part of it). One sort and one sweep, in place.
    fn resolve_overlaps(&mut self) {
        let first = self.first;
        let found = &mut *self.found;
        found[first..].sort_unstable_by_key(|f| (f.span.start, rank(&f.kind)));
        let mut kept = first;
        for next in first..found.len() {
            if kept > first && found[kept - 1].span.end > found[next].span.start {
                let (a, b) = (&found[kept - 1], &found[next]);
                // The stricter type wins, unless it was found only by a
                // context word inside a longer match of another type (the
                // nine digits of `+49 (0) 361735829` near "ssn").
                let inside = |x: &Finding, y: &Finding| {
                    x.score < 1.0
                        && y.span.start <= x.span.start
                        && x.span.end <= y.span.end
                        && x.span != y.span
                };
                let b_wins = if inside(a, b) {
                    true
                } else if inside(b, a) {
                    false
                } else {
                    rank(&b.kind) < rank(&a.kind)
                };
                if b_wins {
                    found.swap(kept - 1, next);
                }
                continue;
            }
            found.swap(kept, next);
            kept += 1;
        }
        found.truncate(kept);
    }

    fn emails(&mut self) {
        let bytes = self.text.as_bytes();
        let mut from = 0;
        while let Some(off) = bytes[from..].iter().position(|&b| b == b'@') {
            let at = from + off;
            from = at + 1;
            if let Some(span) = email_at(bytes, at) {
                from = span.end;
                let kinds = self.kinds;
                self.push(&kinds.email, span, 1.0);
            }
        }
    }

    /// Run the number-shaped families over each window that could hold
    /// one (see [`numeric_windows`]), each only where the window has
    /// enough digits for it.
    fn numbers(&mut self) {
        numeric_windows(self.text.as_bytes(), |w, shape| {
            // A card has 12+ digits in one chain, an SSN 9, a phone number
            // 9 (8 after a `+`); `2024-01-15` (8) runs none of them.
            if shape.longest_chain >= 12 {
                self.cards(&w);
            }
            if w.len() >= 15 {
                self.ibans(&w);
            }
            if shape.longest_chain >= 9 {
                self.ssns(&w);
            }
            if shape.longest_chain >= 9 || (shape.plus && shape.longest_chain >= 6) {
                self.phones(&w);
            }
            if shape.dots >= 3 {
                self.ipv4(&w);
            }
        });
    }

    fn cards(&mut self, w: &Range<usize>) {
        for (span, s) in matches(&CARD, self.text, w) {
            let score = match card(s) {
                Some(true) => 1.0,
                // A valid number of no issuer we know (or a 12-digit
                // Maestro): a card where the text calls it one.
                Some(false) if near(self.text, span.clone(), CARD_WORDS.iter().copied()) => 0.8,
                _ => continue,
            };
            let kinds = self.kinds;
            self.push(&kinds.card, span, score);
        }
    }

    fn ibans(&mut self, w: &Range<usize>) {
        for (span, s) in matches(&IBAN, self.text, w) {
            if let Some(len) = iban_len(s) {
                let kinds = self.kinds;
                self.push(&kinds.iban, span.start..span.start + len, 1.0);
            }
        }
    }

    fn ssns(&mut self, w: &Range<usize>) {
        for (span, s) in matches(&SSN, self.text, w) {
            let s = s.as_bytes();
            let dashed = s.get(3) == Some(&b'-') && s.get(6) == Some(&b'-');
            let plain = !s.contains(&b'-');
            if !(dashed || plain) || !is_ssn(s) {
                continue;
            }
            // Nine digits are common (ids, amounts): only with a word
            // that says what they are.
            if dashed {
                let kinds = self.kinds;
                self.push(&kinds.ssn, span, 1.0);
            } else if near(self.text, span.clone(), SSN_WORDS.iter().copied()) {
                let kinds = self.kinds;
                self.push(&kinds.ssn, span, 0.8);
            }
        }
    }

    fn phones(&mut self, w: &Range<usize>) {
        let bytes = self.text.as_bytes();
        for (span, s) in matches(&PHONE_INTL, self.text, w) {
            // `+` must not follow a word or a number (`a+12…`, `3+44…`).
            if span.start > 0
                && bytes[span.start] == b'+'
                && bytes[span.start - 1].is_ascii_alphanumeric()
            {
                continue;
            }
            if let Some((end, score)) = international_phone(s) {
                let kinds = self.kinds;
                self.push(&kinds.phone, span.start..span.start + end, score);
            }
        }
        for (span, s) in matches(&PHONE_NANP, self.text, w) {
            let glued = |b: Option<&u8>| b.is_some_and(|&b| matches!(b, b'.' | b'-' | b'+' | b'/'));
            // The number without its extension (`x123`, `ext. 123`).
            let number = s.split(['x', 'e']).next().unwrap_or(s);
            if glued(span.start.checked_sub(1).and_then(|i| bytes.get(i)))
                || (glued(bytes.get(span.end))
                    && bytes.get(span.end + 1).is_some_and(u8::is_ascii_digit))
                || !is_nanp(number)
            {
                continue;
            }
            let kinds = self.kinds;
            self.push(&kinds.phone, span, 0.9);
        }
        for (span, s) in matches(&PHONE_NATIONAL, self.text, w) {
            let digits = s.bytes().filter(u8::is_ascii_digit).count();
            if (9..=11).contains(&digits)
                && near(self.text, span.clone(), PHONE_WORDS.iter().copied())
            {
                let kinds = self.kinds;
                self.push(&kinds.phone, span, 0.8);
            }
        }
        // An unformatted run of digits is a phone number only where the
        // text says so.
        for (span, s) in matches(&DIGIT_RUN, self.text, w) {
            if (9..=11).contains(&s.len())
                && near(self.text, span.clone(), PHONE_WORDS.iter().copied())
            {
                let kinds = self.kinds;
                self.push(&kinds.phone, span, 0.6);
            }
        }
    }

    fn ipv4(&mut self, w: &Range<usize>) {
        let bytes = self.text.as_bytes();
        for (span, s) in matches(&IPV4, self.text, w) {
            // Part of a longer dotted number (a version, an OID) or of an IPv6
            // address (found before).
            let before = span.start.checked_sub(1).and_then(|i| bytes.get(i));
            let after = bytes.get(span.end..span.end + 2);
            if before.is_some_and(|&b| b == b'.' || b == b':')
                || after.is_some_and(|a| a[0] == b'.' && a[1].is_ascii_digit())
            {
                continue;
            }
            let Ok(ip) = s.parse::<Ipv4Addr>() else {
                continue;
            };
            let kinds = self.kinds;
            self.push(&kinds.ipv4, span, ip_score(IpAddr::V4(ip)));
        }
    }

    fn ipv6(&mut self) {
        let bytes = self.text.as_bytes();
        for m in IPV6.find_iter(self.text) {
            let mut span = m.range();
            let word = |b: Option<&u8>| b.is_some_and(|&b| b.is_ascii_alphanumeric() || b == b'_');
            if word(span.start.checked_sub(1).and_then(|i| bytes.get(i)))
                || word(bytes.get(span.end))
            {
                continue;
            }
            // A sentence's colon after an address (`at fe80::1: done`).
            if self.text[span.clone()].ends_with(':') && !self.text[span.clone()].ends_with("::") {
                span.end -= 1;
            }
            let candidate = &self.text[span.clone()];
            if candidate.bytes().filter(|&b| b == b':').count() < 2
                || !candidate.bytes().any(|b| b.is_ascii_digit())
            {
                continue;
            }
            let Ok(ip) = candidate.parse::<Ipv6Addr>() else {
                continue;
            };
            let kinds = self.kinds;
            self.push(&kinds.ipv6, span, ip_score(IpAddr::V6(ip)));
        }
    }
}

/// `re`'s matches in the window `w` of `text`, spans in `text`.
fn matches<'a>(
    re: &'a Regex,
    text: &'a str,
    w: &Range<usize>,
) -> impl Iterator<Item = (Range<usize>, &'a str)> {
    let offset = w.start;
    re.find_iter(&text[w.clone()])
        .map(move |m| (offset + m.start()..offset + m.end(), m.as_str()))
}

/// Call `f` with each stretch of `bytes` that could hold a number-shaped
/// type, with its count of digits and dots: runs of digits, upper-case
/// letters (IBANs) and number punctuation joined by single spaces, with
/// at least 4 digits, widened to whole words so `\b` in a window means
/// what it means in the text. Lower-case prose breaks windows, so prose
/// costs this loop only.
fn numeric_windows(bytes: &[u8], mut f: impl FnMut(Range<usize>, Shape)) {
    let in_set = |b: u8| {
        b.is_ascii_digit()
            || b.is_ascii_uppercase()
            || matches!(b, b'+' | b'-' | b'.' | b'/' | b'(' | b')' | b':')
    };
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut i = 0;
    // Where the last window ended: windows never overlap.
    let mut floor = 0;
    while i < bytes.len() {
        if !in_set(bytes[i]) {
            i += 1;
            continue;
        }
        let mut start = i;
        let mut shape = Shape::default();
        loop {
            while i < bytes.len() && in_set(bytes[i]) {
                shape.feed(bytes[i]);
                i += 1;
            }
            if i + 1 < bytes.len() && bytes[i] == b' ' && in_set(bytes[i + 1]) {
                shape.feed(b' ');
                i += 1;
            } else {
                break;
            }
        }
        while i < bytes.len() && word(bytes[i]) {
            shape.feed(bytes[i]);
            i += 1;
        }
        if shape.digits >= 4 {
            while start > floor && word(bytes[start - 1]) {
                start -= 1;
            }
            f(start..i, shape);
        }
        floor = i;
    }
}

/// What a numeric window holds, to skip the families it cannot match.
#[derive(Debug, Default, Clone, Copy)]
struct Shape {
    digits: usize,
    dots: usize,
    plus: bool,
    /// The most digits in one chain: digits joined by at most two of
    /// ` -./()` in a row (how cards, phone numbers and SSNs are written).
    longest_chain: usize,
    chain: usize,
    separators: usize,
}

impl Shape {
    fn feed(&mut self, b: u8) {
        if b.is_ascii_digit() {
            self.digits += 1;
            self.chain += 1;
            self.separators = 0;
            self.longest_chain = self.longest_chain.max(self.chain);
            return;
        }
        self.dots += usize::from(b == b'.');
        self.plus |= b == b'+';
        self.separators += 1;
        if self.separators > 2 || !matches!(b, b' ' | b'-' | b'.' | b'/' | b'(' | b')') {
            self.chain = 0;
        }
    }
}

/// How strict a built-in type's checks are: the lower wins an overlap.
fn rank(kind: &str) -> u8 {
    match kind {
        "email" => 0,
        "card" => 1,
        "iban" => 2,
        "us-ssn" => 3,
        "ipv6" => 4,
        "ipv4" => 5,
        _ => 6,
    }
}

/// Whether one of `words` (lower case) starts a word within
/// [`CONTEXT_WINDOW`] bytes of `span`, ignoring ASCII case (`tel` in
/// "telephone", not in "hotel").
fn near<'w>(text: &str, span: Range<usize>, words: impl Iterator<Item = &'w str>) -> bool {
    let bytes = text.as_bytes();
    let from = span.start.saturating_sub(CONTEXT_WINDOW);
    let window = &bytes[from..(span.end + CONTEXT_WINDOW).min(bytes.len())];
    let starts_word = |i: usize| from + i == 0 || !bytes[from + i - 1].is_ascii_alphabetic();
    let mut words = words;
    words.any(|w| {
        let w = w.as_bytes();
        !w.is_empty()
            && window
                .windows(w.len())
                .enumerate()
                .any(|(i, s)| s.eq_ignore_ascii_case(w) && starts_word(i))
    })
}

const SSN_WORDS: &[&str] = &[
    "ssn",
    "social security",
    "social sec",
    "ss#",
    "ss no",
    "taxpayer id",
    "tin",
];
const CARD_WORDS: &[&str] = &[
    "card",
    "credit",
    "debit",
    "visa",
    "mastercard",
    "amex",
    "maestro",
    "jcb",
    "karte",
    "tarjeta",
    "carte",
    "carta",
    "kaart",
];
const PHONE_WORDS: &[&str] = &[
    "phone",
    "tel",
    "mobile",
    "cell",
    "call",
    "fax",
    "contact",
    "whatsapp",
    "handy",
    "telefon",
    "tél",
    "portable",
    "móvil",
    "movil",
    "telefono",
    "teléfono",
];

// (?-u:\b): ASCII word boundaries keep the regexes on the fast DFA.
static CARD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?-u:\b)\d(?:[ \-]?\d){11,18}(?-u:\b)").expect("constant pattern (tested)")
});
static IBAN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?-u:\b)[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?-u:\b)")
        .expect("constant pattern (tested)")
});
static SSN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?-u:\b)\d{3}[\- ]?\d{2}[\- ]?\d{4}(?-u:\b)").expect("constant pattern (tested)")
});
static PHONE_INTL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:\+|(?-u:\b)00)[1-9](?:[ \-./]{0,2}\(?\d{1,6}\)?){1,8}")
        .expect("constant pattern (tested)")
});
static PHONE_NANP: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:(?-u:\b)1[ .\-])?(?:\(\d{3}\) ?|(?-u:\b)\d{3}[ .\-])\d{3}[ .\-]\d{4}(?:(?:x|ext\.? ?)\d{1,6})?(?-u:\b)")
        .expect("constant pattern (tested)")
});
static PHONE_NATIONAL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:(?-u:\b)0\d{1,4}[ \-/]|\(0\d{1,4}\)[ \-]?)\d{2,8}(?:[ \-]\d{2,4}){0,3}(?-u:\b)")
        .expect("constant pattern (tested)")
});
static DIGIT_RUN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?-u:\b)\d{9,11}(?-u:\b)").expect("constant pattern (tested)"));
static IPV4: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?-u:\b)(?:\d{1,3}\.){3}\d{1,3}(?-u:\b)").expect("constant pattern (tested)")
});
static IPV6: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)[0-9a-f]{0,4}(?::[0-9a-f]{0,4}){2,7}(?:\.\d{1,3}){0,3}")
        .expect("constant pattern (tested)")
});

/// The email whose `@` is at `at`, if the bytes around it make one.
fn email_at(bytes: &[u8], at: usize) -> Option<Range<usize>> {
    let local_byte = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+/=?^_`{|}~.-".contains(&b);
    let mut start = at;
    while start > 0 && at - start < 64 && local_byte(bytes[start - 1]) {
        start -= 1;
    }
    // Quote-like and slash characters are legal but in running text they
    // are the surrounding punctuation, not the address.
    while start < at
        && matches!(
            bytes[start],
            b'.' | b'\'' | b'`' | b'/' | b'{' | b'|' | b'='
        )
    {
        start += 1;
    }
    let local = &bytes[start..at];
    if local.is_empty() || local.ends_with(b".") || local.windows(2).any(|w| w == b"..") {
        return None;
    }
    let domain_byte = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'.';
    let mut end = at + 1;
    while end < bytes.len() && end - at <= 253 && domain_byte(bytes[end]) {
        end += 1;
    }
    // A sentence's full stop or a hyphen after the address.
    while end > at + 1 && matches!(bytes[end - 1], b'.' | b'-') {
        end -= 1;
    }
    let domain = &bytes[at + 1..end];
    // Code: `obj@host.method(`.
    if bytes.get(end) == Some(&b'(') {
        return None;
    }
    let labels = domain.split(|&b| b == b'.');
    let mut count = 0;
    let mut last: &[u8] = &[];
    for label in labels {
        if label.is_empty() || label.len() > 63 || label.starts_with(b"-") || label.ends_with(b"-")
        {
            return None;
        }
        count += 1;
        last = label;
    }
    let first = domain.split(|&b| b == b'.').next().unwrap_or_default();
    let tld_ok = (2..=24).contains(&last.len()) && last.iter().all(u8::is_ascii_alphabetic)
        || last.len() > 4 && last[..4].eq_ignore_ascii_case(b"xn--");
    // `icon@2x.png`: image densities and file extensions are not domains.
    let file_like = matches!(first, [b'1'..=b'9', b'x'])
        || FILE_EXTENSIONS.iter().any(|e| last.eq_ignore_ascii_case(e));
    (count >= 2 && tld_ok && !file_like).then_some(start..end)
}

/// Extensions that are not top-level domains, seen after `@` in code.
const FILE_EXTENSIONS: &[&[u8]] = &[
    b"png", b"jpg", b"jpeg", b"gif", b"svg", b"webp", b"bmp", b"ico", b"tiff", b"html", b"htm",
    b"css", b"js", b"mjs", b"json", b"yaml", b"yml", b"toml", b"lock", b"txt", b"tsx", b"jsx",
    b"scss", b"vue",
];

#[cfg(test)]
#[path = "pii_tests.rs"]
mod tests;
