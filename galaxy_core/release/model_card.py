"""A human-readable model card, generated from ``model.json`` and the test report so that the
figures in it can never drift from the stored model."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from galaxy_core.config import LITE0, Config
from galaxy_core.evaluate.report import PLOT_FILES, accepted_at, load_report, selective_block
from galaxy_core.evaluate.prior_shift import prior_shift_table
from galaxy_core.io_utils import read_json, write_text
from galaxy_core.model.prior import training_prior
from galaxy_core.model.onnx_network import INT8_FILE, file_sha256
from galaxy_core.model.store import META_FILE, WEIGHTS_FILE, report_dir
from galaxy_core.release.literature import literature_lines

CARD_FILE = "MODEL_CARD.md"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _ci(block: dict[str, Any], key: str, fmt: Any) -> str:
    lo_hi = block.get("ci95", {}).get(key)
    return f" (95% bootstrap interval {fmt(lo_hi[0])}-{fmt(lo_hi[1])})" if lo_hi else ""


def _network(arch: str | None) -> str:
    if arch == LITE0:
        return "EfficientNet-Lite0 (timm `tf_efficientnet_lite0`)"
    return f"torchvision `{arch}`"


def _restarts(history: list[dict[str, Any]], warmup: int) -> str:
    """Say where a run was extended: the learning rate jumps up there (a warm restart)."""
    after = [prev["epoch"] for prev, row in zip(history, history[1:])
             if prev["epoch"] > warmup and row["lr"] > 1.5 * prev["lr"]]
    if not after:
        return ""
    return (" The schedule was extended after epoch " + ", ".join(map(str, after))
            + " (`--resume --epochs N`: the cosine schedule restarts from a higher rate).")


def _from_leaf_classes(source: str) -> bool:
    """Whether the labels came from a leaf-class table (``galaxy prepare --labels``)."""
    return source.startswith("leaf classes")


def _labels_phrase(source: str) -> str:
    """Say which labels were learnt: a leaf-class table gives one answer per galaxy with no vote
    threshold, not the 80% consensus that "confident" means in Galaxy Zoo papers, and the card
    must not claim more."""
    if source.startswith("sources "):
        return ("several surveys' labels together (" + ", ".join(
            part.split(":")[0].strip() for part in source[len("sources "):].split(";"))
            + "): Galaxy Zoo 1 leaf classes where GZ1 is one of them (no vote threshold), "
            "confident Galaxy Zoo 2 classes where GZ2 is; each source's figures are below")
    if _from_leaf_classes(source):
        return ("Galaxy Zoo 1 leaf classes (elliptical; clockwise, anticlockwise and edge-on "
                "spirals), with mergers and 'don't know' excluded")
    if "debiased p" in source or "UNCERTAIN" in source:
        return "confident Galaxy Zoo 1 labels (uncertain galaxies excluded)"
    return "labelled galaxy images"


def describe_recipe(recipe: dict[str, Any]) -> str:
    """Say how the spread was measured: by retraining a recipe on each split, maybe not this one."""
    if not recipe:
        return "Mean ± standard deviation over independently trained splits (calibrated, test):"
    start = "from scratch" if not recipe.get("weights") else f"from `{recipe['weights']}` weights"
    return (f"Mean ± standard deviation over splits, each trained anew with "
            f"{_network(recipe.get('arch'))} {start}, {recipe.get('epochs')} epochs at "
            f"{recipe.get('image_size')} px (calibrated, test part of each split):")


def _selective_lines(test: dict[str, Any], val: dict[str, Any]) -> list[str]:
    """Thresholds for accepting only confident answers. Read off the test curve they flatter a
    little (the threshold is fitted to the very galaxies it is judged on), so each is also chosen
    on validation and then applied to test, which is what a survey would see."""
    selective = selective_block(test) if test else None
    hits = [(t, h) for t, h in (selective or {}).get("at_accuracy", {}).items() if h]
    if not hits:
        return []
    chosen = (selective_block(val) or {}).get("at_accuracy", {}) if val else {}
    lines = ["", "## Accepting only confident answers", "",
             "A survey can accept the answers the model is surest of and send the rest to "
             "people. On the test set:", ""]
    for target, hit in hits:
        line = (f"- {_pct(float(target))} accuracy: accept p ≥ {hit['threshold']:.3f}, which "
                f"keeps {_pct(hit['coverage'])} of galaxies")
        on_val = chosen.get(target)
        applied = accepted_at(test, on_val["threshold"]) if on_val else None
        if applied:
            line += (f"; the threshold chosen on validation (p ≥ {applied['threshold']:.3f}) "
                     f"keeps {_pct(applied['coverage'])} of test galaxies at "
                     f"{_pct(applied['accuracy'])} accuracy")
        lines.append(line + ".")
    return lines


def _population_lines(test: dict[str, Any], meta: dict[str, Any]) -> list[str]:
    """How the answers carry to another spiral fraction (``galaxy predict --prior``), measured
    by resampling the test galaxies to each fraction."""
    train = training_prior(meta)
    table = prior_shift_table(test, train) if test and train else []
    if not table:
        return []
    n, repeats = table[0]["n"], table[0]["repeats"]
    lines = ["", "## Other populations (spiral fraction)", "",
             f"Probabilities are calibrated for the training mix, {_pct(train)} spirals. For "
             "another population, `galaxy predict --prior P` moves them to a known spiral "
             "fraction P and `--prior estimate` fits the batch's own fraction (EM, Saerens et "
             f"al. 2002). Test galaxies resampled to each fraction ({repeats} samples of {n}):",
             "", "| true fraction | estimated (EM) | counting answers | accuracy: training mix → "
             "estimated mix | balanced accuracy: training mix → estimated mix |",
             "|---|---|---|---|---|"]
    for row in table:
        lines.append(f"| {_pct(row['true'])} | {_pct(row['estimate'])} ± "
                     f"{_pct(row['estimate_std'])} | {_pct(row['counted'])} | "
                     f"{_pct(row['accuracy'])} → {_pct(row['accuracy_adjusted'])} | "
                     f"{_pct(row['balanced'])} → {_pct(row['balanced_adjusted'])} |")
    lines += ["", "Moving to the population's mix raises accuracy, most where the mix is far "
              "from the training one; balanced accuracy can fall where spirals are rare, because "
              "the move trades spiral recall for fewer false spirals."]
    return lines


def _onnx_lines(meta: dict[str, Any], model_dir: Path) -> list[str]:
    """The ONNX Runtime files and how the int8 one measured against float32 (``galaxy export
    --onnx``): a reader deciding on ``--backend onnx-int8`` sees what it costs in accuracy.
    Nothing when the record is not of this folder (carried over by an fp16 export: other
    weights, or a kept file that is not here)."""
    record = meta.get("onnx", {})
    int8 = record.get("int8")
    weights = model_dir / WEIGHTS_FILE
    if not int8 or not weights.is_file() or record.get("weights_sha256") != file_sha256(weights) \
            or (int8.get("kept") and not (model_dir / INT8_FILE).is_file()):
        return []
    gate = int8.get("gate", {})
    fp32, q8, moves = gate.get("fp32", {}), gate.get("int8", {}), gate.get("move_points", {})
    cal = int8.get("calibration", {})
    verdict = ("kept: both moved by at most" if int8.get("kept")
               else "**not kept**: a move exceeded") + f" {gate.get('max_move_points')} points"
    lines = ["", "## ONNX Runtime", "",
             "`galaxy export MODEL --onnx` writes `model.onnx` (float32, the same answers as "
             "torch within float rounding; not shipped, written on first use of `galaxy predict "
             "--backend onnx`) and `model.int8.onnx`: static int8 "
             f"({int8.get('quantization')}), calibrated on {cal.get('images')} validation "
             f"galaxies, {int8.get('bytes', 0) / 2**20:.1f} MiB. Float32 → int8 on the "
             f"{gate.get('n')} test galaxies ({gate.get('views')} views, calibrated "
             "probabilities):", "",
             "| metric | float32 | int8 | move (points) |", "|---|---|---|---|"]
    four = (lambda v: "n/a" if v is None else f"{v:.4f}")
    for key, label, fmt in (("accuracy", "accuracy", _pct), ("macro_f1", "macro-F1", four)):
        lines.append(f"| {label} | {fmt(fp32.get(key))} | {fmt(q8.get(key))} | "
                     f"{moves.get(key, float('nan')):+.2f} |")
    lines += ["", f"Same label for {_pct(gate.get('same_label'))} of the galaxies; p(spiral) "
              f"moved by {gate.get('mean_abs_diff_p_spiral', float('nan')):.4f} on average, at "
              f"most {gate.get('max_abs_diff_p_spiral', float('nan')):.3f}."]
    ood = gate.get("ood")
    if ood and "flagged" in ood:
        flagged = ood["flagged"]
        lines[-1] += (f" The OOD warning, int8 scored on its own reference "
                      f"(`{ood.get('reference')}`, fitted on the int8 network's features of the "
                      f"training galaxies), flags {_pct(flagged.get('int8'))} of the test "
                      f"galaxies against the float network's {_pct(flagged.get('fp32'))} (a "
                      f"move of {ood.get('move_points', float('nan')):+.2f} points; at most "
                      f"{ood.get('max_move_points')} allowed), the same warning for "
                      f"{_pct(ood.get('same_warning'))} of them.")
    elif ood:
        lines[-1] += (f" The OOD warning agreed for {_pct(ood.get('same_warning'))} (score moved "
                      f"by at most {ood.get('max_abs_diff', float('nan')):.3f}).")
    lines += ["", f"The int8 file is {verdict} (`galaxy predict --backend onnx-int8`, or `auto`). "
              "The figures elsewhere in this card are the torch network's, which `--backend "
              "torch` (the default) and the dashboard give exactly."]
    return lines


def _breakdown_lines(test: dict[str, Any]) -> list[str]:
    """Each survey on its own (with its own calibration error: one temperature serves all),
    then each sub-class: where a mixed test set's single figure hides the errors."""
    by_source, by_sub = test.get("by_source") or {}, test.get("by_subclass") or {}
    if not by_source and not by_sub:
        return []
    lines = ["", "## By survey and sub-class (test galaxies)"]
    if by_source:
        lines += ["", "| survey | galaxies | accuracy | balanced accuracy | spiral recall | "
                  "elliptical recall | ROC AUC | ECE (after scaling) |", "|---" * 8 + "|"]
        for name, b in by_source.items():
            lines.append(f"| {name} | {b['n']:,} | {_pct(b['accuracy'])} | "
                         f"{_pct(b['balanced_accuracy'])} | {b['recall']['spiral']:.3f} | "
                         f"{b['recall']['elliptical']:.3f} | {b['roc_auc'] or float('nan'):.4f} "
                         f"| {_pct(b['ece'])} |")
    if by_sub:
        lines += ["", "| sub-class | galaxies | class | right | mean p(spiral) |",
                  "|---|---|---|---|---|"]
        lines += [f"| {name} | {b['n']:,} | {b['true']} | {_pct(b['accuracy'])} | "
                  f"{b['mean_p_spiral']:.3f} |" for name, b in by_sub.items()]
    return lines


