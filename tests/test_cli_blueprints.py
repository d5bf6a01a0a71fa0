"""``schoolmdm blueprint ...`` and ``schoolmdm profiles ...`` (local operator commands)."""

from __future__ import annotations

import json
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.settings import get_settings

CITY = Path(__file__).resolve().parents[1] / "examples" / "city"


@pytest.fixture
def cli(container, settings, monkeypatch):
    monkeypatch.setenv("SCHOOLMDM_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("SCHOOLMDM_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("SCHOOLMDM_ORG_NAME", settings.org_name)
    get_settings.cache_clear()
    from app.cli.main import app

    runner = CliRunner()
    yield lambda *args: runner.invoke(app, list(args))
    get_settings.cache_clear()


@pytest.fixture
def city(tmp_path):
    d = tmp_path / "city"
    shutil.copytree(CITY, d)
    return d


def test_check_import_show_diff(cli, city):
    r = cli("blueprint", "check", str(city))
    assert r.exit_code == 0, r.output
    r = cli("blueprint", "import", str(city), "--json")
    assert r.exit_code == 0, r.output
    assert len(json.loads(r.output)["schools_added"]) == 3
    f = city / "schools" / "gs-lindenhof.yaml"
    f.write_text(f.read_text().replace("Sonnenblume-Lindenhof-7", "Sonnenblume-Lindenhof-8"))
    assert cli("blueprint", "import", str(city)).exit_code == 0
    r = cli("blueprint", "diff", "gs-lindenhof", "--json")
    assert [c["key"] for c in json.loads(r.output)["changes"]] == ["wifi.1.password"]
    r = cli("profiles", "diff", "--school", "gs-lindenhof", "--name", "wifi", "--role", "pupil")
    assert r.exit_code == 0 and "v1→v2" in r.output and "Sonnenblume" not in r.output
    r = cli("blueprint", "show", "gs-lindenhof")
    assert json.loads(r.output)["version"] == 2
    r = cli("profiles", "list", "--school", "gs-lindenhof", "--json")
    assert {p["name"] for p in json.loads(r.output)} >= {"wifi", "restrictions", "webfilter"}


def test_malformed_blueprint_is_exit_2_with_file_line_key(cli, city):
    f = city / "schools" / "gy-schiller.yaml"
    f.write_text(f.read_text() + "\nwebfliter: {}\n")
    r = cli("blueprint", "check", str(city))
    assert r.exit_code == 2
    assert "gy-schiller.yaml:" in r.output and "webfliter" in r.output and "web_filter" in r.output
    r = cli("blueprint", "import", str(city))
    assert r.exit_code == 2 and "gy-schiller.yaml" in r.output
    assert cli("profiles", "list", "--json").output.strip() == "[]"


def test_profiles_build_signed_files_verify_with_openssl(cli, city, tmp_path, settings):
    out = tmp_path / "wifi.mobileconfig"
    r = cli("profiles", "build", "--school", "gy-schiller", "--role", "teacher", "--name", "wifi",
            "--city", str(city), "-o", str(out))
    assert r.exit_code == 0, r.output
    ca = settings.data_dir / "pki" / "ca.pem"
    p = subprocess.run(["openssl", "cms", "-verify", "-inform", "DER", "-in", str(out), "-CAfile", str(ca),
                        "-purpose", "any", "-out", "/dev/null"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    z = tmp_path / "all.zip"
    assert cli("profiles", "build", "--school", "gy-schiller", "--role", "pupil", "--city", str(city),
               "-o", str(z)).exit_code == 0
    assert len(zipfile.ZipFile(z).namelist()) >= 4
    r = cli("profiles", "build", "--school", "gy-schiller", "--role", "pupil", "--name", "nope", "--city",
            str(city), "-o", str(out))
    assert r.exit_code == 3
