"""Stage `train`: finetune a reranker (monoT5, FLAN-T5 or a cross-encoder) on (query, positive, negative) triples.

A plain torch loop, so that every hyperparameter is the recipe's (never a library default) and a killed
run resumes exactly: each triple gives a relevant and a non-relevant example, examples are visited in a
seeded permutation per epoch, each optimizer step sees `batch_size` examples through
`batch_size / micro_batch_size` accumulated micro-batches, and the loss is normalised over the whole step
(so accumulation does not change its meaning). Every `checkpoint_every` steps what an exact resume needs (the
weights in their training dtype, optimizer and scheduler state, random states, step and log) goes to one file,
`checkpoint/state.pt` in the artifact folder, written beside it and then renamed over it, so one checkpoint
exists at a time (while the new one is written the disk holds both: for monoT5-3B about 2 x 12 GB with Adafactor,
2 x 34 GB with AdamW's two moments); a restarted run continues from there and, on CPU, ends with byte-identical
weights. The loss stays on the device until the step ends (one transfer per optimizer step). Inputs come from
`harness.models.rerankers.encode_pairs`: the same templates and truncation as scoring.

monoT5 / FLAN-T5: sequence-to-sequence, targets `true`/`false` (`yes`/`no`) with end-of-sequence, token
cross-entropy. Cross-encoders: one logit, binary cross-entropy.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from typing import Literal

from harness.data import beir
from harness.errors import HarnessError
from harness.stages import Stage, StageParams

CHECKPOINT = "checkpoint"


class Params(StageParams):
    model: str
    model_revision: str | None = None
    kind: Literal["monot5", "flan-t5", "cross-encoder"] = "monot5"
    # adafactor: transformers' Adafactor as T5's finetuning runs it (fixed learning rate, no relative step, no
    # parameter scaling, no warmup init); adamw: torch's AdamW (as transformers' Trainer by default).
    optimizer: Literal["adamw", "adafactor"] = "adamw"
    learning_rate: float = 3e-4
    lr_schedule: Literal["constant", "linear"] = "constant"
    batch_size: int = 128  # examples per optimizer step (a triple gives two examples)
    micro_batch_size: int = 8  # examples per forward pass; accumulation = batch_size / micro_batch_size
    epochs: int = 1
    steps: int | None = None  # wins over `epochs` when set
    max_length: int = 512
    seed: int = 1
    weight_decay: float = 0.0
    warmup_steps: int = 0
    max_grad_norm: float | None = None  # gradient clipping (None: none)
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"  # autocast; master weights stay float32
    gradient_checkpointing: bool = False
    checkpoint_every: int = 50
    # Same result either way: how, not what.
    not_in_key = frozenset({"gradient_checkpointing", "checkpoint_every"})


def _examples(rows, tokenizer, params):
    """Encoded examples and labels: for each triple (query, positive) → 1, then (query, negative) → 0."""
    from harness.models.rerankers import encode_pairs

    queries, docs, labels = [], [], []
    for row in rows:
        queries += [row["query"], row["query"]]
        docs += [row["positive"], row["negative"]]
        labels += [1, 0]
    return encode_pairs(tokenizer, params.kind, queries, docs, params.max_length), labels


def _order(n: int, seed: int, epoch: int):
    """The seeded permutation of the examples for one epoch."""
    import torch

    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch)).tolist()


def step_indices(step: int, n: int, batch_size: int, total: int, seed: int) -> list[int]:
    """The example indices of optimizer step `step` (0-based): a window over the concatenated epoch permutations."""
    start, end = step * batch_size, min((step + 1) * batch_size, total)
    out: list[int] = []
    epoch, cache = -1, []
    for position in range(start, end):
        if position // n != epoch:
            epoch = position // n
            cache = _order(n, seed, epoch)
        out.append(cache[position % n])
    return out


def _load(params, ctx, device):
    import torch

    from harness.models.loading import load_model, load_tokenizer, resolve
    from harness.models.rerankers import load_cross_encoder_model

    path = resolve(params.model, ctx.store.root, params.model_revision)
    tokenizer = load_tokenizer(path)
    torch.manual_seed(params.seed)  # a new classification head is initialised from it
    if params.kind == "cross-encoder":
        model = load_cross_encoder_model(path, "float32", num_labels=1, device=device)
    else:
        model = load_model("seq2seq", path, device=device, dtype="float32")
    return prepare_model(model, params), tokenizer


def prepare_model(model, params):
    """`model` (float32 master weights) in training mode, with gradient checkpointing if `params` ask for it."""
    model.train()
    if params.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model


def make_optimizer(model, params, total_steps):
    """The optimizer (`params.optimizer`) and the learning-rate schedule (warmup, then constant or linear)."""
    import torch

    # As transformers' Trainer: no weight decay on biases and normalisation weights.
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 or "norm" in name.lower() else decay).append(p)
    groups = [{"params": decay, "weight_decay": params.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if params.optimizer == "adafactor":
        from transformers.optimization import Adafactor

        optimizer = Adafactor(groups, lr=params.learning_rate, scale_parameter=False, relative_step=False,
                              warmup_init=False)
    else:
        optimizer = torch.optim.AdamW(groups, lr=params.learning_rate, foreach=False)
    warmup = params.warmup_steps

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if params.lr_schedule == "linear":
            return max(0.0, (total_steps - step) / max(1, total_steps - warmup))
        return 1.0

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _step_loss(model, batch, labels, params, targets, pad_id, device, n_norm):
    """Loss of one micro-batch, summed and divided by the step's normaliser `n_norm`; backward is the caller's."""
    import torch

    from harness.models.rerankers import collate

    inputs = collate(batch, pad_id, device)
    if params.kind == "cross-encoder":
        logits = model(**inputs).logits[:, 0].float()
        y = torch.tensor(labels, dtype=torch.float32, device=device)
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="sum") / n_norm
    seqs = [targets[0] if y else targets[1] for y in labels]
    width = max(map(len, seqs))
    y = torch.full((len(seqs), width), -100, dtype=torch.long)
    for row, seq in enumerate(seqs):
        y[row, : len(seq)] = torch.tensor(seq)
    y = y.to(device)
    logits = model(**inputs, labels=y, use_cache=False).logits.float()
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1),
                                             ignore_index=-100, reduction="sum") / n_norm


def _save_checkpoint(folder, model, optimizer, scheduler, scaler, step, log):
    """Write `folder/state.pt`: the new file is written beside the old one and renamed over it (no second copy
    is kept), so a kill at any moment leaves one whole checkpoint."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    state = {
        "step": step,
        "model": model.state_dict(),  # the weights as trained (float32 master weights under autocast)
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "scaler": scaler.state_dict() if scaler is not None else None,
        "log": log,
    }
    tmp = folder / "state.pt.tmp"
    torch.save(state, tmp)
    os.replace(tmp, folder / "state.pt")


