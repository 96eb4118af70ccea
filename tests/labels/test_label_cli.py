"""``llmjp-ckpt label``, the example-file readers (bad input) and the manual labelling tool."""

from __future__ import annotations

import csv
import gzip
import io
import json

import pytest

from llmjp_ckpt.cli import main
from llmjp_ckpt.errors import UserError
from llmjp_ckpt.labels.examples import FeatureRecord, load_records
from llmjp_ckpt.labels.manual import label_interactively, printable, read_labels, render_window
from tests.labels_builders import PEER, build_examples, win


def write_jsonl(path, rows, gz=False):
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def feature(ckpt, feat, max_tokens, **labels):
    return {"checkpoint": ckpt, "feature": feat, "examples": build_examples(max_tokens), **labels}


@pytest.fixture
def small_file(tmp_path):
    return write_jsonl(tmp_path / "f.jsonl.gz", [
        feature(10, 0, [" Tokyo"] * 10, language="en", granularity="token"),
        feature(10, 1, ["ダーク"] * 5 + [" dark"] * 5, language="mix", granularity="synonym"),
        feature(1000, 2, ["ク", "ツ", "リ", "ニ", "ラン", "シャ", "シ", "ッ", "ヴィ", "スカ"] * 2,
                language="ja", granularity="semantic"),
        feature(1000, 3, ["京都"] * 10, language="ja", granularity="uninterpretable"),
    ], gz=True)


def read_csv(path):
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


# ---------------------------------------------------------------------------------- CLI
def test_label_writes_csv_and_prints_agreement(small_file, tmp_path, capsys):
    out = tmp_path / "out.csv"
    assert main(["label", "--input", str(small_file), "--out", str(out), "--language-rule", "paper"]) == 0
    rows = read_csv(out)
    assert [(r["checkpoint"], r["feature"]) for r in rows] == [("10", "0"), ("10", "1"), ("1000", "2"), ("1000", "3")]
    assert [r["language"] for r in rows] == ["en", "mix", "ja", "ja"]
    assert [r["granularity"] for r in rows] == ["token", "synonym", "semantic", "token"]
    assert all(0.5 <= float(r["granularity_confidence"]) <= 1.0 for r in rows)
    printed = capsys.readouterr().out
    assert "4/4 agree" in printed
    assert "accuracy=0.750" in printed  # the planted wrong 'uninterpretable' label
    assert "1000: token 50/0, synonym 0/0, semantic 50/50, uninterpretable 0/50" in printed


def test_label_granularity_none_and_script_rule(small_file, tmp_path, capsys):
    out = tmp_path / "out.csv"
    assert main(["label", "--input", str(small_file), "--out", str(out), "--granularity", "none"]) == 0
    rows = read_csv(out)
    assert {r["granularity"] for r in rows} == {""}
    assert rows[0]["language"] == rows[0]["language_script"]
    assert "granularity (automatic)" not in capsys.readouterr().out


def test_label_reads_published_json_format(tmp_path, capsys):
    folder = tmp_path / "iter_0100000"
    folder.mkdir()
    for i, (toks, code) in enumerate([([" Tokyo"] * 10, 4), ([" the", "の", "<0x0A>", "B", "。"], 1)]):
        ex = build_examples(toks)
        (folder / f"feature_{i + 7}.json").write_text(json.dumps(
            {"token_act": ex, "language": {"en": 10, "ja": 0}, "granularity": code}))
    recs = load_records(folder)
    assert [(r.checkpoint, r.feature, r.granularity, r.language) for r in recs] == [
        (100000, 7, "token", "en"), (100000, 8, "uninterpretable", "en")]
    out = tmp_path / "o.csv"
    assert main(["label", "--input", str(folder), "--out", str(out)]) == 0
    assert [r["granularity"] for r in read_csv(out)] == ["token", "uninterpretable"]


