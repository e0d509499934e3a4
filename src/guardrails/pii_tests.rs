//! Tests for the PII detector: positives and negatives per type, exact
//! spans, custom patterns, and a throughput figure (`--nocapture`).

use super::*;

fn scan(text: &str) -> Vec<(String, String, f32)> {
    scan_with(&Pii::default(), text)
}

fn scan_with(pii: &Pii, text: &str) -> Vec<(String, String, f32)> {
    let mut found = Vec::new();
    pii.scan(text, &mut found);
    found
        .iter()
        .map(|f| {
            (
                f.kind.to_string(),
                text[f.span.clone()].to_string(),
                f.score,
            )
        })
        .collect()
}

/// The matched texts of one kind.
fn of(kind: &str, text: &str) -> Vec<String> {
    scan(text)
        .into_iter()
        .filter(|(k, ..)| k == kind)
        .map(|(_, m, _)| m)
        .collect()
}

#[test]
fn emails() {
    let text = "Write to john.doe+tag@example.co.uk or <ops@mail.xn--p1ai>, then x@example.com.";
    assert_eq!(
        of("email", text),
        [
            "john.doe+tag@example.co.uk",
            "ops@mail.xn--p1ai",
            "x@example.com"
        ]
    );
    for negative in [
        "user@localhost",
        "a@b",
        "call foo@bar.baz() now",
        "<img src=\"icon@2x.png\">",
        "@decorator and @scope/package",
        "john..doe@example.com",
        "me@-bad.com",
        "me@example.c0m",
        "config@app.json",
    ] {
        assert_eq!(of("email", negative), Vec::<String>::new(), "{negative}");
    }
}

#[test]
fn cards() {
    for card in [
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "4111111111111111",
        "5555 5555 5555 4444",
        "2223 0031 2200 3222",
        "3782 822463 10005",
        "6011 1111 1111 1117",
        "3530 1113 3330 0000",
        "3056 9309 0259 04",
        "6200 0000 0000 0005",
    ] {
        let text = format!("card: {card}, exp 12/29");
        assert_eq!(of("card", &text), [card], "{card}");
    }
    for negative in [
        "4111 1111 1111 1112",     // Luhn
        "9123456789012348",        // Luhn-valid, no issuer
        "4111 1111-1111 1111",     // mixed separators
        "41 1111 1111 1111 11",    // not card grouping
        "37828224631000511",       // Amex prefix, wrong length
        "order 41111111111111110", // longer digit run
    ] {
        assert_eq!(of("card", negative), Vec::<String>::new(), "{negative}");
    }
}

#[test]
fn ibans() {
    for iban in [
        "DE89 3704 0044 0532 0130 00",
        "DE89370400440532013000",
        "GB82 WEST 1234 5698 7654 32",
        "FR14 2004 1010 0505 0001 3M02 606",
        "NL91 ABNA 0417 1643 00",
        "BE68 5390 0754 7034",
        "CH93 0076 2011 6238 5295 7",
        "ES91 2100 0418 4502 0005 1332",
        "NO93 8601 1117 947",
    ] {
        let text = format!("IBAN {iban} please");
        assert_eq!(of("iban", &text), [iban], "{iban}");
    }
    // Followed by more groups: the IBAN ends at its country's length.
    assert_eq!(
        of("iban", "NL91 ABNA 0417 1643 00 REF 2024"),
        ["NL91 ABNA 0417 1643 00"]
    );
    for negative in [
        "DE89 3704 0044 0532 0130 01", // mod 97
        "DE89 3704 0044 0532 0130",    // too short for DE
        "ZZ89 3704 0044 0532 0130 00", // no such country
        "GB82WEST12345698765432X",     // runs on
    ] {
        assert_eq!(of("iban", negative), Vec::<String>::new(), "{negative}");
    }
}

#[test]
fn ssns() {
    assert_eq!(of("us-ssn", "id 536-22-1234 on file"), ["536-22-1234"]);
    assert_eq!(of("us-ssn", "SSN: 536221234"), ["536221234"]);
    assert_eq!(
        of("us-ssn", "social security number 536 22 1234"),
        ["536 22 1234"]
    );
    for negative in [
        "order 536221234", // undashed, no context
        "000-12-3456",     // area 000
        "666-12-3456",     // area 666
        "912-34-5678",     // area 9xx
        "536-00-1234",     // group 00
        "536-22-0000",     // serial 0000
        "536-221234 ssn",  // half dashed
    ] {
        assert_eq!(of("us-ssn", negative), Vec::<String>::new(), "{negative}");
    }
}

