//! Prompt injection: text in a tool result (later, a prompt) that tries
//! to give the model orders. A small model of our own scores it: hashed
//! word, phrase and character-gram features plus cheap signals (see
//! [`features`]), weighed by a logistic regression trained by
//! `toolgate guardrails train` on public labelled sets and on tool results
//! built from agentdojo's suites (`tests/guardrails/`). Its weights ship in
//! `policies/guardrails/injection.model` (about 256 KB, embedded in the
//! binary too) and load with no network.
//!
//! A text is scored in windows of a few dozen words (the model says how
//! many; half overlapping),
//! and its score is its highest window's, so an injection inside a long,
//! harmless result is not averaged away. What the model reads is the text
//! normalised ([`super::hidden::normalise`]: invisible characters out,
//! look-alikes folded); text hidden in Unicode tag characters and base64
//! runs that decode to text are decoded and scored too. A finding's score
//! is the model's probability; below [`FLOOR`] there is no finding, and
//! rules choose their own `min_score` above it.
//!
//! The inspect stages give it a call's whole input or result at once
//! (every string, joined), so an injection split across two content
//! blocks is read as one text.

mod features;
pub mod train;

use std::cell::RefCell;
use std::ops::Range;
use std::sync::{Arc, LazyLock};

use base64::Engine as _;
use regex::Regex;

pub use features::Reader;
use features::SIGNAL_BIT;

use super::Finding;
use super::hidden;

/// The detector's name, as in [`Finding::detector`].
pub const NAME: &str = "injection";
/// Scores below this are not findings.
pub const FLOOR: f32 = 0.5;
/// Largest model file read.
pub const MAX_MODEL_BYTES: usize = 1 << 25;
/// Base64 runs shorter than this are not decoded (ids, hashes, keys).
const BASE64_MIN: usize = 40;
/// Most base64 runs decoded per text, and most bytes decoded from each.
const BASE64_RUNS: usize = 8;
const BASE64_DECODE_MAX: usize = 8 * 1024;

/// The model file's first bytes: its format and the features' version.
const MAGIC: &[u8; 8] = b"TGINJ\0\x01\x03";
const MIN_BITS: u32 = 10;
const MAX_BITS: u32 = 24;
const MIN_WINDOW: u32 = 8;
const MAX_GRAMS: u32 = 32;
const MAX_WINDOW: u32 = 1024;

/// The shipped weights (the same file as `policies/guardrails/injection.model`).
const SHIPPED: &[u8] = include_bytes!("../../policies/guardrails/injection.model");

/// A trained model: one weight per feature bucket, quantised to a byte.
#[derive(Clone)]
pub struct Model {
    bits: u32,
    /// Words per scored window.
    window: u32,
    /// Character grams taken per word.
    grams: u32,
    bias: f32,
    scale: f32,
    weights: Box<[i8]>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("bits", &self.bits)
            .field("bias", &self.bias)
            .finish_non_exhaustive()
    }
}

/// A text's score: the model's probability that it is an injection, and
/// the byte span of the window that scored it.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    pub score: f32,
    pub span: Range<usize>,
}

impl Model {
    /// The model shipped with toolgate.
    pub fn shipped() -> Result<Arc<Model>, String> {
        static SHIPPED_MODEL: LazyLock<Result<Arc<Model>, String>> =
            LazyLock::new(|| Model::from_bytes(SHIPPED).map(Arc::new));
        SHIPPED_MODEL.clone()
    }

    /// Build a model from float weights: quantised to bytes, scaled by the
    /// largest weight.
    pub fn from_floats(bits: u32, window: u32, grams: u32, bias: f32, weights: &[f32]) -> Model {
        let largest = weights.iter().fold(0f32, |m, w| m.max(w.abs()));
        let scale = if largest > 0.0 { largest / 127.0 } else { 1.0 };
        Model {
            bits,
            window,
            grams,
            bias,
            scale,
            weights: weights
                .iter()
                .map(|w| (w / scale).round().clamp(-127.0, 127.0) as i8)
                .collect(),
        }
    }

