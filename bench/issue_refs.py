"""Benchmark: payment references issued per second, and memos scanned per second.

    python bench/issue_refs.py [--n 20000] [--batch 500] [--postgres URL]

Issues references through the public Python API (``FeePay.references.issue_many`` in
batches, and ``issue`` one at a time) on a fresh SQLite file and, when given, an emptied
PostgreSQL database; then scans mangled memos with ``feepay.reference.find_in_text``.
Targets (2-core machine): ≥ 2,000 references/s on SQLite in batch mode; ≥ 200,000 memos/s.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._machine import print_machine  # noqa: E402
from feepay import reference  # noqa: E402
from feepay.api import FeePay  # noqa: E402
from feepay.crypto import Sealer, generate_key  # noqa: E402
from feepay.demo_data import seed  # noqa: E402
from feepay.references import IssueRequest  # noqa: E402


def fresh(url: str) -> FeePay:
    if url.startswith("postgresql"):
        from sqlalchemy import create_engine, text

        eng = create_engine(url)
        with eng.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
        eng.dispose()
    return FeePay.open(url, sealer=Sealer([generate_key()]))


def bench_issue(url: str, n: int, batch: int, single: int) -> dict[str, float]:
    fp = fresh(url)
    demo = seed(fp)
    units = [demo.department, *demo.communes]
    rng = random.Random(1)
    reqs = [IssueRequest(f"BENCH-{i:08d}", rng.choice(units),
                         rng.choice([["LP-HT-01"], ["P-CT-01", "LP-HT-02"], ["P-TD-01"]]))
            for i in range(n + single)]
    t = time.perf_counter()
    for i in range(0, n, batch):
        fp.references.issue_many(reqs[i:i + batch])
    batch_rate = n / (time.perf_counter() - t)
    t = time.perf_counter()
    for r in reqs[n:]:
        fp.references.issue(r.dossier_code, r.competent_unit, r.items)
    single_rate = single / (time.perf_counter() - t)
    fp.close()
    return {"batch_per_s": batch_rate, "single_per_s": single_rate}


def bench_find(n: int) -> dict[str, float]:
    rng = random.Random(2)
    codes = [reference.generate() for _ in range(1000)]
    shapes = [
        "MBVCB.{r}.{t}.NGUYEN VAN A chuyen tien {c}.CT tu 0351000646393 toi 231814973 tai VPBANK",
        "{c}",
        "CT DEN:{r} {cl}",
        "Nộp phí hồ sơ {c} cảm ơn",
        "{r}-CHUYEN TIEN qua MoMo-{c}-OQCH00044xSs-MOMO{r}MOMO",
        "IBFT {c4} {c8}",
        "MBVCB.{r}.{t}.chuyen tien khong co ma",
        "TKThe :19021015184017, tai Techcombank. chuyen tien FT26071809742974",
    ]
    memos = []
    for _ in range(n):
        c = rng.choice(codes)
        memos.append(rng.choice(shapes).format(
            r=rng.randrange(10**9), t=rng.randrange(10**6), c=c, cl=c.lower(),
            c4=c[:4].lower(), c8=c[4:]))
    t = time.perf_counter()
    found = sum(1 for m in memos if reference.find_in_text(m))
    rate = n / (time.perf_counter() - t)
    return {"memos_per_s": rate, "with_code_share": found / n}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000, help="references in batch mode")
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--single", type=int, default=1000, help="references one at a time")
    ap.add_argument("--memos", type=int, default=500000)
    ap.add_argument("--postgres", default=None, help="PostgreSQL URL (its schema is dropped)")
    args = ap.parse_args()
    print_machine([args.postgres] if args.postgres else [])
    with tempfile.TemporaryDirectory() as tmp:
        r = bench_issue(f"sqlite:///{tmp}/bench.db", args.n, args.batch, args.single)
        print(f"sqlite     issue_many: {r['batch_per_s']:9.0f} references/s (batch "
              f"{args.batch}, n={args.n}); issue: {r['single_per_s']:7.0f}/s (one per "
              f"transaction, n={args.single})")
    if args.postgres:
        r = bench_issue(args.postgres, args.n, args.batch, args.single)
        print(f"postgresql issue_many: {r['batch_per_s']:9.0f} references/s (batch "
              f"{args.batch}, n={args.n}); issue: {r['single_per_s']:7.0f}/s (one per "
              f"transaction, n={args.single})")
    f = bench_find(args.memos)
    print(f"find_in_text: {f['memos_per_s']:9.0f} memos/s (n={args.memos}, "
          f"{f['with_code_share']:.0%} contain a code)")


if __name__ == "__main__":
    main()
