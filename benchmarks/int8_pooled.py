"""Sum the "vs best peer" columns of int8_peers.py's logs over calibration draws: McNemar's exact p on the sums.

    python benchmarks/int8_pooled.py --images "10000 test + 20000 unseen" runs/hard/unseen.log runs/hard/unseen-rx*.log

For logs written before int8_peers.py printed these sums itself (its multi-draw summary now has them). Each table
in a log starts with a line naming its images and calibration ("10000 test + 20000 unseen training images;
calibration: draw 1, …"); ``--images`` picks the tables whose line starts so, and every edgeres row's "+A / −B" in
them (images only the row gets right, only that draw's best peer does) is summed per model and row. The draws share
the test images, so the sums are not independent and p comes out too small: an upper bound on the evidence.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from int8_tables import mcnemar  # noqa: E402

ROW = re.compile(r"^\| (edgeres [^|]*?) \|.*\| \+(\d+) / −(\d+), p [\d.]+ \|")
MODEL = re.compile(r"^(\S+) \(fp32 [\d.]+%\)$")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("logs", nargs="+", type=Path)
    ap.add_argument("--images", required=True, help="the start of the tables' first line, e.g. '10000 test + 20000'")
    args = ap.parse_args()
    sums: dict[tuple[str, str], list[int]] = {}
    for log in args.logs:
        keep, model = False, "?"
        for line in log.read_text(encoding="utf-8").splitlines():
            if "; calibration: " in line:
                keep = line.startswith(args.images)
            elif m := MODEL.match(line):
                model = m.group(1)
            elif keep and (m := ROW.match(line)):
                s = sums.setdefault((model, m.group(1)), [0, 0, 0])
                s[0], s[1], s[2] = s[0] + int(m.group(2)), s[1] + int(m.group(3)), s[2] + 1
    print("| model | quantizer | tables | + only it / − only the best peer, summed | net | p |\n|---|---|---|---|---|---|")
    for (model, name), (a, b, n) in sums.items():
        print(f"| {model} | {name} | {n} | +{a} / −{b} | {a - b:+d} | {mcnemar(a, b):.2f} |")


if __name__ == "__main__":
    main()
