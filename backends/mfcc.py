"""Handcrafted features: MFCC, chroma and spectral shape statistics (librosa).

The paper's KNN baseline used MFCC-style descriptors; this backend needs no weights and
runs in a fraction of a second per track. One STFT is shared by every feature. Frequencies
are divided by Nyquist, MFCCs scaled to about unit range and energies put on a log scale so that no single feature dominates
a cosine; each of the 45 frame-level features contributes its mean and standard deviation.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from backends import REGISTRY
from backends.base import Backend

N_FFT = 2048
HOP = 512
N_MFCC = 20

FEATURE_NAMES = (
    [f"mfcc{i}" for i in range(N_MFCC)]
    + [f"chroma{i}" for i in range(12)]
    + [f"contrast{i}" for i in range(7)]
    + ["centroid", "bandwidth", "rolloff", "flatness", "zcr", "log_rms"]
)


class MfccBackend(Backend):
    spec = REGISTRY["mfcc"]

    def load(self, weights: str | Path | None = None) -> MfccBackend:
        import librosa  # noqa: F401 - fail here, not in the middle of indexing

        self.loaded = True
        return self

    def embed(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        self._require_loaded()
        return np.stack([self._features(np.asarray(w, np.float32)) for w in waveforms])

    def _features(self, y: np.ndarray) -> np.ndarray:
        import librosa

        sr = self.sample_rate
        if len(y) < N_FFT:
            y = np.pad(y, (0, N_FFT - len(y)))
        stft = np.abs(librosa.stft(y, n_fft=N_FFT, hop_length=HOP))
        power = stft**2
        mel = librosa.feature.melspectrogram(S=power, sr=sr, n_mels=64)
        mfcc = librosa.feature.mfcc(S=librosa.power_to_db(mel), n_mfcc=N_MFCC)
        chroma = librosa.feature.chroma_stft(S=power, sr=sr)
        contrast = librosa.feature.spectral_contrast(S=stft, sr=sr)
        nyquist = sr / 2
        centroid = librosa.feature.spectral_centroid(S=stft, sr=sr) / nyquist
        bandwidth = librosa.feature.spectral_bandwidth(S=stft, sr=sr) / nyquist
        rolloff = librosa.feature.spectral_rolloff(S=stft, sr=sr) / nyquist
        flatness = librosa.feature.spectral_flatness(S=stft)
        zcr = librosa.feature.zero_crossing_rate(y, frame_length=N_FFT, hop_length=HOP)
        rms = librosa.feature.rms(S=stft, frame_length=N_FFT)
        log_rms = np.log10(rms + 1e-6)
        n = min(m.shape[1] for m in (mfcc, chroma, contrast, centroid, zcr, rms))
        frames = np.vstack(
            [
                mfcc[:, :n] / 50.0,
                chroma[:, :n],
                contrast[:, :n] / 10.0,
                centroid[:, :n],
                bandwidth[:, :n],
                rolloff[:, :n],
                flatness[:, :n],
                zcr[:, :n],
                log_rms[:, :n],
            ]
        )
        return np.concatenate([frames.mean(axis=1), frames.std(axis=1)]).astype(np.float32)
