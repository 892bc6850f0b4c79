"""Instruction fine-tuning on (note, question, answer) rows with the app's prompt, full or LoRA/QLoRA.

    accelerate launch --config_file train/configs/fsdp_7b_8xa100.yaml -m train.finetune \\
        --model_name_or_path runs/pretrain-7b --data_path instructions.jsonl --output_dir runs/asclepius-7b

    # one 24 GB GPU
    python -m train.finetune --model_name_or_path runs/pretrain-7b --data_path instructions.jsonl \\
        --output_dir runs/asclepius-7b-qlora --qlora --per_device_train_batch_size 4

Only answer tokens and the final EOS carry loss (see ``train.data.encode_instruction``).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import torch
from transformers import BitsAndBytesConfig, Trainer

from train.args import (
    FinetuneDataArguments,
    FinetuneTrainingArguments,
    LoraArguments,
    ModelArguments,
    parse,
    resume_value,
)
from train.data import DataError, InstructionCollator, build_instruction_dataset, load_instructions, pad_id_for
from train.pretrain import load_model, load_tokenizer, save_final, save_tokenizer

log = logging.getLogger(__name__)


def build_model(margs: ModelArguments, largs: LoraArguments, targs: FinetuneTrainingArguments):
    """The model to train: the full model, or a peft LoRA wrapper (on a 4-bit base for QLoRA)."""
    if not (largs.lora or largs.qlora):
        return load_model(margs)
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    kwargs = {}
    if largs.qlora:
        compute = torch.bfloat16 if targs.bf16 else torch.float32
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute,
        )
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
    rows = load_instructions(dargs.data_path)
    dataset, skipped = build_instruction_dataset(rows, tokenizer, dargs.model_max_length, dargs.template)
    if skipped:
        log.warning("skipped %d example(s) whose prompt is longer than %d tokens", skipped, dargs.model_max_length)
    model = build_model(margs, largs, targs)
    trainer = Trainer(model=model, args=targs, train_dataset=dataset,
                      data_collator=InstructionCollator(pad_id_for(tokenizer)), processing_class=tokenizer,
                      callbacks=callbacks)
    result = trainer.train(resume_from_checkpoint=resume_value(targs.resume_from_checkpoint))
    if largs.lora or largs.qlora:
        adapter_dir = Path(targs.output_dir) / "adapter"
        trainer.save_model(str(adapter_dir))
        if trainer.is_world_process_zero():
            save_tokenizer(tokenizer, adapter_dir)
            if largs.merge_lora:
                merge_adapter(margs, adapter_dir, targs.output_dir, tokenizer)
    else:
        save_final(trainer, tokenizer, targs.output_dir)
    return trainer, result


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    margs, dargs, largs, targs = parse(
        (ModelArguments, FinetuneDataArguments, LoraArguments, FinetuneTrainingArguments), argv
    )
    try:
        run(margs, dargs, largs, targs)
    except (DataError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
