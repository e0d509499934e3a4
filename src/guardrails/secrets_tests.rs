//! Tests for the secrets detector: the shipped rules' examples, rule-file
//! errors, overlaps, and false positives on a benign corpus (this
//! repository's own source and generated look-alikes). Example tokens
//! here are fake.

use super::*;

fn scan(s: &Secrets, text: &str) -> Vec<Finding> {
    let mut found = Vec::new();
    s.scan(text, &mut found);
    found
}

fn kinds(s: &Secrets, text: &str) -> Vec<String> {
    scan(s, text).iter().map(|f| f.kind.to_string()).collect()
}

#[test]
fn shipped_rules_parse_and_number_at_least_100() {
    let rules = parse_rules(SHIPPED_NAME, shipped()).unwrap_or_else(|errors| {
        panic!(
            "{}",
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        )
    });
    assert!(rules.len() >= 100, "only {} rules", rules.len());
}

/// Every rule's examples yield exactly its finding; its counter-examples
/// never yield it. A mismatch names the rule and the example.
#[test]
fn every_example_and_counter_example() {
    let rules = parse_rules(SHIPPED_NAME, shipped()).expect("parse");
    // Build without the example check, then run it here, so a failure
    // lists every mismatch rather than one constructor error.
    let mut errors = Vec::new();
    match Secrets::compile(rules) {
        Ok(s) => errors.extend(s.check_examples()),
        Err(e) => errors.extend(e),
    }
    assert!(
        errors.is_empty(),
        "{} mismatches:\n{}",
        errors.len(),
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
    let s = Secrets::shipped();
    let total: usize = s.rules().iter().map(|r| r.examples.len()).sum();
    assert!(total >= s.rules().len());
}

#[test]
fn finding_carries_the_secret_span() {
    let s = Secrets::shipped();
    let token = "glpat-Qm3vTq8ZrW1xLp0sKd7Y";
    let text = format!("export GITLAB_TOKEN={token} # ci");
    let found = scan(&s, &text);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].detector, "secrets");
    assert_eq!(&*found[0].kind, "gitlab-pat");
    assert_eq!(&text[found[0].span.clone()], token);
    assert!((found[0].score - 1.0).abs() < f32::EPSILON);
    assert_eq!(s.name(), "secrets");
}

#[test]
fn overlaps_keep_the_most_specific_rule() {
    let s = Secrets::shipped();
    // A GitHub token as a URL password: the GitHub rule, not the generic
    // URL-password rule.
    let url = "https://x-access-token:ghp_R8nVq2LmZx4Tb7Kc1Wd9Hs3Jf6Pa0Ye5Ug2Q@github.com/o/r";
    assert_eq!(kinds(&s, url), ["github-pat-classic"]);
    // A JWT as a bearer credential: the JWT rule, not the generic one.
    let jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhYmMxMjMiLCJpYXQiOjE3MDAwMDAwMDB9.c2lnbmF0dXJlLWZha2UtYnl0ZXMtZm9yLXRlc3Rz";
    assert_eq!(kinds(&s, &format!("Authorization: Bearer {jwt}")), ["jwt"]);
    // Two different secrets on one line: both.
    let two = "A=AKIAQ7LZ3MNB4XKD2JWE B=xoxb-123456789012-1234567890123-Zk3mQ8vLr2Tn5Wp9Yc4Hb7Jd";
    assert_eq!(kinds(&s, two), ["aws-access-key-id", "slack-bot-token"]);
}

#[test]
fn jwt_check_decodes_the_header() {
    assert!(jwt_is_valid("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"));
    // Header decodes to JSON without `alg`.
    assert!(!jwt_is_valid("eyJ0eXAiOiJKV1QifQ.eyJzdWIiOiJ4In0.c2ln"));
    // Header is not base64url JSON.
    assert!(!jwt_is_valid("eyJhbGciOiJIUzI1NiJ.eyJzdWIiOiJ4In0.c2ln"));
    assert!(!jwt_is_valid("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0"));
}

