"""MusicFM (Won, Hung & Le 2024), MSD checkpoint: mel + conv + 12-layer conformer, layer 12, mean over time.

Upstream (github.com/minzwon/musicfm, MIT/Apache-2.0) ships no package and no config: the
model class fetches a conformer config from the hub in its constructor and loads
``pretrained_msd.pt`` — a Lightning-style ``{"state_dict": {"model.<name>": tensor}}`` —
strictly, plus ``msd_stats.json`` with the mel mean and standard deviation. This wrapper
embeds the conformer settings (`backends._conformer.ROPE_LARGE_CONFORMER`), reads the sizes
of the encoder off the tensors (so any width or depth loads, including tiny test models),
and keeps upstream's tensor names.

Decisions and where the paper's code and text disagree:

- Layer: the paper's ``mfm.py`` calls ``get_latent(x, layer_ix=12)``; under transformers 4
  index 12 of the 13 hidden states is the final-LayerNorm output, i.e. ``last_hidden_state``,
  which is what this backend takes (transformers 5 no longer returns the tuple).
- Pooling: MusicFM's README pools with ``emb.mean(-1)``, which averages channels, not time,
  and ``mfm.py`` copied its comment; only a mean over time gives a 1024-d track vector, so
  that is what we do, in both modes.
- ``paper_compat`` zero-pads clips shorter than 30 s to 720 000 samples, as the paper's reader
  did; the default embeds only the audio there is.
- The checkpoint is a pickle. ``mrs-tui backends fetch musicfm`` converts it once to
  ``pretrained_msd.safetensors`` (reading it with ``weights_only=True``, or fully only with
  ``--allow-pickle``), so loading never unpickles anything afterwards. The quantizer, the
  4096-way head, the cls token and torchaudio's stored mel buffers are not needed for
  embeddings; when the checkpoint carries torchaudio's mel filterbank we use it instead of
  our own, which removes any doubt about front-end parity.
- Attention heads cannot be read off tensor shapes; MusicFM has 16, like the rope-large
  config it builds from.
"""

from __future__ import annotations

from pathlib import Path

import torch

from backends import REGISTRY
from backends._conformer import (
    ROPE_LARGE_CONFORMER,
    ConformerEncoderStack,
    ConformerFamilyBackend,
    conformer_config,
    encoder_shape_from_tensors,
    load_matching,
    mel_stats,
    read_json,
    strip_prefix,
)
from backends._weights import (
    find_file,
    load_state_dict,
    resolve_weights,
)
from backends.base import BackendError

HUB_REPO = "minzwon/MusicFM"
CHECKPOINT = "pretrained_msd.pt"
SAFETENSORS = "pretrained_msd.safetensors"
STATS = "msd_stats.json"
PREFIX = "model."
NUM_HEADS = 16


def _not_for_embeddings(key: str) -> bool:
    """Training-only tensors of MusicFM25Hz: quantizer, token head, cls token, torchaudio buffers."""
    return key.startswith(("quantizer_", "linear.", "preprocessor_")) or key == "cls_token"


def read_checkpoint(path: Path, *, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    """Upstream-named tensors ("model.conv...") of a MusicFM .pt or converted .safetensors."""
    data = load_state_dict(path, allow_pickle=allow_pickle)
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict) or not data:
        raise BackendError(f"{path} holds no tensors", "fetch the MusicFM weights again")
    return {k: v for k, v in data.items() if isinstance(v, torch.Tensor)}


