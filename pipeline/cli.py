"""`dqu`: one thin command per pipeline stage (dvc.yaml calls these), plus tools."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from pipeline.core.params import KeywordsParams, load_params

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="DQU-CIR pipeline stages (run them all with `dvc repro`).",
)
F = TypeVar("F", bound=Callable)

ParamsOpt = Annotated[Path, typer.Option("--params", help="params file to read")]
OutOpt = Annotated[Path, typer.Option("--out", help="output folder of this stage")]
# Artifact paths have no defaults: they are written once, in dvc.yaml.


def _user_errors(fn: F) -> F:
    """Show expected failures (bad params, bad records, missing files) as one clear line."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        try:
            return fn(*args, **kwargs)
        except (ValueError, FileNotFoundError) as err:
            if os.environ.get("DQU_TRACEBACK"):
                raise
            typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
            raise typer.Exit(2) from err

    return wrapper  # type: ignore[return-value]


@app.command()
@_user_errors
def prepare(
    params: ParamsOpt = Path("params.yaml"),
    out: OutOpt = ...,
    dataset: Annotated[str | None, typer.Option(help="overrides prepare.dataset")] = None,
    root: Annotated[str | None, typer.Option(help="overrides prepare.root")] = None,
    category: Annotated[str | None, typer.Option(help="overrides prepare.category")] = None,
    protocol: Annotated[
        str | None, typer.Option(help="overrides prepare.protocol (val-split|original-split)")
    ] = None,
) -> None:
    """Turn the dataset named in params into triplets/images/gallery tables."""
    import dataclasses

    from pipeline.stages import prepare as stage

    loaded = load_params(params)
    overrides = {
        key: value
        for key, value in {
            "dataset": dataset, "root": root, "category": category, "protocol": protocol
        }.items()
        if value is not None
    }
    loaded = dataclasses.replace(
        loaded, prepare=dataclasses.replace(loaded.prepare, **overrides)
    )
    stage.run(loaded, out)


@app.command()
@_user_errors
def caption(
    params: ParamsOpt = Path("params.yaml"),
    prepare_dir: Annotated[Path, typer.Option("--prepare")] = ...,
    out: OutOpt = ...,
) -> None:
    """Caption every reference image (BLIP-2 or provided captions)."""
    from pipeline.stages import caption as stage

    stage.run(load_params(params), prepare_dir, out)


@app.command()
@_user_errors
def keywords(
    texts: Annotated[
        Path | None,
        typer.Argument(help="JSON lines with id and text; omit to run the pipeline stage"),
    ] = None,
    params: ParamsOpt = Path("params.yaml"),
    prepare_dir: Annotated[Path | None, typer.Option("--prepare")] = None,
    out: Annotated[Path | None, typer.Option("--out")] = None,
    model: Annotated[str | None, typer.Option(help="sentence-transformers dir or id")] = None,
    skip_bad: Annotated[bool, typer.Option(help="skip bad lines instead of failing")] = False,
) -> None:
    """Target keywords: the pipeline stage, or `dqu keywords TEXTS.jsonl --out PRED.jsonl`."""
    if texts is None:
        from pipeline.stages import keywords as stage

        if out is None or prepare_dir is None:
            raise typer.BadParameter("the keywords stage needs --prepare DIR and --out DIR")
        stage.run(load_params(params), prepare_dir, out)
        return
    if out is None:
        raise typer.BadParameter("give --out PRED.jsonl when extracting from a file")
    from pipeline.core.models import resolve_model
    from pipeline.keyphrases import extract_file, load_keyword_model
    from pipeline.stages.keywords import keyword_selection

    # With --model and no params.yaml (outside a project), the default selection applies.
    cfg = load_params(params).keywords if model is None or params.is_file() else KeywordsParams()
    selection = keyword_selection(cfg)
    keyword_model = load_keyword_model(resolve_model(model or cfg.model))
    stats = extract_file(keyword_model, texts, out, skip_bad=skip_bad, selection=selection)
    typer.echo(f"[keywords] in={stats['n_in']} out={stats['n_out']} skipped={stats['n_skipped']}")


@app.command()
@_user_errors
def render(
    params: ParamsOpt = Path("params.yaml"),
    prepare_dir: Annotated[Path, typer.Option("--prepare")] = ...,
    caption_dir: Annotated[Path, typer.Option("--caption")] = ...,
    keywords_dir: Annotated[Path, typer.Option("--keywords")] = ...,
    out: OutOpt = ...,
) -> None:
    """Write the unified text and visual queries into Parquet shards."""
    from pipeline.stages import render as stage

    stage.run(load_params(params), prepare_dir, caption_dir, keywords_dir, out)


@app.command()
@_user_errors
def inputs(
    params: ParamsOpt = Path("params.yaml"),
    prepare_dir: Annotated[Path, typer.Option("--prepare")] = ...,
    render_dir: Annotated[Path, typer.Option("--render")] = ...,
    out: OutOpt = ...,
) -> None:
    """Precompute encoder inputs (pixels, token ids) for the configured backbone."""
    from pipeline.stages import inputs as stage

    stage.run(load_params(params), prepare_dir, render_dir, out)


