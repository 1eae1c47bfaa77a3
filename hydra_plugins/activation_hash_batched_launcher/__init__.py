"""Hydra launcher `hydra/launcher=batched`: a sweep's MLP runs that differ only in batchable keys
trained as one batched model per group (activation_hash.batched); every other job run by itself.

    python -m activation_hash +experiment=model_size -m hydra/launcher=batched
"""
