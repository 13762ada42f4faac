"""Music2Vec v1 (m-a-p/music2vec-v1): a data2vec-style encoder, run as transformers' Data2VecAudioModel.

The checkpoint is a plain data2vec-audio base model (12 layers x 768, 16 kHz, 50 frames/s), so
no remote code is involved. The track vector is the last hidden state averaged over time, as
in the paper's extraction script.

Where the paper and the model disagree:
- The paper read 720 000 samples from 24 kHz files and fed them to this 16 kHz model, i.e. the
  model heard the music slowed to 2/3 speed and a fifth lower. By default we resample to
  16 kHz; ``paper_compat`` makes `sample_rate` 24 000 so the indexer hands over 24 kHz samples
  unchanged, and pads to the full 30-s clip as the paper's reader did.
- The hub processor standardises each clip (zero mean, unit variance); the paper fed raw
  samples. Default: standardise; ``paper_compat``: raw.
- The published config.json has a path string as ``vocab_size``, which transformers 5's
  strict config validation rejects; the bare encoder never reads it, so it is replaced by the
  default before the config is built.
"""

from __future__ import annotations

from typing import Any, ClassVar

from backends import REGISTRY
from backends._hf import HFAudioBackend

PAPER_SAMPLE_RATE = 24000


class Music2VecBackend(HFAudioBackend):
    spec = REGISTRY["music2vec"]
    config_class_name = "Data2VecAudioConfig"
    model_class_name = "Data2VecAudioModel"
    accepted_model_types = ("data2vec-audio",)
    hub_repo = "m-a-p/music2vec-v1"
    state_dict_prefixes = ("data2vec_audio.",)
    unused_field_defaults: ClassVar[dict[str, Any]] = {"vocab_size": 32}

    @property
    def sample_rate(self) -> int:
        return PAPER_SAMPLE_RATE if self.paper_compat else self.spec.sample_rate
