"""Dataclass arguments for ``train.pretrain`` and ``train.finetune`` with the paper's defaults.

Asclepius (Kweon et al. 2023): lr 2e-5, cosine schedule, warmup ratio 0.03, weight decay 0, global batch 128,
1 epoch of pretraining and 3 of fine-tuning, max length 2048, bf16, tf32, activation checkpointing, FSDP full shard,
ddp_timeout 18000, logging every step, a checkpoint every 1000 pretraining steps and every fine-tuning epoch.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field

from transformers import HfArgumentParser, TrainingArguments
from transformers.utils import is_torch_tf32_available

from asclepius_ui.data_sources import Source


@dataclass
class ModelArguments:
    model_name_or_path: str = field(metadata={"help": "HF model folder or hub id to start from"})
    tokenizer_name_or_path: str | None = field(default=None, metadata={"help": "defaults to the model's"})
    attn_implementation: str = field(
        default="auto", metadata={"help": "auto (flash_attention_2 when installed on CUDA, else sdpa), sdpa, eager"}
    )
    load_dtype: str = field(
        default="float32", metadata={"help": "dtype of the master weights (float32 with bf16 autocast, or bfloat16)"}
    )


SOURCE_HELP = ("a .csv/.tsv/.jsonl/.json/.parquet file (optionally .gz/.bz2/.xz/.zst), a folder saved by `datasets`, "
               "or a Hugging Face dataset id such as starmpcc/Asclepius-Synthetic-Clinical-Notes")


@dataclass
class SourceArguments:
    """Where the rows come from (see ``asclepius_ui.data_sources``)."""

    data_path: str = field(metadata={"help": SOURCE_HELP})
    split: str = field(default="train", metadata={"help": "split of a hub dataset or DatasetDict folder"})
    revision: str | None = field(default=None, metadata={"help": "revision (branch, tag, commit) of a hub dataset"})
    note_column: str | None = field(
        default=None, metadata={"help": "note column (default: note, text, discharge_summary)",
                                "aliases": ["--text_column", "--text-column"]})
    match_released: bool = field(
        default=False,
        metadata={"help": "train exactly as the released Asclepius checkpoints were (see docs/training.md); "
                          "default: train on the bytes and ids the app sends at inference"})

    def source(self) -> Source:
        return Source(self.data_path, split=self.split, revision=self.revision)


@dataclass
class PretrainDataArguments(SourceArguments):
    model_max_length: int = field(default=2048, metadata={"help": "block size of the packed sequences"})
    dedup_notes: bool = field(default=True, metadata={"help": "train on each distinct note once"})
    save_prepared_to: str | None = field(default=None, metadata={"help": "also save the packed dataset here"})


@dataclass
class FinetuneDataArguments(SourceArguments):
    question_column: str | None = field(default=None, metadata={"help": "default: question, instruction"})
    answer_column: str | None = field(default=None, metadata={"help": "default: answer, response, output"})
    task_column: str | None = field(default=None, metadata={"help": "default: task, category"})
    model_max_length: int = field(default=2048, metadata={"help": "examples longer than this are cut"})
    template: str = field(default="asclepius", metadata={"help": "prompt template of asclepius_ui.prompts"})

    def columns(self) -> dict[str, str]:
        """Canonical name -> column for the columns named by flags."""
        given = {"note": self.note_column, "question": self.question_column, "answer": self.answer_column,
                 "task": self.task_column}
        return {k: v for k, v in given.items() if v}


@dataclass
class LoraArguments:
    lora: bool = field(default=False, metadata={"help": "train LoRA adapters instead of all weights"})
    qlora: bool = field(default=False, metadata={"help": "LoRA on a 4-bit NF4 base (bitsandbytes); implies --lora"})
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: str = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"
    merge_lora: bool = field(
        default=True, metadata={"help": "also write the merged full model to output_dir (what app.py loads)"}
    )


def fsdp_requested(fsdp: object = None) -> bool:
    """FSDP through ``--fsdp`` (torchrun) or an ``accelerate launch`` FSDP config (its environment)."""
    return bool(fsdp) or os.environ.get("ACCELERATE_USE_FSDP", "").lower() in {"1", "true"}


@dataclass
class AsclepiusTrainingArguments(TrainingArguments):
    """``TrainingArguments`` with the reference recipe's defaults and a global batch size."""

    output_dir: str = field(default="runs/asclepius", metadata={"help": "checkpoints and the final HF folder"})
    learning_rate: float = 2e-5
    lr_scheduler_type: str = "cosine"
    warmup_steps: float = field(default=0.03, metadata={"help": "below 1: ratio of total steps (paper: 0.03)"})
    weight_decay: float = 0.0
    num_train_epochs: float = 1.0
    per_device_train_batch_size: int = 4
    bf16: bool = True
    logging_steps: float = 1
    save_total_limit: int | None = 3
    ddp_timeout: int = field(
        default=18000, metadata={"help": "seconds collectives may wait (reference: 18000; a 7B merge or save on "
                                         "rank 0 outlasts the 1800 s default)"})
    remove_unused_columns: bool = False
    global_batch_size: int = field(
        default=128,
        metadata={"help": "sets gradient_accumulation_steps = global / (per-device batch x world size); 0 = off"},
    )

    def __post_init__(self):
        if self.global_batch_size:
            world = int(os.environ.get("WORLD_SIZE", "1"))
            per_step = self.per_device_train_batch_size * world
            self.gradient_accumulation_steps = max(1, self.global_batch_size // per_step)
            if self.global_batch_size % per_step:
                warnings.warn(
                    f"global batch {self.global_batch_size} is not a multiple of {per_step}; "
                    f"using {self.gradient_accumulation_steps * per_step}",
                    stacklevel=2,
                )
        # reference: --tf32 True; on where the GPU has it (Ampere or newer), unless the flag says otherwise
        if self.tf32 is None and not self.use_cpu and is_torch_tf32_available():
            self.tf32 = True
        # paper default: activation checkpointing on. Under FSDP the launch config's own activation checkpointing
        # (fsdp_config activation_checkpointing) does it: the training-argument kind costs a redundant AllGather.
        if self.activation_checkpointing is None and self.gradient_checkpointing is None:
            self.activation_checkpointing = not fsdp_requested(self.fsdp)
        if self.activation_checkpointing_kwargs is None and self.gradient_checkpointing_kwargs is None:
            self.activation_checkpointing_kwargs = {"use_reentrant": False}
        super().__post_init__()


@dataclass
class PretrainTrainingArguments(AsclepiusTrainingArguments):
    num_train_epochs: float = 1.0
    save_strategy: str = "steps"
    save_steps: float = 1000  # reference: a checkpoint every 1000 steps


LOSS_WEIGHTINGS = ("released", "tokens")


@dataclass
class FinetuneTrainingArguments(AsclepiusTrainingArguments):
    num_train_epochs: float = 3.0
    save_strategy: str = "epoch"  # reference: a checkpoint each epoch
    loss_weighting: str | None = field(
        default=None,
        metadata={"choices": list(LOSS_WEIGHTINGS),
                  "help": "released: each micro-batch's mean over its trained tokens, divided by the accumulation "
                          "steps (transformers 4.32, the released checkpoints); tokens: every trained token of the "
                          "accumulated batch on all devices weighs the same (transformers 5). Default: released "
                          "with --match_released, else tokens"})

    def resolved_loss_weighting(self, match_released: bool) -> str:
        """The weighting to train with: the flag, else ``released`` under ``--match_released``, else ``tokens``."""
        return self.loss_weighting or ("released" if match_released else "tokens")


def parse(types: tuple, argv: list[str] | None = None):
    """Parse command-line flags (or a single ``.json``/``.yaml`` file) into the dataclasses ``types``."""
    parser = HfArgumentParser(types)
    if argv and len(argv) == 1 and argv[0].endswith((".json", ".yaml", ".yml")):
        loader = parser.parse_json_file if argv[0].endswith(".json") else parser.parse_yaml_file
        return loader(os.path.abspath(argv[0]))
    return parser.parse_args_into_dataclasses(args=argv)


def resume_value(value: str | None) -> str | bool | None:
    """``--resume_from_checkpoint last`` (or true) means the newest checkpoint in output_dir."""
    if value is None or value == "":
        return None
    if value.lower() in {"last", "true", "latest"}:
        return True
    return value
