"""Random Jukebox weights: OpenAI's two pickles in full, or the converted safetensors `fetch` leaves."""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path

import torch

from backends.jukebox import CONVERTED_FILES, LAYER, TOP_LEVEL, UPSTREAM_FILES, JukeboxConfig, _Encoder

# Same token rate, context, block size and label tables as 5B; narrow everything else. Depth 37
# so the block after the read-out exists in the file and must be skipped.
TINY_CONFIG = JukeboxConfig(vq_width=8, vq_depth=2, emb_width=8, l_bins=32, width=32, depth=LAYER + 1, heads=2)


def write_random_checkpoint(folder: Path, *, size: str, seed: int, layout: str | None = None) -> Path:
    """Random weights of the Jukebox architecture.

    ``layout="upstream"`` (default for tiny) writes OpenAI's two pickles,
    ``{'hps', 'model', 'step'}`` with the full VQ-VAE (three encoders, three decoders,
    three codebooks) and the full prior (every block and the output head).
    ``layout="converted"`` (default for real: the upstream pickles would be 20 GB) writes
    what ``fetch`` leaves behind: the two safetensors files holding only what layer 36
    needs, in float16 like the published prior.
    """
    layout = layout or ("upstream" if size == "tiny" else "converted")
    cfg = TINY_CONFIG if size == "tiny" else JukeboxConfig()
    generator = torch.Generator().manual_seed(seed)

    def randn(*shape: int, std: float, dtype=torch.float32) -> torch.Tensor:
        return torch.randn(*shape, generator=generator, dtype=dtype).mul_(std)

    vq = _vqvae_state(cfg, randn, full=layout == "upstream")
    if layout == "upstream":
        prior = _prior_state(cfg, randn, cfg.depth, torch.float32)
        prior["prior.x_out.weight"] = randn(cfg.l_bins, cfg.width, std=0.02)
        hps = upstream_hps(cfg)
        torch.save({"hps": hps, "model": vq, "step": 0}, folder / UPSTREAM_FILES[0])
        torch.save({"hps": hps, "model": prior, "step": 0}, folder / UPSTREAM_FILES[1])
        return folder / UPSTREAM_FILES[1]
    from safetensors.torch import save_file

    meta = {"heads": str(cfg.heads), "blocks": str(cfg.blocks), "dilation_growth_rate": "3"}
    save_file(vq, str(folder / CONVERTED_FILES[0]), metadata=meta)
    prior = _prior_state(cfg, randn, LAYER, torch.float16)
    save_file(prior, str(folder / CONVERTED_FILES[1]), metadata=meta)
    return folder / CONVERTED_FILES[1]


def upstream_hps(cfg: JukeboxConfig) -> dict:
    """The entries of upstream's ``hps`` dict that describe this architecture."""
    out = asdict(cfg)
    out.update(prior_width=cfg.width, prior_depth=cfg.depth, hvqvae_multipliers=cfg.level_multipliers)
    return out


def _vqvae_state(cfg: JukeboxConfig, randn, *, full: bool) -> dict:
    state: dict[str, torch.Tensor] = {}
    levels = range(3) if full else (TOP_LEVEL,)
    for level in levels:
        encoder = _Encoder(cfg, level)
        for name, value in encoder.state_dict().items():
            fan_in = value[0].numel() if value.dim() > 1 else 1
            value = (
                randn(*value.shape, std=1.0 / math.sqrt(fan_in)) if value.dim() > 1 else randn(*value.shape, std=0.01)
            )
            state[f"encoders.{level}.{name}"] = value
        state[f"bottleneck.level_blocks.{level}.k"] = randn(cfg.l_bins, cfg.emb_width, std=1.0)
        if full:
            for name, value in _decoder_state_shapes(cfg, level).items():
                state[f"decoders.{level}.{name}"] = randn(*value, std=0.05)
    return state


def _decoder_state_shapes(cfg: JukeboxConfig, level: int) -> dict[str, tuple[int, ...]]:
    """Tensor shapes of jukebox's Decoder for one level (written only to mimic the file)."""
    width = cfg.vq_width * cfg.level_multipliers[level]
    depth = cfg.vq_depth * cfg.level_multipliers[level]
    shapes: dict[str, tuple[int, ...]] = {}
    for block, (down_t, stride) in enumerate(zip(cfg.downs_t[: level + 1], cfg.strides_t[: level + 1], strict=True)):
        prefix = f"level_blocks.{block}.model."
        shapes[prefix + "0.weight"], shapes[prefix + "0.bias"] = (width, cfg.emb_width, 3), (width,)
        for i in range(down_t):
            for d in range(depth):
                res = f"{prefix}{i + 1}.0.model.{d}.model."
                shapes[res + "1.weight"], shapes[res + "1.bias"] = (width, width, 3), (width,)
                shapes[res + "3.weight"], shapes[res + "3.bias"] = (width, width, 1), (width,)
            out = cfg.emb_width if i == down_t - 1 else width
            shapes[f"{prefix}{i + 1}.1.weight"], shapes[f"{prefix}{i + 1}.1.bias"] = (width, out, stride * 2), (out,)
    shapes["out.weight"], shapes["out.bias"] = (1, cfg.emb_width, 3), (1,)
    return shapes


def _prior_state(cfg: JukeboxConfig, randn, depth: int, dtype: torch.dtype) -> dict:
    w, state = cfg.width, {}
    state["prior.x_emb.weight"] = randn(cfg.l_bins, w, std=0.02 * 0.1 * 10)
    state["prior.pos_emb.pos_emb"] = randn(cfg.n_ctx, w, std=0.01 * 10)
    for name, bins in (
        ("bow_genre_emb", cfg.y_bins[0]),
        ("artist_emb", cfg.y_bins[1]),
        ("total_length_emb", cfg.t_bins),
        ("absolute_pos_emb", cfg.t_bins),
        ("relative_pos_emb", cfg.t_bins),
    ):
        state[f"y_emb.{name}.emb.weight"] = randn(bins, w, std=0.1)
    for i in range(depth):
        p = f"prior.transformer._attn_mods.{i}."
        state[p + "attn.c_attn.w"] = randn(w, cfg.attn_state * 3, std=1.0 / math.sqrt(w), dtype=dtype)
        state[p + "attn.c_attn.b"] = randn(cfg.attn_state * 3, std=0.02, dtype=dtype)
        state[p + "attn.c_proj.w"] = randn(cfg.attn_state, w, std=0.3 / math.sqrt(cfg.attn_state), dtype=dtype)
        state[p + "attn.c_proj.b"] = randn(w, std=0.02, dtype=dtype)
        hidden = int(cfg.m_mlp * w)
        state[p + "mlp.c_fc.w"] = randn(w, hidden, std=1.0 / math.sqrt(w), dtype=dtype)
        state[p + "mlp.c_fc.b"] = randn(hidden, std=0.02, dtype=dtype)
        state[p + "mlp.c_proj.w"] = randn(hidden, w, std=0.3 / math.sqrt(hidden), dtype=dtype)
        state[p + "mlp.c_proj.b"] = randn(w, std=0.02, dtype=dtype)
        for ln in ("ln_0", "ln_1"):
            state[p + ln + ".weight"] = (1.0 + randn(w, std=0.1)).to(dtype)
            state[p + ln + ".bias"] = randn(w, std=0.1, dtype=dtype)
    return state
