"""Accuracy and throughput of `analyze` on a labelled JSONL set, for tests and `make bench`.

Each line: {"lang": "ja"|"en", "label": "positive"|"neutral"|"negative", "split": ..., "text": ...}.
Polar accuracy (gold positive/negative only; a neutral guess counts as a miss) is the figure
an alert on negative feedback depends on; neutral recall is reported on its own because a
lexicon cannot tell "no opinion" from "opinion in words it does not know".

    python -m cxm_scoring.sentiment.evaluation LABELLED.jsonl OUT.json \
        [--extra-set NAME=OTHER.jsonl ...]

An extra set (e.g. the Japanese complaints set) is scored on its own, under
report[lang]["sets"][NAME], so its figures never mix into the main set's.
"""

import argparse
import json
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cxm_scoring.sentiment.labels import SentimentLabel
from cxm_scoring.sentiment.service import analyze

_LOCALES = {"ja": "ja-JP", "en": "en-US"}


@dataclass(frozen=True, slots=True)
class LabelledText:
    lang: str
    label: SentimentLabel
    split: str
    text: str


def load_labelled(*, path: Path) -> list[LabelledText]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            raw = json.loads(line)
            rows.append(
                LabelledText(
                    lang=raw["lang"],
                    label=SentimentLabel(raw["label"]),
                    split=raw["split"],
                    text=raw["text"],
                )
            )
    return rows


def score_items(*, items: Iterable[LabelledText]) -> dict[str, object]:
    """Confusion counts (gold -> predicted), accuracies, neutral recall, negative precision."""
    confusion: Counter[tuple[SentimentLabel, SentimentLabel]] = Counter()
    for item in items:
        predicted = analyze(item.text, locale=_LOCALES.get(item.lang)).label
        confusion[(item.label, predicted)] += 1

    def share(golds: Sequence[SentimentLabel]) -> float | None:
        total = sum(n for (gold, _), n in confusion.items() if gold in golds)
        hits = sum(n for (gold, pred), n in confusion.items() if gold in golds and gold == pred)
        return round(hits / total, 4) if total else None

    negative_calls = sum(n for (_, pred), n in confusion.items() if pred is SentimentLabel.NEGATIVE)
    negative_hits = confusion[(SentimentLabel.NEGATIVE, SentimentLabel.NEGATIVE)]
    polar = (SentimentLabel.POSITIVE, SentimentLabel.NEGATIVE)
    return {
        "n": sum(confusion.values()),
        "polar_accuracy": share(polar),
        "three_class_accuracy": share(tuple(SentimentLabel)),
        "neutral_recall": share((SentimentLabel.NEUTRAL,)),
        # How often a negative-feedback alert raised on this label would be right.
        "negative_precision": round(negative_hits / negative_calls, 4) if negative_calls else None,
        "confusion": {
            gold.value: {pred.value: confusion[(gold, pred)] for pred in SentimentLabel}
            for gold in SentimentLabel
        },
    }


def measure_throughput(*, texts: Sequence[str], locale: str, seconds: float) -> float:
    """Texts per second through `analyze`, single thread, repeating `texts` for ~`seconds`."""
    analyze(texts[0], locale=locale)  # build the analyser outside the timed loop
    done = 0
    started = time.perf_counter()
    while True:
        for text in texts:
            analyze(text, locale=locale)
        done += len(texts)
        elapsed = time.perf_counter() - started
        if elapsed >= seconds:
            return done / elapsed


def score_by_split(*, items: Sequence[LabelledText]) -> dict[str, object]:
    """score_items over all of `items` and over each of their splits."""
    return {
        "all": score_items(items=items),
        "splits": {
            split: score_items(items=[item for item in items if item.split == split])
            for split in sorted({item.split for item in items})
        },
    }


def evaluate(
    *,
    items: Sequence[LabelledText],
    throughput_seconds: float,
    extra_sets: dict[str, Sequence[LabelledText]] | None = None,
) -> dict[str, object]:
    report: dict[str, object] = {}
    for lang in sorted({item.lang for item in items}):
        of_lang = [item for item in items if item.lang == lang]
        by_split = {
            split: score_items(items=[item for item in of_lang if item.split == split])
            for split in sorted({item.split for item in of_lang})
        }
        report[lang] = {
            "all": score_items(items=of_lang),
            "splits": by_split,
            "texts_per_second": round(
                measure_throughput(
                    texts=[item.text for item in of_lang],
                    locale=_LOCALES.get(lang, lang),
                    seconds=throughput_seconds,
                )
            ),
            "mean_chars": round(sum(len(item.text) for item in of_lang) / len(of_lang), 1),
        }
        sets = {
            name: score_by_split(items=[item for item in extra if item.lang == lang])
            for name, extra in sorted((extra_sets or {}).items())
            if any(item.lang == lang for item in extra)
        }
        if sets:
            report[lang]["sets"] = sets
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("labelled", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--seconds", type=float, default=2.0, help="throughput run per language")
    parser.add_argument(
        "--extra-set",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="another labelled set, reported separately under its name",
    )
    args = parser.parse_args()
    extra_sets = {}
    for spec in args.extra_set:
        name, _, path = spec.partition("=")
        if not name or not path:
            parser.error(f"--extra-set expects NAME=PATH, got {spec!r}")
        extra_sets[name] = load_labelled(path=Path(path))
    report = evaluate(
        items=load_labelled(path=args.labelled),
        throughput_seconds=args.seconds,
        extra_sets=extra_sets,
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
