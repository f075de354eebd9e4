"""The image counts of the home page, /api/v1/stats and /image_count: counted once per
interval by each worker, then again."""
from __future__ import annotations

import numpy as np
from sqlalchemy import event

from db.engine import make_engine, upgrade
from db.models import FAILED
from grouping_support import add_images
from numerics.vectors import DIMENSIONS
from service import create_app
from service.counts import COUNTS_SECONDS


def test_counts_are_read_once_per_interval_then_again(tmp_path, settings_for):
    url = f"sqlite:///{tmp_path / 'counts.sqlite3'}"
    engine = make_engine(url)
    upgrade(engine)
    vectors = np.ones((3, DIMENSIONS), dtype=np.float32)
    add_images(engine, vectors[:2])
    add_images(engine, vectors[:1], status=FAILED)
    app = create_app(settings_for(database_url=url, image_root=tmp_path))
    now = [100.0]
    app.extensions["image_counts"].clock = lambda: now[0]
    counting = []
    event.listen(app.extensions["db_engine"], "before_cursor_execute",
                 lambda _c, _cursor, statement, *_: counting.append(statement)
                 if "count(" in statement.lower() else None)
    client = app.test_client()

    def shown():
        """(ok, total, failed) as /image_count and /api/v1/stats show them; the home page
        shows them too."""
        assert client.get("/").status_code == 200
        stats = client.get("/api/v1/stats").get_json()["images"]
        return (client.get("/image_count").get_json(), stats["total"],
                stats["by_status"]["failed"])

    assert shown() == (2, 3, 1)
    assert len(counting) == 1  # three requests, one count
    add_images(engine, vectors)
    now[0] += COUNTS_SECONDS - 0.01
    assert shown() == (2, 3, 1) and len(counting) == 1  # within the interval
    now[0] += 0.01
    assert shown() == (5, 6, 1) and len(counting) == 2
    engine.dispose()
    app.extensions["db_engine"].dispose()
