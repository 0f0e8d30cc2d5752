"""Ordinary objects of every supported library, built by the real libraries (issue 12).

Two uses: the benign corpus (each object saved the way its users save it: ``pickle``,
``joblib``, ``torch.save``, TorchScript, ``.keras``) and the mechanical derivation of the
allow-list (``python -m tests.corpus.derive_allowlist``), which pickles every object here
and records the names its pickles import. A library that is not installed contributes
nothing, so the corpus builds in a minimal venv.

>>> objs = library_objects(["builtins"])
>>> sorted(objs["builtins"])[:3]
['argparse-namespace', 'containers', 'future-annotations']
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import pathlib
import pickle
import types
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from tests.corpus._build import BENIGN, Sample

__all__ = [
    "LIBRARIES",
    "MainNet",
    "build_library_samples",
    "library_objects",
    "library_versions",
    "main_class_sample",
]

Objects = dict[str, Any]


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    # Convergence, deprecation and future warnings from fitting toy models are expected;
    # pytest turns warnings into errors, so they are silenced only while building.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
            yield


def _data() -> tuple[Any, Any, Any]:
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 4))
    y = (x[:, 0] + 0.5 * x[:, 1] + rng.normal(size=80) > 0).astype(int)
    return x, y, x[:, 0] * 2.0 + rng.normal(size=80) * 0.1


# --------------------------------------------------------------------------- builtins & stdlib
def _builtins() -> Objects:
    import __future__

    import collections
    import datetime as dt
    import decimal
    import fractions
    import uuid

    return {
        "argparse-namespace": argparse.Namespace(lr=0.1, epochs=3, name="run"),
        "simple-namespace": types.SimpleNamespace(a=1, b=[1, 2]),
        "path": pathlib.Path("runs/exp1/weights.pt"),
        "pure-path": pathlib.PurePosixPath("a/b"),
        "len": len,
        "future-annotations": __future__.annotations,
        "containers": [
            collections.OrderedDict(a=1),
            collections.Counter("abc"),
            collections.deque([1, 2]),
            collections.defaultdict(list),
            {1, 2},
            frozenset({3}),
            bytearray(b"x"),
            slice(1, 5, 2),
            range(3),
            complex(1, 2),
        ],
        "values": [
            dt.datetime(2024, 1, 2, tzinfo=dt.UTC),
            dt.date(2024, 1, 2),
            dt.timedelta(1),
            decimal.Decimal("1.5"),
            fractions.Fraction(1, 3),
            uuid.UUID(int=1),
        ],
    }


# --------------------------------------------------------------------------- numpy
def _numpy() -> Objects:
    import numpy as np

    objs: Objects = {
        "masked-array": np.ma.masked_array([1.0, 2.0, 3.0], mask=[0, 1, 0]),
        "masked-constant": np.ma.masked,
        "record-array": np.rec.array([(1, 2.0)], dtype=[("a", "i4"), ("b", "f8")]),
        "record": np.rec.array([(1, 2.0)], dtype=[("a", "i4"), ("b", "f8")])[0],
        "matrix": np.matrix([[1, 2], [3, 4]]),
        "structured": np.zeros(2, dtype=[("x", "<f4"), ("y", "<i8", (2,))]),
        "datetime": np.array(["2024-01-01"], dtype="datetime64[D]"),
        "object-array": np.array([1, "a", None], dtype=object),
        # (other packages, ml_dtypes, register types here too: only NumPy's own)
        "scalars": [
            _scalar(t)
            for t in sorted(set(np.sctypeDict.values()), key=str)
            if t.__module__ == "numpy"
        ],
        "named-scalars": [  # np.bool is np.bool_ in NumPy 2
            np.bool_(True),
            np.object_(),
            np.longlong(3),
            np.clongdouble(1 + 2j),
        ],
        "dtypes": [
            np.dtype(t) for t in ("i1", "u8", "f2", "c16", "M8[ns]", "m8[s]", "U3", "S2", "?")
        ],
        "ufuncs": sorted(
            (v for v in vars(np).values() if isinstance(v, np.ufunc)), key=lambda u: u.__name__
        ),
        "random-state": np.random.RandomState(0),
        "generators": [
            np.random.Generator(bg(0))
            for bg in (np.random.PCG64, np.random.MT19937, np.random.Philox, np.random.SFC64)
        ],
        "seed-sequence": np.random.SeedSequence(0),
        "finfo": [np.finfo(np.float32), np.iinfo(np.int16)],
    }
    if hasattr(np, "dtypes") and hasattr(np.dtypes, "StringDType"):
        objs["string-dtype"] = np.array(["a", "bc"], dtype=np.dtypes.StringDType())
    return objs


def _scalar(t: Any) -> Any:
    import numpy as np

    if issubclass(t, (np.datetime64, np.timedelta64)):
        return t(1, "s")
    if issubclass(t, np.void):
        return np.zeros(1, dtype=[("a", "i4")])[0]
    return t(0)


def _ml_dtypes() -> Objects:
    import ml_dtypes
    import numpy as np

    types_ = [
        getattr(ml_dtypes, name)
        for name in sorted(vars(ml_dtypes))
        if isinstance(getattr(ml_dtypes, name), type)
        and issubclass(getattr(ml_dtypes, name), np.generic)
    ]
    return {
        "arrays": [np.zeros(3, dtype=t) for t in types_],
        "scalars": [t(0) for t in types_],
        "finfo": [ml_dtypes.finfo(ml_dtypes.bfloat16)],
    }


# --------------------------------------------------------------------------- scikit-learn
def _sklearn(*, exhaustive: bool = False) -> Objects:
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import (
        HistGradientBoostingClassifier,
        HistGradientBoostingRegressor,
        StackingClassifier,
    )
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.metrics import f1_score, get_scorer, get_scorer_names, make_scorer
    from sklearn.model_selection import GridSearchCV, RandomizedSearchCV
    from sklearn.neighbors import BallTree, KDTree, KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler
    from sklearn.utils import all_estimators

    x, y, t = _data()
    objs: Objects = {}
    with _quiet():
        objs["hist-gradient-boosting"] = HistGradientBoostingClassifier(max_iter=3).fit(x, y)
        objs["hist-gradient-boosting-regressor"] = HistGradientBoostingRegressor(
            max_iter=3, loss="absolute_error"
        ).fit(x, t)
        objs["kd-tree"] = KDTree(x, metric="minkowski")
        objs["ball-tree"] = BallTree(x, metric="haversine") if False else BallTree(x)
        objs["knn"] = KNeighborsClassifier(algorithm="kd_tree").fit(x, y)
        objs["calibrated"] = CalibratedClassifierCV(LogisticRegression(), cv=2).fit(x, y)
        objs["calibrated-isotonic"] = CalibratedClassifierCV(
            LogisticRegression(), cv=2, method="isotonic"
        ).fit(x, y)
        objs["grid-search-scorer"] = GridSearchCV(
            LogisticRegression(), {"C": [0.5, 1.0]}, cv=2, scoring=make_scorer(f1_score)
        ).fit(x, y)
        objs["grid-search-multi"] = GridSearchCV(
            Ridge(),
            {"alpha": [0.5, 1.0]},
            cv=2,
            scoring=["r2", "neg_mean_absolute_error"],
            refit="r2",
        ).fit(x, t)
        objs["random-search"] = RandomizedSearchCV(
            LogisticRegression(), {"C": [0.1, 1.0, 10.0]}, n_iter=2, cv=2, random_state=0
        ).fit(x, y)
        objs["pipeline-column-transformer"] = make_pipeline(
            ColumnTransformer(
                [("num", StandardScaler(), [0, 1]), ("cat", OneHotEncoder(), [2])],
                remainder="passthrough",
            ),
            FunctionTransformer(),
            LogisticRegression(),
        ).fit(x.round(), y)
        objs["stacking"] = StackingClassifier(
            [("lr", LogisticRegression()), ("knn", KNeighborsClassifier())], cv=2
        ).fit(x, y)
        objs["scorers"] = [get_scorer(name) for name in get_scorer_names()]
        for name, cls in all_estimators():
            if exhaustive or name in _SKLEARN_SAMPLE:
                objs[f"estimator-{name}"] = _try_fit(cls, x, y, t)
    return {k: v for k, v in objs.items() if v is not None}


# A spread of estimator families for the quick corpus; the derivation fits every one.
_SKLEARN_SAMPLE = frozenset(
    [
        "AdaBoostClassifier",
        "BaggingRegressor",
        "BayesianGaussianMixture",
        "Birch",
        "DecisionTreeClassifier",
        "ExtraTreesRegressor",
        "GaussianNB",
        "GaussianProcessClassifier",
        "GradientBoostingRegressor",
        "IsolationForest",
        "KMeans",
        "KernelDensity",
        "LinearSVC",
        "LocalOutlierFactor",
        "MLPRegressor",
        "MiniBatchKMeans",
        "NMF",
        "OneClassSVM",
        "PCA",
        "PoissonRegressor",
        "QuantileTransformer",
        "RandomForestClassifier",
        "SplineTransformer",
        "TfidfTransformer",
        "TruncatedSVD",
    ]
)


def _try_fit(cls: Any, x: Any, y: Any, t: Any) -> Any:
    """An estimator fitted with its defaults on a toy set, or None when it needs more."""
    try:
        est = cls()
    except Exception:
        return None
    for target in (y, t, None):
        try:
            est.fit(x, target) if target is not None else est.fit(x)
            pickle.dumps(est)
            return est
        except Exception:
            continue
    return None


# --------------------------------------------------------------------------- boosters
def _xgboost() -> Objects:
    import xgboost as xgb

    x, y, t = _data()
    objs: Objects = {}
    with _quiet():
        for cls, target in (
            (xgb.XGBClassifier, y),
            (xgb.XGBRegressor, t),
            (xgb.XGBRFClassifier, y),
            (xgb.XGBRFRegressor, t),
        ):
            objs[cls.__name__] = cls(n_estimators=2, max_depth=2).fit(x, target)
        ranker = xgb.XGBRanker(n_estimators=2)
        objs["XGBRanker"] = ranker.fit(x, t.round().clip(0, 3), qid=[0] * 40 + [1] * 40)
        objs["Booster"] = xgb.train({"max_depth": 2}, xgb.DMatrix(x, label=y), 2)
    return objs


def _lightgbm() -> Objects:
    import lightgbm as lgb

    x, y, t = _data()
    objs: Objects = {}
    with _quiet():
        for cls, target in ((lgb.LGBMClassifier, y), (lgb.LGBMRegressor, t)):
            objs[cls.__name__] = cls(n_estimators=2, verbose=-1).fit(x, target)
        objs["LGBMRanker"] = lgb.LGBMRanker(n_estimators=2, verbose=-1).fit(
            x, t.round().clip(0, 3).astype(int), group=[40, 40]
        )
        objs["Booster"] = lgb.train(
            {"verbose": -1, "num_leaves": 4}, lgb.Dataset(x, label=y), num_boost_round=2
        )
    return objs


def _catboost() -> Objects:
    import catboost as cb

    x, y, t = _data()
    objs: Objects = {}
    common = {"iterations": 2, "verbose": False, "allow_writing_files": False}
    with _quiet():
        objs["CatBoostClassifier"] = cb.CatBoostClassifier(**common).fit(x, y)
        objs["CatBoostRegressor"] = cb.CatBoostRegressor(**common).fit(x, t)
        objs["CatBoost"] = cb.CatBoost({**common, "loss_function": "RMSE"}).fit(x, t)
    return objs


# --------------------------------------------------------------------------- statsmodels
def _statsmodels() -> Objects:
    import numpy as np
    import statsmodels.api as sm
    from statsmodels.tsa.api import (
        VAR,
        AutoReg,
        ExponentialSmoothing,
        Holt,
        SimpleExpSmoothing,
        UnobservedComponents,
    )
    from statsmodels.tsa.arima.model import ARIMA
    from statsmodels.tsa.statespace.sarimax import SARIMAX

    x, y, t = _data()
    xc = sm.add_constant(x)
    rng = np.random.default_rng(1)
    series = np.cumsum(rng.normal(size=60)) + 20.0
    objs: Objects = {}
    with _quiet():
        objs["ols"] = sm.OLS(t, xc).fit()
        objs["wls"] = sm.WLS(t, xc).fit()
        objs["glm"] = sm.GLM(y, xc, family=sm.families.Binomial()).fit()
        objs["logit"] = sm.Logit(y, xc).fit(disp=0)
        objs["poisson"] = sm.Poisson(np.abs(t).round(), xc).fit(disp=0)
        objs["rlm"] = sm.RLM(t, xc).fit()
        objs["quantreg"] = sm.QuantReg(t, xc).fit()
        objs["arima"] = ARIMA(series, order=(1, 0, 1)).fit()
        objs["sarimax"] = SARIMAX(series, order=(1, 0, 0), seasonal_order=(0, 0, 0, 0)).fit(
            disp=False
        )
        objs["autoreg"] = AutoReg(series, lags=2).fit()
        objs["exp-smoothing"] = ExponentialSmoothing(series, trend="add").fit()
        objs["holt"] = Holt(series, initialization_method="estimated").fit()
        objs["simple-exp-smoothing"] = SimpleExpSmoothing(
            series, initialization_method="estimated"
        ).fit()
        objs["unobserved-components"] = UnobservedComponents(series, "llevel").fit(disp=False)
        objs["var"] = VAR(np.column_stack([series, series[::-1]])).fit(1)
    return objs


# --------------------------------------------------------------------------- pandas
def _pandas() -> Objects:
    import numpy as np
    import pandas as pd

    n = 4
    df = pd.DataFrame(
        {
            "int": np.arange(n),
            "float": np.linspace(0, 1, n),
            "object": ["a", None, "c", "d"],
            "string": pd.array(["a", "b", None, "d"], dtype="string"),
            "category": pd.Categorical(["x", "y", "x", "y"]),
            "datetime": pd.date_range("2024-01-01", periods=n),
            "datetime-tz": pd.date_range("2024-01-01", periods=n, tz="UTC"),
            "timedelta": pd.to_timedelta(np.arange(n), unit="s"),
            "period": pd.period_range("2024-01", periods=n, freq="M"),
            "interval": pd.interval_range(0, n),
            "nullable-int": pd.array([1, None, 3, 4], dtype="Int64"),
            "nullable-float": pd.array([1.0, None, 3.0, 4.0], dtype="Float64"),
            "boolean": pd.array([True, None, False, True], dtype="boolean"),
            "sparse": pd.arrays.SparseArray([0, 0, 1, 0]),
        }
    )
    objs: Objects = {
        "dataframe": df,
        "series": df["float"],
        "multiindex-frame": df.set_index(["int", "object"]),
        "indexes": [
            pd.RangeIndex(5),
            pd.Index([1.5, 2.5]),
            pd.Index(["a", "b"]),
            pd.MultiIndex.from_product([[1, 2], ["a", "b"]]),
            pd.DatetimeIndex(["2024-01-01"], tz="Europe/Paris"),
            pd.TimedeltaIndex(["1s"]),
            pd.PeriodIndex(["2024-01"], freq="M"),
            pd.IntervalIndex.from_breaks([0, 1, 2]),
            pd.CategoricalIndex(["a", "b"]),
        ],
        "scalars": [
            pd.Timestamp("2024-01-01", tz="UTC"),
            pd.Timedelta("1D"),
            pd.Period("2024-01", freq="M"),
            pd.Interval(0, 1),
            pd.NaT,
            pd.NA,
        ],
        "offsets": [
            getattr(pd.offsets, name)()
            for name in (
                "Day",
                "Hour",
                "Minute",
                "BusinessDay",
                "MonthEnd",
                "MonthBegin",
                "QuarterEnd",
                "YearEnd",
                "Week",
                "BusinessMonthEnd",
            )
            if hasattr(pd.offsets, name)
        ],
        "groupby-frame": df.groupby("category", observed=True)[["float"]].mean(),
        "blocks": list(df._mgr.blocks),
        "dtypes": [df.dtypes, pd.CategoricalDtype(["a"]), pd.DatetimeTZDtype(tz="UTC")],
    }
    return objs


# --------------------------------------------------------------------------- torch
def _torch() -> Objects:
    with _quiet():
        return _torch_objects()


def _torch_objects() -> Objects:
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    objs: Objects = {}
    for opt_cls in (
        torch.optim.SGD,
        torch.optim.Adam,
        torch.optim.AdamW,
        torch.optim.RMSprop,
        torch.optim.Adagrad,
        torch.optim.Adadelta,
        torch.optim.Adamax,
        torch.optim.NAdam,
        torch.optim.RAdam,
        torch.optim.ASGD,
        torch.optim.Rprop,
    ):
        opt = opt_cls(model.parameters(), lr=0.01)
        model(torch.ones(2, 4)).sum().backward()
        opt.step()
        objs[f"optimizer-{opt_cls.__name__}"] = opt
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler
    for name, make in (
        ("StepLR", lambda: sched.StepLR(opt, 2)),
        ("MultiStepLR", lambda: sched.MultiStepLR(opt, [2, 4])),
        ("ExponentialLR", lambda: sched.ExponentialLR(opt, 0.9)),
        ("CosineAnnealingLR", lambda: sched.CosineAnnealingLR(opt, 5)),
        ("CosineAnnealingWarmRestarts", lambda: sched.CosineAnnealingWarmRestarts(opt, 3)),
        ("OneCycleLR", lambda: sched.OneCycleLR(opt, 0.1, total_steps=10)),
        ("CyclicLR", lambda: sched.CyclicLR(opt, 0.01, 0.1)),
        ("ReduceLROnPlateau", lambda: sched.ReduceLROnPlateau(opt)),
        ("LinearLR", lambda: sched.LinearLR(opt)),
        ("ConstantLR", lambda: sched.ConstantLR(opt)),
        ("PolynomialLR", lambda: sched.PolynomialLR(opt)),
        (
            "SequentialLR",
            lambda: sched.SequentialLR(
                opt, [sched.ConstantLR(opt), sched.ExponentialLR(opt, 0.9)], milestones=[2]
            ),
        ),
    ):
        with _quiet():
            objs[f"scheduler-{name}"] = make()
    with _quiet():
        objs["packed-sequence"] = nn.utils.rnn.pack_sequence([torch.ones(3), torch.ones(2)])
        objs["spectral-norm"] = nn.utils.spectral_norm(nn.Linear(3, 3))
        objs["weight-norm"] = nn.utils.weight_norm(nn.Linear(3, 3))
        objs["grad-scaler"] = torch.amp.GradScaler("cpu")
    objs["modules"] = nn.ModuleDict(
        {
            "conv": nn.Sequential(
                nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.MaxPool2d(2), nn.Dropout2d(0.1)
            ),
            "rnn": nn.ModuleList([nn.LSTM(3, 3), nn.GRU(3, 3), nn.RNN(3, 3)]),
            "attn": nn.MultiheadAttention(4, 2),
            "transformer": nn.Transformer(
                d_model=8, nhead=2, num_encoder_layers=1, num_decoder_layers=1, dim_feedforward=8
            ),
            "embedding": nn.EmbeddingBag(10, 3),
            "acts": nn.Sequential(
                nn.GELU(), nn.SiLU(), nn.Tanh(), nn.Softmax(-1), nn.LeakyReLU(), nn.Identity()
            ),
            "norms": nn.Sequential(nn.LayerNorm(3), nn.GroupNorm(1, 3), nn.InstanceNorm1d(3)),
            "losses": nn.ModuleList([nn.CrossEntropyLoss(), nn.MSELoss(), nn.BCEWithLogitsLoss()]),
            "upsample": nn.Upsample(scale_factor=2),
            "flatten": nn.Flatten(),
        }
    )
    objs["tensors"] = {
        "dense": torch.ones(2, 2, dtype=torch.bfloat16),
        "sparse": torch.eye(3).to_sparse(),
        "quantized": torch.quantize_per_tensor(torch.ones(3), 0.1, 0, torch.quint8),
        "param": nn.Parameter(torch.zeros(2)),
        "size": torch.Size([2, 3]),
        "device": torch.device("cpu"),
        "dtype": torch.float16,
        "generator": torch.Generator().manual_seed(1),
        "rng": torch.get_rng_state(),
    }
    objs["distributions"] = [
        torch.distributions.Normal(torch.zeros(1), torch.ones(1)),
        torch.distributions.Categorical(probs=torch.ones(3) / 3),
    ]
    return objs


LIBRARIES: dict[str, tuple[str, Callable[[], Objects]]] = {
    "builtins": ("", _builtins),
    "numpy": ("numpy", _numpy),
    "ml_dtypes": ("ml_dtypes", _ml_dtypes),
    "sklearn": ("sklearn", _sklearn),
    "xgboost": ("xgboost", _xgboost),
    "lightgbm": ("lightgbm", _lightgbm),
    "catboost": ("catboost", _catboost),
    "statsmodels": ("statsmodels", _statsmodels),
    "pandas": ("pandas", _pandas),
    "torch": ("torch", _torch),
}
"""library -> (distribution to import, object builder)."""


def library_versions(names: Sequence[str] | None = None) -> dict[str, str]:
    """The installed version of each library (those not installed are left out)."""
    out = {}
    for name in names or LIBRARIES:
        module = LIBRARIES[name][0]
        if not module:
            continue
        try:
            out[name] = str(importlib.import_module(module).__version__)
        except ImportError:
            continue
    return out


def library_objects(
    names: Sequence[str] | None = None, *, exhaustive: bool = False
) -> dict[str, Objects]:
    """library -> {object name -> object}, for the installed libraries among ``names``.

    ``exhaustive`` fits every scikit-learn estimator (about 20 s) instead of a sample.
    """
    out: dict[str, Objects] = {}
    for name in names or LIBRARIES:
        module, build = LIBRARIES[name]
        if module:
            try:
                importlib.import_module(module)
            except ImportError:
                continue
        with _quiet():
            out[name] = _sklearn(exhaustive=True) if exhaustive and name == "sklearn" else build()
    return out


# --------------------------------------------------------------------------- the corpus
class MainNet:
    """Stands for a class defined in a training script: pickled as ``__main__.MainNet``."""

    def __init__(self) -> None:
        self.weights = [0.1, 0.2]


def _sample(path: Path, trick: str, fmt: str, group: str) -> Sample:
    return Sample(path, BENIGN, trick, fmt, None, group)


def build_library_samples(
    out: Path,
    names: Sequence[str] | None = None,
    *,
    objects: dict[str, Objects] | None = None,
) -> list[Sample]:
    """Every library object written as its users write it: pickle, joblib, torch.save.

    Plus TorchScript archives, Keras 3 files and a pickle of a training script's class.
    """
    samples: list[Sample] = []
    for lib, objs in (objects if objects is not None else library_objects(names)).items():
        d = out / "libraries" / lib
        d.mkdir(parents=True, exist_ok=True)
        for name, obj in objs.items():
            samples += _save_all(d, lib, name, obj)
    samples += _torchscript(out / "libraries" / "torchscript")
    samples += _keras(out / "libraries" / "keras")
    return samples


def main_class_sample(out: Path) -> Sample:
    """A pickle of a training script's class: ``medium``, not benign at every threshold."""
    path = out / "libraries" / "main-class.pkl"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_main_class(path)
    return _sample(path, "main-class-pickle", "pickle", "lib-main")


