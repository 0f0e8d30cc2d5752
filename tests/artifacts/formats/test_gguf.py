"""GGUF scanner: header bounded, chat-template injection caught, real templates clean."""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atlasguard.artifacts.findings import Finding, Severity
from atlasguard.artifacts.formats.gguf import SCANNERS, template_risks
from tests.artifacts.formats._mutate import mutate

Scan = Callable[..., list[Finding]]


def gstr(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(raw)) + raw


def gguf(kvs: list[tuple[str, int, bytes]], version: int = 3, tensors: int = 0) -> bytes:
    """A minimal GGUF writer: (key, value type, encoded value) triples."""
    out = b"GGUF" + struct.pack("<IQQ", version, tensors, len(kvs))
    for key, vtype, value in kvs:
        out += gstr(key) + struct.pack("<I", vtype) + value
    return out + b"\0" * 32


def model_with_template(template: str, key: str = "tokenizer.chat_template") -> bytes:
    tokens = [b"<s>", b"</s>", b"hello", b"\xe2\x96\x81world"]
    token_array = struct.pack("<IQ", 8, len(tokens)) + b"".join(gstr(t) for t in tokens)
    scores = struct.pack("<IQ", 6, 4) + struct.pack("<4f", 0, 0, -1, -2)
    return gguf(
        [
            ("general.architecture", 8, gstr("llama")),
            ("llama.context_length", 4, struct.pack("<I", 4096)),
            ("general.flag", 7, b"\x01"),
            ("tokenizer.ggml.tokens", 9, token_array),
            ("tokenizer.ggml.scores", 9, scores),
            (key, 8, gstr(template)),
            ("general.file_type", 10, struct.pack("<Q", 7)),
        ]
    )


CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
LLAMA2 = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}"
    "{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
    "{% for message in loop_messages %}{% if (message['role'] == 'user') != "
    "(loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate "
    "user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and "
    "system_message != false %}{% set content = '<<SYS>>\\n' + system_message + "
    "'\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = "
    "message['content'] %}{% endif %}{% if message['role'] == 'user' %}"
    "{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == "
    "'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"
)
LLAMA3 = (
    "{{- bos_token }}\n{%- if custom_tools is defined %}{%- set tools = custom_tools %}"
    "{%- endif %}\n{%- if not tools_in_user_message is defined %}"
    "{%- set tools_in_user_message = true %}{%- endif %}\n{%- if not date_string is defined %}"
    '{%- set date_string = strftime_now("%d %b %Y") %}{%- endif %}\n'
    "{%- set ns = namespace(found=false) %}{%- if not tools is defined %}"
    "{%- set tools = none %}{%- endif %}\n{%- if messages[0]['role'] == 'system' %}"
    "{%- set system_message = messages[0]['content']|trim %}"
    '{%- set messages = messages[1:] %}{%- else %}{%- set system_message = "" %}{%- endif %}'
    '{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}'
    "{%- if builtin_tools is defined or tools is not none %}"
    '{{- "Environment: ipython\\n" }}{%- endif %}'
    '{{- "Cutting Knowledge Date: December 2023\\n" }}'
    '{{- "Today Date: " + date_string + "\\n\\n" }}'
    '{%- for t in tools or [] %}{{- t | tojson(indent=4) }}{{- "\\n\\n" }}{%- endfor %}'
    '{{- system_message }}{{- "<|eot_id|>" }}'
    "{%- for message in messages %}{%- if 'tool_calls' in message %}"
    "{%- set tool_call = message.tool_calls[0].function %}"
    "{{- '{\"name\": \"' + tool_call.name + '\", ' }}"
    '{{- \'"parameters": \' }}{{- tool_call.arguments | tojson }}{{- "}" }}'
    "{%- else %}{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ "
    "message['content'] | trim + '<|eot_id|>' }}{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}\n"
)
MISTRAL = (
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != "
    "(loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate "
    "user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}"
    "{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == "
    "'assistant' %}{{ message['content'] + eos_token}}{% else %}"
    "{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}"
    "{% endfor %}"
)
GEMMA = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}"
    "{{ raise_exception('System role not supported') }}{% endif %}"
    "{% for message in messages %}{% if (message['role'] == 'assistant') %}"
    "{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}"
    "{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\\n'}}{% endif %}"
)
QWEN_TOOLS = (
    "{%- if tools %}{{- '<|im_start|>system\\n' }}{%- for tool in tools %}{{- \"\\n\" }}"
    '{{- tool | tojson }}{%- endfor %}{{- "\\n</tools>" }}{%- endif %}'
    '{%- for message in messages %}{%- if message.role == "user" or (message.role == '
    "\"system\" and not loop.first) %}{{- '<|im_start|>' + message.role + '\\n' + "
    "message.content + '<|im_end|>' + '\\n' }}{%- elif message.role == \"assistant\" %}"
    "{%- for tool_call in message.tool_calls %}{%- if tool_call.function is defined %}"
    '{%- set tool_call = tool_call.function %}{%- endif %}{{- \'<tool_call>\\n{"name": "\' }}'
    "{{- tool_call.name }}{{- tool_call.arguments | tojson }}{%- endfor %}{%- endif %}"
    "{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
BENIGN = {
    "chatml": CHATML,
    "llama2": LLAMA2,
    "llama3": LLAMA3,
    "mistral": MISTRAL,
    "gemma": GEMMA,
    "qwen": QWEN_TOOLS,
}


@pytest.mark.parametrize("name", sorted(BENIGN))
def test_real_templates_are_clean(scan: Scan, name: str) -> None:
    assert template_risks(BENIGN[name]) == []
    assert scan(model_with_template(BENIGN[name])) == []


def test_templates_render_as_expected() -> None:
    sandbox = pytest.importorskip("jinja2.sandbox")
    env = sandbox.ImmutableSandboxedEnvironment()
    env.globals["raise_exception"] = lambda m: None
    msgs = [{"role": "user", "content": "hi"}]
    for name, template in BENIGN.items():
        out = env.from_string(template).render(
            messages=msgs,
            bos_token="<s>",
            eos_token="</s>",
            add_generation_prompt=True,
            strftime_now=lambda fmt: "1 Jan 2026",
        )
        assert "hi" in out, name


MALICIOUS = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ lipsum.__globals__['os'].popen('id').read() }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ ''|attr('__cla' ~ 'ss__') }}",
    "{{ ''|attr('\\x5f\\x5fclass\\x5f\\x5f') }}",
    "{{ ''|attr('\\u005f\\u005fclass\\u005f\\u005f') }}",
    "{{ ''|attr('_' * 2 ~ 'class' ~ '_' * 2) }}",
    "{% set a = '__cla' %}{% set b = 'ss__' %}{{ x[a ~ b] }}",
    "{{ x[['__cla', 'ss__']|join] }}",
    "{{ x[dict(__cla=1, ss__=2)|join] }}",
    "{{ x['__ssalc__'|reverse] }}",
    "{{ x['__CLASS__'|lower] }}",
    "{{ x['%c%c%c%c%c%c%c%c%c'|format(95,95,99,108,97,115,115,95,95)] }}",
    "{{ x[(x|string)[0] ~ 'x'] }}",
    "{{ self._TemplateReference__context.joiner }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ config.items() }}",
    "{{ request.application }}",
    "{% for m in messages %}{{ m.content }}{% endfor %}{{ joiner }}",
    "hello {{- messages|map(attribute='__class__')|list }}",
    "{% set s = '_-_cla-ss_-_'|replace('-', '') %}{{ messages[s] }}",
    "{% set s = '_@_cla@ss_@_' %}{{ messages[s|replace('@', '')] }}",
    "{{ messages|map('at' ~ 'tr', x)|list }}",
    "{{ messages|map(attribute=x ~ y)|list }}",
    "{{ ''[x] }}",
    "{{ x|attr(y) }}",
    "{{ ''|attr('_' * 2 ~ 'class' ~ '_' * 2) }}",
    "{{ x['_' * 2 ~ 'class' ~ '_' * 2] }}",
]


