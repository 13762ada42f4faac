"""Shared machinery for backends whose checkpoints are in the transformers layout.

Music2Vec and MERT are both a wav2vec2-style convolutional feature encoder plus a transformer,
shipped on the hub as ``config.json`` + ``pytorch_model.bin`` (some mirrors add
``model.safetensors``). transformers has both architectures natively (``Data2VecAudioModel``,
``HubertModel``), so no remote code is needed. Design decisions:

- The config class is chosen by the backend, never by ``AutoModel``: an ``auto_map`` in a
  downloaded config is ignored, ``trust_remote_code`` is never passed (``AutoModel`` on a MERT
  folder without it even blocks on a stdin prompt), and a config whose ``model_type`` belongs to
  another family is refused before any tensor is read.
- Published configs are patched where transformers 5's strict validation rejects harmless
  values (music2vec's ``vocab_size`` is a path string; the bare encoder never uses it).
- Tensors are read by ``backends._weights.load_state_dict`` (safetensors, or a torch pickle with
  ``weights_only=True`` unless the user passed ``--allow-pickle``) and handed to
  ``from_pretrained(None, config=..., state_dict=...)``, so transformers still does its own key
  mapping (old ``weight_g``/``weight_v`` weight-norm names) but never opens a file itself.
  Missing or unexpected keys are an error, not a warning: a checkpoint of another model must
  not be half-loaded into random weights.
- ``fetch`` converts ``pytorch_model.bin`` to ``model.safetensors`` once, so every later load
  avoids unpickling altogether.
- Inference groups clips of equal length into one batch. The convolutional front end
  normalises over time (GroupNorm in HuBERT/MERT), so zero padding would change a clip's
  vector; grouping keeps batched and single results equal, and the indexer cuts nearly every
  clip to the same length anyway. On CUDA the forward runs under fp16 autocast (norms and
  softmax stay in fp32); pooling is always done in fp32.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from backends.base import Analysis, Backend, BackendError, WeightsMissing

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
# Files of an upstream transformers folder worth keeping; remote-code .py files are not copied.
KEPT_FILES = ("config.json", "preprocessor_config.json", *WEIGHT_FILES)
# Config entries that only describe where the file came from or which class to build; the
# backend decides the class, and the dtype on disk must not decide the compute dtype.
DROPPED_CONFIG_KEYS = (
    "auto_map",
    "architectures",
    "model_type",
    "_name_or_path",
    "transformers_version",
    "torch_dtype",
)
# Parameters used only while pre-training (the learned mask vector); absent from some exports.
TRAINING_ONLY_KEYS = ("masked_spec_embed",)


# -- config.json --------------------------------------------------------------------------


def read_config(folder: Path, backend: str) -> dict[str, Any]:
    """The parsed config.json of a weights folder, or a one-line error."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise WeightsMissing(f"{path} is missing", f"give the folder that holds the {backend} config.json and weights")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BackendError(f"{path}: not a readable JSON config ({exc})", f"fetch the {backend} weights again") from exc
    if not isinstance(raw, dict):
        raise BackendError(
            f"{path}: not a model config (a JSON object was expected)", f"fetch the {backend} weights again"
        )
    return raw


def check_model_type(raw: dict[str, Any], path: Path, backend: str, accepted: Sequence[str]) -> str:
    """Refuse a config that belongs to another model family (say, a MERT folder given to Music2Vec)."""
    model_type = str(raw.get("model_type", ""))
    if model_type not in accepted:
        found = f"a {model_type!r} model" if model_type else "no model_type"
        raise BackendError(
            f"{path}: this is {found}, not a {backend} checkpoint (expected model_type {' or '.join(accepted)})",
            f"give the folder of the {backend} weights, or run: mrs-tui backends fetch {backend}",
        )
    return model_type


