"""An OpenAPI-driven fuzz run (schemathesis) over every documented operation: no 5xx,
and every response conforms to the document (status, content type, body schema)."""
from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from service.openapi import PATHS

EXAMPLES = 20  # per operation, mode and database: seconds in all, on one core


# Invalid requests only exist for operations that take parameters.
OPERATIONS = [(path, method) for path in sorted(PATHS) for method in PATHS[path]]
CASES = [(path, method, GenerationMode.POSITIVE) for path, method in OPERATIONS] + \
    [(path, method, GenerationMode.NEGATIVE) for path, method in OPERATIONS
     if PATHS[path][method]["parameters"]]


@pytest.mark.parametrize("path, method, mode", CASES,
                         ids=[f"{m.upper()} {p}-{g.value}" for p, m, g in CASES])
def test_no_server_errors_and_responses_match_the_document(api_schema, path, method, mode):
    operation = api_schema[path][method.upper()]
    excluded = []
    if path in ("/api/v1/images/lookup", "/api/v1/browse", "/api/v1/search"):
        # "Exactly one of path, name and external_id" and "at most one of after and
        # before" are not expressible in OpenAPI, so a valid-looking request breaking
        # them is rightly answered 400 (the document says so in words). Nor "the bytes
        # must be a JPEG or PNG": a generated GIF is rightly answered 415.
        excluded = [schemathesis.checks.positive_data_acceptance]
    if path.startswith("/iiif/3/{identifier}/{region}"):
        # Whether a region or size fits depends on the image's size: a well-formed one
        # outside it is rightly a 400, as the IIIF spec asks.
        excluded = [schemathesis.checks.positive_data_acceptance]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def fuzz(case):
        case.call_and_validate(excluded_checks=excluded)

    fuzz()