def _save_all(d: Path, lib: str, name: str, obj: Any) -> list[Sample]:
    out = []
    group = f"lib-{lib}"
    for proto in (2, 4, 5):
        path = d / f"{name}-p{proto}.pkl"
        try:
            path.write_bytes(pickle.dumps(obj, protocol=proto))
        except Exception:  # not every object pickles under every protocol
            continue
        out.append(_sample(path, f"{lib}-{name}-pickle-p{proto}", "pickle", group))
    try:
        import joblib

        path = d / f"{name}.joblib"
        with _quiet():
            joblib.dump(obj, path)
        out.append(_sample(path, f"{lib}-{name}-joblib", "joblib", group))
    except Exception:
        pass
    if lib == "torch":
        import torch

        for legacy in (False, True):
            path = d / f"{name}{'-legacy' if legacy else ''}.pt"
            try:
                with _quiet():
                    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
            except Exception:
                continue
            fmt = "pytorch-legacy" if legacy else "pytorch-zip"
            out.append(
                _sample(path, f"{lib}-{name}-torch-save{'-legacy' if legacy else ''}", fmt, group)
            )
    return out


def _torchscript(d: Path) -> list[Sample]:
    try:
        import torch
    except ImportError:
        return []
    from torch import nn

    class Scripted(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 2)
            self.sizes = [1, 2]

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(self.fc(x)).view([x.shape[0], 2])

    d.mkdir(parents=True, exist_ok=True)
    samples = []
    with _quiet():
        scripted = torch.jit.script(Scripted())
        traced = torch.jit.trace(
            nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2), nn.Flatten()), torch.ones(1, 1, 8, 8)
        )
    for name, module in (("scripted", scripted), ("traced", traced)):
        path = d / f"{name}.pt"
        with _quiet():
            module.save(str(path))
        samples.append(_sample(path, f"torchscript-{name}", "zip", "lib-torchscript"))
    with _quiet():
        frozen = torch.jit.freeze(scripted.eval())
    path = d / "frozen.pt"
    frozen.save(str(path))
    samples.append(_sample(path, "torchscript-frozen", "zip", "lib-torchscript"))
    return samples