#[test]
fn phones() {
    for (phone, score) in [
        ("+1 415 555 2671", 1.0),
        ("+1 (415) 555-2671", 1.0),
        ("+44 20 7946 0958", 1.0),
        ("+44 (0) 20 7946 0958", 1.0),
        ("0044 20 7946 0958", 1.0),
        ("+49 30 901820", 1.0),
        ("+4915123456789", 1.0),
        ("+33 1 42 68 53 00", 1.0),
        ("+81 3-1234-5678", 1.0),
        ("+91 98765 43210", 1.0),
        ("+61 2 9374 4000", 1.0),
        ("+86 138 0013 8000", 1.0),
        ("+55 11 91234-5678", 1.0),
        ("+972 3 123 4567", 1.0),
        ("(415) 555-2671", 0.9),
        ("415-555-2671", 0.9),
        ("1 415.555.2671", 0.9),
        ("+999 1234 5678", 0.5),
    ] {
        let text = format!("reach me at {phone}. Thanks");
        let found = scan(&text);
        assert_eq!(
            found,
            [("phone".to_string(), phone.to_string(), score)],
            "{phone}"
        );
    }
    assert_eq!(of("phone", "Tel: 030 901820 11"), ["030 901820 11"]);
    // Runs on into a year: the number ends where it is valid.
    assert_eq!(of("phone", "+44 20 7946 0958 2024"), ["+44 20 7946 0958"]);
    for negative in [
        "order 1234567890 shipped",
        "at 2024-01-15 10:30:00+01:00",
        "ts=1700000000123",
        "id 550e8400-e29b-41d4-a716-446655440000",
        "+1 234",
        "+33 0 12 34 56 78", // national number starting 0
        "+1 011 555 1234",   // NANP area 011
        "(123) 555-2671",    // NANP area 1xx
        "415-555-2671-99",   // part of a longer id
        "build 10.415.555.2671",
        "a+14155552671",    // not after a word
        "0044207946095812", // 00 without separators
        "030 901820 11",    // national, no phone word
        "x = 3 + 4 * 100000000",
        "ISBN 978-3-16-148410-0",
    ] {
        assert_eq!(of("phone", negative), Vec::<String>::new(), "{negative}");
    }
}

#[test]
fn ip_addresses() {
    assert_eq!(
        scan("dns 8.8.8.8, lan 192.168.1.10, lo 127.0.0.1"),
        [
            ("ipv4".to_string(), "8.8.8.8".to_string(), 1.0),
            ("ipv4".to_string(), "192.168.1.10".to_string(), 0.5),
            ("ipv4".to_string(), "127.0.0.1".to_string(), 0.2),
        ]
    );
    assert_eq!(
        scan("v6 2001:4860:4860::8888 and fe80::1: and ::1 and ::ffff:8.8.4.4"),
        [
            ("ipv6".to_string(), "2001:4860:4860::8888".to_string(), 1.0),
            ("ipv6".to_string(), "fe80::1".to_string(), 0.5),
            ("ipv6".to_string(), "::1".to_string(), 0.2),
            ("ipv6".to_string(), "::ffff:8.8.4.4".to_string(), 1.0),
        ]
    );
    for negative in [
        "999.1.1.1",
        "version 1.2.3.4.5",
        "v1.2.3.4",
        "at 12:30:45",
        "use std::vec::Vec; a::b::c",
        "mac 00:1a:2b:3c:4d:5e",
        "2001:db8",
    ] {
        assert_eq!(scan(negative), [], "{negative}");
    }
}

#[test]
fn custom_patterns_with_context() {
    let pii = Pii::new(vec![CustomPattern {
        kind: "employee-id".into(),
        regex: r"\bE\d{6}\b".into(),
        context: vec!["Employee".into()],
        score: 0.7,
    }])
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        scan_with(&pii, "employee number E123456 joined"),
        [("employee-id".to_string(), "E123456".to_string(), 0.7)]
    );
    // Outside the window (64 bytes) or without the word: no finding.
    let far = format!("employee {} E123456", "x".repeat(80));
    assert_eq!(scan_with(&pii, &far), []);
    assert_eq!(scan_with(&pii, "part E123456"), []);

    let always = Pii::new(vec![CustomPattern {
        kind: "ticket".into(),
        regex: "TCK-[0-9]+".into(),
        context: vec![],
        score: 1.0,
    }])
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        scan_with(&always, "see TCK-42"),
        [("ticket".to_string(), "TCK-42".to_string(), 1.0)]
    );
}

