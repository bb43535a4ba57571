"""Which GPUs a trial gets: each worker process owns a fixed slot of its host's GPUs.

The slot is chosen by the process's index (`TRIALFORGE_GPU_IDS` cut into
groups of the trial's `gpus`), so two trials on one host never share a
device and no lock is needed.
"""

from __future__ import annotations


class NoGpuSlot(Exception):
    """This worker cannot give a trial the GPUs it asks for; an infra error, not the trial's."""


def gpu_slot(gpus: tuple[str, ...], needed: int, process_index: int) -> tuple[str, ...]:
    """The GPUs of this process's slot: the host's GPUs cut into groups of `needed`."""
    if needed == 0:
        return ()
    slots = len(gpus) // needed
    if slots == 0:
        raise NoGpuSlot(f"the trial needs {needed} GPU(s); this worker has {len(gpus)}")
    start = (process_index % slots) * needed
    return gpus[start : start + needed]
