//! Training the injection model: logistic regression over the hashed
//! features of [`super::features`], by stochastic gradient descent with a
//! fixed seed (the same data and options give the same weights, byte for
//! byte).
//!
//! A text is scored by its best window (`window` words), so it is
//! trained the same way: every window of a harmless text is a negative
//! example; of an injected text, only its best-scoring window under the
//! weights so far is a positive one (the rest of an injected email is
//! still an email). Classes are weighted to count equally.

use super::features::{Reader, SIGNAL_BIT};
use super::{Model, sigmoid};
use crate::guardrails::hidden;

/// One labelled text.
#[derive(Debug, Clone)]
pub struct Example {
    pub text: String,
    pub injection: bool,
}

/// How to train.
#[derive(Debug, Clone)]
pub struct Options {
    /// Hash bits: the model has `2^bits` weights (one byte each).
    pub bits: u32,
    /// Words per scored window.
    pub window: u32,
    /// Character grams taken per word.
    pub grams: u32,
    pub epochs: usize,
    pub seed: u64,
    pub learning_rate: f32,
    /// L2 penalty per update on the weights an example touches.
    pub l2: f32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            bits: 18,
            window: 64,
            grams: 32,
            epochs: 8,
            seed: 15,
            learning_rate: 0.5,
            l2: 1e-6,
        }
    }
}

/// A text's windows, each as its features.
struct Windows {
    features: Vec<Vec<u32>>,
    injection: bool,
}

/// Train a model on `examples`; `progress` hears each epoch's number and
/// mean loss.
pub fn train(
    examples: &[Example],
    options: &Options,
    mut progress: impl FnMut(usize, f32),
) -> Model {
    let mut reader = Reader::default();
    let texts: Vec<Windows> = examples
        .iter()
        .map(|example| {
            let normalised = hidden::normalise(&example.text);
            reader.read(normalised.as_str(), options.bits, options.grams as usize);
            let features = reader
                .windows(options.window as usize)
                .map(|w| {
                    let (from, to) = if w.is_empty() {
                        (0, 0)
                    } else {
                        (
                            reader.offsets[w.start] as usize,
                            reader.offsets[w.end] as usize,
                        )
                    };
                    reader.features[from..to].to_vec()
                })
                .collect();
            Windows {
                features,
                injection: example.injection,
            }
        })
        .collect();
    let positives = texts.iter().filter(|t| t.injection).count().max(1) as f32;
    let negatives: f32 = texts
        .iter()
        .filter(|t| !t.injection)
        .map(|t| t.features.len())
        .sum::<usize>()
        .max(1) as f32;
    let total = positives + negatives;
    let (weight_pos, weight_neg) = (total / (2.0 * positives), total / (2.0 * negatives));

    let mut weights = vec![0f32; 1 << options.bits];
    let mut bias = 0f32;
    let mut rng = SplitMix(options.seed);
    let mut order: Vec<usize> = (0..texts.len()).collect();
    for epoch in 0..options.epochs {
        shuffle(&mut order, &mut rng);
        let rate = options.learning_rate / (1.0 + epoch as f32).sqrt();
        let (mut loss, mut seen) = (0f64, 0usize);
        for &i in &order {
            let text = &texts[i];
            if text.injection {
                let best = text
                    .features
                    .iter()
                    .max_by(|a, b| z(&weights, bias, a).total_cmp(&z(&weights, bias, b)));
                if let Some(window) = best {
                    loss += step(
                        &mut weights,
                        &mut bias,
                        window,
                        1.0,
                        weight_pos,
                        rate,
                        options.l2,
                    );
                    seen += 1;
                }
            } else {
                for window in &text.features {
                    loss += step(
                        &mut weights,
                        &mut bias,
                        window,
                        0.0,
                        weight_neg,
                        rate,
                        options.l2,
                    );
                    seen += 1;
                }
            }
        }
        progress(epoch + 1, (loss / seen.max(1) as f64) as f32);
    }
    Model::from_floats(options.bits, options.window, options.grams, bias, &weights)
}

/// A window's score before the sigmoid: signals count whole, words
/// against how many there are (as [`super::Model`] scores).
fn z(weights: &[f32], bias: f32, features: &[u32]) -> f32 {
    let x = word_weight(features);
    bias + features
        .iter()
        .map(|&f| {
            let w = weights[(f & !SIGNAL_BIT) as usize];
            if f & SIGNAL_BIT == 0 { w * x } else { w }
        })
        .sum::<f32>()
}

/// What one word feature counts for in a window of `features`.
fn word_weight(features: &[u32]) -> f32 {
    let words = features.iter().filter(|&&f| f & SIGNAL_BIT == 0).count();
    if words == 0 {
        0.0
    } else {
        1.0 / (words as f32).sqrt()
    }
}

/// One gradient step on one window; returns its (weighted) log loss.
fn step(
    weights: &mut [f32],
    bias: &mut f32,
    features: &[u32],
    label: f32,
    class_weight: f32,
    rate: f32,
    l2: f32,
) -> f64 {
    let p = sigmoid(z(weights, *bias, features));
    let g = (p - label) * class_weight;
    let x = word_weight(features);
    for &f in features {
        let input = if f & SIGNAL_BIT == 0 { x } else { 1.0 };
        let w = &mut weights[(f & !SIGNAL_BIT) as usize];
        *w -= rate * (g * input + l2 * *w);
    }
    *bias -= rate * g * 0.1;
    let p = f64::from(p.clamp(1e-7, 1.0 - 1e-7));
    f64::from(class_weight)
        * if label > 0.5 {
            -p.ln()
        } else {
            -(1.0 - p).ln()
        }
}

/// SplitMix64: a small, fixed, well-known generator, enough to shuffle
/// training data reproducibly (nothing secret depends on it).
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut x = self.0;
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }
}

/// Fisher–Yates.
fn shuffle(items: &mut [usize], rng: &mut SplitMix) {
    for i in (1..items.len()).rev() {
        let j = (rng.next() % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}
