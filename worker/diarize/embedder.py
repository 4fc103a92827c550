"""Speaker embeddings from resemblyzer's bundled encoder, run in numpy.

The network is resemblyzer's `VoiceEncoder`: a 3-layer LSTM (40 mel bands in, 256 hidden)
whose last hidden state goes through a 256x256 linear layer and a ReLU, then L2 normalisation.
Its weights (`pretrained.pt`, 17 MB) ship inside the resemblyzer wheel; they are read with the
torch-free reader in `checkpoint.py`. An embedding covers a window of 160 mel frames (1.6 s).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
from scipy.special import expit

from worker.diarize.checkpoint import state_dict
from worker.diarize.mel import HOP, SAMPLE_RATE, mel_spectrogram
from worker.diarize.onnx_graph import encoder_session
from worker.diarize.types import FloatArray, Span

WINDOW_FRAMES = 160
WINDOW_S = WINDOW_FRAMES * HOP / SAMPLE_RATE  # 1.6 s
WINDOW_SAMPLES = WINDOW_FRAMES * HOP
TARGET_DBFS = -30.0
INT16_MAX = 2**15 - 1
LAYERS = 3


def bundled_weights() -> Path:
    """resemblyzer's `pretrained.pt`, found through the installed distribution (no import)."""
    try:
        dist = metadata.distribution("resemblyzer")
    except metadata.PackageNotFoundError as exc:
        raise FileNotFoundError(
            "the resemblyzer package (encoder weights) is not installed"
        ) from exc
    path = Path(str(dist.locate_file("resemblyzer/pretrained.pt")))
    if not path.is_file():
        raise FileNotFoundError(f"resemblyzer's encoder weights are missing at {path}")
    return path


def normalize_volume(wav: FloatArray) -> FloatArray:
    """Raise quiet audio to -30 dBFS RMS (never lowers it), as resemblyzer's preprocessing does."""
    rms = float(np.sqrt(np.mean((wav.astype(np.float64) * INT16_MAX) ** 2))) if wav.size else 0.0
    if rms <= 0.0:
        return wav
    change_db = TARGET_DBFS - 20.0 * np.log10(rms / INT16_MAX)
    if change_db < 0:
        return wav
    return (wav * np.float32(10.0 ** (change_db / 20.0))).astype(np.float32)


@dataclass(frozen=True)
class _Layer:
    w_ih: FloatArray  # (in, 4h), transposed for x @ w, gate columns in order i, f, o, g
    w_hh: FloatArray  # (h, 4h)
    bias: FloatArray  # (4h,)


def _gates_ifog(rows: FloatArray) -> FloatArray:
    """torch orders an LSTM's gate rows i, f, g, o; put the three sigmoid gates first."""
    i, f, g, o = np.split(rows, 4)
    return np.concatenate([i, f, o, g])


