"""One mel filterbank for every backend with a mel front end, in numpy.

MusiCNN (Slaney scale, area-normalised), MULE (HTK scale, unit L2 norm per filter) and the
conformer family of MusicFM and MuQ (HTK scale, unnormalised: torchaudio's default) all use
the triangular filters of ``librosa.filters.mel`` with different settings. librosa itself
takes about a second to import, so backends do not import it; this is the same computation,
step for step, including librosa's float32 storage of the weights (which MusiCNN's
bit-exact reference outputs depend on). tests/test_backend_mel.py compares it with librosa.
"""

from __future__ import annotations

import numpy as np

# Slaney's "auditory toolbox" scale: linear below 1 kHz, logarithmic above.
_SLANEY_F_SP = 200.0 / 3
_SLANEY_MIN_LOG_HZ = 1000.0
_SLANEY_MIN_LOG_MEL = _SLANEY_MIN_LOG_HZ / _SLANEY_F_SP
_SLANEY_LOGSTEP = np.log(6.4) / 27.0


def hz_to_mel(hz: np.ndarray | float, *, htk: bool = False) -> np.ndarray:
    hz = np.asarray(hz, dtype=np.float64)
    if htk:
        return 2595.0 * np.log10(1.0 + hz / 700.0)
    linear = hz / _SLANEY_F_SP
    logarithmic = _SLANEY_MIN_LOG_MEL + np.log(np.maximum(hz, 1e-12) / _SLANEY_MIN_LOG_HZ) / _SLANEY_LOGSTEP
    return np.where(hz >= _SLANEY_MIN_LOG_HZ, logarithmic, linear)


def mel_to_hz(mel: np.ndarray | float, *, htk: bool = False) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    if htk:
        return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)
    logarithmic = _SLANEY_MIN_LOG_HZ * np.exp(_SLANEY_LOGSTEP * (mel - _SLANEY_MIN_LOG_MEL))
    return np.where(mel >= _SLANEY_MIN_LOG_MEL, logarithmic, _SLANEY_F_SP * mel)


def mel_filterbank(
    sample_rate: int,
    n_fft: int,
    n_mels: int,
    *,
    f_min: float = 0.0,
    f_max: float | None = None,
    htk: bool = False,
    norm: str | float | None = "slaney",
) -> np.ndarray:
    """(n_mels, 1 + n_fft // 2) float32 triangular filters, as ``librosa.filters.mel`` returns them.

    `norm`: "slaney" divides each filter by its width in Hz (equal area), a number p > 0 (or
    ``np.inf``) scales each filter to unit p-norm, None leaves the peaks at 1.
    """
    f_max = sample_rate / 2.0 if f_max is None else float(f_max)
    fft_freqs = np.fft.rfftfreq(n_fft, d=1.0 / sample_rate)
    mel_points = np.linspace(hz_to_mel(f_min, htk=htk), hz_to_mel(f_max, htk=htk), n_mels + 2)
    mel_freqs = mel_to_hz(mel_points, htk=htk)
    widths = np.diff(mel_freqs)
    ramps = np.subtract.outer(mel_freqs, fft_freqs)
    weights = np.zeros((n_mels, len(fft_freqs)), dtype=np.float32)
    for i in range(n_mels):
        lower = -ramps[i] / widths[i]
        upper = ramps[i + 2] / widths[i + 1]
        weights[i] = np.maximum(0, np.minimum(lower, upper))
    if norm == "slaney":
        weights *= (2.0 / (mel_freqs[2 : n_mels + 2] - mel_freqs[:n_mels]))[:, np.newaxis]
    elif norm is not None:
        if isinstance(norm, str) or not norm > 0:
            raise ValueError(f"unknown mel filter norm {norm!r}: use 'slaney', a number > 0 or None")
        # In float64 like librosa.util.normalize; an all-zero filter stays zero.
        magnitudes = np.abs(weights).astype(np.float64)
        if norm == np.inf:
            lengths = magnitudes.max(axis=1, keepdims=True)
        else:
            lengths = np.sum(magnitudes**norm, axis=1, keepdims=True) ** (1.0 / norm)
        lengths[lengths < np.finfo(np.float32).tiny] = 1.0
        weights = (weights / lengths).astype(np.float32)
    return weights
