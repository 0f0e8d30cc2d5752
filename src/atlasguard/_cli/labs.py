"""``atlasguard labs``: hands-on exercises that run real attacks (AML.M0018 User Training)."""

from __future__ import annotations

import getpass
import json
import sys
from pathlib import Path

import typer

from atlasguard._cli.console import console

__all__ = ["register"]

labs_app = typer.Typer(
    help="Hands-on labs: a real attack against an unprotected target, then with the "
    "mitigation on; measured, explained, quizzed, recorded (AML.M0018).",
    no_args_is_help=True,
)


@labs_app.command("list")
def list_command(
    fmt: str = typer.Option("text", "--format", metavar="text|json", help="Output format."),
) -> None:
    """List the labs: name, family, ATLAS techniques and mitigations."""
    from atlasguard.errors import UsageError
    from atlasguard.labs import LABS

    if fmt not in ("text", "json"):
        raise UsageError("--format takes text or json")
    if fmt == "json":
        body = [
            {
                "name": lab.name,
                "title": lab.title,
                "family": lab.family,
                "techniques": list(lab.techniques),
                "mitigations": list(lab.mitigations),
                "summary": lab.summary,
            }
            for lab in LABS.values()
        ]
        console.out(json.dumps(body, indent=1), highlight=False)
        return
    for lab in LABS.values():
        console.out(f"{lab.name:<14} {lab.title}  [{lab.family}]", highlight=False)
        console.out(
            f"{'':<14} {lab.summary}\n{'':<14} {', '.join(lab.techniques)} -> "
            f"{', '.join(lab.mitigations)}",
            highlight=False,
        )
    console.out("\nrun one: atlasguard labs run NAME", highlight=False)


@labs_app.command("run")
def run_command(
    name: str = typer.Argument(..., help="The lab (atlasguard labs list)."),
    quick: bool = typer.Option(
        False, "--quick", help="A shorter run: fewer targets, smaller budgets."
    ),
    output: Path = typer.Option(
        Path("labs-output"), "-o", "--output", help="Where the plot and the JSON go."
    ),
    answers: str | None = typer.Option(
        None,
        "--answers",
        help="Quiz answers without prompts, e.g. 2,1,3 (choice numbers); default: ask "
        "when interactive, skip otherwise.",
    ),
    policy: Path | None = typer.Option(
        None,
        "--policy",
        help="Record the completion in this deployment's audit log (default: "
        "./atlasguard.toml or demo/atlasguard.toml when present).",
    ),
    who: str | None = typer.Option(None, "--who", help="Whose completion (default: your login)."),
) -> None:
    """Run a lab: the attack without and with the mitigation, measured now; a plot,
    an explanation, a short quiz; the completion goes to the audit log."""
    from atlasguard.errors import UsageError
    from atlasguard.labs import LABS, completion, plot, render

    if name not in LABS:
        raise UsageError(f"no lab named {name!r}; labs: {', '.join(LABS)}")
    lab = LABS[name]
    console.out(f"running {lab.name}: {lab.summary} ...", highlight=False)
    result = lab.run(quick)
    console.out("\n" + render(lab, result), highlight=False)
    output.mkdir(parents=True, exist_ok=True)
    picture = output / f"{lab.name}.png"
    if plot(lab, result, picture):
        console.out(f"\nplot: {picture}", highlight=False)
    score = _quiz(lab, answers)
    (output / f"{lab.name}.json").write_text(
        json.dumps({"lab": lab.name, "quick": quick, "quiz": score, **result.to_dict()}, indent=1)
    )
    person = who or _login()
    where = _record(completion(lab, result, score, person), policy)
    console.out(where, highlight=False)


