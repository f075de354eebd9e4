"""import_iiif.py: a collection taken from IIIF Presentation manifests and collections."""
