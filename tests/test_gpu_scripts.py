"""The GPU scripts on a machine without a GPU: one line and a non-zero exit, nothing built; and
(with a stand-in Python that reports a GPU) reproduce_gpu.sh's commands parse and keep run folders
outside $OUT. scripts/gpu_bench.py's tables from its rows."""
from __future__ import annotations

import importlib.util
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from s2vc.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="bash scripts")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: the scripts would run")
@pytest.mark.parametrize("script,args", [("gpu_check.sh", []), ("gpu_check.sh", ["2"]), ("reproduce_gpu.sh", ["train"])])
def test_no_gpu_is_one_line_and_a_failure(tmp_path, script, args):
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path / "out"), "RUNS": str(tmp_path / "runs"),
           "GPU_CHECK_WORK": str(tmp_path / "work")}
    done = subprocess.run(["bash", str(ROOT / "scripts" / script), *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert done.returncode == 2
    assert len(lines) == 1 and "no GPU" in lines[0] and torch.__version__ in lines[0], lines
    assert not (tmp_path / "out").exists() and not (tmp_path / "work").exists()   # nothing built or written


def _fake_python(tmp_path: Path) -> tuple[Path, Path]:
    """A stand-in for python3 that says a GPU is there (the gate reads a script on stdin) and
    records every other command instead of running it."""
    record = tmp_path / "commands.txt"
    fake = tmp_path / "fake_python"
    fake.write_text("#!/usr/bin/env bash\n"
                    'if [ "${1:-}" = "-" ]; then echo "ok Fake GPU"; exit 0; fi\n'
                    f'printf "%q " "$@" >> {shlex.quote(str(record))}; echo >> {shlex.quote(str(record))}\n')
    fake.chmod(0o755)
    return fake, record


@pytest.mark.parametrize("stage", ["train", "report"])
def test_reproduce_gpu_issues_valid_commands_outside_out(tmp_path, stage):
    fake, record = _fake_python(tmp_path)
    out, runs = tmp_path / "out", tmp_path / "runs"
    env = {**os.environ, "PYTHON": str(fake), "OUT": str(out), "RUNS": str(runs)}
    done = subprocess.run(["bash", str(ROOT / "scripts" / "reproduce_gpu.sh"), stage], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    commands = [shlex.split(line) for line in record.read_text().splitlines() if line.strip()]
    assert len(commands) == 1 and commands[0][:3] == ["-m", "s2vc.cli", "reproduce"]
    args = build_parser().parse_args(commands[0][2:])
    assert Path(args.out) == runs / "repro" and args.device == "cuda"
    assert args.eval_only == (stage == "report")
    # RUNS inside OUT is refused: only small files may land in OUT
    env["RUNS"] = str(out / "runs")
    refused = subprocess.run(["bash", str(ROOT / "scripts" / "reproduce_gpu.sh"), stage], env=env, cwd=ROOT,
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "keep run folders outside it" in refused.stdout


def test_gpu_bench_tables():
    spec = importlib.util.spec_from_file_location("gpu_bench", ROOT / "scripts" / "gpu_bench.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = [dict(part="ops", op="temporal_std_mask", shape="s", dtype="bf16", backend="ext", ms=0.1234),
            dict(part="generator", config="cpu32", dtype="fp32", backend="onnxruntime", batch=8,
                 note="skipped: no CUDAExecutionProvider"),
            dict(part="fidelity", config="paper64", dtype="bf16", batch=8, mask_agreement=0.99, psnr_db=41.23)]
    text = bench.markdown(rows, "## head")
    assert "| temporal_std_mask | s | bf16 | ext | 0.123 |  |" in text
    assert "| cpu32 | fp32 | onnxruntime | 8 | - | - | - | skipped: no CUDAExecutionProvider |" in text
    assert "| paper64 | bf16 | 8 | 0.9900 | 41.2 |  |" in text
    if not torch.cuda.is_available():
        assert bench.main(["--out", "unused", "--parts", "ops"]) == 2      # says so, times nothing


def test_gpu_check_stages_write_a_few_small_files(tmp_path):
    """Both stages with a stand-in Python that plays a GPU machine (it builds, tests and times
    nothing): what lands in OUT is at most 8 small files and a summary table; the wheel folder is
    used for what is missing, one package at a time."""
    record = tmp_path / "pip.txt"
    fake = tmp_path / "fake_python"
    fake.write_text(f"""#!/usr/bin/env bash
case "$*" in
  -) cat >/dev/null; echo "ok Fake GPU" ;;
  "-c import av"|"-c import skvideo") exit 1 ;;
  *get_device_capability*) echo 9.0 ;;
  "-c import "*) exit 0 ;;
  "-m pip install --no-index"*) echo "$*" >> {shlex.quote(str(record))}; [ "${{@: -1}}" != scikit-video ] ;;
  "-m pip install --no-build-isolation"*) echo "[s2vc setup] building C++ CPU + CUDA kernels: fake" ;;
  "-m s2vc.cli info") echo "torch: fake" ;;
  "-m pytest"*) echo "=== short test summary info ==="; echo "3 passed in 1.00s" ;;
  scripts/gpu_bench.py*) printf '## fake\\n| ops | 0.1 |\\n' > "$3/bench.md"; echo '{{}}' > "$3/bench.json"; echo "gpu_bench: ops in 1 s" ;;
esac
""")
    fake.chmod(0o755)
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "av-1-py3-none-any.whl").write_bytes(b"")
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": str(fake), "OUT": str(out), "GPU_CHECK_WORK": str(tmp_path / "work"),
           "GPU_CHECK_WHEELS": str(wheels)}
    done = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh")], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    files = sorted(p.name for p in out.iterdir())
    assert files == ["bench.json", "bench.md", "build.txt", "env.txt", "summary.md", "tests.txt"]
    assert all((out / f).stat().st_size < 8192 for f in files)
    summary = (out / "summary.md").read_text()
    for stage in ("| 1 build | ok |", "| 1 tests | ok |", "| 2 benchmarks | ok |"):
        assert stage in summary, summary
    assert "3 passed" in summary and "Fake GPU" in summary
    # av installed from the folder, scikit-video not in it: both said, neither blocks the other
    assert "installed from" in (out / "env.txt").read_text() and "not in it: scikit-video" in (out / "env.txt").read_text()
    assert len(record.read_text().splitlines()) == 2
    assert "arch 9.0" in summary                 # built for this GPU's capability only


def test_gpu_bench_mirror_part_runs_and_compares_bytes(tmp_path):
    """The mirror part on the CPU (the GPU machine runs the same code with --device cuda): a tiny
    set, serial against the pipeline per storage, frames/s, the ratio and the bytes compared."""
    pytest.importorskip("av")
    spec = importlib.util.spec_from_file_location("gpu_bench", ROOT / "scripts" / "gpu_bench.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    args = bench.get_args_parser().parse_args(["--out", str(tmp_path / "out"), "--mirror-clips", "2",
                                               "--mirror-rounds", "1", "--batch-size", "4"])
    rows = bench.bench_mirror(args, torch.device("cpu"), bench.Deadline(600), tmp_path / "work")
    assert [(r["storage"], r["workers"]) for r in rows] == [("lossless", 0), ("lossless", 1),
                                                            ("residual", 0), ("residual", 1)]
    assert all(r["frames_per_s"] > 0 and "note" not in r for r in rows)
    assert all(r["same_bytes"] == "yes" and r["vs_serial"] > 0 for r in rows if r["workers"])
    text = bench.markdown(rows, "## head")
    assert "### mirror" in text and "| lossless | 1 | 2 | yes |" in text