#[test]
fn custom_pattern_errors() {
    let pattern = |kind: &str, regex: &str, context: Vec<String>, score: f32| CustomPattern {
        kind: kind.into(),
        regex: regex.into(),
        context,
        score,
    };
    let err = |p: CustomPattern| {
        Pii::new(vec![p])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    let bad = err(pattern("emp", "E(\\d", vec![], 1.0));
    assert!(
        bad.contains("`emp`") && bad.contains("does not compile"),
        "{bad}"
    );
    assert!(err(pattern("emp", "(?=x)y", vec![], 1.0)).contains("look-around"));
    assert!(err(pattern("emp", "a*", vec![], 1.0)).contains("empty string"));
    assert!(err(pattern("emp", "a", vec![], 1.5)).contains("score 1.5"));
    assert!(err(pattern(" ", "a", vec![], 1.0)).contains("#0"));
    assert!(err(pattern("emp", "a", vec![" ".into()], 1.0)).contains("context word #0"));
}

#[test]
fn prose_without_anchors_finds_nothing() {
    let text = "The quick brown fox jumps over the lazy dog. No numbers, no addresses here.";
    assert_eq!(scan(text), []);
}

#[test]
fn constant_patterns_compile() {
    for re in [
        &CARD,
        &IBAN,
        &SSN,
        &PHONE_INTL,
        &PHONE_NANP,
        &PHONE_NATIONAL,
        &IPV4,
        &IPV6,
    ] {
        LazyLock::force(re);
    }
}

/// A few MB of prose, code and JSON with some PII, scanned after
/// normalisation; prints MB/s (debug builds are several times slower).
#[test]
fn throughput() {
    use crate::guardrails::hidden::{Hidden, normalise};
    let prose = "The gateway forwards each tool call after the policy allows it; results come back \
                 through the same stages, and the audit record keeps what happened — “quoted”, naïve. ";
    let code = "fn main() { let x: Vec<u32> = (0..100).map(|i| i * 2).collect(); println!(\"{x:?}\"); } // 2024-01-15\n";
    let json = r#"{"id": 123456, "user": "jane.roe@example.org", "ts": "2024-01-15T10:30:00Z", "ip": "10.0.0.12", "amount": 1234.56, "items": [1, 2, 3]}"#;
    let pii = "Call +44 20 7946 0958 or pay with 4111 1111 1111 1111, IBAN DE89 3704 0044 0532 0130 00.\n";
    // One line in ten carries PII (dense: a finding every ~200 bytes), or
    // none (the common case: prose, code and JSON).
    let corpus = |with_pii: bool| {
        let mut text = String::new();
        let mut i = 0usize;
        while text.len() < 4 << 20 {
            text.push_str(match i % 10 {
                0..=3 => prose,
                4..=6 => code,
                7 | 8 => json,
                _ if with_pii => pii,
                _ => prose,
            });
            text.push('\n');
            i += 1;
        }
        text
    };
    let text = corpus(true);
    let clean = corpus(false);
    let detector = Pii::default();
    let hidden = Hidden::default();
    let mut found = Vec::new();
    let mb = text.len() as f64 / 1e6;

    let start = std::time::Instant::now();
    let normalised = normalise(&text);
    let t_norm = start.elapsed().as_secs_f64();
    let start = std::time::Instant::now();
    detector.scan(normalised.as_str(), &mut found);
    let t_pii = start.elapsed().as_secs_f64();
    let pii_found = found.len();
    let start = std::time::Instant::now();
    hidden.scan(&text, &mut found);
    let t_hidden = start.elapsed().as_secs_f64();
    let ascii = text.replace(['—', '“', '”', 'ï'], "-");
    let start = std::time::Instant::now();
    let borrowed = normalise(&ascii);
    let t_ascii = start.elapsed().as_secs_f64();
    assert!(!borrowed.changed());
    let clean_normalised = normalise(&clean);
    let start = std::time::Instant::now();
    let mut clean_found = Vec::new();
    detector.scan(clean_normalised.as_str(), &mut clean_found);
    let t_clean = start.elapsed().as_secs_f64();
    assert!(pii_found > 1000);
    #[expect(
        clippy::print_stdout,
        reason = "the throughput figure is this test's output"
    )]
    {
        println!(
            "{mb:.1} MB ({}): normalise {:.0} MB/s (ASCII-only: {:.0} MB/s), pii {:.0} MB/s ({pii_found} findings; without the PII lines {:.0} MB/s, {} findings), hidden {:.0} MB/s",
            if cfg!(debug_assertions) {
                "debug build"
            } else {
                "release build"
            },
            mb / t_norm,
            mb / t_ascii,
            mb / t_pii,
            clean.len() as f64 / 1e6 / t_clean,
            clean_found.len(),
            mb / t_hidden,
        );
    }
}

