"""The one owner of a run directory, for solo runs and batched groups alike.

    claim.py       claim/lock the directory; reuse a finished run, keep a resumable one, move others aside
    build.py       seed -> data -> network -> code layers, in one order
    record.py      RunRecord: config.yaml + meta.json at start, each capture's rows (encoding.jsonl,
                   codes/*.npz, loggers, console), restored on resume, result.json last;
                   check_files: what an unfinished run's files must hold to be continued
    checkpoint.py  the solo and group checkpoints (resume: auto) and metrics.csv on resume
    options.py     run options read alike by both paths (checkpointing, progress bar, W&B tags)
    paths.py       the file names of a run directory
"""
