"""A batched group's captures, member by member (issue 23): each member's codes are made, scored
and let go before the next member's (a capture never holds two members' codes).

    OMP_NUM_THREADS=1 python -m pytest tests/test_group_capture.py -q
"""

from __future__ import annotations

import gc
import math

import activation_hash.batched.run_group as run_group_module
from activation_hash.batched.run_group import run_group
from activation_hash.codes.collect import SplitCodes
from tests.conftest import compose_config
from tests.test_launcher import MEMBERS, SMALL


def _codes_alive() -> int:
    """Bytes of every code array alive in this process (SplitCodes.codes, garbage collected first)."""
    gc.collect()
    return sum(o.codes.nbytes for o in gc.get_objects() if isinstance(o, SplitCodes))


def test_a_group_scores_its_members_one_at_a_time(tmp_path, monkeypatch) -> None:
    """Three members of widths 16, 7 and 16: whenever a member is scored, the code arrays alive
    are exactly that member's (train + test rows x its packed bytes), not the group's."""
    seen: list[tuple[int, int]] = []
    real = run_group_module.score

    def spy(train, test, *args, **kwargs):
        seen.append((_codes_alive(), train.codes.nbytes + test.codes.nbytes))
        return real(train, test, *args, **kwargs)

    monkeypatch.setattr(run_group_module, "score", spy)
    variants = [*MEMBERS, ["seed=2", "model.width=16"]]
    cfgs = [compose_config([*SMALL, "codes.save=false", *v], output_dir=tmp_path / str(i)) for i, v in enumerate(variants)]
    run_group(cfgs)
    n_rows = 200 + 100  # data.train_size + data.test_size (SMALL)
    own = {w: n_rows * math.ceil(w / 8) for w in (16, 7)}
    assert len(seen) == 3 * 3  # captures at epochs 0, 1, 3 of three members
    assert {member for _, member in seen} == set(own.values())
    for alive, member in seen:
        assert alive == member, seen
    assert max(alive for alive, _ in seen) < sum(own[w] for w in (16, 7, 16))
