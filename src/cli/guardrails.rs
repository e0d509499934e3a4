//! `toolgate guardrails scan|eval`: how a security team tries a rule
//! change before deploying it. `scan` runs the guardrails of the policies
//! directory over JSON (arguments or results) and prints what they find
//! and would do; `eval` measures detection on labelled texts.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Subcommand, ValueEnum};
use serde_json::{Value, json};
use toolgate::call::{Inspected, Part, Report};
use toolgate::config::ServerFacts;
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
    /// Measure detection on labelled texts: lines of
    /// `{"text": "...", "label": 0|1}`; prints TPR, FPR, precision and F1
    /// at each threshold.
    Eval {
        file: PathBuf,
        /// Count only this detector's findings (e.g. `secrets`, `pii`).
        #[arg(long)]
        detector: Option<String>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Way {
    Input,
    Output,
}

pub fn run(config: Option<&Path>, command: &GuardrailsCommand) -> anyhow::Result<ExitCode> {
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
        GuardrailsCommand::Eval { file, detector } => {
            eval(&set, &read(Some(file))?, detector.as_deref())
        }
    }
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
        let mut report = Report::default();
        let part = match &mut value {
            Value::Object(object) => Part::Object(object),
            Value::String(text) => Part::Text(text),
            other => Part::Value(other),
        };
        let verdict = set.inspect(direction, call, 0, part, &mut report);
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
        if let Err(e) = verdict {
            blocked = true;
            eprintln!("line {line}: would be refused: {e}");
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

/// One labelled text's highest score, and its label.
fn eval(set: &Set, text: &str, detector: Option<&str>) -> anyhow::Result<ExitCode> {
    let mut scored = Vec::new();
    for (line, value) in values(text)? {
        let (Some(text), Some(label)) = (value["text"].as_str(), value["label"].as_u64()) else {
            anyhow::bail!("line {line}: want {{\"text\": \"...\", \"label\": 0 or 1}}");
        };
        let score = set
            .scan(text)
            .iter()
            .filter(|f| detector.is_none_or(|d| f.detector == d))
            .map(|f| f.score)
            .fold(0.0_f32, f32::max);
        scored.push((score, label == 1));
    }
    let positives = scored.iter().filter(|(_, l)| *l).count();
    let negatives = scored.len() - positives;
    println_stdout(&format!(
        "{} texts: {positives} positive, {negatives} negative",
        scored.len()
    ));
    println_stdout("| threshold | TPR | FPR | precision | F1 |");
    println_stdout("|---:|---:|---:|---:|---:|");
    for step in 1..=10 {
        let threshold = step as f32 / 10.0;
        let tp = scored.iter().filter(|(s, l)| *l && *s >= threshold).count();
        let fp = scored
            .iter()
            .filter(|(s, l)| !*l && *s >= threshold)
            .count();
        let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        let tpr = ratio(tp, positives);
        let fpr = ratio(fp, negatives);
        let precision = ratio(tp, tp + fp);
        let f1 = if precision + tpr == 0.0 {
            0.0
        } else {
            2.0 * precision * tpr / (precision + tpr)
        };
        println_stdout(&format!(
            "| {threshold:.1} | {tpr:.3} | {fpr:.3} | {precision:.3} | {f1:.3} |"
        ));
    }
    Ok(ExitCode::SUCCESS)
}