def patch_unused_fields(raw: dict[str, Any], defaults: dict[str, Any]) -> list[str]:
    """Replace values of fields the bare encoder never reads when their type is wrong.

    Returns the names patched. `defaults` maps field name to the value to use instead.
    """
    patched = []
    for key, default in defaults.items():
        if key in raw and not isinstance(raw[key], type(default)):
            raw[key] = default
            patched.append(key)
    return patched


def build_config(config_cls: type, raw: dict[str, Any], path: Path, backend: str):
    """An instance of `config_cls` from a config.json dict, without its provenance keys."""
    values = {k: v for k, v in raw.items() if k not in DROPPED_CONFIG_KEYS}
    try:
        return config_cls(**values)
    except Exception as exc:  # strict-dataclass validation errors, bad conv layer lists, ...
        first = str(exc).strip().splitlines()
        detail = " ".join(line.strip() for line in first[:2])[:200]
        raise BackendError(
            f"{path}: config.json is not a valid {backend} config ({detail})", f"fetch the {backend} weights again"
        ) from exc


# -- weights ------------------------------------------------------------------------------


def weight_file(folder: Path, backend: str) -> Path:
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    raise WeightsMissing(
        f"no {' or '.join(WEIGHT_FILES)} in {folder}", f"give the folder that holds the {backend} weights"
    )


def strip_prefixes(state_dict: dict, prefixes: Sequence[str]) -> dict:
    """Keys without a wrapper prefix (`hubert.`, `mert_model.`...) when every key carries it."""
    for prefix in prefixes:
        if state_dict and all(k.startswith(prefix) for k in state_dict):
            return {k[len(prefix) :]: v for k, v in state_dict.items()}
    return state_dict


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' load report and progress bars; our own checks say what matters."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def instantiate(
    model_cls: type,
    config,
    state_dict: dict,
    *,
    path: Path,
    backend: str,
    ignorable_missing: Sequence[str] = TRAINING_ONLY_KEYS,
):
    """`model_cls` with the checkpoint's tensors, in eval mode; refuses partial matches."""
    with quiet_transformers():
        try:
            model, info = model_cls.from_pretrained(
                None, config=config, state_dict=state_dict, output_loading_info=True
            )
        except Exception as exc:
            raise BackendError(
                f"{path}: does not fit the {backend} architecture ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})",
                f"give the folder of the {backend} weights, or fetch them again",
            ) from exc
    missing = sorted(k for k in info["missing_keys"] if k not in ignorable_missing)
    unexpected = sorted(info["unexpected_keys"])
    mismatched = sorted(str(k[0] if isinstance(k, tuple) else k) for k in info.get("mismatched_keys", ()))
    if missing or unexpected or mismatched:
        expected = len(model.state_dict())
        if missing and len(missing) * 2 >= expected:
            problem = f"{path}: not a {backend} checkpoint ({len(missing)} of {expected} expected weights absent"
        else:
            problem = f"{path}: the weights do not match the {backend} architecture in config.json ("
            problem += ", ".join(
                part
                for part in (
                    f"missing {_few(missing)}" if missing else "",
                    f"unexpected {_few(unexpected)}" if unexpected else "",
                    f"wrong shape {_few(mismatched)}" if mismatched else "",
                )
                if part
            )
        raise BackendError(problem + ")", f"give the folder of the {backend} weights, or fetch them again")
    return model.eval()


def _few(keys: Sequence[str], n: int = 2) -> str:
    shown = ", ".join(keys[:n])
    return shown + (f" and {len(keys) - n} more" if len(keys) > n else "")


def convert_to_safetensors(folder: Path, *, allow_pickle: bool = False) -> Path:
    """Replace `folder`/pytorch_model.bin by model.safetensors with the same tensor names."""
    from safetensors.torch import save_file

    from backends._weights import load_state_dict

    source = folder / "pytorch_model.bin"
    target = folder / "model.safetensors"
    if not source.is_file():
        return target
    state_dict = load_state_dict(source, allow_pickle=allow_pickle)
    tensors = _tensors_only(state_dict, source)
    partial = target.with_suffix(".safetensors.partial")
    # clone(): safetensors refuses tensors that share storage, which torch pickles may contain.
    save_file({k: v.detach().clone().contiguous() for k, v in tensors.items()}, str(partial), metadata={"format": "pt"})
    partial.replace(target)
    source.unlink()
    return target


