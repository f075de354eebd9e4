"""Score the stored lists of every computed space against the ground truth."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy.engine import Connection

import db.neighbours
import db.spaces
from jobs.evaluation.ground_truth import Row, match
from jobs.evaluation.metrics import mean_scores, score


@dataclass
class Report:
    rows: int
    not_found: list[Row]
    queries: int                  # query rows found in the database
    spaces: dict[str, dict] = field(default_factory=dict)  # name: measures and counts

    def as_json(self) -> dict:
        return {"rows": self.rows, "queries": self.queries,
                "not_found": [{"line": r.line, "path": r.path} for r in self.not_found],
                "spaces": self.spaces}


def evaluate(connection: Connection, rows: list[Row], k: int = 100) -> Report:
    """Return the measures of every computed space's stored lists.

    A query's relevant images are the database rows of its group other than itself;
    queries with none are not scored, nor are queries without a list in a space. With a
    role column, other queries are left out of the ranked lists, so that only database
    images compete."""
    ids, not_found = match(connection, rows)
    found = [row for row in rows if row.path in ids]
    relevant: dict[str, set[int]] = defaultdict(set)
    for row in found:
        if row.db:
            relevant[row.group].add(ids[row.path])
    queries_only = {ids[row.path] for row in found if not row.db}
    queries = [row for row in found if row.query]
    report = Report(len(rows), not_found, len(queries))
    for space, state in db.spaces.overview(connection).items():
        if state["dimensions"] is None:
            continue
        per_query, without_relevant, without_list = [], 0, 0
        for row in queries:
            image_id = ids[row.path]
            wanted = relevant[row.group] - {image_id}
            if not wanted:
                without_relevant += 1
                continue
            _, neighbours = db.neighbours.image_and_neighbours(connection, image_id, space=space)
            if not neighbours:
                without_list += 1
                continue
            ranked = [n.id in wanted for n in neighbours if n.id not in queries_only]
            per_query.append(score(ranked, len(wanted), k))
        report.spaces[space] = {"queries_scored": len(per_query),
                                "without_relevant": without_relevant,
                                "without_list": without_list, **mean_scores(per_query)}
    return report
