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
        return (f"scores only {', '.join(KERNEL_FAMILIES)} from the rows' Gram matrix, and families that read no "
                f"code bits; metrics.which also names {', '.join(bad)}: drop them or use codes.source=memory")
    return None


def gram_device_bytes(n_rows: int, n_train: int) -> int:
    """Device memory of a network-source capture's scoring on a GPU: the float32 Gram matrix and
    logistic regression's float64 train block and eigenvectors."""
    return 4 * n_rows * n_rows + 2 * 8 * n_train * n_train


def resolve_source(spec: str, n_rows: int, n_bits: int, budget_bytes: int, *, save: object = False,
                   memmap: object = False, which: object = None, drop_constant: object = True,
                   device_memory: int | None = None, n_train: int | None = None) -> str:
    """`codes.source` as a capture runs it: memory or network. auto = network when nothing needs
    the codes themselves and either the packed codes of all `n_rows` rows would exceed
    `budget_bytes`, or the metrics run on a GPU of `device_memory` bytes, the codes have more bits
    than rows (every CNN capture: one Gram product then costs less than any Lloyd pass over the
    bits) and the Gram scoring fits in 80% of that memory."""
    if spec in ("memory", "network"):
        return spec
    if network_source_reason(save, memmap, which, drop_constant) is not None:
        return "memory"
    if n_rows * -(-n_bits // 8) > budget_bytes:
        return "network"
    wide = n_rows < n_bits and device_memory is not None
    fits = wide and gram_device_bytes(n_rows, n_rows if n_train is None else n_train) <= 0.8 * device_memory
    return "network" if fits else "memory"