@labs_app.command("status")
def status_command(
    policy: Path = typer.Option(
        Path("atlasguard.toml"), "--policy", help="The deployment whose audit log to read."
    ),
    fmt: str = typer.Option("text", "--format", metavar="text|json", help="Output format."),
) -> None:
    """Who has completed which lab, from the audit log, against [controls.labs] required."""
    import datetime

    from atlasguard.errors import UsageError
    from atlasguard.labs import LABS
    from atlasguard.labs.settings import LabsSettings
    from atlasguard.policy import load_policy
    from atlasguard.runtime.deployment import Deployment

    if fmt not in ("text", "json"):
        raise UsageError("--format takes text or json")
    loaded = load_policy(policy)
    settings = loaded.settings("labs")
    assert isinstance(settings, LabsSettings)
    required = list(settings.required or LABS)
    done: dict[str, dict[str, dict[str, str]]] = {}
    with Deployment.open(loaded) as deployment:
        for _index, record in deployment.audit.records():
            if record.action != "labs.completed":
                continue
            details = dict(record.details or {})
            quiz = details.get("quiz", "not taken")
            right = int(quiz.split("/")[0]) if quiz[:1].isdigit() else -1
            if right < settings.pass_score:
                continue
            when = datetime.datetime.fromtimestamp(record.time, datetime.UTC)
            done.setdefault(record.principal, {})[details.get("lab", "?")] = {
                "quiz": quiz,
                "when": when.strftime("%Y-%m-%d %H:%M"),
            }
    if fmt == "json":
        body = {
            "required": required,
            "pass_score": settings.pass_score,
            "people": {
                who: {"completed": labs, "missing": [n for n in required if n not in labs]}
                for who, labs in sorted(done.items())
            },
        }
        console.out(json.dumps(body, indent=1), highlight=False)
        return
    if not done:
        console.out(
            f"no lab completions with at least {settings.pass_score} right answers in the "
            "audit log yet (atlasguard labs run NAME --policy ...)",
            highlight=False,
        )
        return
    for who, labs in sorted(done.items()):
        missing = [n for n in required if n not in labs]
        state = "all required labs done" if not missing else f"missing: {', '.join(missing)}"
        console.out(f"{who}: {len(labs)} lab(s); {state}", highlight=False)
        for name, info in sorted(labs.items()):
            console.out(
                f"    {name:<14} quiz {info['quiz']:<4} {info['when']} UTC", highlight=False
            )


def _login() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _quiz(lab: object, answers: str | None) -> int | None:
    from atlasguard.errors import UsageError
    from atlasguard.labs import Lab

    assert isinstance(lab, Lab)
    given: list[int] | None = None
    if answers is not None:
        try:
            given = [int(a) for a in answers.split(",")]
        except ValueError:
            raise UsageError(
                "--answers takes choice numbers separated by commas, e.g. 2,1,3"
            ) from None
        if len(given) != len(lab.quiz):
            raise UsageError(f"--answers: the {lab.name} quiz has {len(lab.quiz)} questions")
    elif not sys.stdin.isatty():
        console.out("\nquiz skipped (not interactive; pass --answers to take it)", highlight=False)
        return None
    score = 0
    console.out("\nQuiz", highlight=False)
    for i, q in enumerate(lab.quiz):
        console.out(f"\n{i + 1}. {q.text}", highlight=False)
        for j, choice in enumerate(q.choices, 1):
            console.out(f"   {j}) {choice}", highlight=False)
        pick = given[i] if given is not None else typer.prompt("your answer", type=int)
        right = pick - 1 == q.answer
        score += right
        console.out(f"   {'right' if right else 'not quite'}: {q.why}", highlight=False)
    console.out(f"\nscore: {score}/{len(lab.quiz)}", highlight=False)
    return score


def _record(details: dict[str, str], policy: Path | None) -> str:
    """Write a ``labs.completed`` record to the deployment's audit log."""
    from atlasguard._cli.runs import record_run

    if policy is None:
        found = [p for p in (Path("atlasguard.toml"), Path("demo/atlasguard.toml")) if p.is_file()]
        if not found:
            return (
                "completion not recorded: no policy here (run `make run` once, or pass "
                "--policy FILE to record it in that deployment's audit log)"
            )
        policy = found[0]
    record_run(policy, "labs.completed", details["who"], details)
    return f"completion recorded in the audit log of {policy} (atlasguard audit)"


def register(app: typer.Typer) -> None:
    """Add ``atlasguard labs``."""
    app.add_typer(labs_app, name="labs")