#[test]
fn base62_crc32_check() {
    let body = "zQWBuTSOoRi4A9spHcVY5ncnsDkxkJ";
    let token = format!("ghp_{body}{}", base62(crc32(body.as_bytes()), 6));
    assert!(base62_crc32_is_valid(&token));
    let mut broken = token.clone();
    broken.replace_range(5..6, if &token[5..6] == "A" { "B" } else { "A" });
    assert!(!base62_crc32_is_valid(&broken));
    assert_eq!(
        crc32(b"123456789"),
        0xCBF4_3926,
        "CRC-32/ISO-HDLC check value"
    );
}

#[test]
fn entropy_is_bits_per_byte() {
    assert!(entropy("aaaaaaaa") < 0.01);
    assert!((entropy("abcd") - 2.0).abs() < 1e-9);
    assert!(entropy("Zq8LmV3xR7tB1nW5kP9yC2dF") > 4.0);
}

#[test]
fn placeholders_and_indirections_do_not_fire() {
    let s = Secrets::shipped();
    for text in [
        "password = \"changeme\"",
        "password: \"<your-password>\"",
        "api_key = os.environ[\"OPENAI_API_KEY\"]",
        "token: ${{ secrets.GITHUB_TOKEN }}",
        "postgres://app:password@localhost/db",
        "postgres://app:@localhost/db",
        "postgres://app:${PGPASSWORD}@localhost/db",
        "DB_PASSWORD=$DB_PASSWORD",
        "AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE",
        "Authorization: Bearer YOUR_TOKEN_HERE",
    ] {
        assert_eq!(kinds(&s, text), Vec::<String>::new(), "{text}");
    }
}

#[test]
fn parse_errors_carry_file_line_and_are_all_collected() {
    let text = r#"
[[rule]]
id = "one"
description = "d"
regex = 'abc'
keywords = ["abc"]
examples = ["abc"]

[[rule]]
id = "one"
description = "d"
regex = 'abc'
keywords = ["abc"]
examples = ["abc"]

[[rule]]
id = "bad-regex"
description = "d"
regex = 'ab(c'
keywords = ["ab"]
examples = ["abc"]
colour = "blue"

[[rule]]
id = "no-keywords"
description = "d"
regex = 'abc'
examples = ["abc"]

[[rule]]
id = "no-examples"
description = "d"
regex = 'abc'
keywords = ["abc"]
examples = []

[[rule]]
id = "Bad_Id"
description = "d"
regex = 'abc'
keywords = ["abc"]
examples = ["abc"]
secret_group = 3
checksum = "luhn"
"#;
    let errors = parse_rules("user.toml", text).expect_err("bad file");
    let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
    let line = |needle: &str| {
        text[..text.find(needle).expect("in text")]
            .matches('\n')
            .count()
            + 1
    };
    let has = |needle: &str, line: usize| {
        assert!(
            shown
                .iter()
                .any(|e| e.contains(needle) && e.starts_with(&format!("user.toml:{line}:"))),
            "no `{needle}` at line {line} in {shown:#?}"
        );
    };
    // A rule's own errors sit at their field; whole-rule ones at its
    // `[[rule]]` line.
    let rule_at = |id: &str| line(&format!("id = \"{id}\"")) - 1;
    has("unknown field `colour`", line("colour"));
    has("duplicate rule id `one`", 9);
    has("bad regex", line("'ab(c'"));
    has("without `keywords`", rule_at("no-keywords"));
    has("`examples` is empty", line("examples = []"));
    has("id `Bad_Id`", line("\"Bad_Id\""));
    has("`secret_group` is 3", line("secret_group = 3"));
    has("unknown checksum `luhn`", line("\"luhn\""));
    assert_eq!(errors.len(), 8, "{shown:#?}");

    let syntax = parse_rules("x.toml", "[[rule]]\nid = \n").expect_err("syntax");
    assert_eq!(syntax.len(), 1);
    assert!(
        syntax[0].to_string().starts_with("x.toml:2:"),
        "{}",
        syntax[0]
    );
}

