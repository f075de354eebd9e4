"""The grouping job's resume state in columns of spaces; jobs.counts as JSON

Revision ID: 0008
Revises: 0007

Up to 0007 the grouping job found where to start in the counts of its latest runs
(valid_through, k and projection per space, the vector cache's token). The state is read
out of them as those runs read it and written to the new columns, so the next run after
the upgrade has exactly the work it would have had; the counts keep what an operator
reads. The settings the whitened space was learned with move from the JSON text
spaces.parameters into two columns likewise.
"""
import json

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

ALL = 2 ** 63 - 1  # every list valid
RECENT = 20  # the runs the job looked back over
STATE_KEYS = ("valid_through", "projection")  # per space
CACHE_TOKEN = "vector_cache"  # at the top

jobs = sa.table('jobs', sa.column('id'), sa.column('kind'), sa.column('outcome'),
                sa.column('counts'), sa.column('vector_cache'))
spaces = sa.table('spaces', sa.column('id'), sa.column('name'), sa.column('valid_through'),
                  sa.column('k'), sa.column('lists_projection'), sa.column('parameters'),
                  sa.column('whitened_dimensions'), sa.column('whitened_shrinkage'))


def _space_state(counts, space):
    # Runs from before spaces recorded pool3's state at the top of their counts.
    if not isinstance(counts, dict):
        return None
    if "spaces" in counts:
        return (counts["spaces"] or {}).get(space)
    return counts if space == 'pool3' else None


def resume_state(runs, space):
    """Return (valid_through, k, projection) of `space` as a run of 0007 would have
    started from it, given (outcome, counts) of the latest grouping runs, newest first;
    None if no run recorded any."""
    for outcome, counts in runs:
        state = _space_state(counts, space)
        if not isinstance(state, dict) or "valid_through" not in state:
            continue  # killed before it recorded anything, so it wrote nothing here
        valid_through = ALL if outcome == "completed" else int(state["valid_through"])
        return valid_through, state.get("k"), state.get("projection")
    return None


def _parsed(text):
    try:
        counts = json.loads(text) if text else None
    except ValueError:
        return None  # a killed run's half-written text
    return counts if isinstance(counts, dict) else None


def _operator_counts(counts):
    """Return the counts less the state the runs kept in them."""
    if counts is None:
        return None
    counts = {key: value for key, value in counts.items() if key != CACHE_TOKEN}
    if isinstance(counts.get("spaces"), dict):
        counts["spaces"] = {name: ({key: value for key, value in state.items()
                                    if key not in STATE_KEYS}
                                   if isinstance(state, dict) else state)
                            for name, state in counts["spaces"].items()}
    elif "valid_through" in counts:  # before spaces: the state was at the top
        counts.pop("valid_through")
    return counts


def upgrade() -> None:
    op.add_column('spaces', sa.Column('valid_through', sa.BigInteger(), nullable=True))
    op.add_column('spaces', sa.Column('k', sa.Integer(), nullable=True))
    op.add_column('spaces', sa.Column('lists_projection', sa.String(64), nullable=True))
    op.add_column('jobs', sa.Column('vector_cache', sa.String(64), nullable=True))
    op.add_column('spaces', sa.Column('whitened_dimensions', sa.Integer(), nullable=True))
    op.add_column('spaces', sa.Column('whitened_shrinkage', sa.Double(), nullable=True))
    connection = op.get_bind()
    for space_id, text in connection.execute(sa.select(spaces.c.id, spaces.c.parameters)
                                             .where(spaces.c.parameters.is_not(None))).all():
        parameters = _parsed(text) or {}
        connection.execute(spaces.update().where(spaces.c.id == space_id).values(
            whitened_dimensions=parameters.get("dimensions"),
            whitened_shrinkage=parameters.get("shrinkage")))
    with op.batch_alter_table('spaces') as batch:
        batch.drop_column('parameters')
    rows = connection.execute(sa.select(jobs.c.id, jobs.c.kind, jobs.c.outcome,
                                        jobs.c.counts).order_by(jobs.c.id.desc())).all()
    runs = [(outcome, _parsed(counts)) for _, kind, outcome, counts in rows
            if kind == 'grouping'][:RECENT]
    for name in connection.execute(sa.select(spaces.c.name)).scalars().all():
        state = resume_state(runs, name)
        if state is not None:
            valid_through, k, projection = state
            connection.execute(spaces.update().where(spaces.c.name == name).values(
                valid_through=valid_through, k=k, lists_projection=projection))
    for job_id, _, _, text in rows:
        old = _parsed(text)
        counts = _operator_counts(old)
        new = None if counts is None else json.dumps(counts, sort_keys=True)
        token = old.get(CACHE_TOKEN) if old else None
        if new != text or token:
            connection.execute(jobs.update().where(jobs.c.id == job_id).values(
                counts=new, vector_cache=str(token) if token else None))
    # SQLite keeps TEXT (SQLAlchemy's JSON reads and writes it so; a column declared JSON
    # would get NUMERIC affinity there). MariaDB's JSON is LONGTEXT checked by
    # JSON_VALID, which every row now passes.
    if connection.dialect.name != 'sqlite':
        op.alter_column('jobs', 'counts', type_=sa.JSON(), existing_type=sa.Text(),
                        existing_nullable=True)


def downgrade() -> None:
    connection = op.get_bind()
    op.add_column('spaces', sa.Column('parameters', sa.Text(), nullable=True))
    for space_id, dimensions, shrinkage in connection.execute(sa.select(
            spaces.c.id, spaces.c.whitened_dimensions, spaces.c.whitened_shrinkage)
            .where(spaces.c.whitened_dimensions.is_not(None))).all():
        connection.execute(spaces.update().where(spaces.c.id == space_id).values(
            parameters=json.dumps({"dimensions": dimensions, "shrinkage": shrinkage})))
    if connection.dialect.name != 'sqlite':
        op.alter_column('jobs', 'counts', type_=sa.Text(), existing_type=sa.JSON(),
                        existing_nullable=True)
    for job_id, text, token in connection.execute(
            sa.select(jobs.c.id, jobs.c.counts, jobs.c.vector_cache)
            .where(jobs.c.vector_cache.is_not(None))).all():
        counts = {**(_parsed(text) or {}), CACHE_TOKEN: token}
        connection.execute(jobs.update().where(jobs.c.id == job_id).values(
            counts=json.dumps(counts, sort_keys=True)))
    # Back into the counts of the run that last planned (the one that wrote the state),
    # where 0007's job looks for it.
    latest = connection.execute(
        sa.select(jobs.c.id, jobs.c.counts).where(jobs.c.kind == 'grouping')
        .order_by(jobs.c.id.desc())).all()
    planned = next(((job_id, _parsed(text)) for job_id, text in latest
                    if "spaces" in (_parsed(text) or {})), None)
    if planned is not None:
        job_id, counts = planned
        for name, valid_through, k, projection in connection.execute(sa.select(
                spaces.c.name, spaces.c.valid_through, spaces.c.k,
                spaces.c.lists_projection)):
            if valid_through is not None:
                state = counts["spaces"].setdefault(name, {})
                state.update(valid_through=valid_through, k=k)
                if projection is not None:
                    state["projection"] = projection
        connection.execute(jobs.update().where(jobs.c.id == job_id).values(
            counts=json.dumps(counts, sort_keys=True)))
    with op.batch_alter_table('spaces') as batch:
        for column in ('whitened_shrinkage', 'whitened_dimensions', 'lists_projection', 'k',
                       'valid_through'):
            batch.drop_column(column)
    with op.batch_alter_table('jobs') as batch:
        batch.drop_column('vector_cache')
