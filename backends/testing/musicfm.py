"""A random MusicFM in upstream's layout: pretrained_msd.pt (a Lightning dict) + msd_stats.json."""

from __future__ import annotations

import json
from pathlib import Path

# What the real MSD statistics file holds for the mel feature the model uses.
MSD_MEL_MEAN = 6.768444971712967
MSD_MEL_STD = 18.417922652295623

SIZES = {
    "real": {"hidden_size": 1024, "num_hidden_layers": 12, "intermediate_size": 4096, "conv_channels": 512},
    "tiny": {"hidden_size": 64, "num_hidden_layers": 2, "intermediate_size": 128, "conv_channels": 8},
}


def write_random_checkpoint(folder: Path, *, size: str, seed: int) -> Path:
    import torch

    from backends._conformer import ConformerEncoderStack, conformer_config
    from backends._mel import mel_filterbank
    from backends.musicfm import CHECKPOINT, NUM_HEADS, PREFIX, STATS
    from backends.testing._common import legacy_weight_norm_name, perturb_norms_

    sizes = SIZES[size]
    config = conformer_config(
        hidden_size=sizes["hidden_size"],
        num_hidden_layers=sizes["num_hidden_layers"],
        intermediate_size=sizes["intermediate_size"],
        num_attention_heads=NUM_HEADS,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = ConformerEncoderStack(
            config, mel_mean=MSD_MEL_MEAN, mel_std=MSD_MEL_STD, conv_channels=sizes["conv_channels"]
        )
        generator = torch.Generator().manual_seed(seed)
        perturb_norms_(model, generator, std=0.2)
        codebook_size, hidden = 4096, sizes["hidden_size"]
        # The 2023 checkpoint predates torch's weight-norm parametrisation.
        state = {PREFIX + legacy_weight_norm_name(k): v.clone() for k, v in model.state_dict().items()}
        # Training-only tensors upstream saves beside the encoder, so the loader's skip list is exercised.
        state[PREFIX + "linear.weight"] = torch.randn(codebook_size, hidden, generator=generator) * 0.02
        state[PREFIX + "linear.bias"] = torch.zeros(codebook_size)
        state[PREFIX + "cls_token"] = torch.randn(hidden, generator=generator)
        state[PREFIX + "quantizer_melspec_2048_0.random_projection"] = torch.randn(512, 16, generator=generator)
        state[PREFIX + "quantizer_melspec_2048_0.codebook"] = torch.randn(codebook_size, 16, generator=generator)
        # torchaudio's buffers, (freqs, mels) as torchaudio stores its filterbank.
        state[PREFIX + "preprocessor_melspec_2048.melspec.spectrogram.window"] = torch.hann_window(2048)
        state[PREFIX + "preprocessor_melspec_2048.melspec.mel_scale.fb"] = torch.from_numpy(
            mel_filterbank(24000, 2048, 128, htk=True, norm=None).T.copy()
        )
    torch.save({"epoch": 0, "global_step": 0, "state_dict": state}, folder / CHECKPOINT)
    stats = {
        "melspec_2048_cnt": 14282760192,
        "melspec_2048_mean": MSD_MEL_MEAN,
        "melspec_2048_std": MSD_MEL_STD,
        "spec_2048_mean": -15.638743433896792,
        "spec_2048_std": 26.115825961611545,
    }
    (folder / STATS).write_text(json.dumps(stats, indent=1), encoding="utf-8")
    return folder
