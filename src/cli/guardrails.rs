//! `toolgate guardrails scan|eval|train`: how a security team tries a rule
//! change before deploying it. `scan` runs the guardrails of the policies
//! directory over JSON (arguments or results) and prints what they find
//! and would do; `eval` measures detection on labelled texts; `train`
//! trains the injection model on labelled texts (how the shipped one was
//! made: `tests/guardrails/train.sh`).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Subcommand, ValueEnum};
use serde_json::{Value, json};
use toolgate::call::Inspected;
use toolgate::config::ServerFacts;
use toolgate::guardrails::cases::{self, Outcome};
use toolgate::guardrails::injection::{self, train::Example, train::Options};
use toolgate::guardrails::measure::Scores;
use toolgate::guardrails::policy::Direction;
use toolgate::guardrails::{Set, load};

use super::{load as load_config, println_stdout};

/// Most bytes read from a file or stdin.
const MAX_INPUT: u64 = 256 << 20;

#[derive(Subcommand)]
pub enum GuardrailsCommand {
    /// Scan JSON (one value per line, or one document) as a call's
    /// arguments or result; print each finding as a JSON line; exit 1 when
    /// any would block the call.
    Scan {
        /// Which way the payload goes.
        #[arg(long, value_enum, default_value = "input")]
        direction: Way,
        /// The server the call goes to (rules match on it).
        #[arg(long)]
        server: Option<String>,
        /// The exposed tool name (rules match on it).
        #[arg(long, default_value = "")]
        tool: String,
        /// The server is marked trusted (`[policy] trusted = true`).
        #[arg(long)]
        trusted: bool,
        /// The JSON to scan (default: stdin).
        file: Option<PathBuf>,
    },
    /// Run the guardrails' table tests (default:
    /// policies/tests/guardrails/*.toml); exit 1 on any mismatch.
    Test { files: Vec<PathBuf> },
    /// Measure detection on labelled texts: lines of
    /// `{"text": "...", "label": 0|1}`; prints TPR, FPR, precision and F1
    /// at each threshold.
    Eval {
        file: PathBuf,
        /// Count only this detector's findings (e.g. `secrets`, `pii`,
        /// `injection`).
        #[arg(long)]
        detector: Option<String>,
        /// Also print each text's line, label and score as JSON lines
        /// (to see what was missed).
        #[arg(long)]
        each: bool,
    },
    /// Train the injection model on labelled texts (files of
    /// `{"text": "...", "label": 0|1}` lines) and write its weights; the
    /// same files and options give the same model.
    Train {
        /// Training files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Where to write the model (`policies/guardrails/injection.model`
        /// to replace the shipped one).
        #[arg(long)]
        out: PathBuf,
        /// Hash bits: 2^bits weights of one byte each.
        #[arg(long, default_value_t = 18)]
        bits: u32,
        /// Words per scored window.
        #[arg(long, default_value_t = 64)]
        window: u32,
        /// Most character 4-grams taken per word (0: none).
        #[arg(long, default_value_t = 32)]
        grams: u32,
        #[arg(long, default_value_t = 8)]
        epochs: usize,
        #[arg(long, default_value_t = 15)]
        seed: u64,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Way {
    Input,
    Output,
}

pub fn run(config: Option<&Path>, command: &GuardrailsCommand) -> anyhow::Result<ExitCode> {
    if let GuardrailsCommand::Train {
        files,
        out,
        bits,
        window,
        grams,
        epochs,
        seed,
    } = command
    {
        let options = Options {
            bits: *bits,
            window: *window,
            grams: *grams,
            epochs: *epochs,
            seed: *seed,
            ..Options::default()
        };
        return train(files, out, &options);
    }
    let config = match load_config(config) {
        Ok(config) => config,
        Err(code) => return Ok(code),
    };
    let set = match load::load(&config.policies_dir) {
        Ok(Some(set)) => set,
        Ok(None) => anyhow::bail!(
            "no {} in {}: there are no guardrails to run",
            load::POLICY_FILE,
            config.policies_dir.display()
        ),
        Err(errors) => {
            for e in errors {
                eprintln!("{e}");
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    match command {
        GuardrailsCommand::Scan {
            direction,
            server,
            tool,
            trusted,
            file,
        } => {
            let call = Inspected {
                kind: "tool",
                name: tool.clone(),
                server: server.as_ref().map(|name| ServerFacts {
                    name: name.clone(),
                    trusted: *trusted,
                    ..Default::default()
                }),
            };
            let direction = match direction {
                Way::Input => Direction::Input,
                Way::Output => Direction::Output,
            };
            scan(&set, &call, direction, &read(file.as_deref())?)
        }
        GuardrailsCommand::Eval {
            file,
            detector,
            each,
        } => eval(&set, &read(Some(file))?, detector.as_deref(), *each),
        GuardrailsCommand::Test { files } => test(&set, &config.policies_dir, files),
        GuardrailsCommand::Train { .. } => unreachable!("handled above"),
    }
}

fn train(files: &[PathBuf], out: &Path, options: &Options) -> anyhow::Result<ExitCode> {
    if !(10..=24).contains(&options.bits) {
        anyhow::bail!("--bits {}: use 10 to 24", options.bits);
    }
    if !(8..=1024).contains(&options.window) || options.grams > 32 {
        anyhow::bail!("--window takes 8 to 1024 words, --grams 0 to 32");
    }
    let mut examples = Vec::new();
    for file in files {
        for (line, value) in values(&read(Some(file))?)? {
            let (Some(text), Some(label)) = (value["text"].as_str(), value["label"].as_u64())
            else {
                anyhow::bail!(
                    "{}:{line}: want {{\"text\": \"...\", \"label\": 0 or 1}}",
                    file.display()
                );
            };
            examples.push(Example {
                text: text.to_string(),
                injection: label == 1,
            });
        }
    }
    let injections = examples.iter().filter(|e| e.injection).count();
    eprintln!(
        "training on {} texts ({injections} injections) from {} files",
        examples.len(),
        files.len()
    );
    let model = injection::train::train(&examples, options, |epoch, loss| {
        eprintln!("epoch {epoch}: mean loss {loss:.4}");
    });
    let scores = Scores::new(
        examples
            .iter()
            .map(|e| {
                (
                    model
                        .score(&toolgate::guardrails::hidden::normalise(&e.text).text)
                        .score,
                    e.injection,
                )
            })
            .collect(),
    );
    let at = scores.tpr_at_fpr(0.01);
    eprintln!(
        "on the training texts: AUC {:.4}, TPR {:.3} at FPR {:.3} (threshold {:.3})",
        scores.auc(),
        at.tpr(),
        at.fpr(),
        at.threshold
    );
    std::fs::write(out, model.to_bytes())
        .with_context(|| format!("cannot write {}", out.display()))?;
    eprintln!("wrote {}", out.display());
    Ok(ExitCode::SUCCESS)
}

fn read(file: Option<&Path>) -> anyhow::Result<String> {
    let mut text = String::new();
    match file {
        Some(path) => {
            std::fs::File::open(path)
                .with_context(|| format!("cannot open {}", path.display()))?
                .take(MAX_INPUT)
                .read_to_string(&mut text)
                .with_context(|| format!("cannot read {}", path.display()))?;
        }
        None => {
            std::io::stdin()
                .take(MAX_INPUT)
                .read_to_string(&mut text)
                .context("cannot read stdin")?;
        }
    }
    Ok(text)
}

/// The JSON values of `text`: one document, or one per line.
fn values(text: &str) -> anyhow::Result<Vec<(usize, Value)>> {
    if let Ok(value) = serde_json::from_str::<Value>(text) {
        return Ok(vec![(1, value)]);
    }
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line)
                .map(|v| (i + 1, v))
                .with_context(|| format!("line {}: not JSON", i + 1))
        })
        .collect()
}

fn scan(set: &Set, call: &Inspected, direction: Direction, text: &str) -> anyhow::Result<ExitCode> {
    let mut blocked = false;
    for (line, mut value) in values(text)? {
        let (outcome, report) = cases::judge(set, call, direction, &mut value);
        for noted in &report.findings {
            println_stdout(
                &json!({
                    "line": line,
                    "rule": noted.rule,
                    "detector": noted.detector,
                    "type": noted.kind,
                    "at": noted.at,
                    "count": noted.count,
                    "score": noted.score,
                    "action": noted.action,
                })
                .to_string(),
            );
        }
        if outcome == Outcome::Block {
            blocked = true;
            let rules: Vec<&str> = report
                .findings
                .iter()
                .filter(|n| n.action == "block")
                .map(|n| n.rule.as_str())
                .collect();
            eprintln!("line {line}: would be refused by {}", rules.join(", "));
        }
        for hold in &report.holds {
            eprintln!(
                "line {line}: would wait for `{}`: {}",
                hold.group, hold.reason
            );
        }
    }
    Ok(if blocked {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn test(set: &Set, policies_dir: &Path, files: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let files = cases::test_files(policies_dir, files);
    if files.is_empty() {
        eprintln!(
            "no guardrails tests: put *.toml files in {} or name them",
            policies_dir.join(cases::TESTS_DIR).display()
        );
        return Ok(ExitCode::FAILURE);
    }
    let report = cases::run_tests(set, &files);
    Ok(super::print_test_report("guardrails", &report, files.len()))
}

/// Each labelled text's highest score (of `detector`'s findings, or of
/// all), and what that detects.
fn eval(set: &Set, text: &str, detector: Option<&str>, each: bool) -> anyhow::Result<ExitCode> {
    let mut scored = Vec::new();
    for (line, value) in values(text)? {
        let (Some(text), Some(label)) = (value["text"].as_str(), value["label"].as_u64()) else {
            anyhow::bail!("line {line}: want {{\"text\": \"...\", \"label\": 0 or 1}}");
        };
        let mut score = set
            .scan(text)
            .iter()
            .filter(|f| detector.is_none_or(|d| f.detector == d))
            .map(|f| f.score)
            .fold(0.0_f32, f32::max);
        if let Some(model) = set.injection()
            && detector.is_none_or(|d| d == injection::NAME)
        {
            score = score.max(model.score(text));
        }
        if each {
            // The words that weighed most, for the injection model.
            let words: Vec<Value> = set
                .injection()
                .filter(|_| detector.is_none_or(|d| d == injection::NAME))
                .map(|model| {
                    model
                        .explain(text)
                        .into_iter()
                        .take(8)
                        .map(|(word, weight)| json!([word, (weight * 100.0).round() / 100.0]))
                        .collect()
                })
                .unwrap_or_default();
            println_stdout(
                &json!({"line": line, "label": label, "score": score, "words": words}).to_string(),
            );
        }
        scored.push((score, label == 1));
    }
    let scores = Scores::new(scored);
    println_stdout(&format!(
        "{} texts: {} positive, {} negative; AUC {:.4}",
        scores.positives() + scores.negatives(),
        scores.positives(),
        scores.negatives(),
        scores.auc()
    ));
    let at = scores.tpr_at_fpr(0.01);
    println_stdout(&format!(
        "TPR {:.3} at FPR ≤ 1% (threshold {:.3})",
        at.tpr(),
        at.threshold
    ));
    println_stdout("| threshold | TPR | FPR | precision | F1 |");
    println_stdout("|---:|---:|---:|---:|---:|");
    for step in 1..=10 {
        let at = scores.at(step as f32 / 10.0);
        println_stdout(&format!(
            "| {:.1} | {:.3} | {:.3} | {:.3} | {:.3} |",
            at.threshold,
            at.tpr(),
            at.fpr(),
            at.precision(),
            at.f1()
        ));
    }
    Ok(ExitCode::SUCCESS)
}
