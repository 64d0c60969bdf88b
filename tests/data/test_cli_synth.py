"""`gdkvm synth` through the real dispatcher: output, one-line summary, refusal to overwrite, bad options."""

from __future__ import annotations

from pathlib import Path

import pytest
import SimpleITK as sitk

from gdkvm.cli import main


def test_synth_camus_and_echonet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "camus"
    argv = ["synth", "camus", "--out", str(out), "--seed", "2", "--patients", "2", "--height", "48", "56"]
    assert main([*argv, "--frames", "4", "6"]) == 0
    text = capsys.readouterr().out
    assert "wrote 2 CAMUS 2023 patients" in text and str(out) in text and "true EF" in text
    image = sitk.ReadImage(str(out / "database_nifti/patient0002/patient0002_2CH_ED.nii.gz"))
    assert 48 <= image.GetSize()[1] <= 56
    assert main([*argv, "--frames", "4", "6"]) == 2  # not empty: refused
    assert "not empty" in capsys.readouterr().err
    assert main([*argv, "--frames", "4", "6", "--overwrite", "--release", "2019"]) == 0
    assert (out / "training" / "patient0001" / "patient0001_4CH_sequence.mhd").is_file()
    echo = tmp_path / "echonet"
    assert main(["synth", "echonet", "--out", str(echo), "--videos", "1", "--frames", "32", "40"]) == 0
    assert "wrote 1 EchoNet videos" in capsys.readouterr().out
    assert len(list((echo / "Videos").glob("*.avi"))) == 1


def test_synth_bad_options(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as err:
        main(["synth", "camus", "--out", str(tmp_path / "x"), "--frames", "1", "1"])
    assert err.value.code == 2
    with pytest.raises(SystemExit):
        main(["synth", "nope", "--out", str(tmp_path / "y")])