@app.command()
@_user_errors
def pretrain(
    params: ParamsOpt = Path("params.yaml"),
    prepare_dir: Annotated[Path, typer.Option("--prepare")] = ...,
    keywords_dir: Annotated[Path, typer.Option("--keywords")] = ...,
    out: OutOpt = ...,
) -> None:
    """Contrastive image-text pretraining of the CLIP that train fine-tunes (the demo's)."""
    from pipeline.stages import pretrain as stage

    stage.run(load_params(params), prepare_dir, keywords_dir, out)


@app.command()
@_user_errors
def train(
    mode: Annotated[str, typer.Argument(help="query mode: dqu, text, visual, combiner or sum")],
    params: ParamsOpt = Path("params.yaml"),
    inputs_dir: Annotated[Path, typer.Option("--inputs")] = ...,
    out: OutOpt = ...,
    resume: Annotated[bool, typer.Option(help="continue from the last checkpoint")] = True,
    prepare_dir: Annotated[
        Path | None, typer.Option("--prepare", help="prepare folder (CIRR subset members)")
    ] = None,
    pretrain_dir: Annotated[
        Path | None, typer.Option("--pretrain", help="pretrain folder: start from its CLIP")
    ] = None,
) -> None:
    """Train the fusion model in one query mode."""
    from pipeline.stages import train as stage

    stage.run(load_params(params), mode, inputs_dir, out, resume, prepare_dir, pretrain_dir)


@app.command()
@_user_errors
def evaluate(
    params: ParamsOpt = Path("params.yaml"),
    inputs_dir: Annotated[Path, typer.Option("--inputs")] = ...,
    train_dir: Annotated[Path, typer.Option("--train")] = ...,
    out: OutOpt = ...,
    prepare_dir: Annotated[
        Path | None, typer.Option("--prepare", help="prepare folder (protocol data)")
    ] = None,
    pretrain_dir: Annotated[
        Path | None, typer.Option("--pretrain", help="pretrain folder: training-free scores")
    ] = None,
) -> None:
    """Recall@K of every query mode; writes metrics and plots for DVC."""
    from pipeline.stages import evaluate as stage

    stage.run(load_params(params), inputs_dir, train_dir, out, prepare_dir, pretrain_dir)


@app.command()
@_user_errors
def casestudy(
    params: ParamsOpt = Path("params.yaml"),
    prepare_dir: Annotated[Path, typer.Option("--prepare")] = ...,
    render_dir: Annotated[Path, typer.Option("--render")] = ...,
    evaluate_dir: Annotated[Path, typer.Option("--evaluate")] = ...,
    out: OutOpt = ...,
) -> None:
    """Case-study figures: chosen dqu queries, their unified queries, lambda and top-k."""
    from pipeline.stages import casestudy as stage

    stage.run(load_params(params), prepare_dir, render_dir, evaluate_dir, out)


@app.command()
@_user_errors
def spelling(
    files: Annotated[list[Path], typer.Argument(help="annotation files (JSON, JSONL or text)")],
    out: Annotated[Path, typer.Option("--out", help="correction dictionary to write (JSON)")],
    min_count: Annotated[
        int, typer.Option(help="words seen this often are vocabulary, never corrected")
    ] = 3,
) -> None:
    """Build a typo correction dictionary {word: correction} with pyspellchecker."""
    from pipeline.datasets.spelling_dict import build_corrections, write_corrections

    corrections = build_corrections(files, min_count=min_count)
    write_corrections(corrections, out)
    typer.echo(f"[spelling] {len(corrections)} corrections -> {out}")


@app.command()
def faults(
    only: Annotated[
        list[str] | None, typer.Option("--only", help="run just this fault (repeatable)")
    ] = None,
    workdir: Annotated[
        Path | None, typer.Option(help="keep the scratch data here instead of a temp folder")
    ] = None,
) -> None:
    """Break a scratch tiny dataset every way we know; one line per fault, exit 1 if any is
    not survived."""
    from devkit.faults import run_faults

    # The app goes in as an argument, so devkit never imports this module back.
    results = run_faults(only, workdir, echo=typer.echo, app=app)
    if not all(result.survived for result in results):
        raise typer.Exit(1)


@app.command()
@_user_errors
def report(
    csv_file: Annotated[
        Path | None, typer.Option("--csv", help="also write the summary as CSV here")
    ] = None,
    experiments: Annotated[
        bool, typer.Option(help="include `dvc exp show` experiments, not just the workspace")
    ] = True,
) -> None:
    """Mean ± std over finished runs (e.g. a train.seed sweep), per query mode and metric."""
    from pipeline import report_runs

    runs, warning = report_runs.collect_runs(Path.cwd(), experiments)
    if warning:
        typer.echo(f"[report] {warning}", err=True)
    summaries = report_runs.summarise(runs)
    typer.echo(report_runs.markdown(summaries), nl=False)
    if csv_file is not None:
        csv_file.write_text(report_runs.csv_text(summaries), encoding="utf-8")
        typer.echo(f"[report] {len(runs)} run(s) -> {csv_file}")


