"""Dataclass arguments for ``train.pretrain`` and ``train.finetune`` with the paper's defaults.

Asclepius (Kweon et al. 2023): lr 2e-5, cosine schedule, warmup ratio 0.03, weight decay 0, global batch 128,
1 epoch of pretraining and 3 of fine-tuning, max length 2048, bf16, gradient checkpointing, FSDP full shard.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field

from transformers import HfArgumentParser, TrainingArguments


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


@dataclass
class PretrainDataArguments:
    data_path: str = field(metadata={"help": "notes as CSV/JSONL/parquet, or a folder saved by `train.data pretrain`"})
    text_column: str | None = field(default=None, metadata={"help": "note column (default: note, text, ...)"})
    model_max_length: int = field(default=2048, metadata={"help": "block size of the packed sequences"})
    save_prepared_to: str | None = field(default=None, metadata={"help": "also save the packed dataset here"})


@dataclass
class FinetuneDataArguments:
    data_path: str = field(metadata={"help": "instruction rows (note, question, answer[, task]) CSV/JSONL/parquet"})
    model_max_length: int = field(default=2048, metadata={"help": "examples longer than this are cut"})
    template: str = field(default="asclepius", metadata={"help": "prompt template of asclepius_ui.prompts"})


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


@dataclass
class AsclepiusTrainingArguments(TrainingArguments):
    """``TrainingArguments`` with the paper's defaults and a global batch size."""

    output_dir: str = field(default="runs/asclepius", metadata={"help": "checkpoints and the final HF folder"})
    learning_rate: float = 2e-5
    lr_scheduler_type: str = "cosine"
    warmup_steps: float = field(default=0.03, metadata={"help": "below 1: ratio of total steps (paper: 0.03)"})
    weight_decay: float = 0.0
    num_train_epochs: float = 1.0
    per_device_train_batch_size: int = 4
    bf16: bool = True
    logging_steps: float = 10
    save_steps: float = 500
    save_total_limit: int | None = 3
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
        # paper default: activation (gradient) checkpointing on, unless either spelling of the flag says otherwise
        if self.activation_checkpointing is None and self.gradient_checkpointing is None:
            self.activation_checkpointing = True
        if self.activation_checkpointing_kwargs is None and self.gradient_checkpointing_kwargs is None:
            self.activation_checkpointing_kwargs = {"use_reentrant": False}
        super().__post_init__()


@dataclass
class PretrainTrainingArguments(AsclepiusTrainingArguments):
    num_train_epochs: float = 1.0


@dataclass
class FinetuneTrainingArguments(AsclepiusTrainingArguments):
    num_train_epochs: float = 3.0


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
