"""The OpenAPI 3.1 description of the JSON API, the original endpoints and the media."""
from __future__ import annotations

from db.browse import ORDERS
from db.models import POOL3, SPACE_IDS, STATUSES
from service.limits import BROWSE_LIMIT, GROUPS, MAX_BROWSE_LIMIT, MAX_DISTANCE, \
    MAX_GROUPS_PER_PAGE, MAX_ID, MAX_NEIGHBOURS, MAX_PAGE, MAX_RESULTS, MAX_START, MAX_TEXT, \
    NEIGHBOURS, PAGE, RESULTS
from db.title_words import MAX_QUERY_WORDS
from service.search import UPLOAD_FIELD, UPLOAD_TYPES
from service.serialize import SPACE_DESCRIPTIONS, THUMBNAIL_SIZES


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(kind: str) -> dict:
    return {"type": [kind, "null"]}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict:
    return {str(code): {"$ref": f"#/components/responses/E{code}"} for code in codes}


def _binary(media_type: str, description: str) -> dict:
    return {"description": description,
            "content": {media_type: {"schema": {"type": "string", "format": "binary"}}},
            "headers": {"ETag": {"schema": {"type": "string"}},
                        "Cache-Control": {"schema": {"type": "string"}}}}


IMAGE_ID = {"name": "image_id", "in": "path", "required": True,
            "description": "The image's stable id.",
            "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ID}}


SPACE = {"name": "space", "in": "query", "required": False,
         "description": "; ".join(f"{name}: {text}"
                                  for name, text in SPACE_DESCRIPTIONS.items()),
         "schema": {"enum": list(SPACE_IDS), "default": POOL3}}


def _query(name: str, description: str, minimum: int, maximum: int, default: int) -> dict:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": {"type": "integer", "minimum": minimum, "maximum": maximum,
                       "default": default}}


# The anchors of keyset paging: the page after or before an image.
KEYSET = [_query("after", "The page after this image (from `next`)", 1, MAX_ID, 1),
          _query("before", "The page before this image (from `previous`)", 1, MAX_ID, 1)]


def _get(summary: str, responses: dict, parameters: list | None = None,
         description: str = "") -> dict:
    operation = {"summary": summary, "parameters": parameters or [], "responses": responses}
    return {"get": {**operation, "description": description} if description else operation}


