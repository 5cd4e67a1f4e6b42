"""Chat templates rendered by jinja2 with transformers' settings, as ground truth for our Jinja engine.

    python3 bench/templates/jinja_fixture.py > tests/Meteora.Tests/Tokenization/chat-templates.json

The environment is configured as transformers' apply_chat_template does it: ImmutableSandboxedEnvironment,
trim_blocks and lstrip_blocks, the loopcontrols extension, tojson as json.dumps(ensure_ascii=False), and
raise_exception. The templates are our own, written in the styles real model families use (header tokens,
ChatML, [INST] with a folded system prompt, tool lists) plus one that exercises the rest of the language.
"""
import json
import sys

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment


class Raised(Exception):
    pass


def raise_exception(message):
    raise Raised(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
env.filters["tojson"] = tojson
env.globals["raise_exception"] = raise_exception

TEMPLATES = {
    "headers": (
        "{{ bos_token }}{% for message in messages %}"
        "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' %}"
        "{{ content }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"),
    "chatml": (
        "{% for message in messages %}"
        "{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
        "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"),
    "inst": (
        "{% if messages[0]['role'] == 'system' %}"
        "{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}"
        "{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
        "{% for message in loop_messages %}"
        "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
        "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
        "{% if loop.index0 == 0 and system_message != false %}"
        "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
        "{% else %}{% set content = message['content'] %}{% endif %}"
        "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
        "{% elif message['role'] == 'assistant' %}{{ ' ' + content.strip() + ' ' + eos_token }}{% endif %}"
        "{% endfor %}"),
    "multiline": """{#- A template laid out over lines: trim_blocks / lstrip_blocks decide its whitespace. -#}
{% set ns = namespace(system='', turns=0) %}
{% for message in messages %}
    {% if message.role == 'system' %}
        {% set ns.system = message.content %}
    {% else %}
        {% set ns.turns = ns.turns + 1 %}
    {% endif %}
{% endfor %}
{% if ns.system %}
System: {{ ns.system }}
{% endif %}
{% for message in messages if message.role != 'system' %}
  {% if message.role == 'user' %}
User ({{ loop.index }}/{{ loop.length }}): {{ message.content }}
  {%- elif message.role == 'assistant' %}
Assistant: {{ message.content | trim }}
  {%- endif %}

{% endfor %}
{%- if add_generation_prompt %}
Assistant:
{%- endif %}""",
    "language": """{% macro render(role, text, width=2) -%}
[{{ role | upper }}{{ '*' * width }}] {{ text }}
{%- endmacro %}
{% set roles = messages | map(attribute='role') | list %}
{{ roles | join(',') }}|{{ roles | unique | list | length }}|{{ messages | selectattr('role', 'equalto', 'user') | list | length }}
{% for message in messages %}
{{ render(message.role, message.content.replace('\\n', ' / ')) }}
{% if message.content.startswith('Q') %}starts with Q{% elif 'x' in message.content %}has x{% else %}plain{% endif %}
{% if loop.index > 3 %}{% break %}{% endif %}
{% endfor %}
{% set info = {'count': messages | length, 'first': messages[0].role, 'flags': [true, none, 1.5, -2]} %}
{{ info | tojson }} {{ info.items() | list | length }} {{ info.get('missing', 'dflt') }} {{ info['count'] // 2 }} {{ 7 % 3 }} {{ 2 ** 5 }} {{ 10 / 4 }}
{{ messages[-1].content[:5] }}|{{ messages[-1].content[::-1] | truncate_me if false else 'ternary' }}|{{ tools is defined }}|{{ tools is none }}|{{ nothing is defined }}|{{ nothing | default('d') }}
{{ 'a b  c'.split() }} {{ 'x,y'.split(',') | tojson }} {{ ' pad '.strip() ~ '|' }} {{ 'Hello World'.lower().title() }} {{ [1, 2] + [3] }} {{ 'ab' in 'cab' }} {{ 3 not in [1, 2] }}
{% for k, v in {'b': 1, 'a': 2}.items() %}{{ k }}={{ v }}{{ ',' if not loop.last }}{% endfor %}
{% for x in [] %}never{% else %}empty loop{% endfor %}
{% set outer = 'kept' %}{% for m in messages %}{% set outer = 'loop-local' %}{% endfor %}{{ outer }}
{{ messages[0] is mapping }} {{ messages is iterable }} {{ 4 is even }} {{ 'abc' is string }} {{ 1 is number }}
{%- if add_generation_prompt %}

GO{% endif %}""",
    "tools": """{{- bos_token }}
{%- if tools %}
<tools>
{%- for tool in tools %}
{{ tool | tojson(indent=2) }}
{%- endfor %}
</tools>
{%- endif %}
{%- for message in messages %}
<{{ message['role'] }}>{{ message['content'] }}</{{ message['role'] }}>
{%- endfor %}
{%- if add_generation_prompt %}
<assistant>
{%- endif %}""",
    "indented": """{%- set sys = none %}
{%- if messages[0].role == 'system' %}
    {%- set sys = messages[0].content %}
{%- endif %}
{#- comments on their own lines vanish with their newline #}
{{- bos_token }}
{%- if sys is not none %}
    {{- '[SYS]' + sys + '[/SYS]\n' }}
{%- endif %}
{%- for message in messages %}
    {%- if message.role == 'system' %}
        {%- continue %}
    {%- endif %}
    {%- set header %}{{ message.role | capitalize }}{% if loop.previtem is defined %} after {{ loop.previtem.role }}{% endif %}{% endset %}
    {{- header }}:
    {%+ if message.content | length > 20 %}(long) {% endif %}{{ message.content }}
{%- if not loop.last %}

{% endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '\nAssistant:' }}
{%- endif %}
""",
    # Corner cases an outside review found (2026-12-02): loop scopes, escapes, precedence, repr, tojson options,
    # generators' truthiness, whitespace markers, nested literals, filters' exact rules. Ends with a newline and
    # uses CRLF on one line, which jinja2 normalises.
    "corners": "{% set count = 0 %}{% for m in messages %}{% set count = count + 1 %}{% if m.role == 'system' %}{% set sys = m.content %}{% endif %}"
               "{{ count }}{{ sys if sys is defined else '-' }}{% endfor %}|{{ count }}\r\n"
               "{% if(messages | length > 1) %}many{% elif(true) %}one{% endif %}|"
               "{{ '\\u2019\\x41\\t\\101|' }}{{ [\"it's\", 'a\"b', 'plain', 'tab\\there'] }}|{{ {'k': \"Xi'an\", 'n': none, 'b': true, 'f': 2.5} }}|"
               "{{ 'S' if messages | selectattr('role', 'equalto', 'nobody') else 'empty' }}|{{ messages | selectattr('role', 'equalto', 'nobody') | list | length }}|"
               "{{ -3 | abs }}|{{ 'a' ~ 'b' is string }}|{{ 1 < 3 < 2 }}|{{ 3 > 2 > 1 }}|{{ 2 * 3 ~ 'x' }}|"
               "{{ {'b': 1, 'a': [1, 2]} | tojson(sort_keys=true) }}|{{ {'a': [1, 2]} | tojson(separators=(',', ':')) }}|{{ 'é😀' | tojson(true) }}|"
               "{{ 'x\\n\\ny' | indent(2, true) }}|{{ {'a': {'b': 1}} }}|{{ '\\x1f a \\x1f' | trim }}|{{ \"hello's 1st-try\" | title }}|"
               "{{ ['b', 'B', 'a'] | sort | join(',') }}|{{ ['A', 'a', 'b'] | unique | join(',') }}|{{ 'a b  c ' .split(none, 1) }}|[{{ 'ab' | center(7) }}]|"
               "{{ none is sameas none }}{{ 0 is sameas false }}{{ true is number }}{% set a, b = 1, 2 %}{{ a + b }}\n"
               "{% for m in messages +%}\n{{ m.role[:1] }}{% endfor %}\n",
}

CONVERSATIONS = {
    "user": [{"role": "user", "content": "Hello!"}],
    "full": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Question one?"},
             {"role": "assistant", "content": "  Answer one.  "}, {"role": "user", "content": "Quoted \"x\" and 'y'\nsecond line — ünïcödé 😀"}],
    "bad-order": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}],
    "long": [{"role": "user", "content": f"Q{i} x" if i % 2 == 0 else f"answer {i}"} for i in range(6)],
}
for i, m in enumerate(CONVERSATIONS["long"]):
    m["role"] = "user" if i % 2 == 0 else "assistant"

TOOLS = [{"type": "function", "function": {"name": "get_time", "description": "Current time", "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}}}}]

out = []
for name, source in TEMPLATES.items():
    template = env.from_string(source)
    cases = []
    for conv_name, messages in CONVERSATIONS.items():
        for gen in (True, False):
            context = {"messages": messages, "add_generation_prompt": gen, "bos_token": "<s>", "eos_token": "</s>",
                       "tools": TOOLS if name == "tools" and conv_name == "full" else None, "documents": None}
            case = {"conversation": conv_name, "add_generation_prompt": gen, "tools": context["tools"]}
            try:
                case["output"] = template.render(**context)
            except Raised as e:
                case["raised"] = str(e)
            cases.append(case)
    out.append({"name": name, "template": source, "cases": cases})

json.dump({"jinja2": jinja2.__version__, "conversations": CONVERSATIONS, "templates": out}, sys.stdout, ensure_ascii=False, indent=1)
print()
