"""The benchmark of issue 7: sequential baseline, this connector, the server's limit.

`python -m bench.run` (or `make bench`) runs every part in one go against the Paperless-ngx
test double and a fake connector-manager on loopback, and prints a Markdown report.
Nothing here ships in the product: the sequential baseline only exists as a reference.
"""