#[test]
fn a_failing_example_is_an_error_at_the_rule() {
    let text = "[[rule]]\nid = \"acme\"\ndescription = \"d\"\nregex = '''acme_[0-9]{8}'''\nkeywords = [\"acme_\"]\nexamples = [\"acme_1234\"]\ncounter_examples = [\"acme_12345678\"]\n";
    let rules = parse_rules("u.toml", text).expect("parse");
    let errors = Secrets::new(rules).expect_err("examples fail");
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors
            .iter()
            .all(|e| e.to_string().starts_with("u.toml:1: rule `acme`"))
    );
}

#[test]
fn merge_replaces_by_id_and_appends_new() {
    let base = parse_rules(SHIPPED_NAME, shipped()).expect("parse");
    let n = base.len();
    let user = parse_rules(
        "mine.toml",
        "[[rule]]\nid = \"github-pat-classic\"\ndescription = \"stricter\"\nregex = '''\\bghp_[A-Za-z0-9]{36}\\b'''\nkeywords = [\"ghp_\"]\nexamples = [\"ghp_R8nVq2LmZx4Tb7Kc1Wd9Hs3Jf6Pa0Ye5Ug2Q\"]\n\n[[rule]]\nid = \"acme-key\"\ndescription = \"ACME internal key\"\nregex = '''\\bacme_[A-Za-z0-9]{24}\\b'''\nkeywords = [\"acme_\"]\nexamples = [\"acme_Zq8LmV3xR7tB1nW5kP9yC2dF\"]\n",
    )
    .expect("parse");
    let merged = merge(base, user);
    assert_eq!(merged.len(), n + 1);
    let gh = merged
        .iter()
        .find(|r| &*r.id == "github-pat-classic")
        .expect("kept");
    assert_eq!(gh.description, "stricter");
    assert_eq!(gh.file, "mine.toml");
    let s = Secrets::new(merged).expect("compiles");
    assert_eq!(kinds(&s, "key acme_Zq8LmV3xR7tB1nW5kP9yC2dF"), ["acme-key"]);
}

/// A small deterministic generator, so the benign corpus is the same on
/// every run.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick(&mut self, alphabet: &[u8], n: usize) -> String {
        (0..n)
            .map(|_| char::from(alphabet[(self.next() % alphabet.len() as u64) as usize]))
            .collect()
    }
}

const HEX: &[u8] = b"0123456789abcdef";
const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const WORDS: &[&str] = &[
    "the",
    "gateway",
    "forwards",
    "request",
    "to",
    "upstream",
    "server",
    "after",
    "policy",
    "decides",
    "token",
    "bucket",
    "limits",
    "calls",
    "per",
    "minute",
    "secret",
    "rotation",
    "password",
    "reset",
    "flow",
    "sends",
    "email",
    "key",
    "value",
    "store",
    "keeps",
    "session",
    "state",
    "api",
    "returns",
    "json",
    "with",
    "pagination",
    "cursor",
];

