"""torchrun entry point for tests: ``train.finetune`` that dies hard, like a lost node, once checkpoint N is on disk.

    python -m torch.distributed.run --nproc_per_node 2 tests/ddp_crash_after.py N <train.finetune flags>

Every rank waits for the others to finish writing the checkpoint, then exits with status 17 without cleanup
(no final save, no process-group teardown), so the next run must resume from ``checkpoint-N``.
"""

from __future__ import annotations

import os
import sys

import torch.distributed as dist
from transformers import TrainerCallback

from train import finetune
from train.args import FinetuneDataArguments, FinetuneTrainingArguments, LoraArguments, ModelArguments, parse


class CrashAfterSave(TrainerCallback):
    def __init__(self, step: int):
        self.step = step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            if dist.is_available() and dist.is_initialized():
                dist.barrier()
            os._exit(17)


if __name__ == "__main__":
    step, argv = int(sys.argv[1]), sys.argv[2:]
    parsed = parse((ModelArguments, FinetuneDataArguments, LoraArguments, FinetuneTrainingArguments), argv)
    finetune.run(*parsed, callbacks=[CrashAfterSave(step)])
    sys.exit(1)  # not reached: the callback ends the process at checkpoint `step`
