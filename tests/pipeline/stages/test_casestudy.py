"""The case study's fixed query choice and its figure."""

from PIL import Image

from pipeline.core.case_figure import THUMB, draw_case
from pipeline.stages.casestudy import pick_rows


def test_pick_rows_takes_evenly_spaced_quantiles_of_lambda() -> None:
    lambdas = [0.9, 0.1, 0.5, 0.3, 0.7]
    ids = ["a", "b", "c", "d", "e"]
    assert pick_rows(ids, lambdas, 3) == [1, 2, 0]  # lowest, median, highest
    assert pick_rows(ids, lambdas, 1) == [2]
    assert pick_rows(ids, lambdas, 9) == [1, 3, 2, 4, 0]  # more figures than queries: each once
    assert pick_rows(["b", "a"], [0.5, 0.5], 2) == [1, 0]  # ties by pair id


def test_draw_case_frames_the_target_among_the_results() -> None:
    case = {"pair_id": "test-1", "lambda": 0.25, "target_rank": 1, "modification": "make it red",
            "text_query": "a blue circle, but make it red", "keywords": ["red"],
            "top": ["x", "t", "y"], "target_id": "t"}
    grey = Image.new("RGB", (20, 20), (128, 128, 128))
    figure = draw_case(case, grey, grey, [grey, grey, grey])
    assert figure.width > 5 * THUMB
    pixels = figure.load()
    frame = [(x, y) for x in range(figure.width) for y in range(figure.height)
             if pixels[x, y] == (20, 160, 40)]
    assert frame  # the target's frame is drawn
    xs = [x for x, _ in frame]
    assert min(xs) > 3 * THUMB  # around the second result, not the query images


def test_a_compared_mode_adds_a_row_with_its_own_target_frame() -> None:
    case = {"pair_id": "test-1", "lambda": 0.25, "target_rank": 1, "modification": "make it red",
            "text_query": "a blue circle, but make it red", "keywords": ["red"],
            "top": ["x", "y", "z"], "target_id": "t",
            "compared": {"mode": "combiner", "top": ["t", "x", "y"], "target_rank": 0}}
    grey = Image.new("RGB", (20, 20), (128, 128, 128))
    single = draw_case({k: v for k, v in case.items() if k != "compared"}, grey, grey,
                       [grey] * 3)
    figure = draw_case(case, grey, grey, [grey] * 3, [grey] * 3)
    assert figure.width == single.width and figure.height > single.height + THUMB
    pixels = figure.load()
    frame = [(x, y) for x in range(figure.width) for y in range(figure.height)
             if pixels[x, y] == (20, 160, 40)]
    # dqu's row has no target; the combiner's top 1 is framed, in the second row
    assert frame and min(y for _, y in frame) > single.height - 3 * 8
    assert min(x for x, _ in frame) > 2 * THUMB
