"""Annotation readers: every format from small files written here, paragraph mode, bad rows."""

import json

import pytest

from hdvila.errors import InputFileError, UserError
from hdvila.retrieval.annotations import Annotations, load_annotations


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_msrvtt_csv(tmp_path):
    # header and layout of the MSR-VTT 1k-A CSV (checks.md); a quoted sentence with a comma
    p = write(tmp_path, "msrvtt.csv", "key,vid_key,video_id,sentence\n"
              "ret0,msr7020,video7020,a woman creating a fondant baby and flower\n"
              'ret1,msr7021,video7021,"a boy, a dog and a ball"\n\n')
    ann = load_annotations(p, "msrvtt")
    assert ann.video_ids == ["video7020", "video7021"]
    assert ann.captions == [["a woman creating a fondant baby and flower"], ["a boy, a dog and a ball"]]
    assert not ann.paragraph


def test_msrvtt_csv_empty_sentence_names_line(tmp_path):
    p = write(tmp_path, "m.csv", "key,vid_key,video_id,sentence\nret0,m0,video1,fine\nret1,m1,video2,  \n")
    with pytest.raises(InputFileError, match=r"m\.csv, line 3 \(row 2\): empty 'sentence'"):
        load_annotations(p, "msrvtt")
    ann = load_annotations(p, "msrvtt", skip_bad_rows=True)
    assert ann.video_ids == ["video1"] and len(ann.skipped_rows) == 1 and "line 3" in ann.skipped_rows[0]


def test_msrvtt_csv_bad_header_and_field_count(tmp_path):
    with pytest.raises(InputFileError, match="video_id"):
        load_annotations(write(tmp_path, "a.csv", "id,text\nv,hello\n"), "msrvtt")
    with pytest.raises(InputFileError, match="line 2.*4 fields"):
        load_annotations(write(tmp_path, "b.csv", "video_id,sentence\nv1,a dog, running,fast\n"), "msrvtt")


def test_msrvtt_json_groups_sentences_and_split(tmp_path):
    data = {"videos": [{"video_id": "video1", "split": "train"}, {"video_id": "video2", "split": "test"},
                       {"video_id": "video3", "split": "test"}],
            "sentences": [{"video_id": "video2", "caption": "b one", "sen_id": 0},
                          {"video_id": "video1", "caption": "a one", "sen_id": 1},
                          {"video_id": "video2", "caption": "b two", "sen_id": 2},
                          {"video_id": "video3", "caption": "c one", "sen_id": 3}]}
    p = write(tmp_path, "MSRVTT_data.json", json.dumps(data))
    ann = load_annotations(p, "msrvtt")
    assert ann.video_ids == ["video2", "video1", "video3"]
    assert ann.captions == [["b one", "b two"], ["a one"], ["c one"]]
    texts, owner = ann.queries()
    assert texts == ["b one", "b two", "a one", "c one"] and owner == [0, 0, 1, 2]
    test = load_annotations(p, "msrvtt", split="test")
    assert test.video_ids == ["video2", "video3"]
    with pytest.raises(InputFileError, match="split"):
        load_annotations(p, "msrvtt", split="val")
    data["sentences"][3].pop("caption")
    with pytest.raises(InputFileError, match=r"sentences\[3\]: .*'caption'"):
        load_annotations(write(tmp_path, "bad.json", json.dumps(data)), "msrvtt")


def test_didemo_paragraph_by_default(tmp_path):
    rows = [{"annotation_id": 0, "description": "the dog runs", "video": "v1.mov", "times": [[0, 1]],
             "dl_link": "", "num_segments": 6},
            {"annotation_id": 1, "description": "a car passes", "video": "v2.mp4", "times": [[2, 2]]},
            {"annotation_id": 2, "description": "the dog stops", "video": "v1.mov", "times": [[3, 4]]}]
    p = write(tmp_path, "didemo_test.json", json.dumps(rows))
    ann = load_annotations(p, "didemo")
    assert ann.paragraph and ann.video_ids == ["v1.mov", "v2.mp4"]
    assert ann.captions == [["the dog runs the dog stops"], ["a car passes"]]
    sentences = load_annotations(p, "didemo", paragraph=False)
    assert sentences.captions == [["the dog runs", "the dog stops"], ["a car passes"]]
    rows[1]["description"] = ""
    with pytest.raises(InputFileError, match=r"entry 1 \(annotation_id 1\): empty 'description'"):
        load_annotations(write(tmp_path, "d2.json", json.dumps(rows)), "didemo")


def test_activitynet_paragraph(tmp_path):
    data = {"v_abc": {"duration": 10.0, "timestamps": [[0, 4], [4, 10]],
                      "sentences": ["A man walks in.", " He sits. "]},
            "v_xyz": {"duration": 5.0, "timestamps": [[0, 5]], "sentences": ["A cat sleeps."]}}
    p = write(tmp_path, "val_1.json", json.dumps(data))
    ann = load_annotations(p, "activitynet")
    assert ann.paragraph and ann.video_ids == ["v_abc", "v_xyz"]
    assert ann.captions == [["A man walks in. He sits."], ["A cat sleeps."]]
    assert load_annotations(p, "activitynet", paragraph=False).num_captions == 3
    data["v_xyz"]["sentences"] = []
    with pytest.raises(InputFileError, match="entry 'v_xyz'"):
        load_annotations(write(tmp_path, "bad.json", json.dumps(data)), "activitynet")
    with pytest.raises(InputFileError, match="line 1: not valid JSON"):
        load_annotations(write(tmp_path, "broken.json", "{\"v_a\": "), "activitynet")


