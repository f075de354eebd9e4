from sqlalchemy.engine import make_url

from batch import legacy_database_url


def test_legacy_url_escapes_credentials():
    url = make_url(legacy_database_url("db.example", "3306", "images", "jobs", "p@ss/w:rd"))
    assert url.drivername == "mysql+mysqlconnector"
    assert (url.host, url.port, url.database) == ("db.example", 3306, "images")
    assert (url.username, url.password) == ("jobs", "p@ss/w:rd")


def test_legacy_url_rejects_a_non_numeric_port():
    import pytest
    with pytest.raises(ValueError, match="'abc'"):
        legacy_database_url("h", "abc", "n", "u", "p")