/// Text that looks like secrets to a careless scanner: UUIDs, git SHAs,
/// hex digests, base64 images, long identifiers, prose about passwords
/// and tokens, code that reads secrets from the environment.
fn benign_corpus(bytes: usize) -> String {
    let mut rng = XorShift(0x5EC2_E75E_ED15_0015);
    let mut out = String::with_capacity(bytes + 4096);
    while out.len() < bytes {
        match rng.next() % 15 {
            0 => {
                let u = rng.pick(HEX, 32);
                out.push_str(&format!(
                    "request_id: {}-{}-4{}-a{}-{}\n",
                    &u[..8],
                    &u[8..12],
                    &u[13..16],
                    &u[17..20],
                    &u[20..32]
                ));
            }
            1 => out.push_str(&format!(
                "commit {}\nMerge: {} {}\n",
                rng.pick(HEX, 40),
                rng.pick(HEX, 7),
                rng.pick(HEX, 7)
            )),
            2 => out.push_str(&format!(
                "sha256:{}  target/release/toolgate\nintegrity sha512-{}==\n",
                rng.pick(HEX, 64),
                rng.pick(B64, 86)
            )),
            3 => {
                out.push_str("<img src=\"data:image/png;base64,iVBORw0KGgo");
                for _ in 0..8 {
                    out.push_str(&rng.pick(B64, 76));
                }
                out.push_str("=\">\n");
            }
            4 => out.push_str(
                "let authorization_header_value_for_upstream_request = build_header(&caller);\n\
                 fn verify_token_signature_with_rotating_key_material(key: &Key) -> bool {}\n",
            ),
            5 => out.push_str(
                "password = os.environ[\"DB_PASSWORD\"]\napi_key: ${API_KEY}\n\
                 token = request.headers.get(\"Authorization\")\nsecret_name: prod/db/credentials\n\
                 \"next_page_token\": \"CiAKGjBpNDd2Nmp2Zml2cXRwYjBpOXA3EgwI8Mi7BhCgj6GwAg\"\n",
            ),
            6 => out.push_str(&format!(
                "\"etag\": \"W/\\\"{}\\\"\", \"trace_id\": \"{}\", \"span_id\": \"{}\"\n",
                rng.pick(HEX, 32),
                rng.pick(HEX, 32),
                rng.pick(HEX, 16)
            )),
            7 => out.push_str(&format!(
                "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{} user@host\n",
                rng.pick(B64, 43)
            )),
            8 => out.push_str(
                "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUJ2b9\n-----END CERTIFICATE-----\n\
                 -----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----\n",
            ),
            9 => out.push_str(
                "See https://docs.example.org/auth for how to create a token; never paste \
                 your password or API key into a chat. The key rotation runs every 90 days.\n",
            ),
            10 => out.push_str(&format!(
                "https://cdn.example.net/assets/app.{}.js?v={} postgres://localhost:5432/app\n",
                rng.pick(HEX, 20),
                rng.pick(HEX, 8)
            )),
            12 => out.push_str(&format!(
                "golang.org/x/net v0.38.0 h1:{}=\nimage: ghcr.io/acme/api@sha256:{}\n\
                 arn:aws:iam::{}:role/deploy-{}\n\
                 \"resolved\": \"https://registry.test/left-pad/-/left-pad-1.3.0.tgz\", \"integrity\": \"sha1-{}=\"\n",
                rng.pick(B64, 43),
                rng.pick(HEX, 64),
                rng.pick(b"0123456789", 12),
                rng.pick(HEX, 8),
                rng.pick(B64, 27)
            )),
            13 => out.push_str(
                "env:\n  - name: GITHUB_TOKEN\n    valueFrom:\n      secretKeyRef:\n        name: gh\n        key: token\n\
                 password: !vault |\n  $ANSIBLE_VAULT;1.1;AES256\n\
                 token_url: https://login.test/oauth2/token\nsecret_key_base: <%= ENV[\"SECRET_KEY_BASE\"] %>\n\
                 api_key = settings.OPENAI_API_KEY\nAuthorization: Bearer {{access_token}}\n",
            ),
            14 => out.push_str(&format!(
                "const handleAuthenticationTokenRefreshForConnectedAccount{} = () => {{}};\n\
                 \"channel\": \"C0{}\", \"user\": \"U0{}\", \"ts\": \"1712345678.{}\"\n\
                 payload={}\n",
                rng.pick(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", 6),
                rng.pick(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", 8),
                rng.pick(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", 8),
                rng.pick(b"0123456789", 6),
                // base64 of a JSON object: starts with eyJ like a JWT, one part
                "eyJldmVudCI6InB1c2giLCJyZXBvIjoiYWNtZS9hcGkifQ"
            )),
            _ => {
                for _ in 0..20 {
                    let w = WORDS[(rng.next() % WORDS.len() as u64) as usize];
                    out.push_str(w);
                    out.push(' ');
                }
                out.push('\n');
            }
        }
    }
    out
}

/// This repository's `src/**/*.rs`, minus what holds example tokens on
/// purpose: `*_tests.rs` files (this one among them) and each file's
/// `#[cfg(test)] mod …` from that line to the end (the house places test
/// modules last). Left out for that reason, at the time of writing:
/// the test modules of `audit/redact.rs` (the audit masker's own
/// canaries), `storage/mod.rs` and `config/egress.rs` (URLs with
/// passwords that they redact).
fn own_sources() -> Vec<(std::path::PathBuf, String)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut stack = vec![root];
    let mut out = Vec::new();
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs")
                && !path
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().ends_with("_tests.rs"))
            {
                let mut text = std::fs::read_to_string(&path).expect("read");
                text.truncate(test_module_start(&text));
                out.push((path, text));
            }
        }
    }
    out
}