def _tensors_only(state_dict: object, path: Path) -> dict:
    """The tensors of a loaded checkpoint; training metadata stored beside them is dropped."""
    import torch

    if isinstance(state_dict, dict) and isinstance(state_dict.get("state_dict"), dict):
        state_dict = state_dict["state_dict"]
    tensors = (
        {k: v for k, v in state_dict.items() if isinstance(v, torch.Tensor)} if isinstance(state_dict, dict) else {}
    )
    if not tensors:
        raise BackendError(f"{path}: holds no weight tensors", "fetch the weights again")
    return tensors


def read_weights(folder: Path, backend: str, *, allow_pickle: bool, prefixes: Sequence[str]) -> tuple[Path, dict]:
    from backends._weights import load_state_dict

    path = weight_file(folder, backend)
    try:
        loaded = load_state_dict(path, allow_pickle=allow_pickle)
    except BackendError as exc:
        if allow_pickle or not (exc.fix and "--allow-pickle" in exc.fix):
            raise
        raise BackendError(
            exc.problem,
            f"if you trust the file, convert it once: mrs-tui backends fetch {backend} --from {path.parent} --allow-pickle",
        ) from exc
    return path, strip_prefixes(_tensors_only(loaded, path), prefixes)


def copy_checkpoint(source: Path, target: Path, *, allow_pickle: bool) -> Path:
    """Copy the files a transformers folder needs into `target`, converting a .bin to safetensors."""
    target.mkdir(parents=True, exist_ok=True)
    if source.resolve() != target.resolve():
        for name in KEPT_FILES:
            if (source / name).is_file():
                shutil.copyfile(source / name, target / name)
        if (source / "model.safetensors").is_file() and (target / "pytorch_model.bin").is_file():
            (target / "pytorch_model.bin").unlink()
    if not (target / "model.safetensors").is_file():
        try:
            convert_to_safetensors(target, allow_pickle=allow_pickle)
        except BackendError:
            if source.resolve() != target.resolve():  # a refused copy must not look like installed weights
                (target / "pytorch_model.bin").unlink(missing_ok=True)
            raise
    elif (target / "pytorch_model.bin").is_file():
        (target / "pytorch_model.bin").unlink()
    return target


# -- inference ----------------------------------------------------------------------------


def zero_mean_unit_variance(wave: np.ndarray) -> np.ndarray:
    """What the models' hub processors (Wav2Vec2FeatureExtractor, do_normalize) do per clip."""
    wave = np.asarray(wave, np.float32)
    return ((wave - wave.mean()) / np.sqrt(wave.var() + 1e-7)).astype(np.float32)


def receptive_field(conv_kernel: Sequence[int], conv_stride: Sequence[int]) -> int:
    """Samples the convolutional front end needs for one output frame (400 for wav2vec2-style)."""
    field, jump = 1, 1
    for kernel, stride in zip(conv_kernel, conv_stride, strict=True):
        field += (kernel - 1) * jump
        jump *= stride
    return field


def equal_length_groups(waveforms: Sequence[np.ndarray], max_batch: int) -> list[list[int]]:
    """Indices of `waveforms`, grouped by length, each group at most `max_batch` long."""
    by_length: dict[int, list[int]] = {}
    for index, wave in enumerate(waveforms):
        by_length.setdefault(len(wave), []).append(index)
    groups = []
    for indices in by_length.values():
        for start in range(0, len(indices), max(1, max_batch)):
            groups.append(indices[start : start + max_batch])
    return groups