def restore_cuda_rng(states) -> int:
    """Set each visible GPU's random state from a checkpoint's (saved on as many or more or fewer GPUs: the first
    min(saved, visible) are restored); how many were set."""
    import torch

    n = min(len(states), torch.cuda.device_count()) if torch.cuda.is_available() else 0
    for device in range(n):
        torch.cuda.set_rng_state(states[device], device)
    return n


def _load_checkpoint(folder, model, optimizer, scheduler, scaler):
    import torch

    state = torch.load(folder / "state.pt", map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"])
    restore_cuda_rng(state["cuda_rng"])
    if scaler is not None and state["scaler"] is not None:
        scaler.load_state_dict(state["scaler"])
    return state["step"], state["log"]


def precision(params, device):
    """(autocast context, GradScaler or None) for `params.dtype` on `device`; master weights stay float32."""
    import contextlib

    import torch

    scaler = torch.amp.GradScaler("cuda") if params.dtype == "float16" else None
    autocast = (torch.autocast(device_type=str(device).split(":")[0], dtype=getattr(torch, params.dtype))
                if params.dtype != "float32" else contextlib.nullcontext())
    return autocast, scaler


def optimizer_step(model, batch, encoded, labels, params, targets, pad_id, device, optimizer, scheduler,
                   scaler=None, autocast=None) -> float:
    """One optimizer step over the examples `batch` (indices into `encoded`/`labels`) in micro-batches; its loss.

    The micro-batches' losses are summed on the device (in float64, as a Python float sum would be) and read
    once, at the end of the step."""
    import contextlib

    import torch

    autocast = autocast if autocast is not None else contextlib.nullcontext()
    if targets is None:
        norm = len(batch)
    else:
        norm = sum(len(targets[0] if labels[i] else targets[1]) for i in batch)
    total = torch.zeros((), dtype=torch.float64, device=device)
    for start in range(0, len(batch), params.micro_batch_size):
        micro = batch[start : start + params.micro_batch_size]
        with autocast:
            loss = _step_loss(model, [encoded[i] for i in micro], [labels[i] for i in micro], params,
                              targets, pad_id, device, norm)
        (scaler.scale(loss) if scaler else loss).backward()
        total += loss.detach().double()
    if params.max_grad_norm is not None:
        if scaler:
            scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), params.max_grad_norm)
    if scaler:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return total.item()


