"""What a new user ran into, one test each (the rest live beside their modules: safe loading in
test_hdvila_convert / test_stylegan2_convert, frame folders and --json - in test_retrieval_cli,
--images 0 in test_retrieval_annotations)."""

import warnings

import numpy as np
import pytest
import torch

from hdvila.errors import InputFileError


def test_float64_similarities_are_compared_in_their_own_dtype():
    from hdvila.retrieval.metrics import query_ranks

    # 1 + 1e-12 and 1 are different in float64 but the same float32 number: a cast would tie them,
    # and the pessimistic tie rule would then rank each right answer second
    sim = np.array([[1.0 + 1e-12, 1.0], [1.0, 1.0 + 1e-12]], dtype=np.float64)
    correct = np.eye(2, dtype=bool)
    assert query_ranks(sim, correct).tolist() == [0, 0]
    assert query_ranks(torch.from_numpy(sim), correct).tolist() == [0, 0]
    assert query_ranks(sim.astype(np.float32), correct).tolist() == [1, 1]  # what the cast did


def test_msrvtt_csv_with_semicolons_is_read(tmp_path):
    from hdvila.retrieval.annotations import load_annotations

    path = tmp_path / "MSRVTT_JSFUSION_test.csv"
    path.write_text("key;vid_key;video_id;sentence\nret0;msr7020;video7020;a man plays a guitar, loudly\n"
                    "ret1;msr7021;video7021;a cat sleeps\n", encoding="utf-8")
    ann = load_annotations(path, "msrvtt")
    assert ann.video_ids == ["video7020", "video7021"]
    assert ann.captions[0] == ["a man plays a guitar, loudly"]  # the comma is not a delimiter here


def test_split_list_restricts_didemo_to_the_listed_videos(tmp_path):
    from hdvila.retrieval.annotations import Annotations, restrict_to_id_list

    ann = Annotations(video_ids=["a.mov", "b.mp4", "c.3g2"], captions=[["one"], ["two"], ["three"]])
    listed = tmp_path / "test_list.txt"
    listed.write_text("c.3g2\n\na\n", encoding="utf-8")
    kept = restrict_to_id_list(ann, listed)
    assert kept.video_ids == ["a.mov", "c.3g2"] and kept.captions == [["one"], ["three"]]
    listed.write_text("a\nzzz\n", encoding="utf-8")
    with pytest.raises(InputFileError, match="1 of 2 listed videos have no captions"):
        restrict_to_id_list(ann, listed)


def test_didemo_ids_are_found_under_their_own_extensions(tmp_path):
    from hdvila.retrieval.index import find_videos

    for name in ("v1.mpg", "v2.wmv", "v3.m4v", "v4.3gp", "v5.mts", "v6.3g2"):
        (tmp_path / name).write_bytes(b"\0" * 16)
    found, missing = find_videos(tmp_path, ["v1.mpg", "v2.wmv", "v3.m4v", "v4.3gp", "v5.mts", "v6.3g2", "v7.avi"])
    assert sorted(p.name for p in found.values()) == ["v1.mpg", "v2.wmv", "v3.m4v", "v4.3gp", "v5.mts", "v6.3g2"]
    assert missing == ["v7.avi"]


def test_audio_only_file_says_it_has_no_video_stream(tmp_path, capfd):
    av = pytest.importorskip("av")  # installed with the project's test extras
    from hdvila.videoio import open_video

    path = tmp_path / "speech.m4a"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 16000
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    capfd.readouterr()
    with pytest.raises(InputFileError, match="has no video stream"):
        open_video(path)
    err = capfd.readouterr().err
    assert "st_nb" not in err and "Check failed" not in err  # the decoder's own log stays quiet


def test_a_long_prompt_warns_once_with_the_token_count():
    from hdvila.processing_hdvila import HDVILAProcessor, TextTruncationWarning

    proc = HDVILAProcessor()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = proc.tokenize(["word " * 2000, "a short one"])
    ours = [w for w in caught if issubclass(w.category, TextTruncationWarning)]
    assert len(ours) == 1 and f"{proc.max_length} tokens" in str(ours[0].message)
    assert not [w for w in caught if "indexing errors" in str(w.message)]
    assert out["input_ids"].shape[1] == proc.max_length


def test_first_ops_build_is_announced(monkeypatch, tmp_path, capsys):
    import generation.stylegan2.ops._build as B

    class FakeExtension:
        @staticmethod
        def load(name, sources, build_directory, **kwargs):
            return f"module {name}"

    monkeypatch.setattr(B, "extensions_dir", lambda: tmp_path)
    monkeypatch.setattr(B, "_cpp_extension", lambda: FakeExtension)
    monkeypatch.setattr(B, "_ensure_ninja_on_path", lambda: None)
    B.reset_cache()
    try:
        B.build_extension("cpu")
        err = capsys.readouterr().err
        assert "building StyleGAN2 cpu ops (one time)" in err and "built the StyleGAN2 cpu ops in" in err
    finally:
        B.reset_cache()
