"""Continued pretraining of a LLaMA model on discharge summaries (causal LM on packed blocks).

    accelerate launch --config_file train/configs/fsdp_7b_8xa100.yaml -m train.pretrain \\
        --model_name_or_path /models/llama-7b --data_path notes.jsonl --output_dir runs/pretrain-7b

The output folder is a Hugging Face model folder (safetensors + tokenizer) that ``app.py --model DIR`` loads.
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
import sys
from pathlib import Path

import datasets
import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from asclepius_ui.errors import InputError
from train.args import ModelArguments, PretrainDataArguments, PretrainTrainingArguments, parse, resume_value
from train.data import DataError, PackedCollator, build_pretraining_dataset, load_notes

log = logging.getLogger(__name__)


def attention_backend(requested: str = "auto") -> str:
    """flash_attention_2 when requested as auto on CUDA with flash-attn installed, else sdpa."""
    if requested != "auto":
        return requested
    if torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def load_tokenizer(margs: ModelArguments):
    tok = AutoTokenizer.from_pretrained(margs.tokenizer_name_or_path or margs.model_name_or_path)
    if tok.eos_token_id is None or tok.bos_token_id is None:
        raise DataError("the tokenizer needs BOS and EOS tokens (LLaMA: <s> and </s>)")
    return tok


def load_model(margs: ModelArguments, **kwargs) -> PreTrainedModel:
    """The causal LM from ``model_name_or_path`` with the chosen attention backend."""
    model = AutoModelForCausalLM.from_pretrained(
        margs.model_name_or_path,
        dtype=getattr(torch, margs.load_dtype),
        attn_implementation=attention_backend(margs.attn_implementation),
        **kwargs,
    )
    model.config.use_cache = False
    return model


def load_pretraining_data(dargs: PretrainDataArguments, tokenizer, seed: int) -> datasets.Dataset:
    """A packed dataset: loaded from a ``save_to_disk`` folder of blocks, or built from notes of any source."""
    path = Path(dargs.data_path)
    if path.is_dir() and (path / "dataset_info.json").is_file():
        ds = datasets.load_from_disk(str(path))
        if isinstance(ds, datasets.Dataset) and "input_ids" in ds.column_names:
            return ds
    notes = load_notes(dargs.source(), dargs.note_column, dedup=dargs.dedup_notes)
    log.info("%d %snotes from %s", len(notes), "distinct " if dargs.dedup_notes else "", dargs.source().describe())
    ds = build_pretraining_dataset(notes, tokenizer, dargs.model_max_length, seed, released=dargs.match_released)
    if dargs.save_prepared_to:
        ds.save_to_disk(dargs.save_prepared_to)
    return ds


class TokenizerInCheckpoints(TrainerCallback):
    """Put the tokenizer, ``tokenizer.model`` included, in every ``checkpoint-N`` folder (rank 0)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if ckpt.is_dir():
                save_tokenizer(self.tokenizer, ckpt)


class MicroBatchMeanTrainer(Trainer):
    """The loss as transformers 4.32 computed it for the released checkpoints: each micro-batch's own mean over its
    trained tokens, divided by the configured gradient accumulation steps (accelerate's ``backward`` did so even in
    an epoch's last, shorter window); across devices the gradient all-reduce averages.

    transformers 5 instead passes ``num_items_in_batch`` (the trained tokens of the whole accumulated batch, summed
    over devices when ``average_tokens_across_devices``) to the model, so every token weighs the same. Without loss
    kwargs the model returns its micro-batch mean and ``training_step`` divides it by the accumulation steps.
    """

    loss_is_scaled_for_ga = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.model_accepts_loss_kwargs = False  # no num_items_in_batch: the model's own per-micro-batch mean

    def training_step(self, model, inputs, num_items_in_batch=None):
        self.current_gradient_accumulation_steps = self.args.gradient_accumulation_steps  # not the window's length
        return super().training_step(model, inputs, num_items_in_batch)


def train_and_save(model, tokenizer, dataset, collator, targs: TrainingArguments, resume: str | bool | None = None,
                   callbacks: list | None = None, save: bool = True, loss_weighting: str = "tokens"):
    """Run ``Trainer`` (resuming when asked) and write the final HF folder to ``targs.output_dir``.

    ``loss_weighting="released"`` trains with ``MicroBatchMeanTrainer`` (and ``average_tokens_across_devices`` off).
    """
    trainer_cls = Trainer
    if loss_weighting == "released":
        targs.average_tokens_across_devices = False
        trainer_cls = MicroBatchMeanTrainer
    elif loss_weighting != "tokens":
        raise DataError(f"unknown loss weighting {loss_weighting!r}; use released or tokens")
    trainer = trainer_cls(model=model, args=targs, train_dataset=dataset, data_collator=collator,
                          processing_class=tokenizer,
                          callbacks=[TokenizerInCheckpoints(tokenizer), *(callbacks or [])])
    result = trainer.train(resume_from_checkpoint=resume)
    if save:
        save_final(trainer, tokenizer, targs.output_dir)
    return trainer, result


def save_final(trainer: Trainer, tokenizer, out_dir: str) -> None:
    """Save weights (safetensors), tokenizer and a generation config that stops at EOS."""
    model = trainer.model
    model.config.use_cache = True
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.eos_token_id = tokenizer.eos_token_id
        model.generation_config.bos_token_id = tokenizer.bos_token_id
    trainer.save_model(out_dir)
    if trainer.is_world_process_zero():
        save_tokenizer(tokenizer, out_dir)


def save_tokenizer(tokenizer, out_dir: str | Path) -> None:
    """Save the tokenizer and keep its sentencepiece ``tokenizer.model`` beside it (the LLaMA layout)."""
    tokenizer.save_pretrained(out_dir)
    src = getattr(tokenizer, "vocab_file", None)
    dest = Path(out_dir) / "tokenizer.model"
    if src and Path(src).is_file() and Path(src).resolve() != dest.resolve():
        shutil.copyfile(src, dest)


def run(margs: ModelArguments, dargs: PretrainDataArguments, targs: PretrainTrainingArguments,
        callbacks: list | None = None):
    """Pretrain end to end; returns ``(trainer, TrainOutput)``. ``callbacks`` go to the ``Trainer``."""
    tokenizer = load_tokenizer(margs)
    with targs.main_process_first(desc="packing notes"):
        dataset = load_pretraining_data(dargs, tokenizer, targs.seed)
    log.info("pretraining on %d blocks of %d tokens", len(dataset), len(dataset[0]["input_ids"]))
    model = load_model(margs)
    resume = resume_value(targs.resume_from_checkpoint)
    return train_and_save(model, tokenizer, dataset, PackedCollator(), targs, resume, callbacks)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    margs, dargs, targs = parse((ModelArguments, PretrainDataArguments, PretrainTrainingArguments), argv)
    try:
        run(margs, dargs, targs)
    except (InputError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
