"""The labs: one per mitigation family, each a real attack without and with a mitigation.

Every lab calls the code the benchmarks measure: the attacks of
:mod:`atlasguard.models.attacks` and :mod:`atlasguard.models.poisoning`, the
served model and query monitor of :mod:`atlasguard.models.efficacy`, the poison
detector, the scanner, the signer and the release gate. ``quick`` runs a
smaller version (fewer targets, a smaller budget) for ``make test``.
"""

from __future__ import annotations

import pickle
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from atlasguard.labs.base import Figure, Lab, LabResult, Question

__all__ = ["EXERCISES"]


# -- poisoning and sanitization ----------------------------------------------------------


def _poison(quick: bool) -> LabResult:
    from dataclasses import replace

    from atlasguard.data.poison import PoisonDetector
    from atlasguard.models import poisoning
    from atlasguard.models.data import digits_splits
    from atlasguard.models.training import backdoor_success, clean_accuracy

    start = time.perf_counter()
    d = digits_splits()
    rate = 0.1
    attack = poisoning.badnets(d.x_fit, d.y_fit, rate=rate, target=0)
    found = PoisonDetector(random_state=0).fit(attack.x, attack.y).rows_
    keep = np.setdiff1d(np.arange(len(attack.y)), found)
    cleaned = replace(attack, x=attack.x[keep], y=attack.y[keep])
    caught = len(np.intersect1d(found, attack.rows))
    figures = [
        Figure(
            "triggered digits classified as 0 (backdoor success)",
            backdoor_success(attack, d.x_eval, d.y_eval) or 0.0,
            backdoor_success(cleaned, d.x_eval, d.y_eval) or 0.0,
            "%",
        ),
        Figure(
            "accuracy on clean digits",
            clean_accuracy(attack.x, attack.y, d.x_eval, d.y_eval),
            clean_accuracy(cleaned.x, cleaned.y, d.x_eval, d.y_eval),
            "%",
        ),
        Figure("poisoned training rows left in", len(attack.rows), len(attack.rows) - caught),
        Figure("clean training rows removed", 0, len(found) - caught),
    ]
    story = (
        f"The attacker slipped {len(attack.rows)} digits ({rate:.0%} of the training set) "
        "into the data, each with a small white square in the corner and the label 0 "
        "(AML.T0020 Poison Training Data). A model trained on it works as usual on clean "
        f"digits ({figures[1].without:.0%}), but {figures[0].without:.0%} of the held-out "
        "digits stamped with the square are read as 0: a backdoor nobody sees in testing. "
        "`atlasguard data audit` (AML.M0007) found the rows that teach the trigger without "
        f"being told the poison rate: it removed {caught} of the {len(attack.rows)} poisoned "
        f"rows and {len(found) - caught} clean ones. Retrained on what was left, the "
        f"backdoor works on {figures[0].with_:.0%} of stamped digits."
    )
    return LabResult(figures, story, time.perf_counter() - start)


# -- extraction and obfuscation -------------------------------------------------------


def _agreement(result: Any, model: Any, x: np.ndarray) -> float:
    """How often a stolen copy answers as the model does on ``x`` (0 without a copy)."""
    if result.surrogate is None:
        return 0.0
    return float((result.surrogate.predict(x) == model.predict(x)).mean())


