"""The baseline the injection model is compared with: PyPI
`prompt-guardrail` (a TF-IDF + logistic regression classifier shipped as
pickles). Prints one score per input line: the probability of the
injection class.

    python tests/guardrails/baseline.py FILE.jsonl
"""

import json
import sys
import warnings


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/guardrails/baseline.py FILE.jsonl")
    warnings.filterwarnings("ignore")  # scikit-learn version notes about the pickles
    from guardify.guardrails.logistic_regression import LogisticRegressionGuardrail

    guard = LogisticRegressionGuardrail()
    with open(sys.argv[1], encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f if line.strip()]
    classes = list(guard._clf.classes_)
    column = classes.index(1)
    scores = guard._clf.predict_proba(guard._vectorizer.transform(texts))[:, column]
    sys.stdout.write("".join(f"{s:.6f}\n" for s in scores))


if __name__ == "__main__":
    main()
