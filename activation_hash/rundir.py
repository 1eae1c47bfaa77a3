"""Kept import path: the run-directory claim and the result-neutral keys live in
`activation_hash.runs.claim` (analysis/select.py and the conf/hydra comments name this module)."""

from activation_hash.runs.claim import (NOT_RESULT_KEYS, RUN_DIR_EXCLUDED, changed_keys, claim, comparable,  # noqa: F401
                                        is_neutral, move_aside)
