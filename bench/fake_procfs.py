"""A fake /proc (stat + meminfo) with N vCPUs, for benchmarks at trn2 scale on any machine."""

from __future__ import annotations

import random
from pathlib import Path


def write_fake_procfs(root: Path, cpus: int, seed: int = 1) -> Path:
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    lines = []
    per_cpu = [[rng.randint(10**5, 10**7) for _ in range(10)] for _ in range(cpus)]
    totals = [sum(column) for column in zip(*per_cpu)]
    lines.append("cpu  " + " ".join(map(str, totals)))
    lines += [f"cpu{n} " + " ".join(map(str, values)) for n, values in enumerate(per_cpu)]
    lines += [
        "intr 123456789 0 0",
        "ctxt 987654321",
        "btime 1700000000",
        "processes 424242",
        "procs_running 3",
        "procs_blocked 0",
        "softirq 1234567 0 600000 1000 2000 3000 0 4000 300000 500 323067",  # total, then 10 kinds
    ]
    (root / "stat").write_text("\n".join(lines) + "\n")
    (root / "meminfo").write_text(
        "MemTotal:       2097152000 kB\nMemFree:         524288000 kB\nMemAvailable:   1048576000 kB\n"
        "Buffers:          1048576 kB\nCached:          20971520 kB\nSwapCached:            0 kB\n"
        "Active:          10485760 kB\nInactive:         5242880 kB\nSReclaimable:     1048576 kB\n"
        "Shmem:              65536 kB\nSwapTotal:        8388608 kB\nSwapFree:         8388608 kB\n"
    )
    return root