def _keras(d: Path) -> list[Sample]:
    os.environ.setdefault("KERAS_BACKEND", "torch")
    try:
        with _quiet():
            import keras
    except Exception:
        return []
    d.mkdir(parents=True, exist_ok=True)
    samples = []
    with _quiet():
        seq = keras.Sequential(
            [
                keras.Input((8, 8, 1)),
                keras.layers.Conv2D(2, 3, activation="relu"),
                keras.layers.MaxPooling2D(),
                keras.layers.Flatten(),
                keras.layers.Dropout(0.1),
                keras.layers.Dense(3, activation="softmax"),
            ]
        )
        seq.compile(optimizer="adam", loss="categorical_crossentropy")
        inp = keras.Input((4,))
        h = keras.layers.Dense(4, activation="gelu")(inp)
        h = keras.layers.LayerNormalization()(h)
        functional = keras.Model(inp, [keras.layers.Dense(1)(h), keras.layers.Dense(2)(h)])
        for name, model in (("sequential", seq), ("functional", functional)):
            path = d / f"{name}.keras"
            model.save(path)
            samples.append(_sample(path, f"keras3-{name}", "keras", "lib-keras"))
            path = d / f"{name}.weights.h5"
            model.save_weights(path)
            samples.append(_sample(path, f"keras3-{name}-weights-h5", "hdf5", "lib-keras"))
            path = d / f"{name}.h5"
            model.save(path)
            samples.append(_sample(path, f"keras3-{name}-legacy-h5", "keras-h5", "lib-keras"))
    return samples


def save_main_class(path: Path, *, protocol: int = 4) -> None:
    """A pickle of a class from a training script, written as ``__main__.MainNet``."""
    import __main__

    cls = type("MainNet", (), {"__module__": "__main__", "__qualname__": "MainNet"})
    obj = cls()
    obj.__dict__.update(MainNet().__dict__)
    # pickle checks that __main__.MainNet is the class it writes; undo that afterwards
    had = hasattr(__main__, "MainNet")
    saved = getattr(__main__, "MainNet", None)
    __main__.MainNet = cls  # type: ignore[attr-defined]
    try:
        path.write_bytes(pickle.dumps(obj, protocol=protocol))
    finally:
        if had:
            __main__.MainNet = saved  # type: ignore[attr-defined]
        else:
            del __main__.MainNet  # type: ignore[attr-defined]
