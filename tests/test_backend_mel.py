"""The one mel filterbank of the backends equals librosa's, for each front end that uses it.

Backends compute it in numpy so that loading them never imports librosa; librosa is the
reference here only.
"""

from __future__ import annotations

import numpy as np
import pytest

from backends._mel import mel_filterbank


def _musicnn() -> np.ndarray:
    from backends.musicnn import LogMel

    return LogMel().mel_t.T


def _mule() -> np.ndarray:
    from backends.mule import MuleFrontEnd

    return MuleFrontEnd().mel_fb.numpy()


def _conformer() -> np.ndarray:
    from backends._conformer import MelSpectrogramDb

    return MelSpectrogramDb().filterbank.numpy().T


# Each front end's filters, and the librosa call its upstream documents.
FRONT_ENDS = {
    "musicnn (Slaney, area-normalised)": (_musicnn, {"sr": 16000, "n_fft": 512, "n_mels": 96}),
    "mule (HTK, unit L2 norm, 0-8 kHz)": (
        _mule,
        {"sr": 16000, "n_fft": 2048, "n_mels": 96, "fmax": 8000.0, "htk": True, "norm": 2.0},
    ),
    "musicfm/muq (HTK, unnormalised)": (
        _conformer,
        {"sr": 24000, "n_fft": 2048, "n_mels": 128, "htk": True, "norm": None},
    ),
}


@pytest.mark.parametrize("name", list(FRONT_ENDS))
def test_each_front_end_uses_librosas_filterbank_to_the_bit(name):
    librosa = pytest.importorskip("librosa")
    filters, settings = FRONT_ENDS[name]
    ours = filters()
    assert ours.dtype == np.float32
    np.testing.assert_array_equal(ours, librosa.filters.mel(**settings))


@pytest.mark.parametrize(
    "settings",
    [
        {"sr": 22050, "n_fft": 1024, "n_mels": 40, "fmin": 50.0, "fmax": 6000.0, "htk": False, "norm": 1.0},
        {"sr": 44100, "n_fft": 4096, "n_mels": 64, "fmin": 20.0, "htk": False, "norm": "slaney"},
        {"sr": 8000, "n_fft": 256, "n_mels": 20, "fmin": 100.0, "fmax": 3500.0, "htk": True, "norm": np.inf},
    ],
)
def test_other_settings_equal_librosa_too(settings):
    librosa = pytest.importorskip("librosa")
    ours = mel_filterbank(
        settings["sr"],
        settings["n_fft"],
        settings["n_mels"],
        f_min=settings["fmin"],
        f_max=settings.get("fmax"),
        htk=settings["htk"],
        norm=settings["norm"],
    )
    np.testing.assert_allclose(ours, librosa.filters.mel(**settings), rtol=1e-6, atol=1e-9)


def test_an_unknown_norm_is_refused():
    with pytest.raises(ValueError, match="norm"):
        mel_filterbank(16000, 512, 8, norm="area")
