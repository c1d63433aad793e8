"""A persisted checkpoint resumes only on the same inputs (DVC keeps train outputs on reruns)."""

from pathlib import Path

from tests.factories import write_inputs
from trainer.config import ClipConfig, TrainConfig
from trainer.data.meta import inputs_digest
from trainer.train.loop import train

CLIP = ClipConfig(model="dqu-test")
CFG = TrainConfig(epochs=1, batch_size=8, lr=1e-3, clip_lr=1e-3, device="cpu")


def test_digest_changes_with_the_data(tmp_path: Path):
    write_inputs(tmp_path / "a", seed=0)
    write_inputs(tmp_path / "b", seed=0)
    write_inputs(tmp_path / "c", seed=1, n_train=25)
    assert inputs_digest(tmp_path / "a") == inputs_digest(tmp_path / "b")
    assert inputs_digest(tmp_path / "a") != inputs_digest(tmp_path / "c")


def test_checkpoint_of_other_inputs_is_not_resumed(tmp_path: Path, capsys):
    out = tmp_path / "train"
    write_inputs(tmp_path / "old", seed=0)
    train(CLIP, CFG, "dqu", 0, tmp_path / "old", out)
    write_inputs(tmp_path / "new", seed=1, n_train=25)
    capsys.readouterr()
    result = train(CLIP, CFG, "dqu", 0, tmp_path / "new", out)
    assert "made with other settings; starting from scratch" in capsys.readouterr().out
    assert result.epochs_run == 1