def test_label_on_peer_subset(tmp_path, capsys):
    if not PEER.exists():
        pytest.skip(f"shared peer file absent: {PEER}")
    with gzip.open(PEER, "rt", encoding="utf-8") as fh:
        lines = [fh.readline() for _ in range(12)]
    sub = tmp_path / "sub.jsonl"
    sub.write_text("".join(lines), encoding="utf-8")
    out = tmp_path / "o.csv"
    assert main(["label", "--input", str(sub), "--out", str(out), "--language-rule", "paper"]) == 0
    assert "12/12 agree" in capsys.readouterr().out


# ---------------------------------------------------------------------------- bad input
BAD = [
    ('{"feature": 1, "examples": [[[" a", 1]]]}', "missing field 'checkpoint'"),
    ('{"checkpoint": 1, "feature": 1}', "missing field 'examples'"),
    ('{"checkpoint": 1, "feature": 1, "examples": []}', "examples': expected at least one window"),
    ('{"checkpoint": 1, "feature": 1, "examples": [[]]}', "examples[0]'"),
    ('{"checkpoint": 1, "feature": 1, "examples": [[[" a"]]]}', "examples[0][0]'"),
    ('{"checkpoint": 1, "feature": 1, "examples": [[[5, 1]]]}', "token_text: expected a string"),
    ('{"checkpoint": 1, "feature": 1, "examples": [[[" a", "x"]]]}', "activation: expected a finite"),
    ('{"checkpoint": 1, "feature": 1, "examples": [[[" a", NaN]]]}', "activation: expected a finite"),
    ('{"checkpoint": "ten", "feature": 1, "examples": [[[" a", 1]]]}', "field 'checkpoint'"),
    ('{"checkpoint": 1, "feature": 1, "examples": [[[" a", 1]]], "granularity": 9}',
     "field 'granularity'"),
    ('{"checkpoint": 1, "feature": 1, "examples": [[[" a", 1]]], "language": "fr"}',
     "field 'language'"),
    ('{"checkpoint": 1, "feature": 1, "examples": [[[" a", 1]]', "not valid JSON"),
    ('[1, 2]', "expected a JSON object per line"),
]


