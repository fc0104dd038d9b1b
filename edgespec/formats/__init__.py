"""Weight readers. Each maps its file's tensor names to the canonical table in names.py."""