#[test]
fn evasions_are_found_through_normalisation() {
    use crate::guardrails::hidden::scan_normalised;
    // Fullwidth digits and a zero-width space in a card number; a
    // Cyrillic о in an email address.
    let text = "pay ４１１１ 1111\u{200B} 1111 1111 or mail j\u{043E}hn@example.com";
    let detectors: [Box<dyn crate::guardrails::Detector>; 1] = [Box::new(Pii::default())];
    let mut found = Vec::new();
    scan_normalised(&detectors, text, &mut found);
    let got: Vec<(&str, &str)> = found
        .iter()
        .map(|f| (&*f.kind, &text[f.span.clone()]))
        .collect();
    assert_eq!(
        got,
        [
            ("card", "４１１１ 1111\u{200B} 1111 1111"),
            ("email", "j\u{043E}hn@example.com")
        ]
    );
}

#[test]
fn cards_of_no_known_issuer_only_where_the_text_says_card() {
    // Luhn-valid, 12 digits (Maestro) and a 16-digit number of no issuer
    // range we know: cards next to a card word, not elsewhere.
    for (text, number) in [
        ("Charge the card 571410704274 for order 7.", "571410704274"),
        (
            "Card on file: 3500159520273957, expires 07/30.",
            "3500159520273957",
        ),
        (r#"{"card": "180016557424619"}"#, "180016557424619"),
    ] {
        assert_eq!(of("card", text), [number], "{text}");
    }
    for text in [
        "Order 571410704274 shipped.",
        "Parcel 3500159520273957 left the depot.",
        "Charge the card 571410704275 for order 7.",
    ] {
        assert_eq!(of("card", text), Vec::<String>::new(), "{text}");
    }
    // A known issuer needs no word, and scores higher.
    let found = scan("ref 180016557424619 and 4111111111111111");
    assert_eq!(found[0].1, "180016557424619");
    assert_eq!(found[1], ("card".into(), "4111111111111111".into(), 1.0));
}

#[test]
fn phone_extensions_trunk_parentheses_and_plain_runs_by_a_phone_word() {
    assert_eq!(
        of("phone", "Call me on (850)294-9748x06605 today."),
        ["(850)294-9748x06605"]
    );
    // A spelled-out extension is prose: the number is found without it.
    assert_eq!(
        of("phone", "reach 651.531.2449 ext. 34 any time"),
        ["651.531.2449"]
    );
    assert_eq!(
        of("phone", "Customer phone (0141) 4960133, asked."),
        ["(0141) 4960133"]
    );
    assert_eq!(of("phone", "phone=0310527115;"), ["0310527115"]);
    assert_eq!(
        of("phone", "Invoice 0310527115 is due."),
        Vec::<String>::new()
    );
}

#[test]
fn a_number_found_by_a_context_word_yields_to_the_longer_match_around_it() {
    // Nine digits near "ssn" inside an international phone number.
    let text = "phone=+49(0) 361735829; ssn=767-36-7987";
    assert_eq!(of("phone", text), ["+49(0) 361735829"]);
    assert_eq!(of("us-ssn", text), ["767-36-7987"]);
}

#[test]
fn context_words_count_only_as_words() {
    // "tel" in "hotel", "call" in "recall", "tin" in "meeting": not words
    // that say what the number is.
    assert_eq!(
        of("phone", "The hotel booking 0310527115 is confirmed."),
        Vec::<String>::new()
    );
    assert_eq!(
        of("us-ssn", "Meeting 123456789 moved to Friday."),
        Vec::<String>::new()
    );
    assert_eq!(of("phone", "Tel: 0310527115"), ["0310527115"]);
    assert_eq!(of("us-ssn", "(SSN 123456789)"), ["123456789"]);
}
