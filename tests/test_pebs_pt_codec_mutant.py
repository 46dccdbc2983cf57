"""The hand-written mutant of the reference codec (ci/mutants/pebs_pt/codec/: a BBP's SZ
read from the wrong bit) must be caught by the decoder differential against perf's
decoder compiled from the kernel tree; the pristine codec agrees with it."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from harness.kernel import build
from harness.payloads import pebs_pt_decoders as decoders
from harness.payloads import pebs_pt_differential as differential
from harness.reference import pebs_pt_codec

REPO = Path(__file__).resolve().parents[1]
PATCH = REPO / "ci" / "mutants" / "pebs_pt" / "codec" / "codec-bbp-sz-from-bit-6.patch"
sys.path.insert(0, str(REPO / "testcases" / "pebs_pt"))
import pt_streams  # noqa: E402


@pytest.fixture(scope="module")
def corpus_and_perf():
    tree = build.pristine_tree(build.DEFAULT_SOURCE)[0]
    streams = differential.corpus(pt_streams, 7, 300)
    perf = decoders.run_decoder(decoders.build_ptdec(tree).path, [s.data for s in streams], timeout=120)
    return streams, perf


def _mutated_codec(tmp_path: Path):
    (tmp_path / "harness" / "reference").mkdir(parents=True)
    target = tmp_path / "harness" / "reference" / "pebs_pt_codec.py"
    target.write_bytes(Path(pebs_pt_codec.__file__).read_bytes())
    done = subprocess.run(["git", "apply", "--unsafe-paths", f"--directory={tmp_path.name}", "-p1", str(PATCH)],
                          cwd=tmp_path.parent, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    spec = importlib.util.spec_from_file_location("mutated_pebs_pt_codec", target)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _disagreements(codec, streams, perf) -> int:
    return sum(differential.first_difference({"packets": p["packets"], "error": p["error"]},
                                             dict(zip(("packets", "error"), codec.decode(s.data)))) is not None
               for s, p in zip(streams, perf))


def test_the_pristine_codec_agrees_with_perf(corpus_and_perf):
    assert _disagreements(pebs_pt_codec, *corpus_and_perf) == 0


def test_the_codec_mutant_is_caught_by_perfs_decoder(corpus_and_perf, tmp_path):
    assert _disagreements(_mutated_codec(tmp_path), *corpus_and_perf) > 0
