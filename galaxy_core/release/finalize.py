"""Turn a finished training run into its model folder (``RUN/model``): the best weights, the
prior correction that undoes class-weighted training, and everything
:func:`~galaxy_core.release.package.write_model_folder` measures and writes beside them.

Everything it needs is read back from the run folder, so a run can be finalized again later
(after a crash during evaluation, say) without training anything.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from galaxy_core.config import Config
from galaxy_core.data.cache import training_part
from galaxy_core.data.prepared import open_prepared
from galaxy_core.io_utils import read_json
from galaxy_core.model.build import build_model
from galaxy_core.model.device import resolve_device
from galaxy_core.model.weights import read_state_dict
from galaxy_core.release.package import write_model_folder
from galaxy_core.train.distributed import world_from_env
from galaxy_core.train.mix import release_weights
from galaxy_core.train.run_folder import (BEST_FILE, CONFIG_FILE, model_dir, read_history,
                                          write_status)


def prior_correction(weights: np.ndarray) -> np.ndarray:
    """Logit shift that undoes class-weighted training: weighting class c by w_c multiplies its
    odds by w_c, so subtracting log w_c restores probabilities for the true class mix."""
    return -np.log(np.asarray(weights, dtype=float))


def finalize_run(run_dir: Path, stop_state: str = "finished", half: bool = False,
                 device: str = "cpu") -> Path:
    """Write ``run_dir/model`` from the run's best weights; ``stop_state`` (``finished`` or
    ``early_stopped``) is what ``status.json`` says once the folder is written.

    ``device`` is where the network is measured (``galaxy train`` passes its ``--device``;
    under torchrun the first process's GPU). The release step runs it over every part, the
    training images included, and validation and test at 8 views: for the 243k release about
    750,000 passes, which a GPU makes in minutes and 16 CPU cores in about half an hour
    (estimated from the CPU inference rate in the README). The folder's weights are CPU
    tensors wherever they were measured."""
    run_dir = Path(run_dir)
    record = read_json(run_dir / CONFIG_FILE)
    config, split = Config.from_dict(record), int(record.get("split", 0))
    prepared = open_prepared(record["prepared"])
    write_status(run_dir, state="evaluating")

    world = world_from_env()
    where = resolve_device(device, world.local_rank if world.distributed else None)
    model = build_model(config.arch, None)
    model.load_state_dict(read_state_dict(run_dir / BEST_FILE))
    model.to(where)
    train_part = training_part(prepared, config, split)
    history = read_history(run_dir)
    counts = prepared.split_table(split)["split"].value_counts()
    training = {"prepared": str(prepared.root), "source": prepared.summary.get("source"),
                "split": split, "n_train": int(len(train_part)),
                "n_val": int(counts.get("val", 0)), "n_test": int(counts.get("test", 0)),
                "class_counts": prepared.summary.get("kept_per_class"),
                "epochs_run": len(history), "history": history}
    out = model_dir(run_dir)
    write_model_folder(out, model, config, prepared, split, train_part,
                       prior_correction(release_weights(train_part, config)), training,
                       half=half)
    write_status(run_dir, state=stop_state)
    return out