@pytest.mark.parametrize("line,msg", BAD)
def test_bad_jsonl_names_file_line_and_field(tmp_path, capsys, line, msg):
    good = json.dumps(feature(1, 0, [" a"]))
    path = tmp_path / "bad.jsonl"
    path.write_text(good + "\n" + line + "\n", encoding="utf-8")
    out = tmp_path / "out.csv"
    assert main(["label", "--input", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:2" in err and msg in err
    assert not out.exists()  # nothing half-written


def test_bad_published_json_and_paths(tmp_path):
    p = tmp_path / "f.json"
    p.write_text(json.dumps({"language": {"en": 1}}))
    with pytest.raises(UserError, match="missing field 'token_act'"):
        load_records(p)
    p.write_text(json.dumps({"token_act": [[[" a", 1]]], "language": {"de": 3}}))
    with pytest.raises(UserError, match="field 'language'"):
        load_records(p)
    with pytest.raises(UserError, match="no such file"):
        load_records(tmp_path / "absent.jsonl")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(UserError, match="expected a .jsonl"):
        load_records(tmp_path / "x.txt")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(UserError, match="no features"):
        load_records(tmp_path / "empty.jsonl")


def test_odd_tokens_are_accepted_and_labelled(tmp_path):
    ex = [win("<0xE3>", 10, "<0x81>", 3, "\x07", 0, "<script>alert(1)</script>", 5, "&lt;", 1)] * 5
    path = write_jsonl(tmp_path / "odd.jsonl", [{"checkpoint": 1, "feature": 0, "examples": ex}])
    rec = load_records(path)[0]
    assert rec.examples[0][3] == ("<script>alert(1)</script>", 5.0)  # kept verbatim
    out = tmp_path / "o.csv"
    assert main(["label", "--input", str(path), "--out", str(out)]) == 0
    row = read_csv(out)[0]
    assert row["language"] == "en"  # script rule: bytes/controls neutral, markup Latin
    assert row["language_paper"] == "ja"  # the paper's rule calls a byte piece Japanese


def test_lexicon_option(tmp_path, capsys):
    # 松戸 ~ grid: a pair no bilingual dictionary knows (JMdict relates 格子 ~ grid by itself)
    path = write_jsonl(tmp_path / "f.jsonl", [feature(1, 0, [" grid"] * 5 + ["松戸"] * 5)])
    lex = tmp_path / "lex.tsv"
    lex.write_text("# grid words\n松戸\tgrid\tlattice\n", encoding="utf-8")
    out = tmp_path / "o.csv"
    assert main(["label", "--input", str(path), "--out", str(out)]) == 0
    assert read_csv(out)[0]["granularity"] == "token"
    assert main(["label", "--input", str(path), "--out", str(out), "--lexicon", str(lex)]) == 0
    assert read_csv(out)[0]["granularity"] == "synonym"
    lex.write_text("grid\n", encoding="utf-8")
    assert main(["label", "--input", str(path), "--out", str(out), "--lexicon", str(lex)]) == 2
    assert f"{lex}:1" in capsys.readouterr().err


def test_missing_out_is_a_user_error(small_file, capsys):
    assert main(["label", "--input", str(small_file)]) == 2
    assert "--out" in capsys.readouterr().err


# ------------------------------------------------------------------------- manual tool
def records():
    return [FeatureRecord(1, i, build_examples([f" w{i}"] * 3)) for i in range(3)]


def test_manual_labels_append_and_resume(tmp_path):
    out = tmp_path / "labels.jsonl"
    screen = io.StringIO()
    n = label_interactively(records(), out, stdin=io.StringIO("t\nx\ns\nq\n"), stdout=screen, color=False)
    assert n == 2
    assert "? one of" in screen.getvalue()  # 'x' is refused and asked again
    assert read_labels(out) == {(1, 0): "token", (1, 1): "synonym"}
    # resume: only feature 2 is shown; end of input stops cleanly
    screen = io.StringIO()
    n = label_interactively(records(), out, stdin=io.StringIO("4\n"), stdout=screen, color=False)
    assert n == 1 and "2 features already labelled" in screen.getvalue()
    assert "feature 2" in screen.getvalue() and "feature 0" not in screen.getvalue()
    assert read_labels(out)[(1, 2)] == "uninterpretable"
    assert len(out.read_text().splitlines()) == 3


def test_manual_skip_and_torn_last_line(tmp_path):
    out = tmp_path / "labels.jsonl"
    out.write_text('{"checkpoint": 1, "feature": 0, "granularity": "token"}\n{"checkpoint": 1, "fea')
    assert read_labels(out) == {(1, 0): "token"}
    n = label_interactively(records(), out, stdin=io.StringIO("k\nm\n"), stdout=io.StringIO(), color=False)
    assert n == 1
    out.write_text('{"checkpoint": 1, "feature": 0, "granularity": "nice"}\n')
    with pytest.raises(UserError, match="unknown label"):
        read_labels(out)


def test_manual_display_neutralises_corpus_text():
    w = win("\x1b[2J", 0, "<0x0A>", 2, " dark", 10, "\u202e", 0, "<b>x</b>", 6)
    plain = render_window(w, color=False)
    assert "\x1b" not in plain and "\\x1b[2J" in plain
    assert "\\u202e" in plain and "⏎" in plain
    assert "[[ dark]]" in plain and "{<b>x</b>}" in plain
    coloured = render_window(w, color=True)
    assert coloured.count("\x1b[0m") == 3  # only our own colour codes: ⏎, dark, <b>x</b>
    assert printable("a\tb\x00") == "a⇥b\\x00"
