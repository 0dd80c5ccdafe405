"""Settings: defaults, validation errors that name the variable."""

from __future__ import annotations

import os

import pytest

from review.config import SETTING_NAMES, ConfigError, load_settings, settings_env


def test_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = load_settings({})
    assert s.data_dir == (tmp_path / "data").resolve() and s.data_dir.is_dir()
    assert s.database_url.get_backend_name() == "sqlite"
    assert s.database_url.database == str(tmp_path / "data" / "review.db")
    assert s.sd15_path is None and s.is_sqlite
    assert s.trusted_proxies == ()  # no forwarded address is believed


def test_postgres_url_gets_psycopg_driver(tmp_path):
    s = load_settings({"REVIEW_DATA_DIR": str(tmp_path),
                       "REVIEW_DATABASE_URL": "postgresql://u:p@db.example/lab"})
    assert s.database_url.drivername == "postgresql+psycopg" and not s.is_sqlite


@pytest.mark.parametrize("env, name", [
    ({"REVIEW_DATABASE_URL": "not a url"}, "REVIEW_DATABASE_URL"),
    ({"REVIEW_DATABASE_URL": "mysql://x/y"}, "REVIEW_DATABASE_URL"),
    ({"REVIEW_TRUSTED_PROXIES": "nginx.internal"}, "REVIEW_TRUSTED_PROXIES='nginx.internal': 'nginx"),
    ({"REVIEW_TRUSTED_PROXIES": "10.0.0.1/8"}, "REVIEW_TRUSTED_PROXIES.*has host bits set"),
])
def test_invalid_values_name_the_variable(tmp_path, env, name):
    with pytest.raises(ConfigError, match=name):
        load_settings({"REVIEW_DATA_DIR": str(tmp_path), **env})


def test_data_dir_that_is_a_file(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ConfigError, match="REVIEW_DATA_DIR"):
        load_settings({"REVIEW_DATA_DIR": str(f)})


def test_trusted_proxies_are_addresses_and_networks(tmp_path):
    s = load_settings({"REVIEW_DATA_DIR": str(tmp_path),
                       "REVIEW_TRUSTED_PROXIES": " 127.0.0.1, 10.0.0.0/24,,2001:db8::1 "})
    assert [str(n) for n in s.trusted_proxies] == ["127.0.0.1/32", "10.0.0.0/24", "2001:db8::1/128"]


def test_sd15_path_is_kept_as_given(tmp_path):
    s = load_settings({"REVIEW_DATA_DIR": str(tmp_path), "REVIEW_SD15_PATH": "~/weights"})
    assert s.sd15_path is not None and s.sd15_path.name == "weights"


def test_settings_env_reopens_the_same_settings(tmp_path):
    """A background worker gets the lab's settings through settings_env, SD1.5 path included."""
    for sd15 in ("", str(tmp_path / "weights")):
        s = load_settings({"REVIEW_DATA_DIR": str(tmp_path),
                           "REVIEW_DATABASE_URL": "postgresql://u:secret@db/lab", "REVIEW_SD15_PATH": sd15,
                           "REVIEW_TRUSTED_PROXIES": "10.0.0.5, 2001:db8::/32"})
        env = settings_env(s)
        assert tuple(env) == SETTING_NAMES
        assert load_settings(env) == s


def test_sd15_status_names_every_model_and_what_is_missing(tmp_path):
    """The line the app shows about SD1.5: unset, several models side by side, a missing path."""
    from review.media.restore.runner import sd15_status

    def status(raw: str) -> str:
        env = {"REVIEW_DATA_DIR": str(tmp_path / "data"), "REVIEW_SD15_PATH": raw}
        return sd15_status(load_settings(env))

    assert status("") == "SD1.5 weights: not configured (set REVIEW_SD15_PATH)"
    models = tmp_path / "models"
    models.mkdir()
    for name in ("base.safetensors", "finetune.ckpt"):
        (models / name).write_bytes(b"")
    assert status(str(models)) == "SD1.5 weights: 2 models (base, finetune)"
    gone = tmp_path / "gone.safetensors"
    assert status(os.pathsep.join([str(models / "base.safetensors"), str(gone)])) == (
        f"SD1.5 weights: REVIEW_SD15_PATH={models / 'base.safetensors'}{os.pathsep}{gone}: {gone} not found")
