"""Speaker diarization: who spoke when, offline by default.

    types.py        Span, Turn, Hints, WindowEmbeddings; the Diarizer protocols
    checkpoint.py   torch checkpoints read as numpy arrays, without torch
    mel.py          the encoder's mel spectrogram (librosa's, in numpy)
    onnx_graph.py   the encoder network as an onnxruntime session
    embedder.py     resemblyzer's bundled encoder: windows -> 256-d embeddings
    windows.py      VAD speech spans and the windows embedded over them
    cluster.py      agglomerative clustering with an automatic speaker count
    known.py        reference clips -> voice prints; clusters named after them
    assign.py       speakers onto words; speaker segments
    engine.py       BundledDiarizer, the default backend
    pyannote_backend.py  the optional pyannote.audio backend (imported lazily)
    select.py       the backend a setting names

Nothing here is imported by the API process; `select.make_diarizer` is the entry point.
"""