class VoiceEncoder:
    """resemblyzer's encoder in numpy: mel windows in, L2-normalised 256-d embeddings out."""

    dim = 256

    def __init__(self, weights: Path | None = None, threads: int = 2) -> None:
        params = state_dict(weights or bundled_weights(), "model_state")
        self.session = encoder_session(params, LAYERS, WINDOW_FRAMES, threads)
        self.layers = [
            _Layer(
                np.ascontiguousarray(_gates_ifog(params[f"lstm.weight_ih_l{i}"]).T, np.float32),
                np.ascontiguousarray(_gates_ifog(params[f"lstm.weight_hh_l{i}"]).T, np.float32),
                _gates_ifog(params[f"lstm.bias_ih_l{i}"] + params[f"lstm.bias_hh_l{i}"]).astype(
                    np.float32
                ),
            )
            for i in range(LAYERS)
        ]
        self.linear_w = np.ascontiguousarray(params["linear.weight"].T, dtype=np.float32)
        self.linear_b = params["linear.bias"].astype(np.float32)

    def forward(self, mels: FloatArray) -> FloatArray:
        """(batch, 160, 40) mel windows -> (batch, 256) embeddings, in onnxruntime."""
        out = self.session.run(["emb"], {"mels": np.ascontiguousarray(mels, dtype=np.float32)})
        return np.asarray(out[0], dtype=np.float32)

    def forward_numpy(self, mels: FloatArray) -> FloatArray:
        """The same network as a numpy recurrence: the reference the ONNX graph is tested on."""
        x = np.asarray(mels, dtype=np.float32)
        batch, steps, _ = x.shape
        h = np.zeros((batch, 0), np.float32)
        for layer in self.layers:
            hidden = layer.w_hh.shape[0]
            # The input projection of every step at once (time-major); only the recurrence
            # is sequential.
            projected = (
                x.transpose(1, 0, 2).reshape(steps * batch, -1) @ layer.w_ih + layer.bias
            ).reshape(steps, batch, 4 * hidden)
            h = np.zeros((batch, hidden), np.float32)
            c = np.zeros((batch, hidden), np.float32)
            gates = np.empty((batch, 4 * hidden), np.float32)
            outputs = np.empty((steps, batch, hidden), np.float32)
            for t in range(steps):
                np.matmul(h, layer.w_hh, out=gates)
                gates += projected[t]
                expit(gates[:, : 3 * hidden], out=gates[:, : 3 * hidden])
                np.tanh(gates[:, 3 * hidden :], out=gates[:, 3 * hidden :])
                c *= gates[:, hidden : 2 * hidden]
                c += gates[:, :hidden] * gates[:, 3 * hidden :]
                np.multiply(gates[:, 2 * hidden : 3 * hidden], np.tanh(c), out=h)
                outputs[t] = h
            x = outputs.transpose(1, 0, 2)
        raw = np.maximum(h @ self.linear_w + self.linear_b, 0.0)
        norms = np.linalg.norm(raw, axis=1, keepdims=True)
        return np.asarray(raw / np.maximum(norms, 1e-12), dtype=np.float32)

    def embed_windows(self, audio: FloatArray, windows: list[Span], batch: int = 64) -> FloatArray:
        """One embedding per 1.6 s window of `audio` (each window volume-normalised alone)."""
        if not windows:
            return np.zeros((0, self.dim), np.float32)
        out = np.empty((len(windows), self.dim), np.float32)
        for at in range(0, len(windows), batch):  # a batch at a time bounds the memory
            group = windows[at : at + batch]
            mels = np.empty((len(group), WINDOW_FRAMES, 40), np.float32)
            for n, w in enumerate(group):
                first = max(0, round(w.start * SAMPLE_RATE))
                clip = audio[first : first + WINDOW_SAMPLES]
                if len(clip) < WINDOW_SAMPLES:
                    clip = np.pad(clip, (0, WINDOW_SAMPLES - len(clip)))
                mels[n] = mel_spectrogram(normalize_volume(clip))[:WINDOW_FRAMES]
            out[at : at + len(group)] = self.forward(mels)
        return out

    def embed_utterance(self, wav: FloatArray, rate: float = 1.3) -> FloatArray:
        """A whole clip's voice print, exactly as resemblyzer's `embed_utterance` makes it.

        The clip is cut into 1.6 s partials `rate` times a second (the last one kept if it is
        75 % covered), their embeddings averaged and re-normalised.
        """
        wav = normalize_volume(np.asarray(wav, dtype=np.float32))
        n_frames = int(np.ceil((len(wav) + 1) / HOP))
        step = round((SAMPLE_RATE / rate) / HOP)
        starts = list(range(0, max(1, n_frames - WINDOW_FRAMES + step + 1), step))
        last = starts[-1] * HOP
        coverage = (len(wav) - last) / WINDOW_SAMPLES
        if coverage < 0.75 and len(starts) > 1:
            starts = starts[:-1]
        needed = (starts[-1] + WINDOW_FRAMES) * HOP
        if needed >= len(wav):
            wav = np.pad(wav, (0, needed - len(wav)))
        mel = mel_spectrogram(wav)
        partials = self.forward(np.stack([mel[s : s + WINDOW_FRAMES] for s in starts]))
        mean = partials.mean(axis=0)
        return np.asarray(mean / np.linalg.norm(mean), dtype=np.float32)


_shared: VoiceEncoder | None = None
_lock = threading.Lock()


def shared_encoder(threads: int = 2) -> VoiceEncoder:
    """One encoder per process, loaded on first use (well under a second; 17 MB of weights)."""
    global _shared
    with _lock:
        if _shared is None:
            _shared = VoiceEncoder(threads=threads)
        return _shared