    /// Read a model file; the error says what is wrong with it.
    pub fn from_bytes(bytes: &[u8]) -> Result<Model, String> {
        let header = MAGIC.len() + 20;
        if bytes.len() < header || &bytes[..MAGIC.len()] != MAGIC {
            return Err(
                "not a toolgate injection model (version 1): retrain it with `toolgate guardrails train`"
                    .into(),
            );
        }
        let word = |at: usize| {
            let mut b = [0u8; 4];
            b.copy_from_slice(&bytes[at..at + 4]);
            b
        };
        let bits = u32::from_le_bytes(word(8));
        let window = u32::from_le_bytes(word(12));
        let grams = u32::from_le_bytes(word(16));
        let bias = f32::from_le_bytes(word(20));
        let scale = f32::from_le_bytes(word(24));
        if grams > MAX_GRAMS {
            return Err(format!(
                "the model takes {grams} character grams per word; toolgate reads 0 to {MAX_GRAMS}"
            ));
        }
        if !(MIN_WINDOW..=MAX_WINDOW).contains(&window) {
            return Err(format!(
                "the model scores windows of {window} words; toolgate reads {MIN_WINDOW} to {MAX_WINDOW}"
            ));
        }
        if !(MIN_BITS..=MAX_BITS).contains(&bits) {
            return Err(format!(
                "the model has {bits} hash bits; toolgate reads {MIN_BITS} to {MAX_BITS}"
            ));
        }
        if !bias.is_finite() || !scale.is_finite() || scale <= 0.0 {
            return Err("the model's bias or scale is not a finite number".into());
        }
        let size = 1usize << bits;
        if bytes.len() != header + size {
            return Err(format!(
                "the model is {} bytes; one with {bits} hash bits is {}",
                bytes.len(),
                header + size
            ));
        }
        Ok(Model {
            bits,
            window,
            grams,
            bias,
            scale,
            weights: bytes[header..].iter().map(|&b| b as i8).collect(),
        })
    }

    /// The model file's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(MAGIC.len() + 20 + self.weights.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.bits.to_le_bytes());
        out.extend_from_slice(&self.window.to_le_bytes());
        out.extend_from_slice(&self.grams.to_le_bytes());
        out.extend_from_slice(&self.bias.to_le_bytes());
        out.extend_from_slice(&self.scale.to_le_bytes());
        out.extend(self.weights.iter().map(|&w| w as u8));
        out
    }

    pub fn bits(&self) -> u32 {
        self.bits
    }

    pub fn window(&self) -> usize {
        self.window as usize
    }

    /// Score a normalised text.
    pub fn score(&self, text: &str) -> Scored {
        thread_local! {
            static READER: RefCell<Reader> = RefCell::new(Reader::default());
        }
        READER.with(|reader| {
            let mut reader = reader.borrow_mut();
            reader.read(text, self.bits, self.grams as usize);
            let (score, window) = self.best_window(&reader);
            let span = match (reader.tokens.get(window.start), window.end.checked_sub(1)) {
                (Some(first), Some(last)) => first.start..reader.tokens[last].end,
                _ => 0..0,
            };
            Scored { score, span }
        })
    }

    /// Why a normalised text scored what it did: the words of its best
    /// window with what each added to the score (before the sigmoid),
    /// largest first.
    pub fn explain(&self, text: &str) -> Vec<(String, f32)> {
        let mut reader = Reader::default();
        reader.read(text, self.bits, self.grams as usize);
        let (_, window) = self.best_window(&reader);
        let count: usize = window
            .clone()
            .map(|i| {
                reader
                    .at(i)
                    .iter()
                    .filter(|&&f| f & SIGNAL_BIT == 0)
                    .count()
            })
            .sum();
        let norm = self.scale / (count.max(1) as f32).sqrt();
        let mut words: Vec<(String, f32)> = window
            .map(|i| {
                let token = reader.tokens[i];
                let contribution: f32 = reader
                    .at(i)
                    .iter()
                    .map(|&f| {
                        let weight = f32::from(self.weights[(f & !SIGNAL_BIT) as usize]);
                        if f & SIGNAL_BIT == 0 {
                            weight * norm
                        } else {
                            weight * self.scale
                        }
                    })
                    .sum();
                (text[token.start..token.end].to_string(), contribution)
            })
            .collect();
        words.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
        words
    }

    /// The highest-scoring window of a text read, and its token range.
    fn best_window(&self, reader: &Reader) -> (f32, Range<usize>) {
        // Prefix sums over tokens make every window one subtraction: of
        // word weights, word feature counts and signal weights.
        let n = reader.tokens.len();
        let mut words = Vec::with_capacity(n + 1);
        let mut count = Vec::with_capacity(n + 1);
        let mut signals = Vec::with_capacity(n + 1);
        words.push(0i64);
        count.push(0u32);
        signals.push(0i64);
        for i in 0..n {
            let (mut w, mut c, mut s) = (0i64, 0u32, 0i64);
            for &f in reader.at(i) {
                let weight = i64::from(self.weights[(f & !SIGNAL_BIT) as usize]);
                if f & SIGNAL_BIT == 0 {
                    w += weight;
                    c += 1;
                } else {
                    s += weight;
                }
            }
            words.push(words[i] + w);
            count.push(count[i] + c);
            signals.push(signals[i] + s);
        }
        let mut best = (f32::NEG_INFINITY, 0..0);
        for w in reader.windows(self.window()) {
            let k = count[w.end] - count[w.start];
            let word_sum = (words[w.end] - words[w.start]) as f32;
            let z = self.bias
                + self.scale * (signals[w.end] - signals[w.start]) as f32
                + if k == 0 {
                    0.0
                } else {
                    self.scale * word_sum / (k as f32).sqrt()
                };
            if z > best.0 {
                best = (z, w);
            }
        }
        (sigmoid(best.0), best.1)
    }
}

