"""The encoder's input: a power mel spectrogram, computed as resemblyzer computes it.

resemblyzer calls `librosa.feature.melspectrogram` with 25 ms Hann windows every 10 ms and 40
Slaney-normalised mel bands (a power spectrogram, not log-mel). This reproduces that with
numpy and scipy so that librosa is not needed; the test against librosa's output is recorded in
docs/diarization.md.
"""

from __future__ import annotations

from functools import cache

import numpy as np
from scipy.signal import get_window

from worker.diarize.types import FloatArray

SAMPLE_RATE = 16000
N_FFT = 400  # 25 ms
HOP = 160  # 10 ms
N_MELS = 40


def _hz_to_mel(hz: FloatArray) -> FloatArray:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above."""
    mel = hz / (200.0 / 3)
    log_region = hz >= 1000.0
    mel[log_region] = 15.0 + np.log(hz[log_region] / 1000.0) / (np.log(6.4) / 27.0)
    return mel


def _mel_to_hz(mel: FloatArray) -> FloatArray:
    hz = mel * (200.0 / 3)
    log_region = mel >= 15.0
    hz[log_region] = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel[log_region] - 15.0))
    return hz


@cache
def mel_filters() -> FloatArray:
    """(N_MELS, N_FFT // 2 + 1) triangular filters, Slaney area-normalised (librosa's default)."""
    edges = np.array([0.0, SAMPLE_RATE / 2.0])
    mel_lo, mel_hi = _hz_to_mel(edges)
    mel_f = _mel_to_hz(np.linspace(mel_lo, mel_hi, N_MELS + 2))
    fft_f = np.fft.rfftfreq(N_FFT, 1.0 / SAMPLE_RATE)
    widths = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_f[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2:] - mel_f[:-2]))[:, None]
    return weights.astype(np.float32)


@cache
def _window() -> FloatArray:
    return np.asarray(get_window("hann", N_FFT, fftbins=True), dtype=np.float32)


def mel_spectrogram(wav: FloatArray) -> FloatArray:
    """(frames, N_MELS) float32 power mel spectrogram of 16 kHz audio (frames centred, zero pad)."""
    padded = np.pad(wav.astype(np.float32, copy=False), N_FFT // 2)
    n_frames = 1 + (len(padded) - N_FFT) // HOP
    frames = np.lib.stride_tricks.as_strided(
        padded,
        shape=(n_frames, N_FFT),
        strides=(padded.strides[0] * HOP, padded.strides[0]),
        writeable=False,
    )
    spectrum = np.abs(np.fft.rfft(frames * _window(), axis=1)) ** 2
    return np.asarray(spectrum.astype(np.float32) @ mel_filters().T, dtype=np.float32)