/// Byte offset of a `#[cfg(test)]` line followed by a `mod` (or its
/// `#[path]`), else the text's length.
fn test_module_start(text: &str) -> usize {
    let mut offset = 0;
    let mut lines = text.split_inclusive('\n').peekable();
    while let Some(line) = lines.next() {
        if line.trim() == "#[cfg(test)]"
            && lines.peek().is_some_and(|next| {
                next.trim_start().starts_with("mod ") || next.trim_start().starts_with("#[path")
            })
        {
            return offset;
        }
        offset += line.len();
    }
    text.len()
}

#[test]
fn no_false_positive_on_own_source_and_benign_corpus() {
    let s = Secrets::shipped();
    let mut report = Vec::new();
    let mut bytes = 0;
    for (path, text) in own_sources() {
        bytes += text.len();
        for f in scan(&s, &text) {
            let line = text[..f.span.start].matches('\n').count() + 1;
            report.push(format!(
                "{}:{line}: {} {:?}",
                path.display(),
                f.kind,
                &text[f.span.clone()]
            ));
        }
    }
    let corpus = benign_corpus(2 << 20);
    bytes += corpus.len();
    for f in scan(&s, &corpus) {
        let start = f.span.start.saturating_sub(40);
        report.push(format!(
            "corpus: {} {:?} in {:?}",
            f.kind,
            &corpus[f.span.clone()],
            &corpus[start..f.span.end]
        ));
    }
    assert!(
        report.is_empty(),
        "{} false positives in {bytes} bytes:\n{}",
        report.len(),
        report.join("\n")
    );
}

