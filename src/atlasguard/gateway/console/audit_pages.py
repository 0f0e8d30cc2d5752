"""The console's audit pages: the log with filters, the Merkle chain (verify it, sign a
checkpoint), and an inclusion proof of any record checked against its signed checkpoint."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from atlasguard.gateway.calls import Call
from atlasguard.gateway.console import views
from atlasguard.gateway.console.base import Viewer, checked_form, console_call, render_page, router
from atlasguard.gateway.service import Gateway
from atlasguard.runtime.pipeline import Denied

__all__ = ["router"]


@router.get("/audit")
async def audit(request: Request) -> Response:
    async def work(call: Call, viewer: Viewer) -> Response:
        q = request.query_params
        filters = {k: q.get(k, "")[:200] for k in ("principal", "action", "decision")}
        before = q.get("before", "")
        log = call.gateway.deployment.audit
        page = await run_in_threadpool(
            lambda: views.audit_page(
                log,
                principal=filters["principal"],
                action=filters["action"],
                decision=filters["decision"],
                before=int(before) if before.isdigit() and len(before) <= 18 else None,
            )
        )
        state = await run_in_threadpool(_chain_state, call.gateway, q.get("verify") == "1")
        return render_page(
            request,
            viewer,
            "audit",
            log=page,
            filters=filters,
            chain=state,
            next_link="?" + urlencode({**filters, "before": page["next"]}) if page["next"] else "",
            done=q.get("done", "")[:300],
        )

    return await console_call(request, "console.audit", work)


def _chain_state(gateway: Gateway, verify: bool) -> dict[str, Any]:
    """The log's size, its checkpoints, and (on request) a full verification."""
    from atlasguard.errors import IntegrityError

    log = gateway.deployment.audit
    checkpoints = log.checkpoints()
    state: dict[str, Any] = {
        "records": log.size(),
        "checkpoints": len(checkpoints),
        "latest": checkpoints[-1].size if checkpoints else 0,
        "latest_at": views._clock(checkpoints[-1].created_at) if checkpoints else "",
        "can_sign": log.signs_checkpoints,
        "verifier": gateway.deployment.verifier is not None,
        "verified": None,
    }
    if verify:
        verifier = gateway.deployment.verifier
        if verifier is None:
            state["verified"] = {"ok": False, "why": "no public key to verify with ([keys])"}
        else:
            try:
                report = log.verify(verifier)
            except IntegrityError as exc:
                state["verified"] = {"ok": False, "why": str(exc)}
            else:
                state["verified"] = {
                    "ok": True,
                    "records": report.records,
                    "latest": report.latest_checkpoint,
                    "tail": report.unchecked_tail,
                    "root": report.root.hex(),
                }
    return state


@router.post("/audit/checkpoint")
async def audit_checkpoint(request: Request) -> Response:
    async def work(call: Call, viewer: Viewer) -> Response:
        await checked_form(call, viewer)
        log = call.gateway.deployment.audit
        if not log.signs_checkpoints:
            raise Denied("this deployment has no [keys] signing_key to sign with", reason="refused")
        # The checkpoint covers every record before this request's own.
        call.outcome.details["target"] = "audit head"
        checkpoint = await run_in_threadpool(log.checkpoint)
        done = f"signed a checkpoint over {checkpoint.size} records"
        return RedirectResponse("/console/audit?" + urlencode({"done": done}), status_code=303)

    return await console_call(request, "console.audit.checkpoint", work)


@router.get("/audit/proof/{index}")
async def audit_proof(index: int, request: Request) -> Response:
    async def work(call: Call, viewer: Viewer) -> Response:
        proof = await run_in_threadpool(_proof, call.gateway, index)
        return render_page(request, viewer, "proof", proof=proof, index=index)

    return await console_call(request, "console.audit.proof", work)


def _proof(gateway: Gateway, index: int) -> dict[str, Any]:
    """An inclusion proof of one record, checked here against its signed checkpoint."""
    from atlasguard.audit.merkle import verify_inclusion
    from atlasguard.errors import IntegrityError

    try:
        proof = gateway.deployment.audit.prove(index)
    except IntegrityError as exc:
        return {"ok": False, "why": str(exc)}
    except LookupError:
        return {"ok": False, "why": f"there is no audit record {index}"}
    checks = []
    try:
        verify_inclusion(
            proof.leaf_hash, index, proof.checkpoint.size, list(proof.path), proof.checkpoint.root
        )
        checks.append("the record's hash and path lead to the checkpoint's root")
        if gateway.deployment.verifier is not None:
            gateway.deployment.verifier.verify(proof.checkpoint)
            checks.append(f"the checkpoint's signature verifies (key {proof.checkpoint.key_id})")
        ok = True
    except Exception as exc:  # a failed check is the answer, not an error
        checks.append(f"FAILED: {exc}")
        ok = False
    return {
        "ok": ok,
        "checks": checks,
        "record": proof.record.to_dict(),
        "leaf": proof.leaf_hash.hex(),
        "path": [h.hex() for h in proof.path],
        "size": proof.checkpoint.size,
        "root": proof.checkpoint.root.hex(),
        "signed_at": views._clock(proof.checkpoint.created_at),
        "key_id": proof.checkpoint.key_id,
    }
