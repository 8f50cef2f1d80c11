"""Nightly reconciliation (đối soát): the pure matching engine and everything around it.

``engine``/``rules``/``book``/``models`` — the pure engine; ``loader``/``persist``/
``runner`` — storage in and out; ``locks``/``scheduler`` — exactly-once nightly runs;
``resolution`` — people's decisions; ``reports``; ``demo`` — `feepay demo`'s day;
``cli`` — the `feepay reconcile|scheduler|mismatches|report` commands. See docs/reconcile.md.
"""
