"""Great Expectations suites of the image benchmarks, on the metadata tables their download stage
writes (one row per image); registered into validation.SUITES.

Columns named `label_error`, `unlisted_image` or `patient_in_both_splits` hold the offending
image's name (else null), so a failure names the images, not only the values. The row counts are
those of the official releases; a smaller copy (a subset, the test fixtures) states its own with
`source.expected_images`. UTKFace has no official count (0: at least one image).
"""
from __future__ import annotations

from .validation import DatasetSuite, _presence_and_type


def _row_count(gxe, expected_rows: int):
    return (gxe.ExpectTableRowCountToEqual(value=expected_rows) if expected_rows > 0
            else gxe.ExpectTableRowCountToBeBetween(min_value=1))


def _exactly(gxe, column: str, value) -> object:
    return gxe.ExpectColumnValuesToBeBetween(column=column, min_value=value, max_value=value)


def _cifar_suite(gxe, expected_rows: int) -> list:
    from .data.cifar_mtl import COARSE_NAMES, FINE_NAMES, FINE_TO_COARSE

    columns = {"split": "str", "index": "int", "filename": "str", "fine_label": "int", "coarse_label": "int",
               "fine_name": "str", "coarse_name": "str", "height": "int", "width": "int", "channels": "int"}
    name_pairs = [(FINE_NAMES[f], COARSE_NAMES[c]) for f, c in FINE_TO_COARSE.items()]
    exps = [_row_count(gxe, expected_rows)]
    exps += _presence_and_type(gxe, columns)
    exps += [gxe.ExpectColumnValuesToNotBeNull(column=c) for c in columns]
    exps += [
        gxe.ExpectColumnValuesToBeInSet(column="split", value_set=["train", "test"]),
        gxe.ExpectColumnDistinctValuesToEqualSet(column="split", value_set=["train", "test"]),
        gxe.ExpectCompoundColumnsToBeUnique(column_list=["split", "index"]),
        _exactly(gxe, "height", 32), _exactly(gxe, "width", 32), _exactly(gxe, "channels", 3),
        gxe.ExpectColumnValuesToBeBetween(column="fine_label", min_value=0, max_value=99),
        gxe.ExpectColumnValuesToBeBetween(column="coarse_label", min_value=0, max_value=19),
        gxe.ExpectColumnDistinctValuesToEqualSet(column="coarse_label", value_set=list(range(20))),
        gxe.ExpectColumnValuesToBeInSet(column="fine_name", value_set=FINE_NAMES),
        # every fine class inside its own super-class, by id and by name
        gxe.ExpectColumnPairValuesToBeInSet(column_A="fine_label", column_B="coarse_label",
                                            value_pairs_set=sorted(FINE_TO_COARSE.items())),
        gxe.ExpectColumnPairValuesToBeInSet(column_A="fine_name", column_B="coarse_name", value_pairs_set=name_pairs),
        gxe.ExpectColumnValuesToMatchRegex(column="filename", regex=r"\.png$"),
        gxe.ExpectColumnValuesToBeNull(column="label_error"),
    ]
    return exps


def _utkface_suite(gxe, expected_rows: int) -> list:
    from .data.utkface import AGE_RANGE, GENDERS, RACES

    columns = {"file_name": "str", "width": "int", "height": "int", "mode": "str"}
    exps = [_row_count(gxe, expected_rows)]
    exps += _presence_and_type(gxe, columns)
    exps += [gxe.ExpectColumnToExist(column=c) for c in ("age", "gender", "race", "dropped", "irregular_name",
                                                          "label_error")]
    exps += [
        gxe.ExpectColumnValuesToBeUnique(column="file_name"),
        gxe.ExpectColumnValuesToMatchRegex(column="file_name", regex=r"jpg$"),
        # labels of the names that have them (nulls: names the protocol drops)
        gxe.ExpectColumnValuesToBeBetween(column="age", min_value=AGE_RANGE[0], max_value=AGE_RANGE[1]),
        gxe.ExpectColumnValuesToBeInSet(column="gender", value_set=list(GENDERS)),
        gxe.ExpectColumnValuesToBeInSet(column="race", value_set=list(RACES)),
        gxe.ExpectColumnValuesToBeNull(column="label_error"),
        # irregular and dropped names are reported by name; a folder of mostly bad names is not UTKFace
        gxe.ExpectColumnValuesToBeNull(column="irregular_name", mostly=0.9),
        gxe.ExpectColumnValuesToBeInSet(column="dropped", value_set=[False], mostly=0.9),
        _exactly(gxe, "width", 200), _exactly(gxe, "height", 200),
        gxe.ExpectColumnValuesToBeInSet(column="mode", value_set=["RGB", "L"]),
    ]
    return exps


def _chestxray_suite(gxe, expected_rows: int) -> list:
    from .data.chestxray14 import FINDINGS, NO_FINDING

    finding = "(?:" + "|".join(FINDINGS) + ")"
    columns = {"image_index": "str", "finding_labels": "str", "patient_id": "int", "split": "str",
               "width": "int", "height": "int", "mode": "str"}
    exps = [_row_count(gxe, expected_rows)]
    exps += _presence_and_type(gxe, columns)
    exps += [gxe.ExpectColumnValuesToNotBeNull(column=c) for c in columns]
    exps += [
        gxe.ExpectColumnValuesToBeUnique(column="image_index"),
        gxe.ExpectColumnValuesToMatchRegex(column="image_index", regex=r"^\d{8}_\d{3}\.png$"),
        gxe.ExpectColumnValuesToMatchRegex(column="finding_labels",
                                           regex=rf"^(?:{NO_FINDING}|{finding}(?:\|{finding})*)$"),
        gxe.ExpectColumnValuesToBeNull(column="label_error"),
        # the official lists cover every image, once, and no patient is in both
        gxe.ExpectColumnValuesToBeInSet(column="split", value_set=["train_val", "test"]),
        gxe.ExpectColumnValuesToBeNull(column="unlisted_image"),
        gxe.ExpectColumnValuesToBeNull(column="patient_in_both_splits"),
        gxe.ExpectColumnValuesToBeBetween(column="patient_id", min_value=1),
        _exactly(gxe, "width", 1024), _exactly(gxe, "height", 1024),
        gxe.ExpectColumnValuesToBeInSet(column="mode", value_set=["L", "LA", "RGB", "RGBA", "P", "I;16", "I"]),
    ]
    return exps


IMAGE_SUITES = {
    "cifar-mtl": DatasetSuite(raw_file="cifar100.parquet", expected_rows=60_000, build=_cifar_suite),
    "utkface": DatasetSuite(raw_file="utkface.parquet", expected_rows=0, build=_utkface_suite),
    "chestx-ray14": DatasetSuite(raw_file="chestxray14.parquet", expected_rows=112_120, build=_chestxray_suite),
}
