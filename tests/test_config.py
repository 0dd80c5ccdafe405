"""Settings: defaults, validation errors that name the variable."""

from __future__ import annotations

import pytest

from review.config import ConfigError, load_settings


def test_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = load_settings({})
    assert s.data_dir == (tmp_path / "data").resolve() and s.data_dir.is_dir()
    assert s.database_url.get_backend_name() == "sqlite"
    assert s.database_url.database == str(tmp_path / "data" / "review.db")
    assert s.sd15_path is None and s.is_sqlite


def test_postgres_url_gets_psycopg_driver(tmp_path):
    s = load_settings({"REVIEW_DATA_DIR": str(tmp_path),
                       "REVIEW_DATABASE_URL": "postgresql://u:p@db.example/lab"})
    assert s.database_url.drivername == "postgresql+psycopg" and not s.is_sqlite


@pytest.mark.parametrize("env, name", [
    ({"REVIEW_DATABASE_URL": "not a url"}, "REVIEW_DATABASE_URL"),
    ({"REVIEW_DATABASE_URL": "mysql://x/y"}, "REVIEW_DATABASE_URL"),
])
def test_invalid_values_name_the_variable(tmp_path, env, name):
    with pytest.raises(ConfigError, match=name):
        load_settings({"REVIEW_DATA_DIR": str(tmp_path), **env})


def test_data_dir_that_is_a_file(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ConfigError, match="REVIEW_DATA_DIR"):
        load_settings({"REVIEW_DATA_DIR": str(f)})


def test_sd15_path_is_kept_as_given(tmp_path):
    s = load_settings({"REVIEW_DATA_DIR": str(tmp_path), "REVIEW_SD15_PATH": "~/weights"})
    assert s.sd15_path is not None and s.sd15_path.name == "weights"
