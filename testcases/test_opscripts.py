"""Every registered op-script feature through the shared driver (harness/driver.py):
its named cases, its random op-scripts, and the replay of a shrunk script.

Case ids: `<feature>/<group>/<name>` from the feature's case table,
`<feature>/random/op-scripts`, and `<feature>/random/replay` (collected only
when $KVMCONF_<FEATURE>_REPLAY holds a script, as a reproduction line sets it).
"""
from __future__ import annotations

import os

import pytest

from harness import features
from harness.driver import replay_env

NAMED = [(f.name, case) for f in features.rows() for case in f.named_cases]
RANDOM = [f.name for f in features.rows()]
REPLAY = [f.name for f in features.rows() if os.environ.get(replay_env(f.name))]


@pytest.mark.parametrize("feature,case", NAMED, ids=[case["id"] for _, case in NAMED])
def test_named(feature, case, suite, run_record):
    suite(feature).named(case, run_record)


@pytest.mark.parametrize("feature", RANDOM, ids=[f"{f}/random/op-scripts" for f in RANDOM])
def test_random(feature, suite, kvmconf_seed, run_record, kvmconf_ctx):
    """Seeded random op-scripts from the feature's strategy, batched in the guest; a
    divergence is shrunk with hypothesis in the guest and reported with a replay line."""
    suite(feature).random(kvmconf_seed, run_record, kvmconf_ctx.options.reproduce)


@pytest.mark.parametrize("feature", REPLAY, ids=[f"{f}/random/replay" for f in REPLAY])
def test_replay(feature, suite, run_record):
    """Replays the op-script of a reproduction line ($KVMCONF_<FEATURE>_REPLAY)."""
    suite(feature).replay(os.environ[replay_env(feature)], run_record)
