"""Summarise a py-spy raw (collapsed) profile: inclusive and self time by function."""

import sys
from collections import Counter


def main(path: str, top: int = 40) -> None:
    inc: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in open(path):  # noqa: SIM115
        stack, _, n = line.rstrip().rpartition(" ")
        if not stack:
            continue
        if not n.isdigit():  # a frame name with a line break in it (rare): skip it
            continue
        count, frames = int(n), stack.split(";")
        total += count
        names = []
        for f in frames:
            func, _, where = f.partition(" (")
            names.append(f"{func} ({where.split(':')[0].rsplit('/', 1)[-1]}")
        for name in set(names):
            inc[name] += count
        own[names[-1]] += count
    print(f"{total} samples")
    for k, v in inc.most_common(top):
        print(f"{v / total * 100:5.1f}%  {k}")
    print("--- self")
    for k, v in own.most_common(top // 2):
        print(f"{v / total * 100:5.1f}%  {k}")


if __name__ == "__main__":
    main(sys.argv[1], *(int(a) for a in sys.argv[2:]))