@pytest.mark.parametrize("template", MALICIOUS)
def test_injections_are_critical(scan: Scan, template: str) -> None:
    assert template_risks(template), template
    found = scan(model_with_template(template))
    assert [f.rule for f in found] == ["gguf-template-injection"]
    assert found[0].severity == Severity.CRITICAL


@pytest.mark.timeout(60)  # a hang fails the test; no timed assertion
def test_hostile_shapes_are_bounded() -> None:
    for text in ["{{" * 200_000, "{%" + "'" * 300_000, "{{ '" + "\\" * 300_000, "x" * 2_000_000]:
        template_risks(text)


def test_named_template_and_text_outside_code(scan: Scan) -> None:
    found = scan(model_with_template("{{ x.__class__ }}", key="tokenizer.chat_template.tool_use"))
    assert [f.rule for f in found] == ["gguf-template-injection"]
    # Words in the literal text around the code are output, not run.
    assert template_risks("Be yourself. os.system and __class__ in prose {{ m }}") == []


def test_big_endian_and_v2(scan: Scan) -> None:
    data = model_with_template("{{ x.__class__ }}").replace(
        struct.pack("<I", 3), struct.pack("<I", 2), 1
    )
    assert [f.rule for f in scan(data)] == ["gguf-template-injection"]
    be = (
        b"GGUF"
        + struct.pack(">IQQ", 3, 0, 1)
        + struct.pack(">Q", 23)
        + b"tokenizer.chat_template"
        + struct.pack(">I", 8)
        + struct.pack(">Q", 17)
        + b"{{ x.__class__ }}"
    )
    assert [f.rule for f in scan(be)] == ["gguf-template-injection"]


def test_truncated_and_lying_lengths(scan: Scan) -> None:
    data = model_with_template(CHATML)
    assert {f.rule for f in scan(data[:60])} == {"unreadable"}
    lying = b"GGUF" + struct.pack("<IQQ", 3, 0, 2**60)
    assert {f.rule for f in scan(lying)} == {"unreadable"}
    arr = gguf([("a", 9, struct.pack("<IQ", 8, 2**62))])
    assert {f.rule for f in scan(arr)} == {"unreadable"}


SEED = model_with_template("{{ x.__class__ }}")


@settings(max_examples=200, deadline=2000)
@given(st.data())
def test_mutated_headers_never_raise(
    run_scanner: Callable[..., list[Finding]], data: st.DataObject
) -> None:
    raw = mutate(SEED, data, keep=4)
    run_scanner(SCANNERS[0], raw)


@settings(max_examples=200, deadline=2000)
@given(st.text(max_size=200))
def test_template_analysis_never_raises(text: str) -> None:
    template_risks(text)