def run(inputs: dict, params: Params, out, ctx) -> None:
    from harness.models.rerankers import MARKER, target_ids

    if params.batch_size % params.micro_batch_size:
        raise HarnessError(f"Stage train: batch_size {params.batch_size} must be a multiple of micro_batch_size "
                           f"{params.micro_batch_size}.")
    device = ctx.device
    if params.dtype == "float16" and not str(device).startswith("cuda"):
        raise HarnessError("Stage train: dtype float16 needs a CUDA device; use bfloat16 or float32 on CPU.")
    out.device = device
    rows = list(beir.read_jsonl(inputs["triples"].file("triples.jsonl")))
    if not rows:
        raise HarnessError(f"Stage train: the triples artifact {inputs['triples'].key} is empty.")
    model, tokenizer = _load(params, ctx, device)
    encoded, labels = _examples(rows, tokenizer, params)
    n = len(encoded)
    total_examples = params.steps * params.batch_size if params.steps else n * params.epochs
    total_steps = math.ceil(total_examples / params.batch_size)
    optimizer, scheduler = make_optimizer(model, params, total_steps)
    autocast, scaler = precision(params, device)
    targets = target_ids(tokenizer, params.kind) if params.kind != "cross-encoder" else None
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    checkpoint = out.path / CHECKPOINT
    step, log = 0, []
    if (checkpoint / "state.pt").is_file():
        step, log = _load_checkpoint(checkpoint, model, optimizer, scheduler, scaler)
    log_path = out.path / "train_log.jsonl"
    beir.write_jsonl(log, log_path)  # what the checkpoint covers; later lines are appended as they come
    with ctx.bar(total_steps, f"train {params.kind}") as bar, open(log_path, "a", encoding="utf-8") as log_file:
        bar.update(step)
        while step < total_steps:
            indices = step_indices(step, n, params.batch_size, total_examples, params.seed)
            lr = scheduler.get_last_lr()[0]
            total = optimizer_step(model, indices, encoded, labels, params, targets, pad_id, device, optimizer,
                                   scheduler, scaler, autocast)
            step += 1
            entry = {"step": step, "loss": total, "lr": lr}
            log.append(entry)
            log_file.write(json.dumps(entry) + "\n")
            log_file.flush()
            bar.update()
            if step % params.checkpoint_every == 0 and step < total_steps:
                _save_checkpoint(checkpoint, model, optimizer, scheduler, scaler, step, log)

    model.eval()
    folder = out.path / "model"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / MARKER).write_text(json.dumps({"kind": params.kind, "base_model": params.model,
                                             "base_revision": params.model_revision}, sort_keys=True) + "\n")
    shutil.rmtree(checkpoint, ignore_errors=True)
    out.summary.update({
        "kind": params.kind, "steps": step, "examples_seen": total_examples, "triples": len(rows),
        "accumulation": params.batch_size // params.micro_batch_size,
        "first_loss": log[0]["loss"], "final_loss": log[-1]["loss"],
    })


STAGE = Stage(name="train", version=1, kind="model", params=Params, run=run, resumable=True,
              inputs={"triples": "negatives"}, published_kinds=("model",), fetch_in_auto=True, publish_kind="model",
              # `steps` of `batch_size` examples, or one epoch (`steps: null`) of 10,000 triples, 2 examples each
              units=lambda p, documents, queries: (p.get("steps") or 0) * (p.get("batch_size") or 128) or 20_000,
              per_gpu_hour=2_000)  # examples/h, an estimate: monoT5-3B at 512 tokens
