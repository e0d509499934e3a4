//! How good a detector is, in the numbers a security team compares:
//! true- and false-positive rates, precision, F1 at a threshold, the TPR
//! at a fixed FPR, and the ROC AUC. Used by `toolgate guardrails eval` and
//! the guardrails benchmark.

/// Scores of labelled texts (`true`: should be found).
#[derive(Debug, Clone, Default)]
pub struct Scores {
    /// Sorted by score, highest first.
    scored: Vec<(f32, bool)>,
    positives: usize,
    negatives: usize,
}

/// Counts at one threshold (a text is found when its score ≥ threshold).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AtThreshold {
    pub threshold: f32,
    pub tp: usize,
    pub fp: usize,
    pub tn: usize,
    pub fn_: usize,
}

impl AtThreshold {
    pub fn tpr(&self) -> f64 {
        ratio(self.tp, self.tp + self.fn_)
    }
    pub fn fpr(&self) -> f64 {
        ratio(self.fp, self.fp + self.tn)
    }
    pub fn precision(&self) -> f64 {
        ratio(self.tp, self.tp + self.fp)
    }
    pub fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.tpr());
        if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        }
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

impl Scores {
    pub fn new(mut scored: Vec<(f32, bool)>) -> Scores {
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        let positives = scored.iter().filter(|(_, l)| *l).count();
        Scores {
            negatives: scored.len() - positives,
            positives,
            scored,
        }
    }

    pub fn positives(&self) -> usize {
        self.positives
    }

    pub fn negatives(&self) -> usize {
        self.negatives
    }

    /// The counts at `threshold`.
    pub fn at(&self, threshold: f32) -> AtThreshold {
        let tp = self
            .scored
            .iter()
            .filter(|(s, l)| *l && *s >= threshold)
            .count();
        let fp = self
            .scored
            .iter()
            .filter(|(s, l)| !*l && *s >= threshold)
            .count();
        AtThreshold {
            threshold,
            tp,
            fp,
            tn: self.negatives - fp,
            fn_: self.positives - tp,
        }
    }

    /// The highest TPR whose FPR is at most `max_fpr`, with the lowest
    /// threshold that gives it (thresholds are the scores seen).
    pub fn tpr_at_fpr(&self, max_fpr: f64) -> AtThreshold {
        let allowed = (max_fpr * self.negatives as f64).floor() as usize;
        let mut best = self.at(f32::INFINITY);
        let (mut tp, mut fp) = (0, 0);
        let mut i = 0;
        while i < self.scored.len() {
            // Texts with equal scores are found together.
            let score = self.scored[i].0;
            while i < self.scored.len() && self.scored[i].0 == score {
                if self.scored[i].1 {
                    tp += 1;
                } else {
                    fp += 1;
                }
                i += 1;
            }
            if fp > allowed {
                break;
            }
            best = AtThreshold {
                threshold: score,
                tp,
                fp,
                tn: self.negatives - fp,
                fn_: self.positives - tp,
            };
        }
        best
    }

    /// The area under the ROC curve: the chance a random positive scores
    /// above a random negative (ties count half).
    pub fn auc(&self) -> f64 {
        if self.positives == 0 || self.negatives == 0 {
            return 0.0;
        }
        let (mut above, mut negatives_seen) = (0f64, 0usize);
        let mut i = 0;
        // Walk from the lowest score up, counting negatives below.
        let ascending: Vec<&(f32, bool)> = self.scored.iter().rev().collect();
        while i < ascending.len() {
            let score = ascending[i].0;
            let (mut pos, mut neg) = (0usize, 0usize);
            while i < ascending.len() && ascending[i].0 == score {
                if ascending[i].1 {
                    pos += 1;
                } else {
                    neg += 1;
                }
                i += 1;
            }
            above += pos as f64 * (negatives_seen as f64 + neg as f64 / 2.0);
            negatives_seen += neg;
        }
        above / (self.positives as f64 * self.negatives as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_and_random_and_tied() {
        let perfect = Scores::new(vec![(0.9, true), (0.8, true), (0.2, false), (0.1, false)]);
        assert_eq!(perfect.auc(), 1.0);
        let at = perfect.tpr_at_fpr(0.0);
        assert_eq!((at.tp, at.fp, at.threshold), (2, 0, 0.8));
        let tied = Scores::new(vec![(0.5, true), (0.5, false)]);
        assert_eq!(tied.auc(), 0.5);
        assert_eq!(tied.tpr_at_fpr(0.0).tp, 0);
        let at = perfect.at(0.5);
        assert_eq!(
            (at.tpr(), at.fpr(), at.precision(), at.f1()),
            (1.0, 0.0, 1.0, 1.0)
        );
    }

    #[test]
    fn fpr_budget_counts_negatives() {
        // 100 negatives at 0.1..; one negative above every positive.
        let mut v: Vec<(f32, bool)> = (0..100).map(|i| (i as f32 / 1000.0, false)).collect();
        v.push((0.99, false));
        v.extend((0..10).map(|i| (0.5 + i as f32 / 100.0, true)));
        let s = Scores::new(v);
        // 1% of 101 negatives allows one false positive.
        let at = s.tpr_at_fpr(0.01);
        assert_eq!((at.tp, at.fp), (10, 1));
        let at = s.tpr_at_fpr(0.0);
        assert_eq!((at.tp, at.fp), (0, 0));
    }
}
