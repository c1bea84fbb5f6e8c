import copyreg
import os
import pickle
import random

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


class _Blocked:  # a function of a module torch's safe loader blocks outright (posix): another refusal message
    def __reduce__(self):
        return (os.getpid, ())


class _Custom:
    def __init__(self):
        self.value = 1


def _raw_pickle(obj, protocol):
    return lambda path: path.write_bytes(pickle.dumps(obj, protocol=protocol))


def _through_extension_registry(path):
    """A pickle that imports ``_Custom`` through copyreg's extension registry (opcode EXT1), naming no global."""
    copyreg.add_extension(__name__, "_Custom", 240)
    try:
        path.write_bytes(pickle.dumps(_Custom(), protocol=2))
    finally:
        copyreg.remove_extension(__name__, "_Custom", 240)


UNSAFE = {  # file writer -> the pickled object the message names
    "torch.save, __reduce__ to print": (lambda path: torch.save({"x": _Exploit()}, path), "builtins.print"),
    "torch.save, blocked module": (lambda path: torch.save({"x": _Blocked()}, path), f"{os.getpid.__module__}.getpid"),
    "torch.save, custom class": (lambda path: torch.save({"x": _Custom()}, path), f"{__name__}._Custom"),
    "torch.save, legacy format": (
        lambda path: torch.save({"x": _Exploit()}, path, _use_new_zipfile_serialization=False), "builtins.print"),
    "pickle protocol 0": (_raw_pickle(_Exploit(), 0), "builtins.print"),
    "pickle protocol 5": (_raw_pickle({"model": {"w": 1.0}, "x": _Exploit()}, 5), "builtins.print"),
    "pickle protocol 5, custom class": (_raw_pickle([_Custom()], 5), f"{__name__}._Custom"),
    "copyreg extension": (_through_extension_registry, "copyreg extension 240"),
}


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("kind", UNSAFE)
def test_pickled_code_is_refused_in_one_plain_message_and_never_executed(tmp_path, capsys, kind):
    write, named = UNSAFE[kind]
    write(tmp_path / "evil.pt")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(tmp_path / "evil.pt")
    assert str(err.value) == (f"'{tmp_path / 'evil.pt'}' was not loaded: it contains pickled Python objects ({named}) "
                              "that could run code when loaded, and SPARTA never writes such files; use a checkpoint "
                              "written by `sparta train`, or train again")
    assert "pickled code ran" not in capsys.readouterr().out


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_foreign_pickle_of_plain_values_is_not_called_unsafe(tmp_path):
    (tmp_path / "plain.pkl").write_bytes(pickle.dumps({"w": [1.0, 2.0]}, protocol=5))  # torch's loader refuses it
    with pytest.raises(CheckpointError, match="is truncated, corrupt or not a SPARTA checkpoint"):
        load_checkpoint(tmp_path / "plain.pkl")
    save_checkpoint(tmp_path / "ck.pt", {"model": {"w": torch.zeros(1000)}})
    (tmp_path / "ck.pt").write_bytes((tmp_path / "ck.pt").read_bytes()[:-100])  # cut inside the zip's index
    with pytest.raises(CheckpointError, match="is truncated, corrupt or not a SPARTA checkpoint"):
        load_checkpoint(tmp_path / "ck.pt")


def test_missing_and_text_files(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(CheckpointError, match="not a SPARTA checkpoint"):
        load_checkpoint(tmp_path / "notes.txt")


def test_random_bytes_are_corrupt_not_pickled_code(tmp_path):
    """Random bytes often begin like a pickle and hold an EXT or GLOBAL opcode before they stop parsing
    (8 of these 400 files did, read opcode by opcode); none is a complete pickle, so none imports anything."""
    rng = random.Random(0)
    for i in range(400):
        (tmp_path / "noise.pt").write_bytes(rng.randbytes(4096))
        with pytest.raises(CheckpointError, match="is truncated, corrupt or not a SPARTA checkpoint"):
            load_checkpoint(tmp_path / "noise.pt")
