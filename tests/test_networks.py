"""Networks by name: checkpoints and bundles name their class, only registered classes are built,
and a new architecture needs its own module and YAML only (trained, exported and used for
prediction through the real commands)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from bundles import untrained_bundle
from test_bad_inputs import run_entry
from tiny_network import TinyNet

from rimnet.inference import Bundle
from rimnet.io import safe_load
from rimnet.models import RimNet, build_network, network_name
from rimnet.models.registry import NetworkError, offers_packing

CONF_TINY = Path(__file__).resolve().parent / "conf_tiny"


def test_only_registered_networks_are_built():
    assert isinstance(build_network("rimnet.models.RimNet", {"widths": [2, 2, 2]}), RimNet)
    assert isinstance(build_network(network_name(TinyNet), {"width": 3}), TinyNet)
    for name in ("os.system", "torch.nn.Linear", "rimnet.models.nothing"):
        with pytest.raises(NetworkError, match="is not one rimnet builds"):
            build_network(name, {})
    assert offers_packing("rimnet.models.RimNet") and not offers_packing(network_name(TinyNet))


NEW_NETWORKS = {  # model= -> (its class, the network's keyword arguments to check, or None)
    "tiny": ("tiny_network.TinyNet", {"n_modalities": 2, "width": 4}),
    "densenet3d": ("rimnet.models.monai_nets.DenseNet3D", None),
    "resnet3d": ("rimnet.models.monai_nets.ResNet3D", None),
}


@pytest.mark.parametrize("model", sorted(NEW_NETWORKS))
def test_a_new_network_trains_exports_and_predicts(model, smoke_csv, tmp_path, monkeypatch, capsys):
    """A network of a test folder (tiny) and MONAI's baselines: trained, exported and used for
    prediction through the real commands, like RimNet."""
    network, kwargs = NEW_NETWORKS[model]
    cls = TinyNet if model == "tiny" else build_network(network, {}).__class__
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RIMNET_ROOT", str(tmp_path / "root"))
    run = tmp_path / "run"
    code = run_entry(
        "train",
        [
            f"hydra.searchpath=[file://{CONF_TINY}]",
            f"model={model}",
            "experiment=phase_flair",
            "data=cohort",
            f"data.cohort={smoke_csv}",
            f"data.cache_dir={tmp_path / 'cache'}",
            f"data.splits_file={tmp_path / 'splits.json'}",
            "data.preprocess.elastic_copies=0",
            "logger=csv",
            "trainer.max_epochs=1",
            "+trainer.limit_train_batches=2",
            f"hydra.run.dir={run}",
        ],
    )
    assert code == 0, capsys.readouterr().err[-3000:]
    ckpt = safe_load(next((run / "checkpoints").glob("best-*.ckpt")), "checkpoint")
    assert ckpt["rimnet"]["network"] == network
    assert ckpt["rimnet"]["model"]["n_modalities"] == 2
    assert kwargs is None or ckpt["rimnet"]["model"] == kwargs

    assert run_entry("export", [str(run), str(tmp_path / "tiny.pt")]) == 0
    bundle = Bundle.load(tmp_path / "tiny.pt")
    assert bundle.network == network
    assert isinstance(bundle.networks()[0], cls)

    patient = pd.read_csv(smoke_csv).iloc[0]
    folder = smoke_csv.parent
    argv = ["--bundle", str(tmp_path / "tiny.pt"), "--out", str(tmp_path / "pred")]
    for flag, column in (
        ("--phase", "phase"),
        ("--flair", "flair"),
        ("--lesion-mask", "lesion_mask"),
    ):
        argv += [flag, str(folder / patient[column])]
    assert run_entry("predict", [*argv, "--id", "p1", "--device", "cpu"]) == 0
    lesions = pd.read_csv(tmp_path / "pred" / "p1" / "lesions.csv")
    assessed = lesions[lesions["decision"] != "excluded"]
    assert len(assessed) and assessed["prob"].between(0, 1).all()


def test_a_bundle_naming_an_unregistered_class_is_refused(tmp_path):
    torch.manual_seed(0)
    net = RimNet(n_modalities=1, widths=[2, 2, 2], fc=[4])
    bundle = untrained_bundle([net], ["phase"])
    bundle.save(tmp_path / "b.pt")
    obj = torch.load(tmp_path / "b.pt", weights_only=True)
    torch.save({**obj, "network": "os.system"}, tmp_path / "evil.pt")
    with pytest.raises(Exception, match="os.system.*is not one rimnet builds"):
        Bundle.load(tmp_path / "evil.pt")