pub(crate) fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}

/// The injection detector: the model, and what it reads beyond the text.
#[derive(Debug, Clone)]
pub struct Injection {
    model: Arc<Model>,
}

impl Injection {
    pub fn new(model: Arc<Model>) -> Self {
        Injection { model }
    }

    /// The finding with the highest score in `text` (as given, not
    /// normalised), if it reaches [`FLOOR`].
    pub fn scan(&self, text: &str) -> Option<Finding> {
        let best = self.best(text);
        (best.score >= FLOOR).then_some(best)
    }

    /// Why `text` scored what it did (see [`Model::explain`]).
    pub fn explain(&self, text: &str) -> Vec<(String, f32)> {
        self.model.explain(hidden::normalise(text).as_str())
    }

    /// The highest score in `text`, whatever it is.
    pub fn score(&self, text: &str) -> f32 {
        self.best(text).score
    }

    /// The highest-scoring passage of `text`: the text itself, text hidden
    /// in Unicode tag characters, or a base64 run that decodes to text,
    /// whatever its score.
    pub fn best(&self, text: &str) -> Finding {
        let normalised = hidden::normalise(text);
        let scored = self.model.score(normalised.as_str());
        let mut best = Finding {
            detector: NAME,
            kind: kind("prompt-injection"),
            span: normalised.original(scored.span),
            score: scored.score,
        };
        for (span, decoded) in hidden::decode_unicode_tags(text) {
            let scored = self.model.score(hidden::normalise(&decoded).as_str());
            if scored.score > best.score {
                best = Finding {
                    detector: NAME,
                    kind: kind("prompt-injection-unicode-tag"),
                    span,
                    score: scored.score,
                };
            }
        }
        for (span, decoded) in base64_texts(normalised.as_str()) {
            let scored = self.model.score(hidden::normalise(&decoded).as_str());
            if scored.score > best.score {
                best = Finding {
                    detector: NAME,
                    kind: kind("prompt-injection-base64"),
                    span: normalised.original(span),
                    score: scored.score,
                };
            }
        }
        best
    }
}

fn kind(name: &'static str) -> Arc<str> {
    // One allocation per distinct kind for the process's life.
    static KINDS: LazyLock<[Arc<str>; 3]> = LazyLock::new(|| {
        [
            "prompt-injection".into(),
            "prompt-injection-unicode-tag".into(),
            "prompt-injection-base64".into(),
        ]
    });
    KINDS
        .iter()
        .find(|k| &***k == name)
        .cloned()
        .unwrap_or_else(|| name.into())
}

/// Base64 runs in `text` that decode to mostly printable UTF-8 text.
fn base64_texts(text: &str) -> Vec<(Range<usize>, String)> {
    #[expect(clippy::expect_used, reason = "a constant pattern")]
    static RUN: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"[A-Za-z0-9+/_-]{40,}={0,2}").expect("base64 run pattern compiles")
    });
    if text.len() < BASE64_MIN {
        return Vec::new();
    }
    let mut found = Vec::new();
    for m in RUN.find_iter(text).take(BASE64_RUNS) {
        let run = m.as_str().trim_end_matches('=');
        let cut = &run[..run.len().min(BASE64_DECODE_MAX / 3 * 4)];
        let cut = &cut[..cut.len() / 4 * 4];
        let engine = if cut.contains(['-', '_']) {
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
        } else {
            &base64::engine::general_purpose::STANDARD_NO_PAD
        };
        let Ok(bytes) = engine.decode(cut) else {
            continue;
        };
        let Ok(decoded) = String::from_utf8(bytes) else {
            continue;
        };
        let printable = decoded
            .chars()
            .filter(|c| !c.is_control() || c.is_whitespace())
            .count();
        let letters = decoded.chars().filter(|c| c.is_alphabetic()).count();
        let chars = decoded.chars().count().max(1);
        if printable * 100 >= chars * 95 && letters * 2 >= chars && decoded.contains(' ') {
            found.push((m.range(), decoded));
        }
    }
    found
}

#[cfg(test)]
#[path = "injection_tests.rs"]
mod tests;