/// Throughput over a few MB of mixed text (benign corpus with a secret
/// every ~64 KB). Debug builds are several times slower; run with
/// `cargo test --release --lib guardrails::secrets -- --ignored --nocapture`.
#[test]
#[ignore = "timing; run in release with --ignored --nocapture"]
fn throughput() {
    let s = Secrets::shipped();
    let mut text = benign_corpus(4 << 20);
    let mut own: String = own_sources().into_iter().map(|(_, t)| t).collect();
    own.truncate(2 << 20);
    while !own.is_char_boundary(own.len()) {
        own.pop();
    }
    text.push_str(&own);
    let chunk = 64 * 1024;
    let mut mixed = String::with_capacity(text.len() + 8192);
    let mut start = 0;
    while start < text.len() {
        let mut end = (start + chunk).min(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        mixed.push_str(&text[start..end]);
        mixed.push_str("\nGITHUB_TOKEN=ghp_R8nVq2LmZx4Tb7Kc1Wd9Hs3Jf6Pa0Ye5Ug2Q\n");
        start = end;
    }
    // How many rules' regexes run per 64 KB call, and the prefilter's
    // cost alone.
    let mut calls = 0;
    let mut ran = 0;
    let t = std::time::Instant::now();
    let mut start = 0;
    while start < mixed.len() {
        let mut end = (start + chunk).min(mixed.len());
        while !mixed.is_char_boundary(end) {
            end -= 1;
        }
        ran += s
            .candidates(&mixed[start..end])
            .iter()
            .filter(|c| **c)
            .count();
        calls += 1;
        start = end;
    }
    let prefilter = t.elapsed().as_secs_f64();
    // Scan in 64 KB calls, as the gateway would hand over payloads.
    let mut found = Vec::new();
    let t = std::time::Instant::now();
    let mut n = 0;
    for _ in 0..3 {
        let mut start = 0;
        while start < mixed.len() {
            let mut end = (start + chunk).min(mixed.len());
            while !mixed.is_char_boundary(end) {
                end -= 1;
            }
            found.clear();
            s.scan(&mixed[start..end], &mut found);
            n += found.len();
            start = end;
        }
    }
    let secs = t.elapsed().as_secs_f64();
    let mb = 3.0 * mixed.len() as f64 / 1e6;
    #[expect(clippy::print_stdout, reason = "the measurement is the output")]
    {
        println!(
            "secrets: {mb:.1} MB in {secs:.3} s = {:.1} MB/s ({n} findings, {} rules; \
             {:.1} rules run per 64 KB call; keyword prefilter alone {:.1} MB/s)",
            mb / secs,
            s.rules().len(),
            ran as f64 / f64::from(calls),
            mb / 3.0 / prefilter
        );
    }
}

#[test]
fn a_rule_without_keywords_runs_on_every_text() {
    let text = r#"
[[rule]]
id = "acme"
description = "d"
regex = '''\bZQ[0-9]{10}\b'''
no_keywords_because = "no fixed prefix"
examples = ["id ZQ0123456789"]
"#;
    let s = Secrets::new(parse_rules("u.toml", text).expect("parse")).expect("compiles");
    assert_eq!(kinds(&s, "x ZQ9876543210 y"), ["acme"]);
    assert!(s.rules()[0].keywords.is_empty());
}

#[test]
fn duplicate_ids_handed_to_new_are_an_error() {
    let rules = parse_rules(SHIPPED_NAME, shipped()).expect("parse");
    let twice: Vec<Rule> = rules.iter().chain(rules.iter().take(1)).cloned().collect();
    let errors = Secrets::new(twice).expect_err("duplicate");
    assert!(
        errors[0].to_string().contains("duplicate rule id"),
        "{}",
        errors[0]
    );
}

#[test]
fn a_payload_of_repeated_tokens_is_capped() {
    let s = Secrets::shipped();
    let text = "ghp_R8nVq2LmZx4Tb7Kc1Wd9Hs3Jf6Pa0Ye5Ug2Q ".repeat(MAX_FINDINGS - 24);
    let found = scan(&s, &text);
    assert_eq!(found.len(), MAX_FINDINGS - 24);
    assert!(found.windows(2).all(|w| w[0].span.end <= w[1].span.start));
}

/// A flood of look-alikes past the caps would leave later rules unrun:
/// the whole text is then one finding, so a secret after the flood is
/// still redacted or blocked with it.
#[test]
fn a_flood_past_the_caps_is_one_finding_over_the_whole_text() {
    let s = Secrets::shipped();
    let mut text = "ghp_R8nVq2LmZx4Tb7Kc1Wd9Hs3Jf6Pa0Ye5Ug2Q ".repeat(MAX_FINDINGS + 100);
    text.push_str("and at the end AKIAZ7QW3ER5TY2UI4OP");
    let found = scan(&s, &text);
    assert_eq!(found.len(), 1, "{:?}", &found[..found.len().min(3)]);
    assert_eq!(&*found[0].kind, OVERFLOW);
    assert_eq!(found[0].span, 0..text.len());
}

/// Each example still yields its rule inside the usual surroundings: a
/// sentence, JSON and shell quotes, parentheses, its own line.
#[test]
fn examples_are_found_in_context() {
    let s = Secrets::shipped();
    let wraps = [
        ("see ", " here"),
        ("\"", "\""),
        ("'", "'"),
        ("(", ")"),
        ("x\n", "\ny"),
        ("`", "`"),
    ];
    let mut misses = Vec::new();
    for r in s.rules() {
        for ex in &r.examples {
            for (before, after) in wraps {
                let text = format!("{before}{ex}{after}");
                let got = kinds(&s, &text);
                if got != [&*r.id] {
                    misses.push(format!("{}: {text:?} -> {got:?}", r.id));
                }
            }
        }
    }
    assert!(misses.is_empty(), "{}", misses.join("\n"));
}

/// False positives per MB on a directory of other people's code and docs
/// (`SECRETS_FP_DIR`, e.g. the cargo registry's sources): prints each
/// finding for a human to judge, since such trees hold real-looking test
/// tokens too. Text files up to 1 MB each, at most 64 MB in all.
#[test]
#[ignore = "reads a directory named by SECRETS_FP_DIR"]
fn findings_per_mb_on_a_directory() {
    let Ok(root) = std::env::var("SECRETS_FP_DIR") else {
        return;
    };
    let s = Secrets::shipped();
    let mut stack = vec![std::path::PathBuf::from(root)];
    let (mut bytes, mut files) = (0usize, 0usize);
    let mut by_kind: BTreeMap<String, usize> = BTreeMap::new();
    let mut lines = Vec::new();
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
            if ![
                "rs", "md", "toml", "json", "yml", "yaml", "py", "js", "ts", "go", "txt",
            ]
            .contains(&ext)
                || entry.metadata().map_or(true, |m| m.len() > 1 << 20)
            {
                continue;
            }
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            bytes += text.len();
            files += 1;
            for f in scan(&s, &text) {
                *by_kind.entry(f.kind.to_string()).or_default() += 1;
                let start = f.span.start.saturating_sub(30);
                let mut from = start;
                while !text.is_char_boundary(from) {
                    from -= 1;
                }
                lines.push(format!(
                    "{}: {} {:?}",
                    path.display(),
                    f.kind,
                    &text[from..f.span.end.min(from + 160)]
                ));
            }
            if bytes > 64 << 20 {
                stack.clear();
                break;
            }
        }
    }
    let mb = bytes as f64 / 1e6;
    #[expect(clippy::print_stdout, reason = "the measurement is the output")]
    {
        for l in &lines {
            println!("{l}");
        }
        println!(
            "{} findings in {mb:.1} MB ({files} files) = {:.2}/MB; by kind: {by_kind:?}",
            lines.len(),
            lines.len() as f64 / mb
        );
    }
}

