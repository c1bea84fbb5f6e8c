import pickle

import pytest
import torch

from sparta.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


def test_round_trip_loads_with_weights_only(tmp_path):
    path = tmp_path / "ck.pt"
    save_checkpoint(path, {"model": {"w": torch.arange(3.0)}, "config_digest": "abc", "history": [{"a": 1.0}]})
    data = load_checkpoint(path, expect_digest="abc")
    assert torch.equal(data["model"]["w"], torch.arange(3.0)) and data["history"] == [{"a": 1.0}]
    assert not list(tmp_path.glob(".*tmp*"))  # the temporary file was renamed away


def test_other_config_is_refused(tmp_path):
    save_checkpoint(tmp_path / "ck.pt", {"config_digest": "abc"})
    with pytest.raises(CheckpointError, match="another model/config"):
        load_checkpoint(tmp_path / "ck.pt", expect_digest="xyz")


def test_truncated_checkpoint(tmp_path):
    path = tmp_path / "ck.pt"
    save_checkpoint(path, {"model": {"w": torch.zeros(1000)}})
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(CheckpointError, match="truncated, corrupt or not a SPARTA checkpoint"):
        load_checkpoint(path)


def test_foreign_torch_file(tmp_path):
    torch.save({"state_dict": {}}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a SPARTA checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")


class _Exploit:
    def __reduce__(self):
        return (print, ("pickled code ran",))


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_pickled_code_is_never_executed(tmp_path, capsys):
    with open(tmp_path / "evil.pt", "wb") as fh:
        pickle.dump(_Exploit(), fh)
    torch.save({"x": _Exploit()}, tmp_path / "evil2.pt")
    for name in ("evil.pt", "evil2.pt"):
        with pytest.raises(CheckpointError):
            load_checkpoint(tmp_path / name)
    assert "pickled code ran" not in capsys.readouterr().out


def test_missing_and_text_files(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(CheckpointError, match="not a SPARTA checkpoint"):
        load_checkpoint(tmp_path / "notes.txt")
