"""Issue 23's review of the command line: eval similarity refuses S2VC on a public dataset with
the bundled flow, eval static-gain's JSON is --method-json (--method a hidden old spelling), each
export format lists only its own flags, the demo's help is its own."""
from __future__ import annotations

import argparse

import pytest

from s2vc.cli import build_parser, main as cli_main


def _leaf(*names: str) -> argparse.ArgumentParser:
    p = build_parser()
    for name in names:
        sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
        p = sub.choices[name]
    return p


def _shown_flags(p: argparse.ArgumentParser) -> set[str]:
    from s2vc.commands.common import visible_option_strings
    return {s for a in p._actions for s in visible_option_strings(a)}


# -- B: eval similarity ------------------------------------------------------------------------

def test_eval_similarity_refuses_the_bundled_flow_on_a_public_dataset(tmp_path, capsys, monkeypatch):
    from s2vc.training.evaluation import similarity
    for dataset in ("ucf101", "hmdb51", "kinetics"):
        out = tmp_path / f"sim_{dataset}"
        assert cli_main(["eval", "similarity", "--dataset", dataset, "--root", f"/data/{dataset}",
                         "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("s2vc eval similarity: error:"), err
        assert "needs a flow fitted to it" in err and f"s2vc train-flow --dataset {dataset}" in err, err
        assert not out.exists()
    # the flow the refusal lets through is the one evaluated: --flow bundled (None: the bundled one),
    # a fitted file as given, the synthetic set untouched
    seen = []
    monkeypatch.setattr(similarity, "evaluate_similarity", lambda s: seen.append(s.flow) or _Nothing())
    assert cli_main(["eval", "similarity", "--dataset", "ucf101", "--root", "/d", "--out", str(tmp_path / "a"),
                     "--flow", "bundled"]) == 0
    assert cli_main(["eval", "similarity", "--dataset", "ucf101", "--root", "/d", "--out", str(tmp_path / "b"),
                     "--flow", "flow_ucf101.pt"]) == 0
    assert cli_main(["eval", "similarity", "--out", str(tmp_path / "c")]) == 0
    assert seen == [None, "flow_ucf101.pt", None]
    text = " ".join(_leaf("eval", "similarity").format_help().split())
    assert "a flow fitted to it is required" in text and "'bundled' forces the bundled one" in text


class _Nothing:
    table, notes = "", []


# -- C: eval static-gain --method-json ---------------------------------------------------------

def test_static_gain_method_json(tmp_path, capsys, monkeypatch):
    from s2vc.training.evaluation import static_gain
    p = _leaf("eval", "static-gain")
    assert "--method-json" in _shown_flags(p) and "--method" not in _shown_flags(p)
    assert "--method " not in p.format_help() and "--method-json" in p.format_usage()
    seen = []
    monkeypatch.setattr(static_gain, "evaluate_static_gain", lambda s: seen.append(s.method) or _Nothing())
    base = ["eval", "static-gain", "--static", "s.json", "--baseline", "b.json"]
    assert cli_main([*base, "--method-json", "m.json"]) == 0
    assert capsys.readouterr().err == ""
    assert cli_main([*base, "--method", "old.json"]) == 0           # the old spelling: one line
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["s2vc: --method is deprecated, use --method-json"]
    assert seen == ["m.json", "old.json"]


# -- D: export formats -------------------------------------------------------------------------

def test_each_export_format_lists_only_its_own_flags(tmp_path, capsys):
    torchscript, onnx = _shown_flags(_leaf("export", "torchscript")), _shown_flags(_leaf("export", "onnx"))
    assert not {"--what", "--exporter"} & torchscript
    assert {"--what", "--exporter"} <= onnx
    assert {"--out", "--flow", "--alpha", "--strategy", "--height", "--width", "--upsample", "--clamp",
            "--fp16"} <= torchscript & onnx
    assert "onnx" not in " ".join(_leaf("export", "torchscript").format_help().split()).split("options:", 1)[1]
    with pytest.raises(SystemExit) as exc:
        cli_main(["export", "torchscript", "--out", str(tmp_path / "g.pt"), "--what", "flow"])
    assert exc.value.code == 2
    assert "unrecognized arguments: --what" in capsys.readouterr().err
    assert not (tmp_path / "g.pt").exists()


# -- E: the demo's own help --------------------------------------------------------------------

def test_demo_help_is_its_own():
    p = _leaf("demo")
    text = " ".join(p.format_help().split())
    assert "--dataset" not in text and "build_trt.py" not in text
    assert "shorter side frames are decoded at (default: 128)" in text
    assert "frames per window (T of the temporal STD) (default: 16)" in text
    assert "on the sample video" in text and "s2vc export trt" in text
    args = p.parse_args([])
    assert (args.size, args.clip_len, args.out, args.max_frames) == (128, 16, "s2vc_demo", 64)
    from s2vc.commands.generate import file_settings
    assert file_settings(args) == (128, 16)
    assert file_settings(p.parse_args(["--decode-size", "96", "--frames", "8"])) == (96, 8)