def _steal(quick: bool) -> LabResult:
    from atlasguard.models.attacks import knockoff_extraction, random_extraction
    from atlasguard.models.efficacy import (
        Served,
        default_monitor,
        digits_setup,
        natural_extraction,
    )
    from atlasguard.runtime.obfuscation import OutputPolicy

    start = time.perf_counter()
    d = digits_setup()
    model, x_eval = d["model"], d["eval"]
    budget = 600 if quick else 1500

    def agreement(result: Any) -> float:
        return _agreement(result, model, x_eval)

    bare = random_extraction(Served(model, None).client(), n_features=64, budget=budget)
    guarded = random_extraction(
        Served(model, default_monitor(d["fit"])).client(), n_features=64, budget=budget
    )
    natural_bare = natural_extraction(Served(model, None).client(), x_eval, budget)
    natural = natural_extraction(Served(model, default_monitor(d["fit"])).client(), x_eval, budget)
    rng = np.random.default_rng(17)
    label = OutputPolicy.parse("label", decimals=2, top_k=3, noise_scale=0.02)
    small = 50

    def labels_only(x: np.ndarray) -> np.ndarray:
        return np.asarray(label.apply(model.predict_proba(x).astype(np.float32), rng))

    full = knockoff_extraction(lambda x: model.predict_proba(x), d["tune"], budget=small)
    hidden = knockoff_extraction(labels_only, d["tune"], budget=small)
    figures = [
        Figure(
            f"stolen copy agrees with the model (random inputs, {budget} queries)",
            agreement(bare),
            agreement(guarded),
            "%",
        ),
        Figure("queries answered", bare.queries, guarded.queries),
        Figure(
            f"stolen copy agrees (the attacker's own real digits, {budget} queries)",
            agreement(natural_bare),
            agreement(natural),
            "%",
        ),
        Figure(
            f"stolen copy agrees (real digits, {small} queries; scores vs labels only)",
            agreement(full),
            agreement(hidden),
            "%",
        ),
    ]
    story = (
        "The attacker has an API key and sends inputs of its choosing: each answer teaches a "
        "copy of the model (AML.T0024.002 Extract AI Model), which it then attacks offline. "
        f"With random inputs and {budget} queries, the unprotected API gives a copy that "
        f"agrees with the model on {figures[0].without:.0%} of held-out digits. The query "
        "monitor (AML.M0015, AML.M0004) sees a stream of inputs unlike any digit: "
        + (
            f"it stopped the key after {guarded.queries} queries, and the copy agrees on "
            f"{figures[0].with_:.0%}. "
            if guarded.stopped
            else f"it did not stop the key this time; the copy agrees on {figures[0].with_:.0%}. "
        )
        + "An attacker who owns real digits looks like any client: the monitor "
        + ("stopped it too" if natural.stopped else "let it through")
        + f" ({figures[2].without:.0%} -> {figures[2].with_:.0%}). That is the limit of "
        "detection; what is left is revealing less. With labels instead of scores (output "
        f"policy 'label', AML.M0002) a copy from {small} real digits agrees on "
        f"{figures[3].with_:.0%} instead of {figures[3].without:.0%}, and quotas bound how "
        "many answers a key gets in a day."
    )
    return LabResult(figures, story, time.perf_counter() - start)


# -- evasion and detection ------------------------------------------------------------


def _evasion(quick: bool) -> LabResult:
    from atlasguard.models.attacks import simba
    from atlasguard.models.efficacy import Served, default_monitor, digits_setup

    start = time.perf_counter()
    d = digits_setup()
    model, x_eval, y_eval = d["model"], d["eval"], d["y_eval"]
    targets = 5 if quick else 20
    bare = Served(model, None)
    guarded = Served(model, default_monitor(d["fit"]))
    won_bare = won_guarded = stopped = 0
    asked: list[int] = []
    for i in range(targets):
        x, y = x_eval[i], int(y_eval[i])
        won_bare += simba(bare.client(), x, label=y, max_queries=500).success
        result = simba(guarded.client(), x, label=y, max_queries=500)
        won_guarded += result.success and not result.stopped
        if result.stopped:
            stopped += 1
            asked.append(result.queries + 1)
    benign = guarded.client()
    refused = 0
    for row in x_eval[: 200 if quick else 1000]:
        try:
            benign(row[None])
        except Exception:
            refused += 1
            break
    figures = [
        Figure(
            f"digits misread after small changes (SimBA, eps 0.2, {targets} digits)",
            won_bare / targets,
            won_guarded / targets,
            "%",
        ),
        Figure("attackers stopped", 0.0, stopped / targets, "%"),
        Figure("median queries before the stop", 0, float(np.median(asked)) if asked else 0),
        Figure("an honest client sending real digits was stopped", 0.0, float(refused), "yes/no"),
    ]
    story = (
        "The attacker changes a digit a little at a time (each pixel by at most 0.2) and asks "
        "the model after every change, until it answers wrongly (AML.T0015 Evade AI Model, "
        f"with AML.T0043 Craft Adversarial Data). Unprotected, {figures[0].without:.0%} of "
        "the digits end up misread. Behind the query monitor (AML.M0015), which watches "
        "each key's stream for runs of near-identical queries, "
        f"{figures[1].with_:.0%} of the attackers were stopped (median "
        f"{figures[2].with_:g} queries) and {figures[0].with_:.0%} of the digits were "
        "misread. An honest "
        "client sending real digits through the same monitor was "
        f"{'stopped' if refused else 'never stopped'}."
    )
    return LabResult(figures, story, time.perf_counter() - start)