class MusicFMBackend(ConformerFamilyBackend):
    spec = REGISTRY["musicfm"]
    hub_repo = HUB_REPO
    hub_files = (STATS, CHECKPOINT)
    layer = -1  # upstream's layer_ix=12 on the 12-layer model: the final-LayerNorm output

    def load(self, weights: str | Path | None = None) -> MusicFMBackend:
        folder = resolve_weights(self.spec, weights)
        stats_path = folder / STATS
        mean, std = mel_stats(read_json(stats_path, "MusicFM statistics file"), stats_path)
        checkpoint = find_file(folder, f"{SAFETENSORS}|{CHECKPOINT}")
        try:
            tensors = read_checkpoint(checkpoint)
        except BackendError as exc:
            if "--allow-pickle" in str(exc):
                raise BackendError(
                    f"{checkpoint} holds Python objects besides tensors",
                    f"convert it once with: mrs-tui backends fetch musicfm --from {folder} --allow-pickle",
                ) from exc
            raise
        self.model = build_model(tensors, mean=mean, std=std, file=checkpoint)
        self._use_device()
        self.loaded = True
        return self

    @classmethod
    def after_fetch(cls, folder: Path, *, allow_pickle: bool) -> Path:
        pickle_file = folder / CHECKPOINT
        if pickle_file.is_file():
            convert_to_safetensors(pickle_file, folder / SAFETENSORS, allow_pickle=allow_pickle)
            pickle_file.unlink()
        return folder


def build_model(tensors: dict[str, torch.Tensor], *, mean: float, std: float, file: Path) -> ConformerEncoderStack:
    """A ConformerEncoderStack sized after the checkpoint's tensors, with its weights loaded."""
    encoder_tensors = strip_prefix(tensors, PREFIX)
    if not encoder_tensors:
        sample = next(iter(tensors))
        raise BackendError(
            f"{file} is not a MusicFM checkpoint (no '{PREFIX}' tensors; first tensor is {sample!r})",
            "give the folder that holds pretrained_msd.pt and msd_stats.json from huggingface.co/minzwon/MusicFM",
        )
    try:
        shape = encoder_shape_from_tensors(encoder_tensors)
    except (KeyError, ValueError, IndexError) as exc:
        raise BackendError(
            f"{file} is not a MusicFM checkpoint (no tensor {exc})",
            "give the folder that holds pretrained_msd.pt and msd_stats.json from huggingface.co/minzwon/MusicFM",
        ) from None
    if shape["hidden_size"] % NUM_HEADS:
        raise BackendError(f"{file}: width {shape['hidden_size']} does not split into {NUM_HEADS} attention heads")
    config = conformer_config(
        {key: ROPE_LARGE_CONFORMER[key] for key in ("hidden_act", "rotary_embedding_base", "layer_norm_eps")},
        hidden_size=shape["hidden_size"],
        num_hidden_layers=shape["num_hidden_layers"],
        intermediate_size=shape["intermediate_size"],
        conv_depthwise_kernel_size=shape["conv_depthwise_kernel_size"],
        num_attention_heads=NUM_HEADS,
    )
    model = ConformerEncoderStack(
        config, mel_mean=mean, mel_std=std, n_mels=shape["n_mels"], conv_channels=shape["conv_channels"]
    )
    load_matching(model, encoder_tensors, file=file, what="MusicFM", ignored=_not_for_embeddings)
    _adopt_stored_filterbank(model, encoder_tensors)
    return model


def _adopt_stored_filterbank(model: ConformerEncoderStack, tensors: dict[str, torch.Tensor]) -> None:
    """Use torchaudio's own mel filterbank and window when the checkpoint kept them."""
    for key, tensor in tensors.items():
        if not key.startswith("preprocessor_melspec_2048."):
            continue
        target = model.mel.filterbank if key.endswith("mel_scale.fb") else None
        target = model.mel.window if key.endswith("spectrogram.window") else target
        if target is not None and tuple(tensor.shape) == tuple(target.shape):
            target.copy_(tensor.float())


def convert_to_safetensors(source: Path, target: Path, *, allow_pickle: bool = False) -> Path:
    """Rewrite a MusicFM .pt as safetensors (same tensor names), after checking it really is MusicFM."""
    from safetensors.torch import save_file

    tensors = read_checkpoint(source, allow_pickle=allow_pickle)
    build_model(tensors, mean=0.0, std=1.0, file=source)  # refuses anything that is not MusicFM
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(target), metadata={"format": "pt"})
    return target