COMPONENTS = {
    "schemas": {
        "Error": {"type": "object", "required": ["error"],
                  "properties": {"error": {"type": "string"}, "id": {"type": "integer"},
                                 "status": {"type": "string"}}},
        "Links": {"type": "object", "additionalProperties": {"type": "string"}},
        "Image": {
            "type": "object",
            "required": ["id", "path", "file_name", "size", "width", "height", "status",
                         "error", "content_hash", "updated_at", "excluded", "links"],
            "properties": {
                "id": {"type": "integer", "minimum": 1},
                "path": {"type": "string", "description": "POSIX path under IMAGE_ROOT"},
                "file_name": {"type": "string"},
                "size": {**_nullable("integer"), "description": "bytes"},
                "width": _nullable("integer"), "height": _nullable("integer"),
                "status": {"enum": list(STATUSES)},
                "error": _nullable("string"), "content_hash": _nullable("string"),
                "updated_at": {"type": "string", "format": "date-time"},
                "excluded": {"type": "boolean",
                             "description": "left out of the grouping by its latest run "
                                            "(EXCLUDE_PATTERNS, EXCLUDE_FILE, the catalogue): no "
                                            "neighbours, in no list"},
                "links": _ref("Links"),
                "iiif": {"type": ["object", "null"],
                         "description": "a IIIF image (import_iiif.py): the manifest and "
                                        "canvas it came from, its image service and the "
                                        "image URL; null for a file under IMAGE_ROOT",
                         "properties": {name: _nullable("string") for name in
                                        ("manifest", "canvas", "image_service", "image")}},
                "external_id": {**_nullable("string"),
                                "description": "the catalogue's record id "
                                               "(import_metadata.py)"},
                "title": {**_nullable("string"), "description": "the catalogue's title"},
                "url": {**_nullable("string"),
                        "description": "the catalogue record's address"},
                "manifests": {
                    "type": "object", "required": ["image", "neighbours"],
                    "description": "IIIF Presentation 3 manifests (one image's view only)",
                    "properties": {"image": {"type": "string"},
                                   "neighbours": {"type": "string"}}}}},
        "Browse": {
            "type": "object",
            "required": ["order", "folder", "status", "limit", "images", "subfolders",
                         "more_subfolders", "next", "previous", "next_url",
                         "previous_url"],
            "properties": {
                "order": {"enum": list(ORDERS)}, "folder": {"type": "string"},
                "status": {"enum": [*STATUSES, None]},
                "limit": {"type": "integer"},
                "images": {"type": "array", "items": _ref("Image")},
                "subfolders": {"type": "array", "items": {
                    "type": "object", "required": ["name", "folder", "url"],
                    "properties": {"name": {"type": "string"},
                                   "folder": {"type": "string"},
                                   "url": {"type": "string"}}}},
                "more_subfolders": {"type": "boolean",
                                    "description": "the folder has more subfolders than "
                                                   "are listed"},
                "next": {**_nullable("integer"),
                         "description": "the `after` of the next page"},
                "previous": {**_nullable("integer"),
                             "description": "the `before` of the previous page"},
                "next_url": _nullable("string"), "previous_url": _nullable("string")}},
        "ImageList": {
            "type": "object", "required": ["images", "next"],
            "properties": {"images": {"type": "array", "items": _ref("Image")},
                           "limit": {"type": "integer"},
                           "next": {**_nullable("string"),
                                    "description": "URL of the next page, null at the end"},
                           "previous": {**_nullable("string"),
                                        "description": "URL of the previous page, null "
                                                       "at the start"}}},
        "Neighbour": {
            "type": "object",
            "required": ["rank", "id", "distance", "file_name", "external_id", "title",
                         "links"],
            "properties": {"rank": {"type": "integer", "minimum": 1},
                           "id": {"type": "integer", "minimum": 1},
                           "distance": {"type": "number", "minimum": 0},
                           "file_name": {"type": "string"},
                           "external_id": {**_nullable("string"), "description":
                                           "the catalogue's record id; null where the "
                                           "image has no catalogue record"},
                           "title": {**_nullable("string"), "description":
                                     "the catalogue's title; null where there is none"},
                           "links": _ref("EntryLinks")}},
        "EntryLinks": {
            "type": "object", "required": ["self", "page", "thumbnail", "iiif"],
            "additionalProperties": {"type": "string"},
            "properties": {"iiif": {"type": "string", "description":
                                    "the image's IIIF Image API 3.0 service "
                                    "(append /info.json)"}}},
        "NeighbourList": {
            "type": "object",
            "required": ["id", "space", "offset", "limit", "neighbours", "next"],
            "properties": {"id": {"type": "integer"}, "space": {"enum": list(SPACE_IDS)},
                           "offset": {"type": "integer"},
                           "limit": {"type": "integer"},
                           "neighbours": {"type": "array", "maxItems": MAX_NEIGHBOURS,
                                          "items": _ref("Neighbour")},
                           "next": _nullable("string"), "previous": _nullable("string")}},
        "TitleSearch": {
            "type": "object",
            "required": ["q", "words", "limit", "images", "next", "previous"],
            "properties": {
                "q": {"type": "string"},
                "words": {"type": "array", "items": {"type": "string"},
                          "description": "the query's words as matched: case-folded, "
                                         "without accents"},
                "limit": {"type": "integer"},
                "images": {"type": "array", "items": _ref("Image")},
                "next": {**_nullable("string"), "description": "URL of the next page"},
                "previous": {**_nullable("string"),
                             "description": "URL of the previous page"}}},
        "SearchResult": {
            "type": "object",
            "required": ["space", "limit", "grouping_run", "query", "neighbours"],
            "properties": {
                "space": {"enum": list(SPACE_IDS)}, "limit": {"type": "integer"},
                "grouping_run": {"type": "integer", "description":
                                 "id of the completed grouping run whose vectors were "
                                 "searched"},
                "query": {"type": "object", "required": ["format", "width", "height"],
                          "properties": {
                              "format": {"enum": list(UPLOAD_TYPES.values())},
                              "width": {"type": "integer"}, "height": {"type": "integer"},
                              "features": {"type": "array", "minItems": 2048,
                                           "maxItems": 2048, "items": {"type": "number"},
                                           "description": "with features=1: the upload's "
                                                          "2048 pool_3 values"}}},
                "neighbours": {"type": "array", "maxItems": MAX_RESULTS,
                               "items": _ref("Neighbour")}}},
        "Space": {
            "type": "object",
            "required": ["name", "description", "computed", "dimensions", "lists",
                         "learned_from", "learned_at", "note"],
            "properties": {
                "name": {"enum": list(SPACE_IDS)}, "description": {"type": "string"},
                "computed": {"type": "boolean"},
                "dimensions": {**_nullable("integer"),
                               "description": "of the vectors distances are taken in"},
                "lists": {"type": "integer", "minimum": 0,
                          "description": "lists stored at the end of the last grouping "
                                         "run"},
                "learned_from": {**_nullable("integer"),
                                 "description": "images a learned space was learned from"},
                "learned_at": {**_nullable("string"), "format": "date-time"},
                "note": {**_nullable("string"), "description": "why it is not computed"}}},
        "Job": {
            "type": ["object", "null"],
            "required": ["id", "started_at", "finished_at", "outcome", "counts", "message"],
            "properties": {"id": {"type": "integer"},
                           "started_at": {"type": "string", "format": "date-time"},
                           "finished_at": _nullable("string"),
                           "outcome": {"type": "string"},
                           "counts": _nullable("object"), "message": _nullable("string")}},
        "Stats": {
            "type": "object", "required": ["images", "jobs"],
            "properties": {
                "images": {"type": "object", "required": ["total", "by_status"],
                           "properties": {
                               "total": {"type": "integer"},
                               "by_status": {"type": "object",
                                             "required": list(STATUSES),
                                             "additionalProperties": {"type": "integer"}}}},
                "jobs": {"type": "object", "required": ["features", "grouping"],
                         "properties": {"features": _ref("Job"),
                                        "grouping": _ref("Job")}}}},
        "LegacyNeighbours": {
            "type": "array", "minItems": 2, "maxItems": 2,
            "description": "[file_name, [{id, distance}, ...]]: the file name first, then "
                           "the neighbours nearest first",
            # An anyOf rather than prefixItems: schemathesis validates 3.1 responses in a
            # way that rejects tuple forms; the field-by-field test pins the order.
            "items": {"anyOf": [
                {"type": "string"},
                {"type": "array", "items": {
                    "type": "object", "required": ["id", "distance"],
                    "additionalProperties": False,
                    "properties": {"id": {"type": "integer"},
                                   "distance": {"type": "number"}}}}]}},
    },
    "responses": {f"E{code}": _json(_ref("Error"), text) for code, text in {
        400: "Bad parameter", 403: "The stored path leaves IMAGE_ROOT",
        404: "No such image, or it has no features or neighbours yet",
        410: "The image's file is missing from the archive",
        413: "The upload is larger than SEARCH_MAX_UPLOAD_MB, or has more pixels than "
             "MAX_IMAGE_PIXELS",
        415: "The upload is not of an accepted type (JPEG or PNG)",
        422: "The image file cannot be decoded, or has more pixels than MAX_IMAGE_PIXELS",
        501: "A IIIF feature this service does not offer (upscaling, arbitrary rotation, "
             "a format other than jpg and png)",
        503: "The database is not reachable or has no tables yet; for a search also: "
             "all search slots are busy (see Retry-After)"}.items()},
}