class HFAudioBackend(Backend):
    """A wav2vec2-family encoder in the transformers layout: load, embed, fetch.

    Subclasses set the transformers classes, the accepted `model_type`s and the hub repository.
    """

    config_class_name: ClassVar[str]
    model_class_name: ClassVar[str]
    accepted_model_types: ClassVar[tuple[str, ...]]
    hub_repo: ClassVar[str]
    state_dict_prefixes: ClassVar[tuple[str, ...]] = ()
    # Values of config fields the bare encoder never reads, used when the file has the wrong type.
    unused_field_defaults: ClassVar[dict[str, Any]] = {}
    batch_size: ClassVar[int | None] = 2
    gpu_batch_size: ClassVar[int] = 16

    def __init__(self, **kwargs: Any) -> None:
        from backends._precision import precision_option

        super().__init__(**kwargs)
        self.precision = precision_option(self.options)
        self.model = None
        self.model_config = None
        self.torch_device = None
        self.weights_path: Path | None = None

    # -- facts that depend on the loaded checkpoint ------------------------------------------

    @property
    def dim(self) -> int:
        """The loaded model's width (the registry's figure before loading)."""
        if self.model_config is not None:
            return int(self.model_config.hidden_size)
        return self.expected_dim()

    def expected_dim(self) -> int:
        return self.spec.dim

    @property
    def normalize(self) -> bool:
        """Per-clip standardisation as the hub processor does; the paper fed raw samples."""
        return not self.paper_compat

    # -- loading ----------------------------------------------------------------------------

    def default_weights_folder(self) -> Path | None:
        return None

    def check_config(self, raw: dict[str, Any], path: Path) -> None:
        """Refuse configs this backend cannot run faithfully (subclasses add their checks)."""

    def load(self, weights: str | Path | None = None) -> HFAudioBackend:
        import transformers

        from backends._precision import prepare_model
        from backends._weights import pick_device, resolve_weights

        folder = resolve_weights(self.spec, weights if weights is not None else self.default_weights_folder())
        config_path = folder / "config.json"
        raw = read_config(folder, self.name)
        check_model_type(raw, config_path, self.name, self.accepted_model_types)
        patch_unused_fields(raw, self.unused_field_defaults)
        self.check_config(raw, config_path)
        config = build_config(getattr(transformers, self.config_class_name), raw, config_path, self.name)
        path, state_dict = read_weights(folder, self.name, allow_pickle=False, prefixes=self.state_dict_prefixes)
        model = instantiate(
            getattr(transformers, self.model_class_name), config, state_dict, path=path, backend=self.name
        )
        self.torch_device = pick_device(self.device)
        self.model = prepare_model(model.to(self.torch_device), self.precision, self.torch_device.type)
        if self.torch_device.type == "cuda":
            # A GPU is ~100x faster per clip and gains from batching; on CPU batching gains
            # nothing measurable, so small batches let the indexer commit often.
            self.batch_size = self.gpu_batch_size
        self.model_config = config
        self.weights_path = path
        self.loaded = True
        return self

    # -- inference --------------------------------------------------------------------------

    def prepare(self, wave: np.ndarray) -> np.ndarray:
        """One clip as the model gets it: float32, padded to the front end's minimum length."""
        wave = np.asarray(wave, np.float32).reshape(-1)
        if self.paper_compat and self.clip_seconds:
            # The paper's reader zero-padded every file to the full clip (720 000 samples).
            wave = _pad_to(wave, int(round(self.clip_seconds * self.sample_rate)))
        if self.normalize:
            wave = zero_mean_unit_variance(wave)
        config = self.model_config
        return _pad_to(wave, receptive_field(config.conv_kernel, config.conv_stride))

    def _max_batch(self) -> int:
        from backends._precision import max_batch_for

        return max_batch_for(self.precision, self.batch_size or 1)

    def _run(self, waveforms: Sequence[np.ndarray], reduce: Callable) -> list:
        """`reduce(hidden_states)` per clip, batched by equal length, under inference mode."""
        import torch

        from backends._precision import compute_context

        self._require_loaded()
        prepared = [self.prepare(w) for w in waveforms]
        results: list = [None] * len(prepared)
        device = self.torch_device
        with torch.inference_mode(), compute_context(self.precision, device.type):
            for group in equal_length_groups(prepared, self._max_batch()):
                batch = torch.from_numpy(np.stack([prepared[i] for i in group])).to(device)
                hidden = self.model(batch).last_hidden_state.float()
                for row, index in enumerate(group):
                    results[index] = reduce(hidden[row])
        return results

    def embed(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        """Last hidden state, mean over time: (N, dim) float32."""
        if len(waveforms) == 0:
            return np.zeros((0, self.dim), np.float32)
        vectors = self._run(waveforms, lambda hidden: hidden.mean(dim=0).cpu().numpy())
        return np.stack(vectors).astype(np.float32)

    def analyze_frames(self, waveforms: Sequence[np.ndarray]) -> list[Analysis]:
        """Track vectors plus the last hidden state per frame (T, dim)."""
        frames = self._run(waveforms, lambda hidden: hidden.cpu().numpy())
        return [Analysis(vector=f.mean(axis=0).astype(np.float32), frames=f.astype(np.float32)) for f in frames]

    # -- weights ------------------------------------------------------------------------------

    @classmethod
    def install_target(cls, source: Path) -> Path:
        """Where weights from `source` go in the user cache."""
        from backends import weights_dir

        return weights_dir(cls.spec.name)

    @classmethod
    def validate_folder(cls, folder: Path) -> dict[str, Any]:
        """Cheap checks before copying a folder: config of the right family, weights present."""
        if not folder.is_dir():
            raise WeightsMissing(f"{folder} is not a folder", f"give the folder that holds the {cls.spec.name} weights")
        raw = read_config(folder, cls.spec.name)
        check_model_type(raw, folder / "config.json", cls.spec.name, cls.accepted_model_types)
        weight_file(folder, cls.spec.name)
        return raw

    @classmethod
    def install_from(cls, source: str | Path, *, allow_pickle: bool) -> Path:
        """A user's transformers folder (or a file in it), checked, copied and stored as safetensors."""
        folder = Path(source).expanduser()
        if folder.is_file():
            folder = folder.parent
        cls.validate_folder(folder)
        return copy_checkpoint(folder, cls.install_target(folder), allow_pickle=allow_pickle)

    @classmethod
    def download(cls, *, revision: str | None, allow_pickle: bool, **options: object) -> Path:
        return cls.fetch_hub(cls.hub_repo, revision=revision, allow_pickle=allow_pickle)

    @classmethod
    def fetch_hub(cls, repo_id: str, *, revision: str | None, allow_pickle: bool, subfolder: str = "") -> Path:
        """Download `repo_id` into the weights folder (or its `subfolder`) and convert it to safetensors."""
        import dataclasses

        from backends._weights import fetch_from_hub

        # fetch_from_hub downloads into weights_dir(spec.name); a sub-folder name puts a
        # variant's files beside, not over, the default variant's.
        spec = dataclasses.replace(cls.spec, name=f"{cls.spec.name}/{subfolder}") if subfolder else cls.spec
        try:
            folder = fetch_from_hub(spec, repo_id, ["config.json"], revision=revision)
            try:
                fetch_from_hub(spec, repo_id, ["model.safetensors"], revision=revision)
            except WeightsMissing:
                # Most m-a-p repositories publish only the pickle; it is read with weights_only.
                fetch_from_hub(spec, repo_id, ["pytorch_model.bin"], revision=revision)
        except WeightsMissing as exc:
            raise WeightsMissing(
                exc.problem, f"download {repo_id} by hand and run: mrs-tui backends fetch {cls.spec.name} --from FOLDER"
            ) from exc
        cls.validate_folder(folder)
        return copy_checkpoint(folder, folder, allow_pickle=allow_pickle)


def _pad_to(wave: np.ndarray, length: int) -> np.ndarray:
    if len(wave) >= length:
        return wave
    return np.pad(wave, (0, length - len(wave)))