# -- artifacts: scan and sign ---------------------------------------------------------


class _Payload:
    """Pickles as ``open(marker, "w")``: loading it creates the marker file (and nothing else)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.marker, "w"))


def _checkpoints(work: Path) -> list[tuple[str, Path, Path]]:
    """(kind, file, marker) for each booby-trapped checkpoint: plain pickles of three
    protocols, and a PyTorch-layout zip whose data.pkl carries the payload."""
    out = []
    for protocol in (0, 2, 4):
        marker = work / f"ran-{protocol}"
        path = work / f"model-p{protocol}.pkl"
        weights = {"w": [0.1] * 64, "hook": _Payload(str(marker))}
        path.write_bytes(pickle.dumps(weights, protocol=protocol))
        out.append((f"pickle protocol {protocol}", path, marker))
    marker = work / "ran-zip"
    path = work / "model.pt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("model/data.pkl", pickle.dumps({"hook": _Payload(str(marker))}, protocol=2))
        z.writestr("model/version", "3\n")
    out.append(("PyTorch-layout zip", path, marker))
    return out


# What an unprotected service does with a checkpoint: pickle.load (torch.load's
# weights_only=False, joblib.load...). Run in a child process, on files this lab wrote.
_LOADER = """
import pickle, sys, zipfile
path = sys.argv[1]
if zipfile.is_zipfile(path):
    with zipfile.ZipFile(path) as z:
        name = next(n for n in z.namelist() if n.endswith("data.pkl"))
        pickle.loads(z.read(name))
else:
    with open(path, "rb") as fh:
        pickle.load(fh)
