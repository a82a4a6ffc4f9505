"""The Ray Data engine writes the same catalog table as the local engine (local Ray, 2 CPUs)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import lancedb
import numpy as np
import pytest

from retrieval.ingest import ingest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray")


@pytest.fixture(scope="module")
def ray_local():
    """A local Ray with 2 CPUs; the test is skipped only if Ray cannot start here."""
    ray = pytest.importorskip("ray")
    pythonpath = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": pythonpath}})
    except Exception as err:
        pytest.skip(f"Ray cannot start here: {err}")
    yield ray
    ray.shutdown()




def test_ray_engine_table_equals_local_engine(ray_local, world, backbone, tmp_path):
    folder = tmp_path / "shop"
    shutil.copytree(world.root / "images", folder / "images")
    lines = world.catalog_csv.read_text().splitlines()[:81]
    (folder / "catalog.csv").write_text("\n".join(lines) + "\n")
    (folder / "images" / "000003.png").write_bytes(b"broken")
    tables = {}
    for engine in ("local", "ray"):
        db = tmp_path / f"db-{engine}"
        report = ingest(folder, backbone, db, metadata=folder / "catalog.csv", engine=engine, actors=1,
                        batch_size=16, progress=False)
        assert report.added == 79 and [f.id for f in report.failures] == ["3"], engine
        tables[engine] = lancedb.connect(str(db)).open_table("catalog").to_arrow().sort_by("id")
    local, remote = tables["local"], tables["ray"]
    assert local.schema == remote.schema
    for name in local.column_names:
        if name in ("embedding", "patches"):
            np.testing.assert_allclose(np.stack(local[name].to_numpy(zero_copy_only=False)),
                                       np.stack(remote[name].to_numpy(zero_copy_only=False)), atol=1e-5)
        else:
            assert local[name].to_pylist() == remote[name].to_pylist(), name
    again = ingest(folder, backbone, tmp_path / "db-ray", metadata=folder / "catalog.csv", engine="ray",
                   actors=1, progress=False)
    assert again.added == 0 and again.unchanged == 79
