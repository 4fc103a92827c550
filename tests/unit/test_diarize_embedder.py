"""The bundled speaker encoder: torch-free weights, the ONNX graph, and what its embeddings say."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from core.audio import decode
from worker.diarize.checkpoint import LEGACY_MAGIC, CheckpointError, load_checkpoint, state_dict
from worker.diarize.embedder import VoiceEncoder, bundled_weights, shared_encoder
from worker.diarize.mel import N_MELS, mel_spectrogram

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "diarize"


@pytest.fixture(scope="module")
def encoder() -> VoiceEncoder:
    return shared_encoder()


def test_bundled_weights_load_without_torch() -> None:
    params = state_dict(bundled_weights(), "model_state")
    assert params["lstm.weight_ih_l0"].shape == (1024, N_MELS)
    assert params["lstm.weight_hh_l2"].shape == (1024, 256)
    assert params["linear.weight"].shape == (256, 256)
    assert all(np.isfinite(a).all() for a in params.values())


def test_zip_format_checkpoint_with_views_and_offsets() -> None:
    # Written by torch.save: "w" is a transposed view at offset 4 into a shared storage.
    tree = load_checkpoint(FIXTURES / "tiny_zip.pt")
    state = tree["model_state"]
    assert tree["step"] == 3
    np.testing.assert_array_equal(state["w"], np.arange(4, 16, dtype=np.float32).reshape(3, 4).T)
    np.testing.assert_array_equal(state["b"], [0.0, 1.0, 2.0])
    assert state["n"].dtype == np.int64
    np.testing.assert_array_equal(state["n"], [7, -2])


def test_checkpoint_reader_refuses_arbitrary_globals(tmp_path: Path) -> None:
    evil = tmp_path / "evil.pt"
    with evil.open("wb") as f:
        headers: tuple[object, ...] = (LEGACY_MAGIC, 1001, {})
        for header in headers:
            pickle.dump(header, f, protocol=2)
        pickle.dump({"x": Path.home}, f, protocol=2)  # a global the reader must not resolve
    with pytest.raises(CheckpointError, match="not allowed"):
        load_checkpoint(evil)


def test_checkpoint_reader_refuses_other_files(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a pickle at all")
    with pytest.raises(CheckpointError):
        load_checkpoint(junk)


def test_onnx_graph_matches_the_numpy_recurrence(encoder: VoiceEncoder) -> None:
    mels = np.random.default_rng(1).random((2, 160, N_MELS), dtype=np.float32)
    onnx_out = encoder.forward(mels)
    numpy_out = encoder.forward_numpy(mels)
    assert onnx_out.shape == (2, 256)
    assert np.abs(onnx_out - numpy_out).max() < 1e-5
    np.testing.assert_allclose(np.linalg.norm(onnx_out, axis=1), 1.0, atol=1e-5)


def test_embeddings_match_resemblyzer_under_torch(encoder: VoiceEncoder, corpus: Path) -> None:
    # The fixture holds resemblyzer's own output (torch 2.13 CPU) for these clips.
    reference = json.loads((FIXTURES / "torch_reference.json").read_text())["embeddings"]
    for name, expected in reference.items():
        ours = encoder.embed_utterance(decode(corpus / name))
        assert np.abs(ours - np.asarray(expected, dtype=np.float32)).max() < 1e-4, name


def test_mel_spectrogram_shape_and_power() -> None:
    tone = np.sin(2 * np.pi * 440 * np.arange(16000) / 16000).astype(np.float32)
    mel = mel_spectrogram(tone)
    assert mel.shape == (101, N_MELS)
    assert (mel >= 0).all()
    assert int(mel.mean(axis=0).argmax()) < 12  # 440 Hz sits in the low bands


def test_same_speaker_is_closer_than_different_speakers(
    encoder: VoiceEncoder, corpus: Path
) -> None:
    def embed(name: str) -> np.ndarray:
        return encoder.embed_utterance(decode(corpus / name))

    lj_a, lj_b = embed("en_ljspeech_LJ001-0001.wav"), embed("en_ljspeech_LJ001-0009.flac")
    sense_a = embed("en_librivox_sense_and_sensibility_0870.wav")
    sense_b = embed("en_librivox_sense_and_sensibility_0920.wav")
    other = embed("en_librispeech_1995-1837-0001.wav")
    assert lj_a @ lj_b > max(lj_a @ sense_a, lj_a @ other, lj_b @ sense_b)
    assert sense_a @ sense_b > max(sense_a @ lj_a, sense_a @ other, sense_b @ lj_b)