PATHS = {
    "/api/v1/images": _get(
        "List images in id order (keyset paging)",
        {"200": _json(_ref("ImageList"), "A page of images"), **_errors(400, 503)},
        [_query("limit", "Images per page", 1, MAX_PAGE, PAGE),
         _query("cursor", "Continue after this id (from `next`)", 0, MAX_ID, 0),
         _query("before", "The page before this id (from `previous`)", 1, MAX_ID, 1)],
        "Keyset paging: follow `next` and `previous` (also in the Link header); give at "
        "most one of `cursor` and `before`."),
    "/api/v1/browse": _get(
        "A page of the collection in id or path order, under a folder, with a status",
        {"200": _json(_ref("Browse"), "A page of images and the folder's subfolders"),
         **_errors(400, 404, 503)},
        [{"name": "order", "in": "query", "required": False,
          "schema": {"enum": list(ORDERS), "default": "id"},
          "description": "id, or path (the bytes of the path, as UTF-8); under a folder "
                         "path only (the default there; id is a 400)"},
         {"name": "folder", "in": "query", "required": False,
          "description": "only images under this folder (relative to IMAGE_ROOT)",
          "schema": {"type": "string", "maxLength": MAX_TEXT}},
         {"name": "status", "in": "query", "required": False,
          "schema": {"enum": list(STATUSES)}},
         _query("limit", "Images per page", 1, MAX_BROWSE_LIMIT, BROWSE_LIMIT),
         *KEYSET],
        "Keyset paging: follow next_url and previous_url. Give at most one of `after` "
        "and `before`; in path order it must be the id of an image (404 otherwise)."),
    "/api/v1/external/{external_id}/neighbours": _get(
        "The neighbours of the image with this catalogue id, as for its image id",
        {"200": {**_json(_ref("NeighbourList"), "Neighbours from rank offset+1"),
                 "headers": {"ETag": {"schema": {"type": "string"}}}},
         "304": {"description": "Not modified (If-None-Match)"},
         **_errors(400, 404, 410, 503)},
        [{"name": "external_id", "in": "path", "required": True,
          "schema": {"type": "string", "minLength": 1, "maxLength": MAX_TEXT}},
         _query("limit", "Entries to return", 1, MAX_NEIGHBOURS, NEIGHBOURS),
         _query("offset", "Entries to skip", 0, MAX_NEIGHBOURS, 0), SPACE]),
    "/api/v1/images/lookup": _get(
        "Find images by exact path, exact file name or the catalogue's external id",
        {"200": _json(_ref("ImageList"), "The matching images, possibly none"),
         **_errors(400, 503)},
        [{"name": "path", "in": "query", "required": False,
          "schema": {"type": "string", "minLength": 1, "maxLength": MAX_TEXT}},
         {"name": "name", "in": "query", "required": False,
          "schema": {"type": "string", "minLength": 1, "maxLength": MAX_TEXT}},
         {"name": "external_id", "in": "query", "required": False,
          "schema": {"type": "string", "minLength": 1, "maxLength": MAX_TEXT}},
         _query("limit", "Matches per page", 1, MAX_PAGE, PAGE),
         _query("cursor", "Continue after this id (from `next`)", 0, MAX_ID, 0),
         _query("before", "The page before this id (from `previous`)", 1, MAX_ID, 1)],
        "Give exactly one of `path`, `name` and `external_id`; more or none is a 400 "
        "error (a rule OpenAPI cannot express). A file name can occur in many folders: all matches are "
        "returned, `limit` at a time. No match is an empty list, not an error."),
    "/api/v1/images/search": _get(
        "Find images by the words of their catalogue titles and record ids",
        {"200": _json(_ref("TitleSearch"), "A page of matching images, possibly none"),
         "304": {"description": "Not modified (If-None-Match)"},
         **_errors(400, 404, 503)},
        [{"name": "q", "in": "query", "required": True,
          "description": "words to find: each must begin a word of the title or record id",
          "schema": {"type": "string", "minLength": 1, "maxLength": MAX_TEXT}},
         _query("limit", "Images per page", 1, MAX_PAGE, PAGE),
         *KEYSET],
        "A word is a run of letters and digits, compared without case and accents "
        "(\"munch\" finds \"Youth (Edvard Munch)\", \"k-5\" finds the record id "
        "K-5). Every word of `q` must begin a word of the image's title or record id; "
        f"at most {MAX_QUERY_WORDS} words, and q without a letter or digit is a 400. "
        "Results are in the order of the word the longest query word begins, then id. "
        "Keyset paging: follow `next` and `previous` (also in the Link header); an "
        "`after` or `before` that is no result of q is a 404. Only records written by "
        "import_metadata.py are searched."),
    "/api/v1/images/{image_id}": _get(
        "Describe one image", {"200": _json(_ref("Image"), "The image"),
                               **_errors(400, 404, 410, 503)}, [IMAGE_ID]),
    "/api/v1/images/{image_id}/neighbours": _get(
        "An image's nearest neighbours, nearest first",
        {"200": {**_json(_ref("NeighbourList"), "Neighbours from rank offset+1"),
                 "headers": {"ETag": {"schema": {"type": "string"}}}},
         "304": {"description": "Not modified (If-None-Match)"},
         **_errors(400, 404, 410, 503)},
        [IMAGE_ID, _query("limit", "Entries to return", 1, MAX_NEIGHBOURS, NEIGHBOURS),
         _query("offset", "Entries to skip", 0, MAX_NEIGHBOURS, 0), SPACE],
        "A 404 also answers a space the grouping job has not computed, saying why."),
    "/api/v1/spaces": _get(
        "The spaces neighbour lists are kept in, and how each stands",
        {"200": _json({"type": "object", "required": ["spaces"],
                       "properties": {"spaces": {"type": "array", "items": _ref("Space")}}},
                      "Every space, computed or not"), **_errors(503)}),
    "/api/v1/images/{image_id}/features": _get(
        "An image's 2048 feature values (Inception v3 pool_3)",
        {"200": _json({"type": "array", "minItems": 2048, "maxItems": 2048,
                       "items": {"type": "number"}}, "The feature vector"),
         "304": {"description": "Not modified"}, **_errors(400, 404, 410, 503)},
        [IMAGE_ID]),
    "/api/v1/duplicates": _get(
        "Near-duplicate groups from the stored lists, largest first",
        {"200": _json({"type": "object",
                       "required": ["space", "max_distance", "start", "limit",
                                    "groups_total", "images_total", "groups", "previous",
                                    "next"],
                       "properties": {
                           "groups": {"type": "array", "items": {
                               "type": "object", "required": ["group", "size", "images"],
                               "properties": {
                                   "group": {"type": "integer"},
                                   "size": {"type": "integer"},
                                   "images": {"type": "array", "items": {
                                       "type": "object",
                                       "required": ["id", "path", "file_name",
                                                    "external_id", "title", "distance",
                                                    "links"],
                                       "properties": {
                                           "id": {"type": "integer"},
                                           "path": {"type": "string"},
                                           "file_name": {"type": "string"},
                                           "external_id": _nullable("string"),
                                           "title": _nullable("string"),
                                           "distance": {
                                               "type": "number", "description":
                                               "to the group's first image"},
                                           "links": _ref("Links")}}}}}},
                           "previous": _nullable("string"), "next": _nullable("string")}},
                      "A page of groups"), **_errors(400, 404, 503)},
        [SPACE, {"name": "max_distance", "in": "query", "required": False,
                 "description": "largest distance of a near-duplicate pair (default: "
                                "DUPLICATE_DISTANCE in pool3, the space's calibrated "
                                "one in the others)",
                 "schema": {"type": "number", "minimum": 0, "maximum": MAX_DISTANCE}},
         _query("start", "Groups to skip", 0, MAX_START, 0),
         _query("limit", "Groups per page", 1, MAX_GROUPS_PER_PAGE, GROUPS)],
        "Images linked by list entries within max_distance, in connected components "
        "(report_duplicates.py writes the same groups as CSV)."),
    "/api/v1/search": {"post": {
        "summary": "The stored images nearest to an uploaded image, exactly",
        "description": "The upload's features are computed by the feature job's own code "
                       "(same decoding, resize, network and weights) and searched against "
                       "every vector of the last completed grouping run, exactly, in the "
                       "grouping job's order (distance, then id). Nothing is stored. "
                       "A 404 answers a space not computed or no completed grouping run.",
        "parameters": [_query("limit", "Entries to return", 1, MAX_RESULTS, RESULTS),
                       SPACE, _query("features", "1: include the upload's 2048 values",
                                     0, 1, 0)],
        "requestBody": {"required": True, "content": {
            **{kind: {"schema": {"type": "string", "format": "binary"}}
               for kind in UPLOAD_TYPES},
            "multipart/form-data": {"schema": {
                "type": "object", "required": [UPLOAD_FIELD],
                "properties": {UPLOAD_FIELD: {"type": "string", "format": "binary"}}}}}},
        "responses": {"200": _json(_ref("SearchResult"), "Nearest first"),
                      **_errors(400, 404, 413, 415, 503)}}},
    "/api/v1/stats": _get("Image counts by status and the last run of each job",
                          {"200": _json(_ref("Stats"), "Counts"), **_errors(503)}),
    "/api/v1/healthz": _get(
        "Whether the database is reachable",
        {"200": _json({"type": "object", "required": ["status"],
                       "properties": {"status": {"const": "ok"}}}, "Healthy"),
         **_errors(503)}),
    "/image_count": _get("Original: the number of processed images",
                         {"200": _json({"type": "integer", "minimum": 0}, "A count"),
                          **_errors(503)}),
    "/image_name/{image_id}": _get(
        "Original: [file_name]",
        {"200": _json({"type": "array", "minItems": 1, "maxItems": 1,
                       "items": {"type": "string"}}, "The file name in a list"),
         **_errors(400, 404, 410, 503)}, [IMAGE_ID]),
    "/image_name_and_neighbours/{image_id}": _get(
        "Original: [file_name, [{id, distance}, ...]] with all stored neighbours",
        {"200": _json(_ref("LegacyNeighbours"), "File name and neighbours"),
         "304": {"description": "Not modified"}, **_errors(400, 404, 410, 503)},
        [IMAGE_ID]),
    "/image_fingerprint/{image_id}": _get(
        "Original: the vector as a 46x46 SVG heat map (wrapped around)",
        {"200": _binary("image/svg+xml", "SVG"), "304": {"description": "Not modified"},
         **_errors(400, 404, 410, 503)}, [IMAGE_ID]),
    "/images/{image_id}/fingerprint.svg": _get(
        "The vector as a 32x64 SVG heat map",
        {"200": _binary("image/svg+xml", "SVG"), "304": {"description": "Not modified"},
         **_errors(400, 404, 410, 503)}, [IMAGE_ID]),
    "/images/{image_id}/fingerprint.png": _get(
        "The vector as a 32x64 PNG heat map",
        {"200": _binary("image/png", "PNG"), "304": {"description": "Not modified"},
         **_errors(400, 404, 410, 503)}, [IMAGE_ID]),
    "/images/{image_id}/thumbnail": _get(
        "A JPEG thumbnail fitting in size x size pixels, EXIF orientation applied",
        {"200": _binary("image/jpeg", "JPEG"), "304": {"description": "Not modified"},
         **_errors(400, 403, 404, 410, 422, 503)},
        [IMAGE_ID, {"name": "size", "in": "query", "required": False,
                    "schema": {"type": "integer", "enum": list(THUMBNAIL_SIZES),
                               "default": 256}}]),
    "/images/{image_id}/file": _get(
        "The image file as stored under IMAGE_ROOT",
        {"200": _binary("image/jpeg", "The file"), "304": {"description": "Not modified"},
         **_errors(400, 403, 404, 410, 503)}, [IMAGE_ID]),
}


