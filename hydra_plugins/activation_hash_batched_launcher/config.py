"""The ConfigStore entry `hydra/launcher: batched` (found by Hydra's plugin discovery, which
imports every module of the `hydra_plugins` namespace package on sys.path)."""


from dataclasses import dataclass
from typing import Any, Dict, Optional

from hydra.core.config_store import ConfigStore


@dataclass
class BatchedLauncherConf:
    _target_: str = "hydra_plugins.activation_hash_batched_launcher.batched_launcher.BatchedLauncher"
    # largest group; null: no limit (a group's members are trained in one process)
    max_members: Optional[int] = None
    # members of different widths in one group are padded to the widest: auto = only on a GPU
    # (on a CPU padding costs what batching saves, so a CPU group holds one width), true, false
    pad_widths: str = "auto"
    # groups and solo jobs run at once (worker processes); on GPUs unit i takes GPU i mod count.
    # auto: one per visible GPU (units spread over the GPUs), 1 without GPUs
    n_jobs: Any = "auto"
    # null: units run here (n_jobs worker processes). A mapping: every unit (group or solo job) is a
    # submitit job, requeued when preempted or timed out; keys: cluster (local | slurm), folder,
    # max_num_timeout, and submitit executor parameters (timeout_min, slurm_partition, gpus_per_node,
    # ...); see conf/hydra/launcher/batched_slurm.yaml and batched_local.yaml
    submitit: Optional[Dict[str, Any]] = None


ConfigStore.instance().store(group="hydra/launcher", name="batched", node=BatchedLauncherConf,
                             provider="activation_hash")