@app.command("check-params")
@_user_errors
def checkload_params(params: ParamsOpt = Path("params.yaml")) -> None:
    """Validate params.yaml without running anything."""
    load_params(params)
    typer.echo(f"{params}: ok")


@app.command()
@_user_errors
def bench(
    name: Annotated[
        str | None,
        typer.Argument(help="loader, frozen, eval, dask, search, keywords or serve (a ~4 min "
                       "loopback load test, run only when named); omit to run all but serve"),
    ] = None,
    tiny: Annotated[bool, typer.Option(help="tiny sizes, to check that they run")] = False,
    int8: Annotated[str | None, typer.Option(
        help="auto | on | off: force the kernel path (DQU_INT8); default the measured probe")
    ] = None,
    index_dir: Annotated[Path | None, typer.Option(
        "--index", help="serve: the index to serve (default: a training-free demo one)")] = None,
) -> None:
    """Benchmarks against the official DQU-CIR data path; one `bench NAME:` line each."""
    if int8 is not None:
        if int8 not in ("auto", "on", "off"):
            raise typer.BadParameter("use auto, on or off", param_hint="--int8")
        os.environ["DQU_INT8"] = int8
    # bench/ sits in the source tree beside pipeline/, not in the installed packages.
    source_root = str(Path(__file__).resolve().parents[1])
    if source_root not in sys.path:
        sys.path.insert(0, source_root)
    if name == "serve":  # not in bench.BENCHMARKS: a load test of minutes, on any --index
        from bench.serve import run as run_serve
        run_serve("tiny" if tiny else "full", None, index_dir)
    else:
        from bench import run_benchmarks
        run_benchmarks([name] if name else None, "tiny" if tiny else "full")


@app.command()
@_user_errors
def index(
    params: ParamsOpt = Path("params.yaml"),
    model: Annotated[Path | None, typer.Option(
        "--model", help="trained dqu model folder; omit for a training-free index")] = None,
    out: OutOpt = ...,
    inputs_dir: Annotated[Path | None, typer.Option(
        "--inputs", help="stage mode: embed this inputs folder's index.split gallery")] = None,
    prepare_dir: Annotated[Path | None, typer.Option(
        "--prepare", help="stage mode: prepare folder (image paths)")] = None,
    images: Annotated[Path | None, typer.Option(
        "--images", help="folder mode: index every image under this folder")] = None,
    kind: Annotated[str | None, typer.Option(help="overrides index.kind (flat|ivf|hnsw)")] = None,
    clip: Annotated[str | None, typer.Option(
        help="training-free: open_clip model name (default clip.model)")] = None,
    pretrained: Annotated[str | None, typer.Option(
        help="training-free: open_clip tag or checkpoint file (default clip.pretrained)")] = None,
    fixed_lambda: Annotated[float | None, typer.Option(
        "--lambda", help="training-free: text weight, default 0.5 (1 textual, 0 visual only)")
    ] = None,
) -> None:
    """Embed a gallery into a search index (Parquet + FAISS): trained dqu model or training-free."""
    from pipeline.search import commands

    commands.index(load_params(params), model, out, inputs_dir, prepare_dir, images, kind,
                   commands.TrainingFree(clip, pretrained, fixed_lambda))


@app.command()
@_user_errors
def search(
    index_dir: Annotated[Path, typer.Option("--index", help="index folder (dqu index)")] = ...,
    reference: Annotated[Path | None, typer.Option(help="reference image file")] = None,
    text: Annotated[str | None, typer.Option(help="the modification, e.g. 'with long sleeves'")
                    ] = None,
    caption: Annotated[str | None, typer.Option(help="the reference's caption (else the "
                                                 "caption backend's)")] = None,
    k: Annotated[int, typer.Option("-k", help="results per query")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
    queries: Annotated[Path | None, typer.Option(
        help="batch: JSONL with id, reference, text[, caption]")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="batch: results JSONL")] = None,
    figure: Annotated[Path | None, typer.Option(help="also draw the case-study PNG")] = None,
    model: Annotated[Path | None, typer.Option(
        "--model", help="model folder (default: the one the index was built with)")] = None,
) -> None:
    """Top-k gallery images for (reference image, modification text) queries."""
    from pipeline.search import commands

    commands.search(index_dir, model, reference, text, caption, k, as_json, queries, out, figure)


@app.command()
@_user_errors
def serve(
    index_dir: Annotated[Path, typer.Option("--index", help="index folder (dqu index)")] = ...,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 8000,
    model: Annotated[Path | None, typer.Option(
        "--model", help="model folder (default: the one the index was built with)")] = None,
    max_batch: Annotated[int, typer.Option(help="queries per model pass (1: no batching)")] = 16,
    max_wait_ms: Annotated[float, typer.Option(help="how long a batch waits for more")] = 5.0,
) -> None:
    """A web page and a JSON endpoint (POST /search) over an index."""
    from pipeline.search import server

    server.serve(index_dir, model, host, port, max_batch, max_wait_ms)


def main() -> None:
    """Console entry point."""
    app(prog_name="dqu")


if __name__ == "__main__":
    sys.exit(main())
