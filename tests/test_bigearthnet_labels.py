"""The 43 → 19 BigEarthNet label mapping against the official nomenclature, label by label (needs no data)."""

from __future__ import annotations

import pytest
import torch

from decur.data.bigearthnet import LABELS_19, LABELS_43, labels_to_19
from decur.data.errors import DatasetError

# The official table (BigEarthNet's label_indices.json, "BigEarthNet-19" nomenclature of Sumbul et al. 2020),
# written out name by name: every one of the 43 CORINE labels and its 19-class label, None = no 19-class label.
OFFICIAL = {
    "Continuous urban fabric": "Urban fabric",
    "Discontinuous urban fabric": "Urban fabric",
    "Industrial or commercial units": "Industrial or commercial units",
    "Road and rail networks and associated land": None,
    "Port areas": None,
    "Airports": None,
    "Mineral extraction sites": None,
    "Dump sites": None,
    "Construction sites": None,
    "Green urban areas": None,
    "Sport and leisure facilities": None,
    "Non-irrigated arable land": "Arable land",
    "Permanently irrigated land": "Arable land",
    "Rice fields": "Arable land",
    "Vineyards": "Permanent crops",
    "Fruit trees and berry plantations": "Permanent crops",
    "Olive groves": "Permanent crops",
    "Pastures": "Pastures",
    "Annual crops associated with permanent crops": "Permanent crops",
    "Complex cultivation patterns": "Complex cultivation patterns",
    "Land principally occupied by agriculture, with significant areas of natural vegetation": (
        "Land principally occupied by agriculture, with significant areas of natural vegetation"
    ),
    "Agro-forestry areas": "Agro-forestry areas",
    "Broad-leaved forest": "Broad-leaved forest",
    "Coniferous forest": "Coniferous forest",
    "Mixed forest": "Mixed forest",
    "Natural grassland": "Natural grassland and sparsely vegetated areas",
    "Moors and heathland": "Moors, heathland and sclerophyllous vegetation",
    "Sclerophyllous vegetation": "Moors, heathland and sclerophyllous vegetation",
    "Transitional woodland/shrub": "Transitional woodland, shrub",
    "Beaches, dunes, sands": "Beaches, dunes, sands",
    "Bare rock": None,
    "Sparsely vegetated areas": "Natural grassland and sparsely vegetated areas",
    "Burnt areas": None,
    "Inland marshes": "Inland wetlands",
    "Peatbogs": "Inland wetlands",
    "Salt marshes": "Coastal wetlands",
    "Salines": "Coastal wetlands",
    "Intertidal flats": None,
    "Water courses": "Inland waters",
    "Water bodies": "Inland waters",
    "Coastal lagoons": "Marine waters",
    "Estuaries": "Marine waters",
    "Sea and ocean": "Marine waters",
}


def test_the_table_names_every_label_once():
    assert list(OFFICIAL) == list(LABELS_43)
    assert {v for v in OFFICIAL.values() if v} == set(LABELS_19)


@pytest.mark.parametrize("name", list(OFFICIAL))
def test_each_of_the_43_labels_maps_as_the_official_table(name, tmp_path):
    target = labels_to_19([name], tmp_path / "labels.json")
    expected = torch.zeros(19)
    if OFFICIAL[name] is not None:
        expected[list(LABELS_19).index(OFFICIAL[name])] = 1
    assert torch.equal(target, expected), f"{name!r} -> {torch.nonzero(target).flatten().tolist()}"


def test_unknown_label_names_the_file(tmp_path):
    with pytest.raises(DatasetError, match=r"x\.json.*unknown label 'Lava'"):
        labels_to_19(["Lava"], tmp_path / "x.json")
