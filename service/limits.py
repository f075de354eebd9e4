"""The bounds of the service's parameters, in one place: the views check them, the
OpenAPI document publishes them and the pages use them."""
from __future__ import annotations

MAX_ID = 2**63 - 1  # images.id is a signed 64-bit integer on MariaDB
MAX_TEXT = 4096  # characters of a looked-up path, name, external id, folder or search
PAGE = 100  # images per page of the image list and of a name lookup
MAX_PAGE = 1000
NEIGHBOURS = 20  # entries of a neighbour list per answer
MAX_NEIGHBOURS = 100
BROWSE_LIMIT = 60  # thumbnails per browse page
MAX_BROWSE_LIMIT = 500
GROUPS = 20  # near-duplicate groups per page
MAX_GROUPS_PER_PAGE = 100
MAX_DISTANCE = 1000.0  # far beyond any pool3 or whitened distance of a near-duplicate
MAX_START = 10 ** 9
RESULTS = 20  # results of a search by image
MAX_RESULTS = 100
