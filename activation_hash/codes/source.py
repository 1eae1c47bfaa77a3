"""`codes.source`: whether a capture holds the codes (memory) or scores them from the rows' Gram
matrix recomputed from the network (network, `activation_hash.codes.gram`), and what auto picks.
Pure functions (no torch): the config checks and the plan use them before anything runs."""

from __future__ import annotations


def network_source_reason(save: object, memmap: object, which: object, drop_constant: object = True) -> str | None:
    """Why `codes.source=network` cannot serve this config (one line), or None."""
    from activation_hash.metrics.encoding import WHICH
    from activation_hash.metrics.kernel import KERNEL_FAMILIES, unsupported
    if save:
        return "keeps no codes, so codes.save must be false (or use codes.source=memory)"
    if memmap:
        return "keeps no codes, so codes.memmap must be false (or use codes.source=memory)"
    if drop_constant is False:
        return "always scores the codes without their constant units: metrics.drop_constant must be true"
    which = [which] if isinstance(which, str) else list(which if which is not None else WHICH)
    bad = unsupported(which)
    if bad:
        return (f"scores only {', '.join(KERNEL_FAMILIES)} from the rows' Gram matrix; metrics.which also names "
                f"{', '.join(bad)}: drop them or use codes.source=memory")
    return None


def resolve_source(spec: str, n_rows: int, n_bits: int, budget_bytes: int, *, save: object = False,
                   memmap: object = False, which: object = None, drop_constant: object = True) -> str:
    """`codes.source` as a capture runs it: memory or network (auto: network when the packed codes
    of all `n_rows` rows would exceed `budget_bytes` and nothing needs the codes themselves)."""
    if spec in ("memory", "network"):
        return spec
    too_big = n_rows * -(-n_bits // 8) > budget_bytes
    return "network" if too_big and network_source_reason(save, memmap, which, drop_constant) is None else "memory"

