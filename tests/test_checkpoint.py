"""Tests of gdkvm.checkpoint: rebuilding the network from a checkpoint alone, named models, bad files."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch import Trainer
from torch import nn

import gdkvm.checkpoint as ckpt_mod
from gdkvm.checkpoint import build_from_spec, load_model, model_spec, save_weights
from gdkvm.errors import GdkvmError, InputError
from gdkvm.lit import GDKVMSystem
from gdkvm.model import GDKVM, build_model
from tests.helpers_train import DiscDataModule


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(system, checkpoint path) after one training step of the small model with value feedback off."""
    root = tmp_path_factory.mktemp("ckpt")
    system = GDKVMSystem(build_model("small", value_feedback=False), lr=1e-3)
    trainer = Trainer(
        accelerator="cpu",
        default_root_dir=root,
        max_steps=1,
        limit_val_batches=0,
        enable_progress_bar=False,
        enable_model_summary=False,
        logger=False,
    )
    trainer.fit(system, DiscDataModule(train=2, size=32, frames=2, batch_size=2))
    path = root / "one.ckpt"
    trainer.save_checkpoint(path)
    return system, path


def test_load_model_rebuilds_identical_network(trained):
    system, path = trained
    net = load_model(path)
    assert isinstance(net, GDKVM) and not net.training and net.value_feedback is False
    frames = torch.rand(1, 3, 1, 32, 32)
    system.net.eval()
    with torch.no_grad():
        torch.testing.assert_close(net(frames), system.net(frames), rtol=0, atol=0)
    assert model_spec(net) == model_spec(system.net)  # tuples come back as lists, values equal


def test_lightning_load_from_checkpoint_of_a_python_built_system(trained):
    system, path = trained
    again = GDKVMSystem.load_from_checkpoint(path, map_location="cpu")
    assert isinstance(again.net, GDKVM) and again.hparams["lr"] == 1e-3
    torch.testing.assert_close(again.net.state_dict(), system.net.state_dict())


def test_weights_file_and_default_name(trained, tmp_path, monkeypatch):
    system, _ = trained
    monkeypatch.setattr(ckpt_mod, "WEIGHTS_DIR", tmp_path / "weights")
    with pytest.raises(GdkvmError, match="no bundled model named 'default'"):
        load_model("default")
    out = save_weights(system.net, tmp_path / "weights" / "default.pt", half=True, info={"data": "discs"})
    with pytest.raises(InputError, match="refusing to overwrite"):
        save_weights(system.net, out)
    net = load_model("default")
    assert all(p.dtype == torch.float32 for p in net.parameters())
    frames = torch.rand(1, 2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(net(frames), system.net.eval()(frames), atol=2e-2, rtol=0)  # fp16 storage


def test_bad_files_raise_input_errors(tmp_path, trained):
    with pytest.raises(InputError, match="no such checkpoint") as err:
        load_model(tmp_path / "missing.ckpt")
    assert "missing.ckpt" in str(err.value)
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="not a readable PyTorch checkpoint"):
        load_model(junk)
    plain = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(2)}, plain)
    with pytest.raises(InputError, match="no state_dict"):
        load_model(plain)
    # weights that do not fit the described network
    _, path = trained
    payload = torch.load(path, weights_only=True)
    payload["hyper_parameters"]["net"]["init_args"]["pix_dim"] = 32
    torch.save(payload, tmp_path / "mismatch.ckpt")
    with pytest.raises(InputError, match="do not fit"):
        load_model(tmp_path / "mismatch.ckpt")


# spec, expected error message
SPEC_CASES = [
    (None, "no model description"),
    ({"class_path": "os.system", "init_args": {}}, "only gdkvm classes"),
    ({"class_path": "gdkvm.model.NoSuchNet"}, "not available"),
    ({"class_path": "gdkvm.lit.lr_factor"}, "not a network class"),
    ({"class_path": "gdkvm.model.GDKVM", "init_args": {"no_such_arg": 1}}, "do not fit"),
]


@pytest.mark.parametrize("spec, message", SPEC_CASES, ids=["none", "foreign", "missing", "function", "bad-args"])
def test_build_from_spec_refuses(spec, message):
    with pytest.raises(InputError, match=message):
        build_from_spec(spec, "x.ckpt")


class _Recoverable(nn.Module):
    def __init__(self, width: int = 3, names: tuple[str, ...] = ("a",)) -> None:
        super().__init__()
        self.width, self.names = width, names


class _Opaque(nn.Module):
    def __init__(self, width: int = 3) -> None:
        super().__init__()


def test_model_spec_by_attribute_lookup():
    spec = model_spec(_Recoverable(width=5, names=("x", "y")))
    assert spec["init_args"] == {"width": 5, "names": ["x", "y"]}
    assert spec["class_path"].endswith("test_checkpoint._Recoverable")
    assert model_spec(_Opaque()) is None
    assert model_spec(build_model("small"))["init_args"]["decoder_dims"] == [32, 16]