def render_model_card(model_dir: Path, notes: str = "") -> str:
    meta: dict[str, Any] = read_json(model_dir / META_FILE)
    cfg = meta.get("config", {})
    train = meta.get("training", {})
    test = load_report(report_dir(model_dir, "test")) or {}
    cal, unc = test.get("calibrated", {}), test.get("uncalibrated", {})
    m = cal.get("metrics", {})
    history = train.get("history", [])
    best = min(history, key=lambda r: r["val_loss"]) if history else {}
    lines = [
        f"# Model card: {model_dir.name}",
        "",
        "Spiral vs elliptical classifier for SDSS-like galaxy cutouts, trained on "
        + _labels_phrase(str(train.get("source", ""))) + ".",
        "",
        "## Model",
        f"- Architecture: {_network(meta.get('arch'))}, 2-class head "
        f"({', '.join(meta.get('classes', []))}); "
        + (f"fine-tuned from the model `{Path(cfg['init_from']).name}` (`--init-from`)."
           if cfg.get("init_from") else "trained from scratch." if not cfg.get("weights")
           else f"fine-tuned from `{cfg.get('weights')}` weights."),
        f"- Input: centre crop {cfg.get('crop_fraction')} of the cutout side, resized to "
        f"{meta.get('input_size')}×{meta.get('input_size')} px, normalised with mean "
        f"{meta.get('mean')} / std {meta.get('std')}.",
        f"- Prediction: logits averaged over the 8 rotations/flips ({'on' if cfg.get('tta') else 'off'}), "
        f"prior correction {[round(b, 3) for b in meta.get('logit_bias', [])]} (undoes class-weighted "
        f"training), temperature {meta.get('temperature', 1.0):.3f} (fitted on validation).",
        f"- Weights: `model.safetensors` ({meta.get('weights_dtype')}); no pickles. Versions: "
        + ", ".join(f"{k} {v}" for k, v in meta.get("versions", {}).items()) + ".",
        "",
        "## Data",
        f"- Source: {train.get('source')}.",
        f"- Kept per class: {train.get('class_counts')}; split {train.get('split')}: "
        f"{train.get('n_train')} train / {train.get('n_val')} validation / {train.get('n_test')} test "
        "(stratified, seeded).",
        "",
        "## Training",
        f"- AdamW, peak lr {cfg.get('lr')}, weight decay {cfg.get('weight_decay')}, batch "
        f"{cfg.get('batch_size')}, {cfg.get('warmup_epochs')} warm-up epoch(s) then cosine decay, "
        f"label smoothing {cfg.get('label_smoothing')}, class imbalance by {cfg.get('balance')}.",
        "- Augmentation: any rotation, flips, "
        f"±{100 * cfg.get('aug_max_scale', Config.aug_max_scale):g}% scale, "
        f"±{100 * cfg.get('aug_max_shift', Config.aug_max_shift):g}% shift, "
        "brightness/contrast jitter.",
        f"- Ran {len(history)} of {cfg.get('epochs')} epochs; best validation loss at epoch "
        f"{best.get('epoch')} ({best.get('val_loss', float('nan')):.4f}, validation accuracy "
        f"{_pct(best.get('val_accuracy'))}, before rotation averaging)."
        + _restarts(history, cfg.get("warmup_epochs", 0)),
        "",
        f"## Held-out test results ({m.get('n')} galaxies never seen in training or calibration)",
        "",
        "| metric | value |",
        "|---|---|",
        f"| accuracy | {_pct(m.get('accuracy'))}{_ci(cal, 'accuracy', _pct)} |",
        f"| balanced accuracy | {_pct(m.get('balanced_accuracy'))} |",
        f"| macro-F1 | {m.get('macro_f1', float('nan')):.4f}"
        f"{_ci(cal, 'macro_f1', lambda v: f'{v:.4f}')} |",
        f"| ROC AUC (spiral) | {m.get('roc_auc') or float('nan'):.4f} |",
        f"| ECE (15 bins), before → after temperature scaling | {_pct(unc.get('ece'))} → "
        f"{_pct(cal.get('ece'))} |",
    ]
    for name, pc in m.get("per_class", {}).items():
        lines.append(f"| {name}: precision / recall / F1 | {pc['precision']:.3f} / "
                     f"{pc['recall']:.3f} / {pc['f1']:.3f} (n={pc['support']}) |")
    cm = m.get("confusion_matrix")
    if cm:
        classes = test.get("classes", meta.get("classes", []))
        lines += ["", "Confusion matrix (rows true, columns predicted):", "",
                  "| | " + " | ".join(classes) + " |", "|---" * (len(classes) + 1) + "|"]
        lines += [f"| {c} | " + " | ".join(str(v) for v in row) + " |"
                  for c, row in zip(classes, cm)]
    lines += _breakdown_lines(test)
    if test.get("by_source"):
        lines += literature_lines(test)
    lines += _selective_lines(test, load_report(report_dir(model_dir, "val")) or {})
    lines += _population_lines(test, meta)
    if meta.get("splits"):
        lines += ["", "## Stability across splits", "",
                  describe_recipe(meta.get("splits_recipe", {})), ""]
        lines += [f"- {k}: {v['mean']:.4f} ± {v['std']:.4f} ({len(v['values'])} splits)"
                  for k, v in meta["splits"].items()]
        accuracy, n = meta["splits"].get("accuracy", {}).get("mean"), m.get("n")
        if accuracy is not None and n:
            se = math.sqrt(accuracy * (1 - accuracy) / n)
            lines += ["", f"For scale: one test split of {n} galaxies at {_pct(accuracy)} "
                      f"accuracy has a binomial standard error of {100 * se:.1f} points on its "
                      "own, so a smaller spread between splits is within sampling noise."]
    lines += _onnx_lines(meta, model_dir)
    lines += ["", "Plots: " + ", ".join(f"`report_test/{name}`" for name in PLOT_FILES) + ".", "",
              "## Intended use and limits",
              "- Intended: SDSS-like colour cutouts (gri composites, galaxy centred, ~0.4 arcsec/px "
              "scaled to the galaxy) of spiral and elliptical galaxies.",
              "- Images from other telescopes go through survey matching (the galaxy is found, "
              "cropped and rescaled to the training scale); an out-of-distribution score above "
              f"{meta.get('ood', {}).get('warn_at', 1.0)} flags inputs unlike the training data.",
              "- Mergers, irregulars and 'don't know' objects were excluded from training: the "
              "model still answers spiral or elliptical for them.",
              "- Labels are volunteer votes; edge-on disks and faint spirals are the usual "
              "disagreements with the catalogue."]
    if _from_leaf_classes(str(train.get("source", ""))) or "gz1_classes" in str(
            train.get("source", "")):
        lines.append("- Leaf classes carry no vote threshold: galaxies the volunteers split on "
                     "have a hard label all the same. They, more than the network, cap the "
                     "accuracy (a learning curve on these labels flattens: the manual's model "
                     "page, 'What limits the accuracy'); the calibrated probability shows which "
                     "galaxies they are.")
    if notes:
        lines += ["", notes]
    return "\n".join(lines) + "\n"


def write_model_card(model_dir: Path, notes: str = "") -> Path:
    return write_text(Path(model_dir) / CARD_FILE, render_model_card(Path(model_dir), notes))
