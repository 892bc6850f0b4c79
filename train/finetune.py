"""Instruction fine-tuning on (note, question, answer) rows with the app's prompt, full or LoRA/QLoRA.

    accelerate launch --config_file train/configs/fsdp_7b_8xa100.yaml -m train.finetune \\
        --model_name_or_path runs/pretrain-7b --data_path starmpcc/Asclepius-Synthetic-Clinical-Notes \\
        --output_dir runs/asclepius-7b

    # one 24 GB GPU
    python -m train.finetune --model_name_or_path runs/pretrain-7b --data_path instructions.jsonl \\
        --output_dir runs/asclepius-7b-qlora --qlora --per_device_train_batch_size 4

Only answer tokens and the final EOS carry loss (see ``train.data.encode_instruction``); ``--match_released`` trains
as the released checkpoints were instead (``train.data.encode_released``, and ``--loss_weighting released``: each
micro-batch's mean, as transformers 4.32 computed it, rather than every token of the accumulated batch alike).
With LoRA on several processes every rank waits for the adapter save, rank 0 merges, and all wait for the merge
before leaving.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import torch

from asclepius_ui.errors import InputError
from asclepius_ui.quantization import nf4_config
from train.args import (
    FinetuneDataArguments,
    FinetuneTrainingArguments,
    LoraArguments,
    ModelArguments,
    parse,
    resume_value,
)
from train.data import (
    InstructionCollator,
    ReleasedCollator,
    build_instruction_dataset,
    load_instructions,
    pad_id_for,
)
from train.pretrain import load_model, load_tokenizer, save_tokenizer, train_and_save

log = logging.getLogger(__name__)


def build_model(margs: ModelArguments, largs: LoraArguments, targs: FinetuneTrainingArguments):
    """The model to train: the full model, or a peft LoRA wrapper (on a 4-bit base for QLoRA)."""
    if not (largs.lora or largs.qlora):
        return load_model(margs)
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    kwargs = {}
    if largs.qlora:
        compute = torch.bfloat16 if targs.bf16 else torch.float32
        kwargs["quantization_config"] = nf4_config(compute)
    model = load_model(margs, **kwargs)
    if largs.qlora:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=targs.activation_checkpointing)
    elif targs.activation_checkpointing:
        model.enable_input_require_grads()
    config = LoraConfig(
        r=largs.lora_r, lora_alpha=largs.lora_alpha, lora_dropout=largs.lora_dropout, task_type="CAUSAL_LM",
        target_modules=[m.strip() for m in largs.lora_target_modules.split(",") if m.strip()],
    )
    model = get_peft_model(model, config)
    if targs.process_index == 0:
        model.print_trainable_parameters()
    return model


def merge_adapter(margs: ModelArguments, adapter_dir: str | Path, out_dir: str | Path, tokenizer) -> Path:
    """Load the unquantised base, apply the adapter, merge and save a plain HF folder."""
    from peft import PeftModel

    base = load_model(margs)
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    merged.config.use_cache = True
    merged.generation_config.eos_token_id = tokenizer.eos_token_id
    merged.save_pretrained(out_dir)
    save_tokenizer(tokenizer, out_dir)
    return Path(out_dir)


def run(margs: ModelArguments, dargs: FinetuneDataArguments, largs: LoraArguments,
        targs: FinetuneTrainingArguments, callbacks: list | None = None):
    """Fine-tune end to end; returns ``(trainer, TrainOutput)``. ``callbacks`` go to the ``Trainer``."""
    tokenizer = load_tokenizer(margs)
    rows = load_instructions(dargs.source(), dargs.columns())
    dataset, skipped = build_instruction_dataset(rows, tokenizer, dargs.model_max_length, dargs.template,
                                                 released=dargs.match_released)
    if skipped:
        log.warning("skipped %d example(s) whose prompt is longer than %d tokens", skipped, dargs.model_max_length)
    model = build_model(margs, largs, targs)
    collator = ReleasedCollator(tokenizer.bos_token_id) if dargs.match_released else InstructionCollator(
        pad_id_for(tokenizer))
    lora = largs.lora or largs.qlora
    weighting = targs.resolved_loss_weighting(dargs.match_released)
    log.info("loss weighting: %s", weighting)
    trainer, result = train_and_save(model, tokenizer, dataset, collator, targs,
                                     resume_value(targs.resume_from_checkpoint), callbacks, save=not lora,
                                     loss_weighting=weighting)
    if lora:
        adapter_dir = Path(targs.output_dir) / "adapter"
        trainer.save_model(str(adapter_dir))
        trainer.accelerator.wait_for_everyone()  # every rank's part of the adapter is on disk
        if trainer.is_world_process_zero():
            save_tokenizer(tokenizer, adapter_dir)
            if largs.merge_lora:
                merge_adapter(margs, adapter_dir, targs.output_dir, tokenizer)
        trainer.accelerator.wait_for_everyone()  # no rank leaves (and tears down the group) before the merge is done
    return trainer, result


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    margs, dargs, largs, targs = parse(
        (ModelArguments, FinetuneDataArguments, LoraArguments, FinetuneTrainingArguments), argv
    )
    try:
        run(margs, dargs, largs, targs)
    except (InputError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
