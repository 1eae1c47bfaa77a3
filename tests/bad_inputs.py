"""The table of bad inputs of every entry point, and an in-process harness that runs one and
classifies what happened (tests/test_bad_inputs.py expects every one to be a clean refusal).

    python -m tests.bad_inputs            # run the whole table, print each outcome and the counts

Outcomes: clean (exit 2, one `error: KEY=...` line, nothing written), multiline (refused with a
non-traceback message of several lines or exit 1: Hydra's block), traceback, accepted (exit 0),
late (refused only after a run directory was written or a job trained), other (exit 2 with one
line that does not name the key).
Each row: (entry, argv, key). entry: app | evaluate | report | collect. `{tmp}` in argv is a
scratch folder holding fixtures: `good.npz` (a valid codes file), `one_class.npz`, `float.npz`,
`short_labels.npz`, `no_train.npz`, `big_nbits.npz`, `afile` (a plain file), `table.csv`.
Training is made tiny by BASE (app rows only), so an input that is wrongly accepted costs seconds.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from pathlib import Path

import numpy as np

BASE = ["trainer.max_epochs=1", "codes.epochs=[0,1]", "data.train_size=200", "data.test_size=100",
        "progress_bar=none", "codes.verbose=false", "logger=none"]

M = ["-m"]
B = ["-m", "hydra/launcher=batched"]

APP: list[tuple[list[str], str]] = [
    # model
    (["model.width=abc"], "model.width"),
    (["model.width=0"], "model.width"),
    (["model.depth=two"], "model.depth"),
    (["model=dlgn", "model.variant=foo"], "model.variant"),
    (["model=dlgn", "model.beta=-1"], "model.beta"),
    (["model=dlgn", "model.value_input=zeros"], "model.value_input"),
    (["model=dlgn", "model.hard_gates=maybe"], "model.hard_gates"),
    (["model=binary_encoding", "model.variant=foo"], "model.variant"),
    (["model=binary_encoding", "model.latent_dim=0"], "model.latent_dim"),
    (["model=binary_encoding", "model.gamma0=-1"], "model.gamma0"),
    (["model=binary_encoding", "model.gamma_growth=0"], "model.gamma_growth"),
    (["model=binary_encoding", "model.backbone.activation=tanh"], "model.backbone.activation"),
    (["model.depth=2", "model.widths=[8,8,8]"], "model.widths"),
    (["model=nosuch"], "model"),
    (["model.widht=10"], "model.widht"),
    (["model.split_width=yes"], "model.split_width"),
    (["model._target_=activation_hash.models.mlp.NoSuch"], "model._target_"),
    (["model._target_=nosuchmodule.Net"], "model._target_"),
    (["+model.nosuchkwarg=1"], "model.nosuchkwarg"),
    (["model=resnet20", "model.shortcut=C"], "model.shortcut"),
    (["model=resnet20", "model.base_width=0"], "model.base_width"),
    (["model=vgg16", "model.depth=12"], "model.depth"),
    (["model=vgg16", "model.width_multiplier=0"], "model.width_multiplier"),
    (["model=densenet", "model.growth_rate=0"], "model.growth_rate"),
    (["model=resnext", "model.cardinality=0"], "model.cardinality"),
    (["model=custom", "model.network._target_=nosuch.Net"], "model.network._target_"),
    # data
    (["data=nosuch"], "data"),
    (["data.test_size=100000"], "data.test_size"),
    (["data.train_size=100000"], "data.train_size"),
    (["data.batch_size=abc"], "data.batch_size"),
    (["data=moons", "data.noise=-1"], "data.noise"),
    (["data=moons", "data.n_samples=0"], "data.n_samples"),
    (["data=circles", "data.n_test=0"], "data.n_test"),
    (["data=spirals", "data.num_classes=1"], "data.num_classes"),
    (["data.options.split=random"], "data.options.split"),
    (["data.val_fraction=-0.1"], "data.val_fraction"),
    (["data.label_noise=1.5"], "data.label_noise"),
    (["data.eval_batch_size=0"], "data.eval_batch_size"),
    (["data.shuffle=maybe"], "data.shuffle"),
    (["data=synthetic", "data.options.num_classes=1"], "data.options.num_classes"),
    (["data=mnist", "data.root={tmp}/afile"], "data.root"),
    (["data=mnist", "data.root={tmp}/empty"], "data.root"),
    # optimizer
    (["optimizer.lr=-1"], "optimizer.lr"),
    (["+optimizer.eps=-1"], "optimizer.eps"),
    (["+optimizer.foo=1"], "optimizer.foo"),
    (["optimizer=sgd", "optimizer.momentum=-0.1"], "optimizer.momentum"),
    (["optimizer=sgd", "+optimizer.nesterov=maybe"], "optimizer.nesterov"),
    (["optimizer=sgd", "optimizer.momentum=0", "+optimizer.nesterov=true"], "optimizer.nesterov"),
    (["optimizer=nosuch"], "optimizer"),
    (["optimizer.betas=[0.9,1.0]"], "optimizer.betas"),
    (["optimizer.weight_decay=abc"], "optimizer.weight_decay"),
    (["+optimizer.amsgrad=maybe"], "optimizer.amsgrad"),
    # scheduler
    (["scheduler=step", "scheduler.step_size=abc"], "scheduler.step_size"),
    (["scheduler=step", "scheduler.gamma=0"], "scheduler.gamma"),
    (["scheduler=step_after", "scheduler.hold=-1"], "scheduler.hold"),
    (["scheduler=nosuch"], "scheduler"),
    (["scheduler=step", "+scheduler.foo=1"], "scheduler.foo"),
    # trainer
    (["trainer.max_epochs=-1"], "trainer.max_epochs"),
    (["+trainer.limit_train_batches=0"], "trainer.limit_train_batches"),
    (["+trainer.limit_val_batches=-1"], "trainer.limit_val_batches"),
    (["trainer.max_steps=-5"], "trainer.max_steps"),
    (["trainer.accelerator=banana"], "trainer.accelerator"),
    (["trainer.precision=13"], "trainer.precision"),
    (["+trainer.nosuch=1"], "trainer.nosuch"),
    (["trainer.deterministic=sometimes"], "trainer.deterministic"),
    (["trainer.gradient_clip_algorithm=foo"], "trainer.gradient_clip_algorithm"),
    (["trainer.devices=0"], "trainer.devices"),
    (["trainer.check_val_every_n_epoch=0"], "trainer.check_val_every_n_epoch"),
    (["trainer.fast_dev_run=maybe"], "trainer.fast_dev_run"),
    (["trainer.accumulate_grad_batches=0"], "trainer.accumulate_grad_batches"),
    (["trainer.num_sanity_val_steps=-2"], "trainer.num_sanity_val_steps"),
    (["trainer.log_every_n_steps=0"], "trainer.log_every_n_steps"),
    (["trainer.max_epochs=10", "trainer.max_steps=2", "codes.epochs=[0,1,5]"], "codes.epochs"),
    # codes
    (["codes.epochs=bogus"], "codes.epochs"),
    (["codes.epochs=[0,5]"], "codes.epochs"),
    (["codes.layers=x"], "codes.layers"),
    (["codes.save=maybe"], "codes.save"),
    # metrics
    (["metrics.which=[]"], "metrics.which"),
    (["metrics.which=[foo]"], "metrics.which"),
    (["metrics.halfspaces.enabled=true"], "metrics.halfspaces.enabled"),
    (["metrics.regions.enabled=true"], "metrics.regions.enabled"),
    (["metrics.device=cuda:7"], "metrics.device"),
    (["metrics.device=banana"], "metrics.device"),
    (["metrics.deepfool.enabled=true", "metrics.deepfool.n_samples=0"], "metrics.deepfool.n_samples"),
    (["metrics.deepfool.enabled=maybe"], "metrics.deepfool.enabled"),
    (["metrics.deepfool.overshoot=-1"], "metrics.deepfool.overshoot"),
    (["metrics.which=[retrieval]", "metrics.retrieval.protocol=foo"], "metrics.retrieval.protocol"),
    (["metrics.which=[retrieval]", "metrics.retrieval.bits=[0]"], "metrics.retrieval.bits"),
    (["metrics.knn_k=0"], "metrics.knn_k"),
    (["metrics.knn_k=5000"], "metrics.knn_k"),
    (["metrics.kmeans_n_init=0"], "metrics.kmeans_n_init"),
    (["metrics.max_dense_bytes=-1"], "metrics.max_dense_bytes"),
    (["metrics.plugins=[nosuch_plugin_module]"], "metrics.plugins"),
    (["metrics.diameter.grid_step=0"], "metrics.diameter.grid_step"),
    (["metrics.nosuch=1"], "metrics.nosuch"),
    # logger, callbacks
    (["logger=nosuch"], "logger"),
    (["logger=wandb", "logger.wandb.offline=maybe"], "logger.wandb.offline"),
    (["callbacks=early_stopping", "callbacks.early_stopping.mode=avg"], "callbacks.early_stopping.mode"),
    (["callbacks=early_stopping", "callbacks.early_stopping.patience=-1"], "callbacks.early_stopping.patience"),
    (["+callbacks.mine._target_=nosuch.Callback"], "callbacks.mine._target_"),
    # top level, groups
    (["optimized_metric=test/nope"], "optimized_metric"),
    (["tags=foo"], "tags"),
    (["seed=-1"], "seed"),
    (["resume=sometimes"], "resume"),
    (["run_dir_lock=maybe"], "run_dir_lock"),
    (["progress_bar=fancy"], "progress_bar"),
    (["recipe=nosuch"], "recipe"),
    (["regularizer=nosuch"], "regularizer"),
    (["profile=nosuch"], "profile"),
    (["nosuchkey=1"], "nosuchkey"),
    (["+experiment=nosuch"], "experiment"),
    (["output_dir={tmp}/afile"], "output_dir"),
    (["+experiment=model_size"], "experiment"),
    # sweeps, both launchers
    ([*M, "model.width=16,abc,8"], "model.width"),
    ([*B, "model.width=16,abc,8"], "model.width"),
    ([*M, "seed=0,-1"], "seed"),
    ([*M, "model=mlp,nosuch"], "model"),
    ([*B, "hydra.launcher.max_members=0", "seed=0,1"], "hydra.launcher.max_members"),
    ([*B, "hydra.launcher.n_jobs=zero", "seed=0,1"], "hydra.launcher.n_jobs"),
    ([*B, "hydra.launcher.pad_widths=maybe", "seed=0,1"], "hydra.launcher.pad_widths"),
    ([*M, "+experiment=model_size", "data.root={tmp}/empty"], "data.root"),
]

EVALUATE: list[tuple[list[str], str]] = [
    (["{tmp}/missing.npz"], "codes"),
    (["{tmp}/good.npz", "--device", "banana"], "--device"),
    (["{tmp}/good.npz", "--device", "cuda:7"], "--device"),
    (["{tmp}/good.npz", "--k", "0"], "--k"),
    (["{tmp}/one_class.npz"], "train_labels"),
    (["{tmp}/no_train.npz"], "train_codes"),
    (["{tmp}/float.npz"], "train_codes"),
    (["{tmp}/short_labels.npz"], "train_labels"),
    (["{tmp}/big_nbits.npz"], "n_bits"),
    (["{tmp}/good.npz", "--json", "{tmp}/afile/out.json"], "--json"),
    (["{tmp}/good.npz", "--which", "foo"], "--which"),
    (["{tmp}/good.npz", "--threads", "0"], "--threads"),
    # argparse's own errors, one line each, and what only the file can tell (before any metric)
    ([], "codes"),
    (["{tmp}/good.npz", "{tmp}/float.npz"], "codes"),
    (["{tmp}/good.npz", "--kk", "3"], "--kk"),
    (["{tmp}/good.npz", "--k", "abc"], "--k"),
    (["{tmp}/good.npz", "--threads"], "--threads"),
    (["{tmp}/good.npz", "--backend", "tor"], "--backend"),
    (["{tmp}/good.npz", "--no-drop-constant=1"], "--no-drop-constant"),
    (["{tmp}/good.npz", "--k", "1000"], "--k"),
    (["{tmp}/good.npz", "--which", ","], "--which"),
    (["{tmp}/good.npz", "--which", "binary_encoding"], "--which"),
    (["{tmp}/good.npz", "--plugins", "nosuch_module"], "--plugins"),
    (["{tmp}/good.npz", "--out", "{tmp}/good.npz"], "--out"),
    (["{tmp}/good.npz", "--out", "{tmp}/empty"], "--out"),
    (["{tmp}/good.npz", "--json", "{tmp}/nodir/out.json"], "--json"),
]

REPORT: list[tuple[list[str], str]] = [
    (["--table", "{tmp}/table.csv", "--out", "{tmp}/rep", "--set", "nosuchkey=1"], "nosuchkey"),
    (["--table", "{tmp}/table.csv", "--out", "{tmp}/rep", "--set", "dpi=abc"], "dpi"),
    (["--table", "{tmp}/table.csv", "--out", "{tmp}/rep", "--set", "phase.rule.eps_r=-1"], "phase.rule.eps_r"),
    (["--table", "{tmp}/table.csv", "--out", "{tmp}/rep", "--set", "include_unfinished=maybe"],
     "include_unfinished"),
    (["--table", "{tmp}/table.csv", "--out", "{tmp}/rep", "--set", "novalue"], "--set"),
    (["--table", "{tmp}/table.csv", "--out", "{tmp}/afile"], "--out"),
    (["--table", "{tmp}/table.csv", "--out", "{tmp}/afile/sub"], "--out"),
    (["--table", "{tmp}/missing.csv", "--out", "{tmp}/rep"], "--table"),
    (["--table", "{tmp}/afile", "--out", "{tmp}/rep"], "--table"),
    (["--table", "{tmp}/table.csv", "--out", "{tmp}/rep", "--config", "nosuch"], "--config"),
]

COLLECT: list[tuple[list[str], str]] = [
    (["{tmp}/nodir", "--out", "{tmp}/t.csv"], "dirs"),
    (["{tmp}/empty", "--out", "{tmp}/afile/t.csv"], "--out"),
    (["{tmp}/empty", "--out", "{tmp}/empty"], "--out"),
]

TABLE: list[tuple[str, list[str], str]] = [
    *[("app", argv, key) for argv, key in APP], *[("evaluate", argv, key) for argv, key in EVALUATE],
    *[("report", argv, key) for argv, key in REPORT], *[("collect", argv, key) for argv, key in COLLECT]]


def case_id(entry: str, argv: list[str]) -> str:
    return f"{entry}:" + " ".join(a.replace("{tmp}/", "") for a in argv)


def make_fixtures(tmp: Path) -> None:
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "afile").write_text("not a directory\n")
    (tmp / "empty").mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    n_bits = 20

    def save(name: str, **over: object) -> None:
        arrays = {"train_codes": np.packbits(rng.integers(0, 2, (60, n_bits)), axis=1).astype(np.uint8),
                  "test_codes": np.packbits(rng.integers(0, 2, (30, n_bits)), axis=1).astype(np.uint8),
                  "train_labels": np.arange(60) % 3, "test_labels": np.arange(30) % 3, "n_bits": np.array(n_bits)}
        arrays.update(over)
        np.savez(tmp / name, **{k: v for k, v in arrays.items() if v is not None})
    save("good.npz")
    save("one_class.npz", train_labels=np.zeros(60, dtype=np.int64), test_labels=np.zeros(30, dtype=np.int64))
    save("no_train.npz", train_codes=None)
    save("float.npz", train_codes=rng.random((60, 3)))
    save("short_labels.npz", train_labels=np.arange(50) % 3)
    save("big_nbits.npz", n_bits=np.array(1000))
    (tmp / "table.csv").write_text("run_dir,finished,study,epoch,split,test/redundancy\nr1,True,model_size,0,test,0.5\n")


def _written(root: Path) -> list[str]:
    """Files a run or a report writes (Hydra's own .hydra/ and job log are not counted)."""
    names = ("config.yaml", "metrics.csv", "result.json", "encoding.jsonl", "report.md", "meta.json")
    return sorted(str(p) for p in root.rglob("*") if p.name in names and ".hydra" not in p.parts)


def run_case(entry: str, argv: list[str], tmp: Path, out_root: Path) -> tuple[int, str, list[str]]:
    """(exit status, stderr+stdout, files written) of one command run in this process; an
    exception escaping the entry point counts as a traceback (status 1)."""
    import traceback
    argv = [a.replace("{tmp}", str(tmp)) for a in argv]
    err, out = io.StringIO(), io.StringIO()
    saved_argv, saved_env = sys.argv, dict(os.environ)
    os.environ["ACTIVATION_HASH_OUTPUT"] = str(out_root)
    os.environ.pop("HYDRA_FULL_ERROR", None)
    code = 0
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            try:
                if entry == "app":
                    from activation_hash import __main__ as app
                    sys.argv = ["activation_hash", *BASE, *argv]
                    try:
                        result = app.main(sys.argv[1:])
                    except TypeError as type_err:  # the entry point before it took argv
                        if "positional argument" not in str(type_err):
                            raise
                        result = app.main()
                    code = 0 if result is None or not isinstance(result, int) else result
                elif entry == "evaluate":
                    from activation_hash import evaluate
                    code = evaluate.main(argv) or 0
                else:
                    from activation_hash.analysis import __main__ as analysis
                    code = analysis.main([entry, *argv]) or 0
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
                if not isinstance(exit_.code, int) and exit_.code is not None:
                    print(exit_.code, file=sys.stderr)
            except BaseException:  # noqa: BLE001 - what a user would see
                traceback.print_exc()
                code = 1
    finally:
        sys.argv = saved_argv
        os.environ.clear()
        os.environ.update(saved_env)
        from hydra.core.global_hydra import GlobalHydra
        GlobalHydra.instance().clear()
    return code, err.getvalue() + out.getvalue(), _written(out_root) + _written(tmp / "rep")


def classify(code: int, text: str, written: list[str], key: str) -> str:
    if "Traceback" in text:
        return "traceback"
    if code == 0:
        return "accepted"
    if written:
        return "late"
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    noise = [line for line in text.splitlines() if line.strip() and not line.startswith("error:")]
    if code == 2 and len(errors) == 1 and not noise:
        return "clean" if f"error: {key}=" in errors[0] or f"error: {key} " in errors[0] else "other"
    return "multiline"


def main() -> None:
    import tempfile
    from collections import Counter
    counts: Counter[str] = Counter()
    only = sys.argv[1:]
    with tempfile.TemporaryDirectory() as scratch:
        for i, (entry, argv, key) in enumerate(TABLE):
            cid = case_id(entry, argv)
            if only and not any(o in cid for o in only):
                continue
            tmp, out_root = Path(scratch) / f"c{i}", Path(scratch) / f"o{i}"
            make_fixtures(tmp)
            code, text, written = run_case(entry, argv, tmp, out_root)
            kind = classify(code, text, written, key)
            counts[kind] += 1
            last = [line for line in text.strip().splitlines() if line.strip()][-1:] or [""]
            print(f"{kind:10s} rc={code} {cid}  | {last[0][:150]}", flush=True)
    print(f"\n{sum(counts.values())} inputs: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))


if __name__ == "__main__":
    main()