#[test]
fn code_names_and_types_are_not_assigned_secrets() {
    for v in [
        "&windows_core::HSTRING",
        "super::super::Win32::Foundation::HANDLE",
        "D3DKMT_PRESENTHISTORYTOKEN_0",
        "settings.OPENAI_API_KEY_V2",
        "config.db.password2",
        "read_write_2024",
        "*mut c_void",
    ] {
        assert!(!assignment_value_is_secret_like(v), "{v}");
    }
    for v in [
        "Rt8bQ3xLm2Vz",
        "a9_Kx-3Lq_ZmP0wT",
        "s3cr3t.V4lue!x",
        "hJ8_kq2",
    ] {
        assert_eq!(assignment_value_is_secret_like(v), v.len() >= 8, "{v}");
    }
}

#[test]
fn private_keys_with_crlf_or_json_escaped_newlines() {
    let s = Secrets::shipped();
    let rsa = s
        .rules()
        .iter()
        .find(|r| &*r.id == "private-key-rsa")
        .expect("rule")
        .examples[0]
        .clone();
    assert_eq!(kinds(&s, &rsa.replace('\n', "\r\n")), ["private-key-rsa"]);
    let json = format!("{{\"key\": \"{}\"}}", rsa.replace('\n', "\\n"));
    assert_eq!(kinds(&s, &json), ["private-key-rsa"]);
}

#[test]
fn multibyte_text_around_matches_keeps_spans_on_char_boundaries() {
    let s = Secrets::shipped();
    let text = "é€😀é password = 'Rt8bQ3xLm2Vz' 日本語 ghp_R8nVq2LmZx4Tb7Kc1Wd9Hs3Jf6Pa0Ye5Ug2Q ü";
    let found = scan(&s, text);
    assert_eq!(
        found.iter().map(|f| &*f.kind).collect::<Vec<_>>(),
        ["password-assignment", "github-pat-classic"]
    );
    for f in &found {
        assert!(text.is_char_boundary(f.span.start) && text.is_char_boundary(f.span.end));
    }
    assert_eq!(&text[found[0].span.clone()], "Rt8bQ3xLm2Vz");
}

#[test]
fn a_misspelt_top_level_table_is_an_error_with_its_line() {
    let errors = parse_rules("u.toml", "# rules\n\n[[rules]]\nid = \"a\"\n").expect_err("typo");
    assert_eq!(errors.len(), 1);
    let shown = errors[0].to_string();
    assert!(shown.starts_with("u.toml:3:"), "{shown}");
    assert!(shown.contains("rules"), "{shown}");
    // An empty file is an empty rule set, not an error.
    assert!(parse_rules("u.toml", "").expect("empty").is_empty());
}
