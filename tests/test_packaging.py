"""The installed package carries what it reads beside its code: `pip install .` then
`mayhold migrate` and `mayhold demo` from any directory (not only from a checkout)."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_wheel_carries_migrations_policies_and_openapi(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("mayhold-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "app/_bundled/migrations/env.py" in names
    assert {
        f"app/_bundled/policies/{k}.yaml" for k in ("rpf", "asr", "dk-pension", "pensura")
    } <= names
    assert "app/_bundled/openapi/openapi.json" in names
    # /docs and /redoc serve these (no CDN), with the licences they are distributed under.
    assert {
        f"app/docs/static/{name}"
        for name in (
            "swagger-ui/swagger-ui-bundle.js",
            "swagger-ui/swagger-ui.css",
            "swagger-ui/LICENSE",
            "swagger-ui/NOTICE",
            "redoc/redoc.standalone.js",
            "redoc/LICENSE",
        )
    } <= names

    # Installed elsewhere, run from elsewhere: the package finds its migrations and migrates.
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        timeout=300,
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(target),
        "MAYHOLD_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'm.db'}",
    }
    env.pop("MAYHOLD_MIGRATIONS_DIR", None)
    migrated = subprocess.run(
        [sys.executable, "-m", "app.cli", "migrate"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert migrated.returncode == 0, migrated.stderr
    assert "migrated to head" in migrated.stdout + migrated.stderr
    where = subprocess.run(
        [sys.executable, "-c", "from app.kit.settings import REPO_ROOT; print(REPO_ROOT)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(where.stdout.strip()) == target / "app" / "_bundled"
