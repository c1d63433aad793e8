"""serve: `dqu serve` on loopback under 1, 4 and 16 concurrent clients, batching on and off.

`dqu bench serve [--index DIR] [--tiny]` or `python -m bench.serve`: starts `dqu serve` as its
own process twice, `--max-batch 16` (the default) and `--max-batch 1` (batching off), warms
each up, then runs 1, 4 and 16 clients for a fixed time each (keep-alive HTTP, POST /search
with uploads and gallery ids, demo-like texts): queries/s, p50/p95/p99, errors. The batching
server then serves a soak (16 clients, 60 s) with its RSS read before and after, and the bad
requests of issue 30 (each must get a 4xx, the server must stay up). Lines (details on stderr):
- `serve-throughput` (vs=ours): 16 clients' queries/s against one client's, batching on;
  check = errors over every phase of both servers, and bad requests answered 4xx.
- `serve-batching` (vs=ours): 16 clients' queries/s with batching against without; check =
  queries whose top-k ids were the same from both servers.
- `serve-rss` (vs=ours, MiB, lower is better): RSS after the soak against before it.
Without `--index`, the index is a training-free one of the demo backbone (random weights: the
work per query does not depend on them) over demo images drawn here. Full run: ~4 minutes.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.common import BenchResult, emit, note, quiet_stages, workspace

SIZES = {"full": {"phase_s": 15.0, "soak_s": 60.0, "gallery": 2880},  # a demo split's gallery
         "tiny": {"phase_s": 2.0, "soak_s": 4.0, "gallery": 60}}
CLIENTS = (1, 4, 16)
GOALS = {"scaling": 3.0, "rss_growth": 0.15}
TEXTS = ("make it blue", "change the circle to a triangle", "a bigger one", "move it to the "
         "top left and make it striped", "not red but green", "make it smaller and dotted",
         "I want a yellow star instead", "same shape but purple", "put it in the center",
         "with a checkered pattern and larger")


@dataclass
class Phase:
    """What one load phase measured."""

    clients: int
    seconds: float
    latencies: list[float] = field(default_factory=list)  # ms, successful requests
    errors: int = 0
    tops: dict[int, list[str]] = field(default_factory=dict)  # body number -> top-k ids

    @property
    def rate(self) -> float:
        """Successful queries per second."""
        return len(self.latencies) / self.seconds

    def pct(self, q: float) -> float:
        """Latency percentile in ms (nan when nothing succeeded)."""
        return float(np.percentile(self.latencies, q)) if self.latencies else float("nan")


def _multipart(fields: dict[str, str], upload: bytes | None) -> tuple[bytes, str]:
    """A multipart/form-data body and its content type."""
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\ncontent-disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
             .encode() for name, value in fields.items()]
    if upload is not None:
        parts.append(f'--{boundary}\r\ncontent-disposition: form-data; name="reference"; '
                     f'filename="ref.png"\r\ncontent-type: image/png\r\n\r\n'.encode()
                     + upload + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), \
        f"multipart/form-data; boundary={boundary}"


def _demo_index(root: Path, images: int) -> Path:
    """A training-free index of the demo backbone over `images` demo pictures drawn here (at
    most the 2,880 things of one demo split, evenly spaced)."""
    import dataclasses

    from safetensors.torch import save_file

    from pipeline.core.params import Params, load_params
    from pipeline.datasets.demo import ALL_THINGS, caption_of, draw_thing
    from pipeline.search import commands
    from trainer.config import ClipConfig
    from trainer.models.clip import load_clip

    params = load_params("params.yaml") if Path("params.yaml").is_file() else Params()
    params = dataclasses.replace(params, index=dataclasses.replace(params.index, device="cpu"))
    rng = random.Random(0)
    folder = root / "images"
    folder.mkdir(parents=True, exist_ok=True)
    captions = {}
    for n, thing in enumerate(ALL_THINGS[:: max(1, len(ALL_THINGS) // images)][:images]):
        draw_thing(thing, params.prepare.demo.image_size, rng).save(folder / f"{n:05d}.png")
        captions[f"{n:05d}.png"] = caption_of(thing, rng)
    (root / "captions.json").write_text(json.dumps(captions))
    clip = root / "clip.safetensors"
    model = load_clip(ClipConfig(model=params.clip.model)).model
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(clip))
    with quiet_stages():
        commands.index(params, None, root / "index", None, None, folder, None,
                       commands.TrainingFree(pretrained=str(clip)))
    return root / "index"


def _bodies(index: Path, count: int = 64) -> list[tuple[bytes, str]]:
    """Query bodies: half uploads of gallery files, half gallery ids; texts from TEXTS."""
    import pyarrow.parquet as pq

    table = pq.read_table(index / "gallery.parquet", columns=["image_id", "path"])
    ids, paths = table["image_id"].to_pylist(), table["path"].to_pylist()
    captions_file = index.parent / "captions.json"
    captions = json.loads(captions_file.read_text()) if captions_file.is_file() else {}
    rng = random.Random(1)
    out = []
    for n in range(count):
        i = rng.randrange(len(ids))
        fields = {"text": TEXTS[n % len(TEXTS)], "k": "10",
                  "caption": captions.get(ids[i], "a picture of a shape on a gray background")}
        if n % 2 and os.path.isfile(paths[i]):
            out.append(_multipart(fields, Path(paths[i]).read_bytes()))
        else:
            out.append(_multipart({**fields, "reference_id": ids[i]}, None))
    return out


@contextlib.contextmanager
def _server(index: Path, max_batch: int, log: Path) -> Iterator[tuple[int, int]]:
    """`dqu serve` in its own process on a free loopback port: yields (port, pid)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "pipeline.cli", "serve", "--index", str(index), "--port",
               str(port), "--max-batch", str(max_batch)]
    with open(log, "w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"dqu serve exited ({process.returncode}): "
                                   f"{log.read_text()[-2000:]}")
            with contextlib.suppress(OSError):
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                connection.request("GET", "/gallery?limit=1")
                if connection.getresponse().status == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("dqu serve did not answer within 300 s")
            time.sleep(0.2)
        yield port, process.pid
    finally:
        process.terminate()
        process.wait(timeout=30)