IIIF_ID = {"name": "identifier", "in": "path", "required": True,
           "description": "The image's id: the IIIF identifier (anything else: 404).",
           "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ID}}
_IIIF_SPEC = "https://iiif.io/api/image/3.0/"
_IIIF_IMAGE_PARAMETERS = [IIIF_ID] + [
    {"name": name, "in": "path", "required": True, "description": text,
     "schema": {"type": "string"}}
    for name, text in (("region", "full, square, x,y,w,h or pct:x,y,w,h"),
                       ("size", "max, w,, ,h, pct:n, w,h or !w,h (no ^: upscaling is not "
                                "offered)"),
                       ("rotation", "0, 90, 180 or 270, ! in front to mirror first"),
                       ("quality", "default, color, gray or bitonal"),
                       ("format", "jpg or png"))]
_JSON_LD = {"application/json": {"schema": {"type": "object"}},
            "application/ld+json": {"schema": {"type": "object"}}}

PATHS.update({
    "/iiif/3/{identifier}": _get(
        "IIIF Image API 3.0: the base URI, redirected to its info.json",
        {"303": {"description": "See Other: the image information",
                 "headers": {"Location": {"schema": {"type": "string"}}}},
         **_errors(403, 404, 410, 422, 503)}, [IIIF_ID]),
    "/iiif/3/{identifier}/info.json": _get(
        "IIIF Image API 3.0 image information (level 2, mirroring, bitonal)",
        {"200": {"description": "The image information; JSON-LD where asked for",
                 "content": _JSON_LD},
         "304": {"description": "Not modified"}, **_errors(403, 404, 410, 422, 503)},
        [IIIF_ID], description=_IIIF_SPEC),
    "/iiif/3/{identifier}/{region}/{size}/{rotation}/{quality}.{format}": _get(
        "IIIF Image API 3.0 image request, EXIF orientation applied first",
        {"200": {"description": "The image", "content": {
            kind: {"schema": {"type": "string", "format": "binary"}}
            for kind in ("image/jpeg", "image/png")}},
         "304": {"description": "Not modified"},
         **_errors(400, 403, 404, 410, 422, 501, 503)},
        _IIIF_IMAGE_PARAMETERS, description=_IIIF_SPEC + " Regions are cut at the image's "
        "edge; one outside it, or a size larger than the region, is a 400."),
    "/iiif/manifests/{image_id}": _get(
        "IIIF Presentation 3 manifest of one image, labelled from the catalogue",
        {"200": {"description": "The manifest", "content": _JSON_LD},
         "304": {"description": "Not modified"}, **_errors(400, 403, 404, 410, 422, 503)},
        [IMAGE_ID]),
    "/iiif/manifests/{image_id}/neighbours": _get(
        "IIIF Presentation 3 manifest of an image's nearest neighbours, nearest first "
        "(rank and distance in each canvas's metadata)",
        {"200": {"description": "The manifest", "content": _JSON_LD},
         "304": {"description": "Not modified"}, **_errors(400, 404, 410, 503)},
        [IMAGE_ID, _query("limit", "Neighbours in the manifest", 1, MAX_NEIGHBOURS,
                          NEIGHBOURS), SPACE]),
})


def openapi_document(server_root: str = "") -> dict:
    """Return the OpenAPI document, its server at `server_root` (the app's mount point)."""
    return {"openapi": "3.1.0",
            "info": {"title": "Similar images (read-only)", "version": "1.0.0",
                     "description": "Precomputed nearest neighbours of archive images "
                                    "by their Inception v3 features. Read-only. Paged "
                                    "answers give `next` and `previous` as URLs (null "
                                    "at an end; the gallery's are next_url and "
                                    "previous_url) and the same in a Link header "
                                    "(RFC 8288, rel=\"next\", rel=\"prev\")."},
            "servers": [{"url": server_root or "/"}],
            "paths": PATHS, "components": COMPONENTS}
