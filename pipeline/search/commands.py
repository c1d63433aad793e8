"""What `dqu index` and `dqu search` do (the CLI keeps only option parsing)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import typer

from pipeline.core.params import Params
from trainer.config import ClipConfig
from trainer.util.atomic import write_text


@dataclass(frozen=True)
class TrainingFree:
    """`dqu index` without --model: which pretrained CLIP, and the fixed text weight lambda."""

    clip: str | None = None
    pretrained: str | None = None
    fixed_lambda: float | None = None

    def given(self) -> bool:
        """Whether any training-free option was given."""
        return any(v is not None for v in (self.clip, self.pretrained, self.fixed_lambda))

    def apply(self, params: Params) -> tuple[Params, float]:
        """params with the CLIP to index with, and lambda; ValueError saying what is missing."""
        lam = 0.5 if self.fixed_lambda is None else self.fixed_lambda
        if not 0.0 <= lam <= 1.0:
            raise ValueError(f"--lambda {lam}: the text weight must be between 0 (visual query "
                             "only) and 1 (textual query only)")
        clip = ClipConfig(model=self.clip or params.clip.model,
                          pretrained=self.pretrained or params.clip.pretrained)
        if clip.pretrained is None:
            raise ValueError("a training-free index needs pretrained weights: give --pretrained "
                             "TAG_OR_FILE (an open_clip tag or a checkpoint file), or --model "
                             "DIR (a trained dqu model)")
        return dataclasses.replace(params, clip=clip), lam


def index(params: Params, model: Path | None, out: Path, inputs_dir: Path | None,
          prepare_dir: Path | None, images: Path | None, kind: str | None,
          free: TrainingFree = TrainingFree()) -> None:
    """Stage mode (--inputs, --prepare, --model) or folder mode (--images; --model or not)."""
    if kind is not None:
        params = dataclasses.replace(params, index=dataclasses.replace(params.index, kind=kind))
    if model is not None and free.given():
        raise ValueError("--clip/--pretrained/--lambda make a training-free index; with --model "
                         "the trained model's CLIP and lambda head are used: give one or the "
                         "other")
    if images is not None:
        if inputs_dir is not None:
            raise ValueError("give either --images (any folder) or --inputs/--prepare (stage)")
        from pipeline.search.build import index_folder
        from pipeline.stages.index import index_spec

        lam = 0.5
        if model is None:
            params, lam = free.apply(params)
        report = index_folder(params, model, images, out, index_spec(params),
                              params.index.batch_size, params.index.device, fixed_lambda=lam)
        what = f"training-free, lambda {lam}" if model is None else f"model {model}"
        typer.echo(f"[index] {report.n_out} images indexed ({report.n_skipped} skipped, "
                   f"{what}) -> {out}")
        return
    if inputs_dir is None or prepare_dir is None:
        raise ValueError("dqu index needs --images FOLDER, or --inputs and --prepare (stage)")
    if model is None:
        raise ValueError("the index stage (--inputs, --prepare) needs --model (a trained dqu "
                         "model folder); a training-free index is made from --images")
    from pipeline.stages import index as stage

    stage.run(params, inputs_dir, prepare_dir, model, out)


def read_queries(path: Path) -> list:
    """Query objects from a JSONL file (id, reference, text[, caption, keywords])."""
    from pipeline.search.searcher import Query

    queries = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            queries.append(Query(reference=row["reference"], text=row["text"],
                                 id=str(row.get("id", number)), caption=row.get("caption"),
                                 keywords=row.get("keywords")))
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise ValueError(f"{path}:{number}: a query line needs JSON with 'reference' (image "
                             f"path) and 'text' ({err!r})") from err
    return queries


def search(index_dir: Path, model: Path | None, reference: Path | None, text: str | None,
           caption: str | None, k: int, as_json: bool, queries: Path | None, out: Path | None,
           figure: Path | None) -> None:
    """One query (--reference, --text) to stdout, or a JSONL batch (--queries, --out)."""
    from pipeline.search.searcher import Query, Searcher

    if k < 1:
        raise ValueError(f"-k {k}: ask for at least one result")
    if queries is not None:
        if out is None:
            raise ValueError("--queries needs --out (the results JSONL)")
        batch = read_queries(queries)
    elif reference is None or text is None:
        raise ValueError("give --reference IMAGE and --text '...', or --queries Q.jsonl --out R")
    else:
        batch = [Query(reference, text, id="query", caption=caption)]
    searcher = Searcher(index_dir, model)
    searcher.unifier.warm()
    results = searcher.search_many(batch, k, with_unified=figure is not None)
    if figure is not None:
        from pipeline.search.figure import case_study

        case_study(batch[0].reference, results[0], results[0].pop("unified")).save(figure)
        for row in results[1:]:
            row.pop("unified")
    if queries is not None:
        write_text(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in results))
        typer.echo(f"[search] {len(results)} queries -> {out}")
    elif as_json:
        typer.echo(json.dumps(results[0], ensure_ascii=False, indent=2))
    else:
        typer.echo(format_result(results[0]))


def format_result(result: dict) -> str:
    """A short human-readable view of one result."""
    fixed = " (fixed: training-free index)" if result.get("lambda_fixed") else ""
    lines = [f"text query : {result['text_query']}",
             f"keywords   : {', '.join(result['keywords']) or '(none)'}",
             f"lambda     : {result['lambda']:.3f}{fixed}"]
    for rank, hit in enumerate(result["results"], 1):
        lines.append(f"{rank:3d}. {hit['score']:.4f}  {hit['image_id']}  {hit['path']}")
    return "\n".join(lines)