def _load(port: int, bodies: list[tuple[bytes, str]], clients: int, seconds: float) -> Phase:
    """`clients` keep-alive clients posting bodies in turn for `seconds`."""
    phase = Phase(clients, seconds)
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client(offset: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        n = offset
        while time.monotonic() < stop:
            body, kind = bodies[n % len(bodies)]
            start = time.perf_counter()
            try:
                connection.request("POST", "/search", body, {"content-type": kind})
                response = connection.getresponse()
                data = response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            elapsed = (time.perf_counter() - start) * 1e3
            with lock:
                if ok:
                    phase.latencies.append(elapsed)
                    phase.tops.setdefault(n % len(bodies), [h["image_id"] for h in
                                                            json.loads(data)["results"]])
                else:
                    phase.errors += 1
            n += 1

    threads = [threading.Thread(target=client, args=(i * 7,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return phase


def _rss_mib(pid: int) -> float:
    """Resident set size of a process, MiB."""
    import psutil

    return psutil.Process(pid).memory_info().rss / 2**20


def _bad_requests(port: int) -> tuple[int, int]:
    """Issue 30's bad requests: (answered 4xx, sent); then the server must still serve."""
    png_header = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\xea`\x00\x00\xea`\x08\x02\x00"
                  b"\x00\x00\x00\x00\x00\x00")
    fields = {"text": "make it blue", "caption": "a red circle"}
    cases = [_multipart(fields, os.urandom(4096)), _multipart(fields, png_header[:20]),
             _multipart(fields, b""), _multipart(fields, png_header),
             _multipart({**fields, "text": "   "}, png_header)]
    cases += [_multipart({**fields, **extra}, None) for extra in (
        {"reference_id": "no-such-id"}, {"reference_id": "../../etc/passwd"},
        {"reference_id": "x", "k": "0"}, {"reference_id": "x", "k": "-5"},
        {"reference_id": "x", "k": "1e9"}, {"reference_id": "x", "k": "ten"},
        {"reference_id": "x", "text": "t" * (1 << 20)},
        {"reference_id": "x", "text": "t" * 1001}, {})]
    cases += [(b'{"text": "x"}', "application/json"), (b"text=x", "text/plain"),
              (b"--a\r\n\r\nx", "multipart/form-data; boundary=b"),
              _multipart(fields, b"\0" * (21 << 20))]
    answered = 0
    for body, kind in cases:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        with contextlib.suppress(OSError, http.client.HTTPException):
            connection.request("POST", "/search", body, {"content-type": kind})
            answered += 400 <= connection.getresponse().status < 500
    for path in ("/image/../../etc/passwd", "/image/%2e%2e%2fetc%2fpasswd", "/gallery?limit=x"):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        with contextlib.suppress(OSError, http.client.HTTPException):
            connection.request("GET", path)
            answered += 400 <= connection.getresponse().status < 500
    return answered, len(cases) + 3


def _phases(port: int, bodies: list, scale: str, label: str) -> list[Phase]:
    """Warm-up, then 1, 4 and 16 clients for the phase time each; notes each phase."""
    _load(port, bodies, 4, SIZES[scale]["phase_s"] / 2)  # warm-up: lazy loads, first batches
    out = []
    for clients in CLIENTS:
        phase = _load(port, bodies, clients, SIZES[scale]["phase_s"])
        note(f"{label}: {clients:2d} clients, {phase.seconds:.0f} s: {phase.rate:6.1f} q/s, "
             f"p50 {phase.pct(50):7.1f} ms p95 {phase.pct(95):7.1f} ms p99 "
             f"{phase.pct(99):7.1f} ms, errors {phase.errors}")
        out.append(phase)
    return out


def run(scale: str = "full", workdir: Path | None = None, index: Path | None = None
        ) -> list[BenchResult]:
    """Both servers, every phase, the soak and the bad requests; returns the three results."""
    size = SIZES[scale]
    with workspace(workdir) as root:
        if index is None:
            index = _demo_index(Path(root) / "serve", size["gallery"])
            note(f"index: training-free demo backbone over "
                 f"{len(list((Path(root) / 'serve' / 'images').iterdir()))} demo images")
        bodies = _bodies(Path(index))
        with _server(Path(index), 1, Path(root) / "serve-off.log") as (port, pid):
            before = _rss_mib(pid)
            off = _phases(port, bodies, scale, "batching off (--max-batch 1)")
            note(f"batching off: RSS {before:.0f} -> {_rss_mib(pid):.0f} MiB")
        with _server(Path(index), 16, Path(root) / "serve-on.log") as (port, pid):
            warm = _rss_mib(pid)
            on = _phases(port, bodies, scale, "batching on (--max-batch 16)")
            rss_before = _rss_mib(pid)
            soak = _load(port, bodies, 16, size["soak_s"])
            rss_after = _rss_mib(pid)
            bad, sent = _bad_requests(port)
            alive = _load(port, bodies, 1, 1.0)
            note(f"soak: 16 clients {size['soak_s']:.0f} s, {soak.rate:.1f} q/s, errors "
                 f"{soak.errors}, p99 {soak.pct(99):.1f} ms; RSS {warm:.0f} (warm) -> "
                 f"{rss_before:.0f} (before soak) -> {rss_after:.0f} MiB; bad requests "
                 f"{bad}/{sent} answered 4xx, then {len(alive.latencies)} good ones served")
    errors = sum(p.errors for p in on + off) + soak.errors
    same = [on[-1].tops[n] == off[-1].tops[n] for n in on[-1].tops if n in off[-1].tops]
    results = [
        emit(BenchResult("serve-throughput", on[-1].rate, on[0].rate, "queries/s", True,
                         vs="ours", path="float32",
                         check=f"errors={errors},bad-4xx={bad}/{sent},"
                               f"alive={'yes' if alive.latencies else 'no'}")),
        emit(BenchResult("serve-batching", on[-1].rate, off[-1].rate, "queries/s", True,
                         vs="ours", path="float32", check=f"same-top10={sum(same)}/{len(same)}")),
        emit(BenchResult("serve-rss", rss_after, rss_before, "MiB", False, vs="ours",
                         path="float32", check=f"growth={rss_after / rss_before - 1:+.1%}")),
    ]
    growth = rss_after / rss_before - 1
    checks = [(f"serve-throughput 16/1 clients {results[0].ratio:.1f}x >= {GOALS['scaling']:g}x",
               results[0].ratio >= GOALS["scaling"]),
              (f"errors {errors} == 0", errors == 0),
              (f"bad requests {bad}/{sent} 4xx, still serving", bad == sent and alive.latencies),
              (f"serve-rss growth {growth:+.1%} < {GOALS['rss_growth']:.0%}",
               growth < GOALS["rss_growth"])]
    verdicts = [f"{text} {'met' if ok else 'NOT MET'}" for text, ok in checks]
    tail = "toy sizes: goals apply to full runs" if scale == "tiny" else (
        "all met" if all(v.endswith(" met") for v in verdicts) else "some NOT MET")
    print(f"bench goals: {'; '.join(verdicts)} ({tail})", flush=True)
    return results


def main(argv: list[str] | None = None) -> None:
    """`python -m bench.serve [--tiny] [--index DIR]`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="toy sizes, to check the script")
    parser.add_argument("--index", type=Path, help="index folder to serve (default: a "
                        "training-free demo index built here)")
    args = parser.parse_args(argv)
    run("tiny" if args.tiny else "full", None, args.index)


if __name__ == "__main__":
    main()