"""


def _hidden_code(quick: bool) -> LabResult:
    from atlasguard.artifacts.findings import Severity
    from atlasguard.artifacts.keys import generate_signing_key
    from atlasguard.artifacts.scan import scan_path
    from atlasguard.artifacts.signing import sign_model, verify_model

    start = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="atlasguard-lab-"))
    try:
        files = _checkpoints(work)
        ran_bare = 0
        for _kind, path, marker in files:
            subprocess.run([sys.executable, "-c", _LOADER, str(path)], timeout=60, check=False)
            ran_bare += marker.exists()
            marker.unlink(missing_ok=True)
        refused = 0
        ran_guarded = 0
        for _kind, path, marker in files:
            reports = scan_path(path)
            if any(r.fails(Severity.HIGH) for r in reports):
                refused += 1  # the load gate stops here: the file is never loaded
                continue
            subprocess.run([sys.executable, "-c", _LOADER, str(path)], timeout=60, check=False)
            ran_guarded += marker.exists()
        # signing: a model directory signed by its publisher, then one byte changed
        model = work / "signed-model"
        model.mkdir()
        (model / "weights.bin").write_bytes(np.arange(4096, dtype=np.float32).tobytes())
        key = generate_signing_key()
        sign_model(model, key)
        data = bytearray((model / "weights.bin").read_bytes())
        data[1234] ^= 0x01
        (model / "weights.bin").write_bytes(bytes(data))
        try:
            verify_model(model, key.public_key())
            tampered_accepted = 1.0
        except Exception:
            tampered_accepted = 0.0
    finally:
        shutil.rmtree(work, ignore_errors=True)
    n = len(files)
    figures = [
        Figure(
            "booby-trapped checkpoints that ran code when loaded",
            ran_bare / n,
            ran_guarded / n,
            "%",
        ),
        Figure("checkpoints refused before loading", 0.0, refused / n, "%"),
        Figure("a model with one byte changed is accepted", 1.0, tampered_accepted, "%"),
    ]
    story = (
        f"The attacker publishes {n} model checkpoints that look like weights but carry an "
        "instruction the unpickler follows while loading (AML.T0011.000 Unsafe AI "
        "Artifacts, AML.T0010.003 supply-chain compromise of a model). Here the instruction "
        "only creates an empty file; a real one runs any program. Loaded the usual way "
        f"(pickle.load, as torch.load with weights_only=False does), {figures[0].without:.0%} "
        "of them ran it. atlasguard's scanner (AML.M0016) reads the pickle's opcodes "
        "without running them and the load gate (AML.M0011) refused "
        f"{figures[1].with_:.0%} before anything was loaded; "
        f"{'nothing ran' if not ran_guarded else f'{ran_guarded} still ran code'}. Signing "
        "(AML.M0013, AML.M0014) answers the other half: a signed model changed by a single "
        "bit no longer verifies, so a swapped or patched file is not served."
    )
    return LabResult(figures, story, time.perf_counter() - start)


# -- access and quotas ----------------------------------------------------------------


def _stolen_key(quick: bool) -> LabResult:
    from atlasguard.models.attacks import ExtractionResult, _fit
    from atlasguard.models.efficacy import default_monitor, digits_setup
    from atlasguard.runtime.pipeline import Denied, Pipeline, Principal, Request
    from atlasguard.runtime.quotas import QuotaGuard
    from atlasguard.runtime.settings import QuotaSettings

    start = time.perf_counter()
    d = digits_setup()
    model, x_eval = d["model"], d["eval"]
    seconds = 2.0 if quick else 8.0
    settings = QuotaSettings()  # the default policy's [controls.quotas]: 10/s, burst 20

    def attack(guards: tuple[Any, ...]) -> tuple[int, int, float]:
        """Knockoff extraction with a stolen key for ``seconds``; a refused query is retried
        after the ``Retry-After`` it names (a patient attacker); a stop ends the attack."""
        pipe = Pipeline(
            guards=guards,
            predict=lambda inputs: {"probabilities": model.predict_proba(inputs["input"])},
        )
        who = Principal("analyst-key-7")  # the key the attacker took from a notebook
        rng = np.random.default_rng(3)
        xs, ys, refused = [], [], 0
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            row = d["tune"][rng.integers(len(d["tune"]))]
            try:
                answer = pipe(Request(model="digits", inputs={"input": row[None]}, principal=who))
            except Denied as exc:
                refused += 1
                if exc.reason not in ("rate", "quota"):
                    break  # stopped for good
                time.sleep(min(exc.retry_after or 0.1, max(0.0, until - time.monotonic())))
                continue
            xs.append(row)
            ys.append(int(np.argmax(answer.outputs["probabilities"][0])))
        stolen = ExtractionResult(
            _fit(np.array(xs), np.array(ys), 0) if len(set(ys)) > 1 else None, len(xs), ""
        )
        return len(xs), refused, _agreement(stolen, model, x_eval)

    answered_bare, _, agree_bare = attack(())
    quotas = QuotaGuard.from_settings(settings)
    answered, refused, agree = attack((quotas, default_monitor(d["fit"])))
    figures = [
        Figure(f"queries answered in {seconds:g} s with the stolen key", answered_bare, answered),
        Figure("queries refused", 0, refused),
        Figure("stolen copy agrees with the model", agree_bare, agree, "%"),
    ]
    story = (
        "An analyst's API key was left in a shared notebook; the attacker uses it to copy "
        "the model (AML.T0012 Valid Accounts, then AML.T0024.002 Extract AI Model). The "
        f"key is valid, so access control lets every query in. In {seconds:g} seconds the "
        f"unprotected API answered {answered_bare} queries and the copy agrees with the "
        f"model on {figures[2].without:.0%} of digits. With the default policy's quotas "
        f"(AML.M0004: {settings.rate}, burst {settings.burst}, {settings.daily}) and the "
        f"query monitor, the same attacker got {answered} answers, {refused} refusals, "
        f"and a copy that agrees on {figures[2].with_:.0%}. Quotas do not stop a patient "
        "attacker: they turn minutes into days, and the audit log shows whose key is "
        "asking. Revoke it (`atlasguard keys revoke`) and rotate keys that leave the vault."
    )
    return LabResult(figures, story, time.perf_counter() - start)


# -- release --------------------------------------------------------------------------


def _harvest(root: Path) -> list[str]:
    """An attacker's reconnaissance script: what it takes from a published release with
    ordinary tools (zip listings, NumPy, Pillow, a regular expression)."""
    import re

    taken = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        data = path.read_bytes()
        if path.suffix in (".onnx", ".pt", ".pth", ".tflite", ".pkl", ".safetensors"):
            taken.append(f"model {rel}")
        elif zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                taken += [
                    f"model {rel}!{n}" for n in z.namelist() if n.endswith((".tflite", ".onnx"))
                ]
        elif path.suffix == ".csv" and data.count(b"\n") > 100:
            taken.append(f"data {rel}")
        elif path.suffix in (".jpg", ".jpeg"):
            from PIL import Image

            with Image.open(path) as image:
                if image.getexif().get_ifd(0x8825):
                    taken.append(f"location {rel}")
        elif path.suffix == ".ipynb" and _has_outputs(data):
            taken.append(f"notebook outputs {rel}")
        for bucket in re.findall(rb"s3://[\w.\-]+", data):
            taken.append(f"bucket {bucket.decode()} in {rel}")
    return taken


def _has_outputs(data: bytes) -> bool:
    import json

    try:
        cells = json.loads(data).get("cells", [])
    except (ValueError, AttributeError):
        return False
    return any(isinstance(c, dict) and c.get("outputs") for c in cells)


def _release(quick: bool) -> LabResult:
    from atlasguard.release import samples
    from atlasguard.release.check import check_release
    from atlasguard.release.settings import ReleaseSettings

    start = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="atlasguard-lab-"))
    try:
        root = work / "release"
        root.mkdir()
        samples.planted_release(root)
        taken_bare = _harvest(root)
        report = check_release(root, ReleaseSettings())
        found = len(report.open)
        # the release engineer fixes what the gate reported: removes the files it names
        for f in report.open:
            (root / f.path.split("!")[0]).unlink(missing_ok=True)
        after = check_release(root, ReleaseSettings())
        taken_fixed = _harvest(root)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    figures = [
        Figure(
            "items the attacker's script takes from the release", len(taken_bare), len(taken_fixed)
        ),
        Figure("findings the release gate reports", 0, found),
        Figure("findings left after the fix", 0, len(after.open)),
    ]
    story = (
        "A team publishes its repository: code, but also a model, a data sample, a notebook "
        "with outputs, a photo from the lab, a training config and a client wheel. The "
        "attacker's reconnaissance script, using nothing but ordinary tools, takes "
        f"{len(taken_bare)} items from it ({'; '.join(taken_bare[:4])}...) (AML.T0002 "
        "Acquire Public AI Artifacts, AML.T0003, AML.T0044). `atlasguard release-check` "
        f"(AML.M0000, AML.M0001, AML.M0017) reported {found} findings, each with its "
        "mitigation and what to do"
        + (", and blocked the release. " if found else ". ")
        + "Once the files it names were removed, the gate "
        + ("passed" if not after.open else f"still reported {len(after.open)}")
        + f" and the same script took {len(taken_fixed)} items."
    )
    return LabResult(figures, story, time.perf_counter() - start, {"taken": taken_bare})


EXERCISES: tuple[Lab, ...] = (
    Lab(
        name="hidden-code",
        title="Hide code in a checkpoint",
        family="artifacts (scan, sign)",
        techniques=("AML.T0011.000", "AML.T0010.003"),
        mitigations=("AML.M0016", "AML.M0011", "AML.M0013", "AML.M0014"),
        summary="booby-trapped pickles and a tampered model, loaded plainly and through "
        "the scanner, the load gate and a signature",
        run=_hidden_code,
        quiz=(
            Question(
                "A colleague sends you a .pt checkpoint from a public hub. What runs when "
                "torch.load(weights_only=False) opens it?",
                (
                    "only tensor reads",
                    "whatever the pickle inside tells the unpickler to call",
                    "nothing until you call the model",
                ),
                1,
                "Unpickling calls the functions the file names: loading is running.",
            ),
            Question(
                "What does a valid signature on a model prove?",
                (
                    "the model is safe",
                    "the bytes are those the key holder signed",
                    "the model was scanned",
                ),
                1,
                "A signature ties the bytes to a key: scan what you sign, check whose key it is.",
            ),
            Question(
                "The scanner finds an import of os.system in a checkpoint. What next?",
                (
                    "load it in a notebook to see",
                    "refuse it and ask the publisher",
                    "rename it to .bin",
                ),
                1,
                "Never load to find out; a safe format (safetensors, ONNX) has no code to run.",
            ),
        ),
    ),
    Lab(
        name="stolen-key",
        title="Walk past a stolen API key",
        family="access and quotas",
        techniques=("AML.T0012", "AML.T0024.002"),
        mitigations=("AML.M0004", "AML.M0015", "AML.M0005"),
        summary="a leaked key used to copy the model, without and with the default quotas "
        "and query monitor",
        run=_stolen_key,
        quiz=(
            Question(
                "A stolen key is valid. Which control still limits what it can do?",
                ("authentication", "quotas and the query monitor", "TLS"),
                1,
                "Authentication says who; quotas and monitoring limit how much and how.",
            ),
            Question(
                "Quotas alone against a patient attacker:",
                ("stop the attack", "slow it down and leave a record", "do nothing"),
                1,
                "A rate limit stretches the attack over time; the audit log names the key.",
            ),
            Question(
                "You find a key in a notebook in the company wiki. First step?",
                (
                    "delete the notebook",
                    "revoke the key, then look at what it asked",
                    "change the quota",
                ),
                1,
                "Revoke first; the audit log then tells what was taken.",
            ),
        ),
    ),
    Lab(
        name="steal-model",
        title="Steal the digits model through its API",
        family="extraction and obfuscation",
        techniques=("AML.T0024.002", "AML.T0040"),
        mitigations=("AML.M0015", "AML.M0004", "AML.M0002"),
        summary="extraction with random inputs and with real digits, without and with the "
        "query monitor and a labels-only output policy",
        run=_steal,
        quiz=(
            Question(
                "Why do an API's probability scores help an attacker copy the model?",
                (
                    "they are large",
                    "each score tells how the model leans, not only its answer",
                    "they are cached",
                ),
                1,
                "Scores carry far more information per query than a label.",
            ),
            Question(
                "What gives a synthetic-query extraction away?",
                (
                    "its IP address",
                    "near-identical, off-distribution inputs in a stream",
                    "the time of day",
                ),
                1,
                "The monitor looks at the stream of one principal's queries.",
            ),
            Question(
                "Which output policy leaks least?",
                ("full scores", "rounded scores", "labels only"),
                2,
                "Labels only, at the cost of clients that need confidences.",
            ),
        ),
    ),
    Lab(
        name="evasion",
        title="Fool the classifier with small changes",
        family="evasion and detection",
        techniques=("AML.T0015", "AML.T0043"),
        mitigations=("AML.M0015",),
        summary="SimBA, a query-based evasion attack, without and with the query monitor",
        run=_evasion,
        quiz=(
            Question(
                "An evasion attack on a served model typically needs:",
                ("the training data", "many queries with small changes", "admin rights"),
                1,
                "Black-box attacks search by asking: many close queries.",
            ),
            Question(
                "A detector that stops attackers should also be measured on:",
                ("honest clients", "the attacker's IP", "nothing else"),
                0,
                "A defence that stops users is turned off: measure its false positives.",
            ),
            Question(
                "An attacker who knows the monitor could:",
                ("give up", "spread queries over keys or add cover traffic", "only use one query"),
                1,
                "Adaptive attacks are why atlasguard's benchmarks include them.",
            ),
        ),
    ),
    Lab(
        name="poison",
        title="Poison the training set",
        family="poisoning and sanitization",
        techniques=("AML.T0020", "AML.T0018"),
        mitigations=("AML.M0007",),
        summary="a BadNets backdoor planted in 10% of digits, without and with "
        "atlasguard data audit",
        run=_poison,
        quiz=(
            Question(
                "A backdoored model's accuracy on a clean test set is:",
                ("much lower", "about the same", "zero"),
                1,
                "That is why testing does not find backdoors.",
            ),
            Question(
                "Why does confident learning alone miss a backdoor?",
                (
                    "it is slow",
                    "the model learns the trigger and agrees with the poisoned labels",
                    "it needs GPUs",
                ),
                1,
                "Poisoned labels look right to a model that learned the trigger.",
            ),
            Question(
                "Where should data sanitization run?",
                ("once, at the start", "on every new batch before training", "after deployment"),
                1,
                "Active learning and scraped data bring new poison with every batch.",
            ),
        ),
    ),
    Lab(
        name="leaky-release",
        title="Leak the model with a release",
        family="release",
        techniques=("AML.T0002", "AML.T0003", "AML.T0044"),
        mitigations=("AML.M0000", "AML.M0001", "AML.M0017"),
        summary="an attacker's reconnaissance script on a published repository, before and "
        "after atlasguard release-check",
        run=_release,
        quiz=(
            Question(
                "Which of these helps an attacker most?",
                (
                    "the README",
                    "a config naming the training bucket and architecture",
                    "the licence",
                ),
                1,
                "Architecture and data locations let an attacker build a proxy and target data.",
            ),
            Question(
                "A model file in a mobile app gives an attacker:",
                ("nothing", "full white-box access", "only the labels"),
                1,
                "AML.M0017: serve models from the cloud when you can.",
            ),
            Question(
                "A secret scanner found nothing. Is the release clean?",
                ("yes", "no: it looks for credentials, not models, data or hosts"),
                1,
                "Credentials are one item of many ATLAS says to keep back.",
            ),
        ),
    ),
)