def test_lsmdc_tsv(tmp_path):
    p = write(tmp_path, "LSMDC16_challenge_1000_publictect.csv",
              "1004_Juno_00.00.32.849-00.00.38.549\t00.00.32.849\t00.00.38.549\t00.00.32.849\t00.00.38.549\t"
              "SOMEONE walks in.\n"
              "1004_Juno_00.00.40.000-00.00.42.000\t0\t0\t0\t0\tShe looks\tup.\n")
    ann = load_annotations(p, "lsmdc")
    assert ann.video_ids == ["1004_Juno_00.00.32.849-00.00.38.549", "1004_Juno_00.00.40.000-00.00.42.000"]
    assert ann.captions == [["SOMEONE walks in."], ["She looks up."]]
    with pytest.raises(InputFileError, match="line 2: 3 tab-separated"):
        load_annotations(write(tmp_path, "l.tsv", "a\t0\t0\t0\t0\tok\nb\t0\t0\n"), "lsmdc")


def test_jsonl_str_and_list_and_merging(tmp_path):
    p = write(tmp_path, "hdvila_test.jsonl",
              '{"clip_id": "video7020", "text": "one caption"}\n\n'
              '{"clip_id": "video7021", "text": ["first", "second"], "num_frame": 30}\n'
              '{"clip_id": "video7020", "text": ["another"]}\n')
    ann = load_annotations(p, "jsonl")
    assert ann.video_ids == ["video7020", "video7021"]
    assert ann.captions == [["one caption", "another"], ["first", "second"]]
    assert load_annotations(p, "jsonl", paragraph=True).captions == [["one caption another"], ["first second"]]


@pytest.mark.parametrize("line,message", [
    ('{"clip_id": "v2", "text": "ok"', "line 2: not valid JSON"),
    ('{"text": "no id"}', "line 2: missing or empty 'clip_id'"),
    ('{"clip_id": "v2"}', "line 2: no 'text' field"),
    ('{"clip_id": "v2", "text": ""}', "line 2: empty 'text'"),
    ('{"clip_id": "v2", "text": []}', "line 2: 'text' must be"),
    ('{"clip_id": "v2", "text": ["a", 3]}', "line 2: 'text' holds a int"),
    ('["v2", "text"]', "line 2: not a JSON object"),
])
def test_jsonl_bad_rows(tmp_path, line, message):
    p = write(tmp_path, "a.jsonl", '{"clip_id": "v1", "text": "fine"}\n' + line + "\n")
    with pytest.raises(InputFileError) as e:
        load_annotations(p, "jsonl")
    assert str(p) in str(e.value) and message in str(e.value)
    ann = load_annotations(p, "jsonl", skip_bad_rows=True)
    assert ann.video_ids == ["v1"] and len(ann.skipped_rows) == 1


def test_file_level_errors(tmp_path):
    with pytest.raises(InputFileError, match="not found"):
        load_annotations(tmp_path / "nope.jsonl", "jsonl")
    with pytest.raises(InputFileError, match="no captions"):
        load_annotations(write(tmp_path, "empty.jsonl", "\n\n"), "jsonl")
    (tmp_path / "bin.jsonl").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(InputFileError, match="not UTF-8"):
        load_annotations(tmp_path / "bin.jsonl", "jsonl")
    with pytest.raises(UserError, match="unknown annotation format"):
        load_annotations(write(tmp_path, "x.jsonl", '{"clip_id": "a", "text": "b"}\n'), "youcook")
    with pytest.raises(InputFileError, match="a folder"):
        load_annotations(tmp_path, "jsonl")
    # all rows bad and skipped -> still an error (nothing to evaluate)
    with pytest.raises(InputFileError, match="no captions found .1 bad rows skipped"):
        load_annotations(write(tmp_path, "bad.jsonl", '{"clip_id": "a", "text": ""}\n'), "jsonl", skip_bad_rows=True)


def test_demo_export_files_read_back(tmp_path):
    # the files `hdvila demo-data` writes (no videos needed for the annotation side)
    from hdvila.demo.export import export_demo_data

    export_demo_data(tmp_path, videos=3, images=0, captions=2, frames=2, video_resolution=16)
    csv_ann = load_annotations(tmp_path / "msrvtt_test.csv", "msrvtt")
    json_ann = load_annotations(tmp_path / "msrvtt_data.json", "msrvtt", split="test")
    jsonl_ann = load_annotations(tmp_path / "hdvila_test.jsonl", "jsonl")
    assert csv_ann.video_ids == json_ann.video_ids == jsonl_ann.video_ids == [f"demo_test_{i:05d}" for i in range(3)]
    assert [len(c) for c in jsonl_ann.captions] == [2, 2, 2]
    assert [c[0] for c in csv_ann.captions] == [c[0] for c in jsonl_ann.captions]
    assert sorted(map(sorted, json_ann.captions)) == sorted(map(sorted, jsonl_ann.captions))


def test_annotations_validation():
    with pytest.raises(ValueError):
        Annotations(video_ids=["a", "a"], captions=[["x"], ["y"]])
    with pytest.raises(ValueError):
        Annotations(video_ids=["a"], captions=[[]])
    ann = Annotations(video_ids=["a", "b", "c"], captions=[["x"], ["y"], ["z"]])
    assert ann.subset({"c", "a"}).video_ids == ["a", "c"]
